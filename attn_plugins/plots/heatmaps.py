"""Heatmaps: one head, every head of a layer, and the seq2seq alignment (target x source)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..analysis.blocks import ANY, View, record_view, select_layers, views
from ..record import AttentionRecord
from .canvas import (
    annotate_cells,
    colour_scale,
    contextual,
    finish,
    label_bar,
    new_figure,
    pick_cross_layer,
    readable,
    set_token_ticks,
    small_multiple_ticks,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

Head = int | str | None
"""A head index, ``"mean"`` (average of the heads) or ``"max"``; ``None`` means ``"mean"``."""


def _view(
    attn: Any,
    layer: int | None,
    item: int,
    stack: Any,
    kind: str,
    attention_mask: torch.Tensor | None = None,
    tokens: Sequence[str] | None = None,
) -> View:
    """One layer's view of one item (padding kept; cropped by the callers)."""
    if isinstance(attn, AttentionRecord):
        chosen = select_layers(attn, [layer] if layer is not None else None, stack, kind)
        v = record_view(attn, chosen[0] if layer is not None else chosen[-1])
        if attention_mask is not None:
            vs, _ = views(v.weights, attention_mask=attention_mask, kind=v.kind)
            v.key_mask, v.query_mask = vs[0].key_mask, vs[0].query_mask
    else:
        vs, _ = views(attn, attention_mask=attention_mask, tokens=tokens, kind=kind)
        v = vs[0]
    v = v.select_item(item)
    if tokens is not None and isinstance(attn, AttentionRecord):
        v.key_tokens = [list(tokens)]
        if v.kind == "self":
            v.query_tokens = [list(tokens)[-v.weights.shape[2] :]]
    return v


def _head_matrix(v: View, head: Head) -> tuple[torch.Tensor, str]:
    w = v.weights[0]  # [h, q, k]
    if head in ("mean", None):
        return w.mean(dim=0), "mean of heads"
    if head == "max":
        return w.amax(dim=0), "max over heads"
    if isinstance(head, str) or head not in v.heads:
        raise IndexError(f"head {head} is not in {v.label or 'the attention'}; heads: {v.heads}")
    return w[v.heads.index(head)], f"head {head}"


def _crop(v: View, matrix: torch.Tensor, crop_padding: bool) -> tuple[torch.Tensor, list[str] | None, list[str] | None]:
    qmask, kmask = v.query_mask[0], v.key_mask[0]
    qt = v.query_tokens[0] if v.query_tokens else None
    kt = v.key_tokens[0] if v.key_tokens else None
    if crop_padding:
        matrix = matrix[qmask][:, kmask]
        qt = [t for t, m in zip(qt, qmask, strict=True) if m] if qt else None
        kt = [t for t, m in zip(kt, kmask, strict=True) if m] if kt else None
    return matrix, (readable(qt) if qt else None), (readable(kt) if kt else None)


def draw_matrix(
    ax: Axes,
    matrix: Any,
    *,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    cmap: str = "Blues",
    vmin: float = 0.0,
    vmax: float | None = None,
    annotate: bool | None = None,
    max_labels: int = 64,
    xlabel: str = "key (attended to)",
    ylabel: str = "query (attending)",
) -> AxesImage:
    """Draw an attention matrix on ``ax``.

    Args:
        ax: the axes.
        matrix: a ``[q, k]`` tensor or array.
        query_labels: row labels.
        key_labels: column labels.
        cmap: a matplotlib colormap name.
        vmin: bottom of the colour scale.
        vmax: top of the colour scale; defaults to 1 (weights are probabilities; see
            :func:`~attn_plugins.plots.canvas.colour_scale`).
        annotate: write the values in the cells (default: for matrices up to 12 x 12).
        max_labels: the most tick labels per axis.
        xlabel: the x axis title.
        ylabel: the y axis title.

    Returns:
        The image (for a colorbar).
    """
    data = torch.as_tensor(matrix, dtype=torch.float64).numpy()
    q, k = data.shape
    if vmax is None:
        vmax = 1.0
    image = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    set_token_ticks(ax, "x", key_labels, max_labels=max_labels)
    set_token_ticks(ax, "y", query_labels, max_labels=max_labels)
    if not key_labels:
        ax.tick_params(axis="x", labelbottom=True)
    if annotate is None:
        annotate = q <= 12 and k <= 12
    if annotate:
        annotate_cells(ax, image, data, lambda v: f"{v:.2f}".lstrip("0") if 0 <= v < 1 else f"{v:.1f}", 5.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return image


@contextual
def heatmap(
    attn: Any,
    layer: int | None = 0,
    head: Head = 0,
    *,
    item: int = 0,
    stack: Any = ANY,
    kind: str = "self",
    tokens: Sequence[str] | None = None,
    attention_mask: torch.Tensor | None = None,
    crop_padding: bool = True,
    annotate: bool | None = None,
    cmap: str = "Blues",
    vmax: float | None = None,
    scale: str = "fixed",
    title: str | None = None,
    size: tuple[float, float] | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Heatmap of one head (``head="mean"`` averages the heads) with token labels and a colorbar.

    The colour scale is fixed at 0..1 (``scale="relative"``: 0 to the largest weight shown, stated
    on the colorbar; ``vmax=`` sets the top). Padded rows and columns are cropped.

    Args:
        attn: a record (``layer`` picks the captured layer, ``stack``/``kind`` the group), a
            :class:`~attn_plugins.record.LayerAttention` or a tensor ``[batch, heads, q, k]``/``[heads,
            q, k]``/``[q, k]``.
        layer: the layer (``None``: the last one of the group).
        head: a head index, ``"mean"`` or ``"max"``.
        item: the batch item.
        stack: the stack of a record's layer (encoder, decoder, ...).
        kind: ``"self"`` or ``"cross"``.
        tokens: labels overriding the record's tokens.
        attention_mask: ``[batch, k]`` mask for a tensor (padding cropped).
        crop_padding: drop padded rows and columns.
        annotate: write the weights in the cells (default: small matrices).
        cmap: a matplotlib colormap name.
        vmax: the top of the colour scale.
        scale: ``"fixed"`` (0..1) or ``"relative"``.
        title: the title (default: the layer and head).
        size: ``(width, height)`` in inches (default: from the matrix size).
        path: save to this .png, .svg or .pdf file as well.

    Returns:
        The Figure.
    """
    v = _view(attn, layer, item, stack, kind, attention_mask, tokens)
    matrix, what = _head_matrix(v, head)
    matrix, qt, kt = _crop(v, matrix, crop_padding)
    q, k = matrix.shape
    if size is None:
        side = min(7.0, max(2.6, 0.16 * max(q, k) + 1.4))
        size = (side * min(1.6, max(0.8, k / max(q, 1))) + 0.6, side)
    fig = new_figure(*size)
    ax = fig.add_subplot(1, 1, 1)
    top, label = colour_scale([matrix], scale, vmax)
    image = draw_matrix(ax, matrix, query_labels=qt, key_labels=kt, cmap=cmap, vmax=top, annotate=annotate)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    label_bar(bar, label)
    bar.outline.set_linewidth(0.5)
    ax.set_title(title if title is not None else " ".join(x for x in (v.label, what) if x))
    return finish(fig, path)


@contextual
def head_grid(
    attn: Any,
    layer: int | None = 0,
    *,
    item: int = 0,
    stack: Any = ANY,
    kind: str = "self",
    heads: Sequence[int] | None = None,
    ncols: int | None = None,
    tokens: Sequence[str] | None = None,
    attention_mask: torch.Tensor | None = None,
    crop_padding: bool = True,
    shared_scale: bool = True,
    scale: str = "fixed",
    cmap: str = "Blues",
    max_labels: int = 20,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Every head of one layer in a grid, on one colour scale with one colorbar.

    The scale is fixed at 0..1; ``scale="relative"`` runs it to the largest weight in the grid
    (``shared_scale=False``: each panel to its own largest weight), and the colorbar says so.

    Args:
        attn: a record, a :class:`~attn_plugins.record.LayerAttention` or a tensor (as for :func:`heatmap`).
        layer: the layer (``None``: the last one of the group).
        item: the batch item.
        stack: the stack of a record's layer.
        kind: ``"self"`` or ``"cross"``.
        heads: restrict the grid to these heads.
        ncols: panels per row (default: 4, or 6 above 16 heads).
        tokens: labels overriding the record's tokens.
        attention_mask: ``[batch, k]`` mask for a tensor.
        crop_padding: drop padded rows and columns.
        shared_scale: with ``scale="relative"``, one scale for all panels.
        scale: ``"fixed"`` (0..1) or ``"relative"``.
        cmap: a matplotlib colormap name.
        max_labels: token labels are drawn on the outer panels up to this many tokens.
        title: the title.
        path: save to this .png, .svg or .pdf file as well.

    Returns:
        The Figure.
    """
    v = _view(attn, layer, item, stack, kind, attention_mask, tokens)
    chosen = list(v.heads) if heads is None else list(heads)
    mats = []
    for h in chosen:
        m, _ = _head_matrix(v, h)
        mats.append(_crop(v, m, crop_padding))
    n = len(mats)
    ncols = ncols or min(n, 4 if n <= 16 else 6)
    nrows = math.ceil(n / ncols)
    q, k = mats[0][0].shape
    cell = 1.55 if max(q, k) <= max_labels else 1.35
    fig = new_figure(cell * ncols + 0.9, cell * nrows * max(0.6, min(1.4, q / max(k, 1))) + 0.5)
    vmax, label = colour_scale([m[0] for m in mats], scale)
    per_panel = scale == "relative" and not shared_scale
    if per_panel:
        label = "attention weight (relative scale: each head 0 to its own largest weight)"
    # not shared axes: an inner panel gets no ticks at all (hidden shared ticks cost as much to lay
    # out as shown ones, and the grid has 4-6x more inner than outer sides)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    labelled = max(q, k) <= max_labels
    image = None
    for idx, ax in enumerate(axes.flat):
        if idx >= n:
            ax.set_axis_off()
            continue
        matrix, qt, kt = mats[idx]
        r, c = divmod(idx, ncols)
        image = draw_matrix(
            ax,
            matrix,
            query_labels=qt if labelled else None,
            key_labels=kt if labelled else None,
            cmap=cmap,
            vmax=colour_scale([matrix], "relative")[0] if per_panel else vmax,
            annotate=False,
            xlabel="",
            ylabel="",
            max_labels=max_labels,
        )
        ax.set_title(f"head {chosen[idx]}", fontsize=7, pad=2)
        small_multiple_ticks(ax, labelled)
        if labelled and r != nrows - 1 and idx + ncols < n:
            ax.set_xticks([])
        if labelled and c != 0:
            ax.set_yticks([])
    assert image is not None  # at least one head was drawn (mats[0] above)
    bar = fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.025, pad=0.02, shrink=0.9)
    label_bar(bar, label)
    bar.outline.set_linewidth(0.5)
    fig.suptitle(
        title if title is not None else f"{v.label or 'attention'}: all heads{'' if item == 0 else f' (item {item})'}"
    )
    fig.supxlabel("key (attended to)", fontsize=7)
    fig.supylabel("query (attending)", fontsize=7)
    return finish(fig, path)


@contextual
def alignment(
    record: AttentionRecord,
    layer: int | str = -1,
    head: Head = "mean",
    *,
    item: int = 0,
    stack: Any = ANY,
    source_tokens: Sequence[str] | None = None,
    target_tokens: Sequence[str] | None = None,
    mark_peaks: bool = True,
    cmap: str = "Greys",
    annotate: bool | None = None,
    scale: str = "fixed",
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """The seq2seq alignment matrix: decoder cross-attention, target tokens (rows) x source
    tokens (columns), the classic view of attention in translation models (Bahdanau et al.).

    The most attended source token of each target token is marked with a box. The colour scale is
    fixed at 0..1 unless ``scale="relative"`` (stated on the colorbar).

    Args:
        record: a record of an encoder-decoder model.
        layer: a cross-attention layer index or ``"mean"`` (all layers averaged).
        head: a head, ``"mean"`` or ``"max"``.
        item: the batch item.
        stack: restrict to the cross-attention layers of this stack.
        source_tokens: column labels overriding the record's.
        target_tokens: row labels overriding the record's.
        mark_peaks: box the most attended source token of each row.
        cmap: a matplotlib colormap name.
        annotate: write the weights in the cells (default: small matrices).
        scale: ``"fixed"`` (0..1) or ``"relative"``.
        title: the title.
        path: save to this .png, .svg or .pdf file as well.

    Returns:
        The Figure.
    """
    if not isinstance(record, AttentionRecord):
        raise TypeError("alignment() needs an AttentionRecord of an encoder-decoder model")
    layers = [
        captured for captured in record.layers if captured.kind == "cross" and (stack is ANY or captured.stack == stack)
    ]
    if not layers:
        raise ValueError(
            "the record has no cross-attention: capture an encoder-decoder model (BART, T5, Marian, "
            "Whisper...) with a forward or generate() call"
        )
    layers.sort(key=lambda captured: captured.index)
    if layer == "mean":
        vs = [record_view(record, captured).select_item(item) for captured in layers]
        base = vs[0]
        mats = [_head_matrix(v, head)[0] for v in vs]
        matrix = torch.stack(mats).mean(dim=0)
        where = "all cross-attention layers"
    elif isinstance(layer, str):
        raise ValueError(f"layer must be a cross-attention layer index or 'mean', got {layer!r}")
    else:
        hit, _ = pick_cross_layer(layers, layer)
        base = record_view(record, hit[0]).select_item(item)
        matrix = _head_matrix(base, head)[0]
        where = base.label
    if source_tokens is not None:
        base.key_tokens = [list(source_tokens)]
    if target_tokens is not None:
        base.query_tokens = [list(target_tokens)]
    matrix, tt, st = _crop(base, matrix, True)
    q, k = matrix.shape
    side_w = min(8.0, max(2.8, 0.2 * k + 1.4))
    side_h = min(8.0, max(2.2, 0.2 * q + 1.0))
    fig = new_figure(side_w + 0.7, side_h)
    ax = fig.add_subplot(1, 1, 1)
    top, label = colour_scale([matrix], scale, what="cross-attention weight")
    image = draw_matrix(
        ax,
        matrix,
        query_labels=tt,
        key_labels=st,
        cmap=cmap,
        vmax=top,
        annotate=annotate,
        xlabel="source",
        ylabel="target",
    )
    if mark_peaks and q and k:
        from matplotlib.patches import Rectangle

        peaks = torch.nan_to_num(matrix, nan=-1.0).argmax(dim=-1).tolist()
        for i, j in enumerate(peaks):
            ax.add_patch(
                Rectangle(
                    (j - 0.5, i - 0.5),
                    1,
                    1,
                    fill=False,
                    edgecolor="#d62728",
                    linewidth=0.9,
                    clip_on=False,
                    label="most attended source" if i == 0 else None,
                )
            )
        fig.legend(loc="outside lower center", frameon=False, handlelength=1.0)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    label_bar(bar, label)
    bar.outline.set_linewidth(0.5)
    what = "mean of heads" if head in ("mean", None) else f"head {head}"
    ax.set_title(title if title is not None else f"alignment: {where}, {what}", loc="left")
    return finish(fig, path)


__all__ = ["alignment", "draw_matrix", "head_grid", "heatmap"]
