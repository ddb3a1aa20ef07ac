"""Speech encoder-decoders (Whisper): decoder cross-attention over the audio frames."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..analysis.blocks import View, record_view
from ..record import AttentionRecord
from .canvas import (
    colour_scale,
    contextual,
    display_label,
    finish,
    label_bar,
    new_figure,
    pick_cross_layer,
    readable,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Whisper: log-mel frames every 10 ms; the encoder's strided convolution halves them (20 ms).
MEL_HOP_SECONDS = 0.01
ENCODER_FRAME_SECONDS = 0.02


def _cross_matrix(
    record: AttentionRecord, layer: int | str, head: int | str | None, item: int
) -> tuple[torch.Tensor, str, View]:
    layers = sorted((lay for lay in record.layers if lay.kind == "cross"), key=lambda lay: lay.index)
    if not layers:
        raise ValueError(
            "the record has no cross-attention: capture a Whisper (or other encoder-decoder) model "
            "during generate() or a teacher-forced forward"
        )
    if layer == "mean":
        chosen, where = layers, "all layers"
    elif isinstance(layer, str):
        raise ValueError(f"layer must be a cross-attention layer index or 'mean', got {layer!r}")
    else:
        chosen, idx = pick_cross_layer(layers, layer)
        where = f"layer {idx}"
    mats: list[torch.Tensor] = []
    view: View | None = None
    for captured in chosen:
        view = record_view(record, captured).select_item(item)
        w = view.weights[0]
        if head in ("mean", None):
            mats.append(w.mean(dim=0))
        else:
            if isinstance(head, str) or head not in view.heads:
                raise IndexError(f"head {head} was not captured; heads: {view.heads}")
            mats.append(w[view.heads.index(head)])
    assert view is not None  # chosen holds at least one layer
    matrix = torch.stack(mats).mean(dim=0)[view.query_mask[0]]
    what = "mean of heads" if head in ("mean", None) else f"head {head}"
    return matrix, f"{where}, {what}", view


@contextual
def whisper_cross_attention(
    record: AttentionRecord,
    *,
    layer: int | str = "mean",
    head: int | str | None = "mean",
    item: int = 0,
    features: Any = None,
    tokens: Sequence[str] | None = None,
    frame_seconds: float = ENCODER_FRAME_SECONDS,
    mel_hop_seconds: float = MEL_HOP_SECONDS,
    max_seconds: float | None = None,
    mark_peaks: bool = True,
    cmap: str = "magma",
    scale: str = "relative",
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Cross-attention of each decoded token over the audio, on a time axis in seconds.

    Spread over ~1,500 audio frames, each weight is small, so this plot's scale is relative by
    default (0 to the largest weight shown, stated on the colorbar); ``scale="fixed"`` gives 0..1.

    With ``features`` (the log-mel ``input_features``, ``[n_mels, frames]`` or batched) the
    spectrogram is drawn above on the same time axis. Each row is a decoded token; the most
    attended frame of each token is marked, which traces the word-level alignment Whisper's own
    timestamps are built from. ``max_seconds`` crops the (30 s padded) window to the real audio.

    Args:
        record: a record of a Whisper forward or ``generate()`` call.
        layer: a cross-attention layer index or ``"mean"`` (all layers averaged).
        head: a head index or ``"mean"``.
        item: the batch item.
        features: the log-mel ``input_features`` (``[n_mels, frames]`` or batched), drawn above.
        tokens: row labels (default: the record's decoder tokens).
        frame_seconds: seconds per encoder frame (Whisper: 0.02).
        mel_hop_seconds: seconds per log-mel frame (Whisper: 0.01).
        max_seconds: crop the time axis to the real audio.
        mark_peaks: mark the most attended frame of each token.
        cmap: a matplotlib colormap name.
        scale: ``"relative"`` (default) or ``"fixed"`` (0..1).
        title: the title.
        path: save to this .png, .svg or .pdf file as well.

    Returns:
        The Figure.
    """
    matrix, what, view = _cross_matrix(record, layer, head, item)
    if tokens is None:
        if view.query_tokens:
            tokens = [t for t, m in zip(view.query_tokens[0], view.query_mask[0], strict=True) if m]
        elif "decoder_input_ids" in record.inputs:
            ids = record.inputs["decoder_input_ids"][item].tolist()
            tokens = [str(i) for i in ids][-matrix.shape[0] :]
    labels = readable(tokens) if tokens else None
    q, k = matrix.shape
    seconds = k * frame_seconds
    if max_seconds is not None:
        k = min(k, int(np.ceil(max_seconds / frame_seconds)))
        matrix = matrix[:, :k]
        seconds = k * frame_seconds
    feats = None
    if features is not None:
        feats = torch.as_tensor(features).detach().to("cpu", torch.float64)
        if feats.dim() == 3:
            feats = feats[item]
        n_mel_frames = min(feats.shape[-1], int(round(seconds / mel_hop_seconds)))
        feats = feats[:, :n_mel_frames]
    height = 0.18 * q + 1.3
    fig = new_figure(min(9.0, max(4.2, 0.05 * k + 2.4)), height + (1.1 if feats is not None else 0.0))
    if feats is not None:
        grid = fig.add_gridspec(2, 2, height_ratios=[1.1, height], width_ratios=[1, 0.03])
        ax_spec = fig.add_subplot(grid[0, 0])
        ax = fig.add_subplot(grid[1, 0], sharex=ax_spec)
        cax_spec = fig.add_subplot(grid[0, 1])
        cax = fig.add_subplot(grid[1, 1])
        spec = ax_spec.imshow(
            feats.numpy(),
            aspect="auto",
            origin="lower",
            cmap="viridis",
            extent=(0, feats.shape[-1] * mel_hop_seconds, 0, feats.shape[0]),
            interpolation="nearest",
        )
        ax_spec.set_ylabel("mel bin")
        ax_spec.tick_params(labelbottom=False)

        bar = fig.colorbar(spec, cax=cax_spec)
        bar.set_label("log-mel", fontsize=6)
    else:
        grid = fig.add_gridspec(1, 2, width_ratios=[1, 0.03])
        ax = fig.add_subplot(grid[0, 0])
        cax = fig.add_subplot(grid[0, 1])

    top, scale_label = colour_scale([matrix], scale, what="cross-attention")
    image = ax.imshow(
        matrix.numpy(),
        aspect="auto",
        cmap=cmap,
        extent=(0, seconds, q - 0.5, -0.5),
        interpolation="nearest",
        vmin=0.0,
        vmax=top,
    )
    if mark_peaks and q and k:
        peaks = torch.nan_to_num(matrix, nan=-1.0).argmax(dim=-1).numpy()
        ax.plot(
            (peaks + 0.5) * frame_seconds,
            np.arange(q),
            color="#00d0ff",
            marker="o",
            markersize=2.2,
            linewidth=0.6,
            label="most attended frame",
        )
        fig.legend(loc="outside lower center", frameon=False, fontsize=6)
    if labels:
        ax.set_yticks(range(q))
        shown = [display_label(label) for label in labels[:q]]
        ax.set_yticklabels(
            shown if q <= 48 else [label if i % max(1, q // 48) == 0 else "" for i, label in enumerate(shown)]
        )
    fig.suptitle(title if title is not None else f"Whisper cross-attention over the audio\n({what})")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("decoded token")
    bar = fig.colorbar(image, cax=cax)
    label_bar(bar, scale_label)
    bar.outline.set_linewidth(0.5)
    return finish(fig, path)


__all__ = ["ENCODER_FRAME_SECONDS", "MEL_HOP_SECONDS", "whisper_cross_attention"]
