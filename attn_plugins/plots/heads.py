"""Per-head statistics by layer and head (entropy, distance, shares), as matrices or as the
per-layer scatter of Clark et al. (2019, figure 4)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..analysis.blocks import ANY
from ..analysis.stats import STAT_TITLES, HeadStats, head_stats
from .canvas import annotate_cells, contextual, finish, new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_CMAPS = {"entropy": "viridis", "normalized_entropy": "viridis", "distance": "cividis"}


def _stats(attn: Any, item: int | None, stack: Any, kind: str) -> HeadStats:
    if isinstance(attn, HeadStats):
        return attn
    return head_stats(attn, item=item, stack=stack, kind=kind)


@contextual
def head_stats_plot(
    attn: Any,
    stats: str | Sequence[str] = ("entropy", "distance"),
    *,
    style: str = "matrix",
    item: int | None = None,
    stack: Any = ANY,
    kind: str = "self",
    annotate: bool | None = None,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Statistics by layer and head, one panel per statistic.

    Args:
        attn: a record, a tensor or a :class:`~attn_plugins.analysis.stats.HeadStats`.
        stats: fields of it (``entropy``, ``normalized_entropy``, ``distance``, ``special``,
            ``previous``, ``next``, ``self`` or a token group).
        style: ``"matrix"``: a layers x heads heatmap (values written in the cells for small
            models); ``"scatter"``: one dot per head at each layer, the layer mean as a line, and
            for entropy the uniform-attention baseline.
        item: one batch item (``None``: all items).
        stack: the stack of a record's layers.
        kind: ``"self"`` or ``"cross"``.
        annotate: write the values in the cells of a matrix (default: up to 16 x 16).
        title: the figure's title.
        path: save to this .png, .svg or .pdf file as well.

    Returns:
        The Figure.
    """
    hs = _stats(attn, item, stack, kind)
    if isinstance(stats, str):
        stats = (stats,)
    if style not in ("matrix", "scatter"):
        raise ValueError(f"style must be 'matrix' or 'scatter', got {style!r}")
    n_layers = len(hs.labels)
    n_heads = max(len(h) for h in hs.heads)
    if style == "matrix":
        cell = 0.28 if n_heads <= 16 else 0.18
        width = max(2.6, cell * n_heads + 1.3)
        height = max(1.8, cell * n_layers + 0.9)
    else:
        width, height = max(2.6, 0.42 * n_layers + 1.2), 2.3
    fig = new_figure(width * len(stats), height)
    axes = fig.subplots(1, len(stats), squeeze=False)[0]
    for ax, name in zip(axes, stats, strict=True):
        values = hs.get(name)
        label = STAT_TITLES.get(name, f"share to {name}")
        if style == "matrix":
            _matrix_panel(fig, ax, values, hs, name, label, annotate)
        else:
            _scatter_panel(ax, values, hs, name, label)
    if title:
        fig.suptitle(title)
    return finish(fig, path)


def stat_scale(hs: HeadStats, name: str) -> tuple[str, float, float]:
    """The colour scale a statistic is drawn on, in plots and in the report's shaded tables:
    shares and entropy relative to uniform on the fixed range 0..1, entropy (nats) and distance
    (tokens) from their smallest to their largest value.

    Args:
        hs: the statistics.
        name: the statistic (a field of ``hs`` or a token group).

    Returns:
        ``(colormap name, vmin, vmax)``.
    """
    data = hs.get(name).numpy()
    finite = data[data == data]
    vmin = float(finite.min()) if finite.size else 0.0
    vmax = float(finite.max()) if finite.size else 1.0
    if name in ("special", "previous", "next", "self", "normalized_entropy") or name in hs.groups:
        vmin, vmax = 0.0, 1.0
    return _CMAPS.get(name, "magma"), vmin, vmax


def stat_text(value: float) -> str:
    """A statistic as written in a cell (two decimals; one from 10 up, for distances)."""
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def _matrix_panel(
    fig: Figure, ax: Axes, values: torch.Tensor, hs: HeadStats, name: str, label: str, annotate: bool | None
) -> None:
    data = values.numpy()
    cmap, vmin, vmax = stat_scale(hs, name)
    image = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    n_layers, n_heads = data.shape
    ax.set_xticks(range(n_heads))
    ax.set_xticklabels(
        [str(h) for h in range(n_heads)] if n_heads <= 16 else [str(h) if h % 4 == 0 else "" for h in range(n_heads)]
    )
    ax.set_yticks(range(n_layers))
    ax.set_yticklabels(hs.labels)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(label)
    if annotate is None:
        annotate = n_heads <= 16 and n_layers <= 16
    if annotate:
        annotate_cells(ax, image, data, stat_text, 4.5)
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.outline.set_linewidth(0.5)


def _scatter_panel(ax: Axes, values: torch.Tensor, hs: HeadStats, name: str, label: str) -> None:
    n_layers, n_heads = values.shape
    offsets = torch.linspace(-0.25, 0.25, n_heads) if n_heads > 1 else torch.zeros(1)
    for li in range(n_layers):
        row = values[li]
        keep = ~torch.isnan(row)
        ax.scatter(
            (li + offsets[: len(row)])[keep].numpy(), row[keep].numpy(), s=6, color="#1f77b4", alpha=0.75, linewidths=0
        )
    means = torch.stack(
        [
            r[~torch.isnan(r)].mean() if (~torch.isnan(r)).any() else torch.tensor(math.nan, dtype=torch.float64)
            for r in values
        ]
    )
    ax.plot(range(n_layers), means.numpy(), color="#333333", linewidth=0.9, label="layer mean")
    if name == "entropy":
        base = torch.stack(
            [
                r[~torch.isnan(r)].mean() if (~torch.isnan(r)).any() else torch.tensor(math.nan, dtype=torch.float64)
                for r in hs.uniform_entropy
            ]
        )
        ax.plot(range(n_layers), base.numpy(), color="#d62728", linewidth=0.9, linestyle="--", label="uniform")
    ax.set_xticks(range(n_layers))
    ax.set_xticklabels(hs.labels, rotation=90 if n_layers > 8 or any(len(label) > 4 for label in hs.labels) else 0)
    ax.set_xlabel("layer")
    ax.set_ylabel(label)
    ax.ticklabel_format(axis="y", useOffset=False)  # plain values, no "+2.197" offset above the axis
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, loc="best")


__all__ = ["head_stats_plot", "stat_scale", "stat_text"]
