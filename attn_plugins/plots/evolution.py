"""Attention over time: small multiples (and animated GIFs) across generation steps and across
training checkpoints."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis.evolution import CheckpointEvolution, GenerationEvolution, checkpoint_evolution, generation_evolution
from ..atomic import atomic_path
from ..record import AttentionRecord
from .canvas import (
    colour_scale,
    contextual,
    display_label,
    finish,
    label_bar,
    new_figure,
    set_token_ticks,
    small_multiple_ticks,
    style,
)
from .heatmaps import draw_matrix

if TYPE_CHECKING:
    import torch
    from matplotlib.animation import PillowWriter
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PROMPT_COLOR = "#4c72b0"
GENERATED_COLOR = "#dd8452"
CURRENT_COLOR = "#c44e52"


def _generation(attn: Any, layer: int | str, item: int, kind: str) -> GenerationEvolution:
    if isinstance(attn, GenerationEvolution):
        return attn
    if not isinstance(attn, AttentionRecord):
        raise TypeError("pass a record captured around generate() or a GenerationEvolution")
    return generation_evolution(attn, item=item, kind=kind)


def _key_mask(evo: GenerationEvolution) -> torch.Tensor:
    if evo.key_mask is None:
        raise ValueError("the GenerationEvolution has no key_mask: build it with generation_evolution()")
    return evo.key_mask


def _row(evo: GenerationEvolution, layer: int | str, head: int | str | None) -> tuple[np.ndarray, str]:
    li = evo.layer_labels.index(layer) if isinstance(layer, str) else (layer % len(evo.layer_labels))
    if head in ("mean", None):
        h = len(evo.heads[li])
        return evo.weights[:, li, :h].mean(dim=1).numpy(), f"{evo.layer_labels[li]}, mean of heads"
    if isinstance(head, str):
        raise ValueError(f"head must be a head index or 'mean', got {head!r}")
    return evo.head(li, head).numpy(), f"{evo.layer_labels[li]} head {head}"


def _pick_steps(steps: int, max_panels: int) -> list[int]:
    if steps <= max_panels:
        return list(range(steps))
    return sorted({int(round(x)) for x in np.linspace(0, steps - 1, max_panels)})


def _draw_step(ax: Axes, evo: GenerationEvolution, row: np.ndarray, t: int, ymax: float, label_keys: bool) -> None:
    key_mask = _key_mask(evo)
    kv = int(key_mask.numel())
    if evo.kind == "self":
        current = kv - (evo.prompt_length + evo.steps - 1) + evo.prompt_length - 1 + t
        prompt_end = kv - (evo.prompt_length + evo.steps - 1) + evo.prompt_length
        shown = current + 1
    else:
        current, prompt_end, shown = None, 0, kv
    xs = np.arange(shown)
    values = row[t, :shown]
    real = key_mask[:shown].numpy()
    colors = []
    for j in range(shown):
        if evo.kind != "self":
            colors.append(PROMPT_COLOR)
        else:
            colors.append(PROMPT_COLOR if j < prompt_end else GENERATED_COLOR)
    ax.bar(xs[real], values[real], width=0.85, color=[c for c, r in zip(colors, real, strict=True) if r], linewidth=0)
    if current is not None:
        ax.bar([current], [values[current]], width=0.85, color="none", edgecolor=CURRENT_COLOR, linewidth=0.8)
    ax.set_xlim(-0.6, (kv if evo.kind == "self" else shown) - 0.4)
    ax.set_ylim(0, ymax)
    ax.spines[["top", "right"]].set_visible(False)
    tok = f" {display_label(repr(evo.step_tokens[t]))}" if evo.step_tokens else ""
    ax.set_title(f"step {t}:{tok}" if tok else f"step {t}", fontsize=7, pad=2)
    if label_keys and evo.key_tokens:
        set_token_ticks(ax, "x", evo.key_tokens[:shown] if evo.kind == "self" else evo.key_tokens, max_labels=24)
        ax.tick_params(axis="x", labelsize=5, length=1.5)
    else:
        ax.tick_params(axis="x", labelsize=5)


@contextual
def generation_plot(
    attn: Any,
    layer: int | str = -1,
    head: int | str | None = "mean",
    *,
    item: int = 0,
    kind: str = "self",
    max_panels: int = 12,
    ncols: int = 4,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Small multiples, one panel per generation step: the attention of the token being processed
    over the keys seen so far (prompt in blue, generated tokens in orange, the current token
    outlined in red).

    Args:
        attn: a record captured around ``generate()`` or a ``GenerationEvolution``.
        layer: a layer position (negative counts from the last) or a layer label.
        head: a head index or ``"mean"``.
        item: the batch item.
        kind: ``"self"``, or ``"cross"`` for an encoder-decoder's attention over the source (or
            audio frames).
        max_panels: the most steps shown (evenly spaced when there are more).
        ncols: panels per row.
        title: the title.
        path: save to this .png, .svg or .pdf file as well.

    Returns:
        The Figure.
    """
    evo = _generation(attn, layer, item, kind)
    row, what = _row(evo, layer, head)
    steps = _pick_steps(evo.steps, max_panels)
    n = len(steps)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig = new_figure(1.9 * ncols + 0.3, 1.45 * nrows + 0.55)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    ymax = float(np.nanmax(row)) * 1.08 if row.size and np.nanmax(row) > 0 else 1.0
    kv = int(_key_mask(evo).numel())
    label_keys = kv <= 24
    for idx, ax in enumerate(axes.flat):
        if idx >= n:
            ax.set_axis_off()
            continue
        _draw_step(ax, evo, row, steps[idx], ymax, label_keys)
        if idx % ncols == 0:
            ax.set_ylabel("attention", fontsize=6)
    if evo.kind == "self":
        from matplotlib.patches import Patch

        fig.legend(
            handles=[
                Patch(color=PROMPT_COLOR, label="prompt"),
                Patch(color=GENERATED_COLOR, label="generated"),
                Patch(facecolor="none", edgecolor=CURRENT_COLOR, label="current token"),
            ],
            loc="outside lower center",
            ncols=3,
            frameon=False,
            fontsize=6,
        )
    fig.suptitle(title if title is not None else f"attention over generation steps ({what})")
    return finish(fig, path)


def _checkpoints(attn: Any, labels: list[str] | None) -> CheckpointEvolution:
    if isinstance(attn, CheckpointEvolution):
        return attn
    return checkpoint_evolution(list(attn), labels)


@contextual
def checkpoint_plot(
    attn: Any,
    layer: int | str = 0,
    head: int = 0,
    *,
    labels: list[str] | None = None,
    item: int = 0,
    ncols: int = 4,
    cmap: str = "Blues",
    scale: str = "fixed",
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Small multiples, one heatmap per training checkpoint of one head (shared colour scale),
    each titled with how far the head moved since the previous checkpoint (mean Jensen-Shannon
    distance).

    Args:
        attn: a list of records (same inputs, one per checkpoint) or a ``CheckpointEvolution``.
        layer: a layer position (negative counts from the last) or a layer label.
        head: the head.
        labels: one name per checkpoint (default: numbered).
        item: the batch item.
        ncols: panels per row.
        cmap: a matplotlib colormap name.
        scale: ``"fixed"`` (0..1) or ``"relative"``.
        title: the title.
        path: save to this .png, .svg or .pdf file as well.

    Returns:
        The Figure.
    """
    evo = _checkpoints(attn, labels)
    li = evo.layer_labels.index(layer) if isinstance(layer, str) else layer % len(evo.layer_labels)
    maps = evo.maps(li, head, item=item)
    qt, kt = evo.tokens(item)
    n = len(evo.labels)
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    q, k = maps.shape[1:]
    labelled = max(q, k) <= 20
    fig = new_figure(1.8 * ncols + 0.8, 1.8 * nrows * max(0.6, min(1.4, q / max(k, 1))) + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    vmax, scale_label = colour_scale([maps], scale)
    hi = evo.heads[li].index(head)
    image = None
    for idx, ax in enumerate(axes.flat):
        if idx >= n:
            ax.set_axis_off()
            continue
        image = draw_matrix(
            ax,
            maps[idx],
            query_labels=qt if labelled else None,
            key_labels=kt if labelled else None,
            cmap=cmap,
            vmax=vmax,
            annotate=False,
            xlabel="",
            ylabel="",
            max_labels=20,
        )
        drift = evo.drift[idx, li, hi].item()
        extra = "" if idx == 0 or drift != drift else f"\nmoved {drift:.3f}"
        ax.set_title(f"{display_label(evo.labels[idx])}{extra}", fontsize=7, pad=2)
        small_multiple_ticks(ax, labelled)
    assert image is not None  # one panel per checkpoint, at least one
    bar = fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.025, pad=0.02, shrink=0.9)
    label_bar(bar, scale_label)
    bar.outline.set_linewidth(0.5)
    fig.suptitle(title if title is not None else f"{evo.layer_labels[li]} head {head} across checkpoints")
    return finish(fig, path)


@contextual
def checkpoint_stats_plot(
    attn: Any,
    stats: str | Sequence[str] = ("entropy", "drift"),
    *,
    labels: list[str] | None = None,
    layer: int | str | None = None,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Lines across checkpoints: one per head (thin) and the mean (thick), for each statistic.

    Args:
        attn: a list of records (same inputs, one per checkpoint) or a ``CheckpointEvolution``.
        stats: ``"drift"`` (distance moved since the previous checkpoint), ``"drift_from_final"``
            or any ``HeadStats`` field.
        labels: one name per checkpoint.
        layer: restrict to one layer (position or label; ``None``: all layers).
        title: the title.
        path: save to this .png, .svg or .pdf file as well.

    Returns:
        The Figure.
    """
    from ..analysis.stats import STAT_TITLES

    evo = _checkpoints(attn, labels)
    if isinstance(stats, str):
        stats = (stats,)
    fig = new_figure(2.6 * len(stats) + 0.2, 2.2)
    axes = fig.subplots(1, len(stats), squeeze=False)[0]
    xs = np.arange(len(evo.labels))
    for ax, name in zip(axes, stats, strict=True):
        data = evo.drift if name == "drift" else evo.drift_from_final if name == "drift_from_final" else evo.stats[name]
        if layer is not None:
            li = evo.layer_labels.index(layer) if isinstance(layer, str) else layer
            data = data[:, li : li + 1]
        flat = data.reshape(data.shape[0], -1).numpy()
        for j in range(flat.shape[1]):
            ax.plot(xs, flat[:, j], color="#9ecae1", linewidth=0.5, alpha=0.8)
        with warnings.catch_warnings():  # the first checkpoint has no drift: an all-NaN row
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(flat, axis=1)
        ax.plot(xs, mean, color="#08519c", linewidth=1.4, label="mean of heads", marker="o", markersize=2.5)
        ax.set_xticks(xs)
        shown = [display_label(label) for label in evo.labels]
        crowded = sum(len(label) for label in shown) > 24
        ax.set_xticklabels(shown, rotation=35 if crowded else 0, ha="right" if crowded else "center")
        ax.set_ylabel(
            {"drift": "moved since previous (JS distance)", "drift_from_final": "distance to final (JS)"}.get(
                name, STAT_TITLES.get(name, name)
            )
        )
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(frameon=False)
    if title:
        fig.suptitle(title)
    return finish(fig, path)


# ---------------------------------------------------------------------------------------------
# animations
# ---------------------------------------------------------------------------------------------
def _writer(fps: float) -> PillowWriter:
    try:
        import PIL  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "animated GIFs need pillow (pip install pillow); the small-multiples plots work without it"
        ) from exc
    from matplotlib.animation import PillowWriter

    return PillowWriter(fps=fps)  # type: ignore[arg-type]  # the stub says int; fractional rates (1.5) work


def _check_gif(path: str | os.PathLike[str]) -> str:
    path = os.fspath(path)
    if not path.lower().endswith(".gif"):
        raise ValueError(f"an animation is written as a .gif file, got {path!r}")
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    return path


def animate_generation(
    attn: Any,
    path: str | os.PathLike[str],
    layer: int | str = -1,
    head: int | str | None = "mean",
    *,
    item: int = 0,
    kind: str = "self",
    fps: float = 2.0,
    dpi: int = 120,
) -> Figure:
    """An animated GIF (matplotlib's PillowWriter): one frame per generation step, the current
    token's attention over the keys.

    Args:
        attn: a record captured around ``generate()`` or a ``GenerationEvolution``.
        path: the ``.gif`` file to write.
        layer: a layer position (negative counts from the last) or a layer label.
        head: a head index or ``"mean"``.
        item: the batch item.
        kind: ``"self"`` or ``"cross"``.
        fps: frames per second.
        dpi: resolution of the frames.

    Returns:
        The Figure (showing the last frame).
    """
    path = _check_gif(path)
    with style():
        evo = _generation(attn, layer, item, kind)
        row, what = _row(evo, layer, head)
        kv = int(_key_mask(evo).numel())
        fig = new_figure(max(3.2, 0.22 * kv + 1.2), 2.4)
        ax = fig.add_subplot(1, 1, 1)
        ymax = float(np.nanmax(row)) * 1.08 if row.size and np.nanmax(row) > 0 else 1.0
        writer = _writer(fps)
        with atomic_path(path, suffix=".gif") as tmp, writer.saving(fig, tmp, dpi=dpi):
            for t in range(evo.steps):
                ax.clear()
                _draw_step(ax, evo, row, t, ymax, kv <= 32)
                ax.set_ylabel("attention")
                fig.suptitle(f"{what}: step {t + 1} of {evo.steps}")
                writer.grab_frame(facecolor="white")
    return fig


def animate_checkpoints(
    attn: Any,
    path: str | os.PathLike[str],
    layer: int | str = 0,
    head: int = 0,
    *,
    labels: list[str] | None = None,
    item: int = 0,
    fps: float = 1.5,
    dpi: int = 120,
    cmap: str = "Blues",
    scale: str = "fixed",
) -> Figure:
    """An animated GIF: one frame per checkpoint, one head's heatmap on one colour scale.

    Args:
        attn: a list of records (same inputs, one per checkpoint) or a ``CheckpointEvolution``.
        path: the ``.gif`` file to write.
        layer: a layer position (negative counts from the last) or a layer label.
        head: the head.
        labels: one name per checkpoint.
        item: the batch item.
        fps: frames per second.
        dpi: resolution of the frames.
        cmap: a matplotlib colormap name.
        scale: ``"fixed"`` (0..1) or ``"relative"`` (0 to the largest weight of any frame, stated
            on the colorbar).

    Returns:
        The Figure (showing the last frame).
    """
    path = _check_gif(path)
    with style():
        evo = _checkpoints(attn, labels)
        li = evo.layer_labels.index(layer) if isinstance(layer, str) else layer % len(evo.layer_labels)
        maps = evo.maps(li, head, item=item)
        qt, kt = evo.tokens(item)
        vmax, scale_label = colour_scale([maps], scale)
        side = min(6.0, max(2.8, 0.18 * max(maps.shape[1:]) + 1.6))
        fig = new_figure(side + 0.7, side)
        ax = fig.add_subplot(1, 1, 1)
        image = draw_matrix(ax, maps[0], query_labels=qt, key_labels=kt, cmap=cmap, vmax=vmax, annotate=False)
        bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
        label_bar(bar, scale_label)
        writer = _writer(fps)
        with atomic_path(path, suffix=".gif") as tmp, writer.saving(fig, tmp, dpi=dpi):
            for c in range(len(evo.labels)):
                image.set_data(maps[c].numpy())
                ax.set_title(f"{evo.layer_labels[li]} head {head}: {display_label(evo.labels[c])}")
                writer.grab_frame(facecolor="white")
    return fig


__all__ = ["animate_checkpoints", "animate_generation", "checkpoint_plot", "checkpoint_stats_plot", "generation_plot"]
