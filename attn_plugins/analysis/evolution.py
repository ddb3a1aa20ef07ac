"""How attention changes over time: across the steps of one ``generate()`` call, and across
training checkpoints.

:func:`generation_evolution` reads a record captured around ``model.generate()``. Such a record
holds one query row per position: the prompt's rows (from the first forward) and then one row per
later step. Step ``t`` (``0`` is the prompt's forward) produced the ``t``-th new token from the
row at position ``prompt_length - 1 + t``; the result keeps that row for each step.

:func:`checkpoint_evolution` takes records of the same inputs captured from checkpoints of one
model (e.g. epochs of a training run) and tracks every head's statistics and how far its
attention moved from one checkpoint to the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..record import AttentionRecord
from .blocks import ANY, record_view, select_layers
from .divergence import js_divergence_rows
from .stats import STAT_NAMES, head_stats
from .tokens import readable_token


@dataclass
class GenerationEvolution:
    """Attention of the newest token at each generation step (one batch item).

    ``weights`` is ``[steps, layers, heads, keys]`` (zero on keys not yet generated and on
    padding); the statistics are ``[steps, layers, heads]``. For cross-attention (an
    encoder-decoder's decoder looking at the source or the audio frames) the keys are the encoder
    positions and ``prompt_share``/``distance`` are NaN.
    """

    prompt_length: int
    steps: int
    item: int
    kind: str
    layer_labels: list[str]
    heads: list[list[int]]
    weights: torch.Tensor
    key_tokens: list[str] | None
    step_tokens: list[str] | None  # the token that was the query at each step
    entropy: torch.Tensor
    prompt_share: torch.Tensor  # share of attention on the prompt's keys
    first_token_share: torch.Tensor  # share on key 0 (the "attention sink")
    distance: torch.Tensor  # mean distance back from the current position
    peak: torch.Tensor  # the most attended key (an index into keys)
    key_mask: torch.Tensor | None = field(default=None)  # [keys] bool, real keys

    def head(self, layer: int | str, head: int) -> torch.Tensor:
        """``[steps, keys]``: one head's row at every step (``layer``: position in ``layer_labels`` or a label)."""
        li = self.layer_labels.index(layer) if isinstance(layer, str) else layer
        return self.weights[:, li, self.heads[li].index(head)]

    def __str__(self) -> str:
        ent = self.entropy.nanmean(dim=(1, 2))
        lines = [
            f"generation: prompt of {self.prompt_length} positions, {self.steps} step(s), "
            f"{len(self.layer_labels)} {self.kind}-attention layer(s)"
        ]
        for t in range(self.steps):
            tok = f" {self.step_tokens[t]!r}" if self.step_tokens else ""
            extra = "" if self.kind != "self" else f", on prompt {self.prompt_share[t].nanmean().item():.2f}"
            lines.append(f"  step {t}{tok}: mean entropy {ent[t].item():.3f}{extra}")
        return "\n".join(lines)


def generation_evolution(
    record: AttentionRecord, *, item: int = 0, layers: Any = None, stack: Any = ANY, kind: str = "self"
) -> GenerationEvolution:
    """Attention of the newest token at each step of a captured ``generate()`` (see module doc).

    For encoder-decoders pass ``stack="decoder"`` (``kind="self"`` or ``kind="cross"``).
    """
    if not isinstance(record, AttentionRecord):
        raise TypeError(f"generation_evolution needs an AttentionRecord from generate(), got {type(record).__name__}")
    if stack is ANY and record.is_encoder_decoder:
        stack = "decoder"
    chosen = select_layers(record, layers, stack, kind)
    vs = [record_view(record, layer).select_item(item) for layer in chosen]
    steps = int(record.metadata.get("generation_steps", 1))
    q = vs[0].weights.shape[2]
    for v in vs:
        if v.weights.shape[2] != q:
            raise ValueError("the selected layers hold different numbers of query rows")
    prompt = q - (steps - 1)
    if prompt < 1:
        raise ValueError(f"the record has {q} query rows but {steps} generation steps: not a full generate() record")
    beam_rows = record.metadata.get("beam_rows")
    if beam_rows:  # beam search: a sequence that ended early ran fewer steps (its later rows are padding)
        steps = int(beam_rows[item]["generated_tokens"])
    rows = torch.arange(prompt - 1, prompt - 1 + steps)  # one per step
    k = max(v.weights.shape[3] for v in vs)
    width = max(len(v.heads) for v in vs)
    weights = torch.zeros(steps, len(vs), width, k, dtype=torch.float64)
    nan = torch.full((steps, len(vs), width), float("nan"), dtype=torch.float64)
    entropy, prompt_share, first, distance = nan.clone(), nan.clone(), nan.clone(), nan.clone()
    peak = torch.full((steps, len(vs), width), -1, dtype=torch.long)
    for li, v in enumerate(vs):
        w = torch.where(v.key_mask[:, None, None, :], v.weights, torch.zeros((), dtype=torch.float64))[0]  # [h, q, k]
        h, _, kv = w.shape
        step_rows = w[:, rows].permute(1, 0, 2)  # [steps, h, kv]
        weights[:, li, :h, :kv] = step_rows
        safe = torch.where(step_rows > 0, step_rows, torch.ones((), dtype=torch.float64))
        entropy[:, li, :h] = -(torch.where(step_rows > 0, step_rows * torch.log(safe), torch.zeros(()))).sum(-1)
        first[:, li, :h] = step_rows[..., 0]
        peak[:, li, :h] = step_rows.argmax(dim=-1)
        if v.kind == "self":
            qpos = (kv - q + rows).to(torch.float64)  # key position of each step's query
            kpos = torch.arange(kv, dtype=torch.float64)
            prompt_end = kv - q + prompt  # keys before this are the prompt
            prompt_share[:, li, :h] = step_rows[..., :prompt_end].sum(-1)
            dist = (qpos[:, None] - kpos[None, :]).abs()  # [steps, kv]
            distance[:, li, :h] = (step_rows * dist[:, None, :]).sum(-1)
    ref = vs[0]
    key_tokens = [readable_token(t) for t in ref.key_tokens[0]] if ref.key_tokens else None
    step_tokens = None
    if ref.kind == "self" and ref.key_tokens:
        kv = ref.weights.shape[3]
        step_tokens = [readable_token(ref.key_tokens[0][kv - q + int(r)]) for r in rows]
    elif ref.query_tokens:
        step_tokens = [readable_token(ref.query_tokens[0][int(r)]) for r in rows]
    key_mask = torch.zeros(k, dtype=torch.bool)
    key_mask[: ref.key_mask.shape[1]] = ref.key_mask[0]
    return GenerationEvolution(
        prompt_length=prompt,
        steps=steps,
        item=item,
        kind=ref.kind,
        layer_labels=[v.label for v in vs],
        heads=[v.heads for v in vs],
        weights=weights,
        key_tokens=key_tokens,
        step_tokens=step_tokens,
        entropy=entropy,
        prompt_share=prompt_share,
        first_token_share=first,
        distance=distance,
        peak=peak,
        key_mask=key_mask,
    )


@dataclass
class CheckpointEvolution:
    """Per-head statistics at each checkpoint (``stats[name]`` is ``[checkpoints, layers, heads]``),
    and how far each head's attention moved: ``drift[c]`` is the mean Jensen-Shannon distance
    (base 2) between checkpoint ``c`` and ``c - 1`` (NaN for the first), ``drift_from_final[c]``
    the distance to the last checkpoint."""

    labels: list[str]
    layer_labels: list[str]
    heads: list[list[int]]
    stats: dict[str, torch.Tensor]
    drift: torch.Tensor
    drift_from_final: torch.Tensor
    records: list[AttentionRecord] = field(repr=False, default_factory=list)
    layer_selection: list[Any] | None = field(repr=False, default=None)
    stack: object = field(repr=False, default=ANY)
    kind: str = "self"

    def maps(self, layer: int | str, head: int, item: int = 0) -> torch.Tensor:
        """``[checkpoints, q, k]``: one head's attention map at each checkpoint (padding cropped)."""
        li = self.layer_labels.index(layer) if isinstance(layer, str) else layer
        out = []
        for record in self.records:
            layer_obj = select_layers(record, self.layer_selection, self.stack, self.kind)[li]
            v = record_view(record, layer_obj).select_item(item)
            hi = v.heads.index(head)
            out.append(v.weights[0, hi][v.query_mask[0]][:, v.key_mask[0]])
        return torch.stack(out)

    def tokens(self, item: int = 0) -> tuple[list[str] | None, list[str] | None]:
        """Readable query and key tokens of ``item`` (padding cropped), from the first checkpoint."""
        record = self.records[0]
        layer_obj = select_layers(record, self.layer_selection, self.stack, self.kind)[0]
        v = record_view(record, layer_obj).select_item(item)
        qt = (
            [readable_token(t) for t, m in zip(v.query_tokens[0], v.query_mask[0], strict=True) if m]
            if v.query_tokens
            else None
        )
        kt = (
            [readable_token(t) for t, m in zip(v.key_tokens[0], v.key_mask[0], strict=True) if m]
            if v.key_tokens
            else None
        )
        return qt, kt

    def __str__(self) -> str:
        lines = [f"{len(self.labels)} checkpoints, {len(self.layer_labels)} layers"]
        ent = self.stats["entropy"]
        for c, label in enumerate(self.labels):
            drift = self.drift[c].nanmean().item()
            moved = "" if c == 0 else f", moved {drift:.3f} since {self.labels[c - 1]}"
            lines.append(f"  {label}: mean entropy {ent[c].nanmean().item():.3f}{moved}")
        return "\n".join(lines)


def _head_rows(record: AttentionRecord, chosen: Any) -> torch.Tensor:
    """``[layers, heads, rows, k]`` over the real query rows (padded keys zeroed)."""
    out = []
    for layer in chosen:
        v = record_view(record, layer)
        w = torch.where(v.key_mask[:, None, None, :], v.weights, torch.zeros((), dtype=torch.float64))
        b, h, q, k = w.shape
        out.append(w.permute(1, 0, 2, 3).reshape(h, b * q, k)[:, v.query_mask.reshape(-1)])
    width = max(t.shape[0] for t in out)
    rows, k = out[0].shape[1:]
    full = torch.zeros(len(out), width, rows, k, dtype=torch.float64)
    for i, t in enumerate(out):
        full[i, : t.shape[0]] = t
    return full


def checkpoint_evolution(
    records: list[AttentionRecord],
    labels: list[str] | None = None,
    *,
    layers: Any = None,
    stack: Any = ANY,
    kind: str = "self",
) -> CheckpointEvolution:
    """Track each head across checkpoints: records of the same inputs, one per checkpoint, in order."""
    records = list(records)
    if not records:
        raise ValueError("checkpoint_evolution needs at least one record")
    if not all(isinstance(r, AttentionRecord) for r in records):
        raise TypeError("checkpoint_evolution needs a list of AttentionRecord (one per checkpoint)")
    labels = list(labels) if labels is not None else [f"checkpoint {i}" for i in range(len(records))]
    if len(labels) != len(records):
        raise ValueError(f"{len(labels)} labels for {len(records)} records")
    chosen = [select_layers(r, layers, stack, kind) for r in records]
    ref_shapes = [tuple(layer.weights.shape) for layer in chosen[0]]
    for label, group in zip(labels, chosen, strict=True):
        shapes = [tuple(layer.weights.shape) for layer in group]
        if shapes != ref_shapes:
            raise ValueError(
                f"{label} has attention shapes {shapes[:2]}... but {labels[0]} has {ref_shapes[:2]}...: capture every "
                "checkpoint on the same inputs"
            )
    per = [head_stats(r, layers=layers, stack=stack, kind=kind) for r in records]
    names = list(STAT_NAMES) + list(per[0].groups)
    stats = {name: torch.stack([p.get(name) for p in per]) for name in names}
    rows = [_head_rows(r, g) for r, g in zip(records, chosen, strict=True)]

    def distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape[2] == 0:
            return torch.full(a.shape[:2], float("nan"), dtype=torch.float64)
        return torch.sqrt(js_divergence_rows(a, b)).mean(dim=-1)

    nan = torch.full(stats["entropy"].shape, float("nan"), dtype=torch.float64)
    drift, from_final = nan.clone(), nan.clone()
    for c in range(len(records)):
        if c > 0:
            drift[c] = distance(rows[c], rows[c - 1])
        from_final[c] = distance(rows[c], rows[-1])
    return CheckpointEvolution(
        labels=labels,
        layer_labels=per[0].labels,
        heads=per[0].heads,
        stats=stats,
        drift=drift,
        drift_from_final=from_final,
        records=records,
        layer_selection=layers,
        stack=stack,
        kind=kind,
    )


__all__ = ["CheckpointEvolution", "GenerationEvolution", "checkpoint_evolution", "generation_evolution"]
