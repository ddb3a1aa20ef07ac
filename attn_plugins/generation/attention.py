"""Attention-based rows for a generated sequence, read from a capture of the teacher-forced forward.

``attention``: an encoder-decoder's cross-attention (source) and decoder self-attention (prefix) rows
of each step, one layer or their mean, one head or the mean of heads; a decoder-only model's
self-attention rows split at the prompt. The rows are the captured weights (float64 copies).
``rollout``: encoder self-attention rolled out (Abnar & Zuidema 2020), decoder self-attention rolled
out, and the cross-attention (heads and layers averaged) between them:
``source = R_dec @ C @ R_enc``, ``prefix = R_dec``; a decoder-only model's rollout rows split at the prompt.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import torch

from ..analysis.rollout import rollout_matrices
from .methods import method
from .teacher import ENCODER_DECODER

if TYPE_CHECKING:
    from ..record import AttentionRecord, LayerAttention
    from .methods import StepBatch
    from .teacher import TeacherForced


def capture_teacher(teacher: TeacherForced) -> AttentionRecord:
    """The :class:`~attn_plugins.record.AttentionRecord` of the teacher-forced forward."""
    from ..capturing import capture

    with capture(teacher.model) as cap:
        teacher.plain_forward()
    record: AttentionRecord = cap.record
    return record


def _pick(layers: list[LayerAttention], layer: int | str) -> list[LayerAttention]:
    if layer == "mean":
        return layers
    indices = [layer_.index for layer_ in layers]
    want = indices[layer] if isinstance(layer, int) and -len(indices) <= layer < 0 else layer
    hit = [layer_ for layer_ in layers if layer_.index == want]
    if not hit:
        raise IndexError(f"no captured layer {layer!r}; captured layers: {indices}")
    return hit


def head_rows(layers: list[LayerAttention], head: int | str | None, positions: torch.Tensor) -> torch.Tensor:
    """``[T, K]`` float64: rows ``positions`` of the chosen head (or the mean of heads) of each layer,
    averaged over layers."""
    mats = []
    for layer in layers:
        w = layer.weights[0].double()
        if head in ("mean", None):
            w = w.mean(dim=0)
        else:
            heads = layer.head_indices
            if head not in heads:
                raise IndexError(f"head {head} is not captured; heads: {heads}")
            w = w[heads.index(head)]
        mats.append(w[positions.to(w.device)])
    return torch.stack(mats).mean(dim=0).cpu()


def cross_layers(record: AttentionRecord) -> list[LayerAttention]:
    """An encoder-decoder's cross-attention layers (any stack when the model names none, e.g. an RNN's attention)."""
    return record.select("decoder", "cross") or record.select(..., "cross")


def _split(teacher: TeacherForced, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s = teacher.source_ids.shape[1]
    return rows[:, :s], rows[:, s:]


@method("attention", "attention")
def attention(
    batch: StepBatch, *, layer: int | str = -1, head: int | str = "mean", record: AttentionRecord | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``layer``: an index (negative from the end) or ``"mean"``; ``head``: an index or ``"mean"``."""
    teacher = batch.teacher
    record = record if record is not None else capture_teacher(teacher)
    if teacher.kind == ENCODER_DECODER:
        src = head_rows(_pick(cross_layers(record), layer), head, batch.positions)
        selfs = record.select("decoder", "self")
        prefix = (
            head_rows(_pick(selfs, layer), head, batch.positions)
            if selfs
            else torch.zeros(len(batch.positions), teacher.prefix_ids.shape[1], dtype=torch.float64)
        )
        return src, prefix
    rows = head_rows(_pick(record.select(None, "self"), layer), head, batch.positions)
    return _split(teacher, rows)


@method("rollout", "attention")
def rollout(
    batch: StepBatch, *, head_fusion: str = "mean", add_residual: bool = True, record: AttentionRecord | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    teacher = batch.teacher
    record = record if record is not None else capture_teacher(teacher)
    positions = batch.positions.cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if teacher.kind == ENCODER_DECODER:
            r_enc = rollout_matrices(
                [x.weights for x in record.select("encoder", "self")],
                head_fusion=head_fusion,
                add_residual=add_residual,
            )[0].cpu()
            r_dec = rollout_matrices(
                [x.weights for x in record.select("decoder", "self")],
                head_fusion=head_fusion,
                add_residual=add_residual,
            )[0].cpu()
            cross = head_rows(cross_layers(record), "mean", torch.arange(r_dec.shape[0]))
            src = r_dec @ cross @ r_enc
            return src[positions], r_dec[positions]
        full = rollout_matrices(
            [x.weights for x in record.select(None, "self")], head_fusion=head_fusion, add_residual=add_residual
        )[0].cpu()
    return _split(teacher, full[positions])
