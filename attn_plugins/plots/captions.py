"""A captioning model's cross-attention over the image's patches: where each generated token looks
(small multiples, or a GIF). The patch grid and the drawing over the image come from :mod:`.patches`."""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..atomic import atomic_path
from ..record import AttentionRecord
from .canvas import contextual, display_label, finish, label_bar, new_figure
from .patches import Grid, image_array, label_patch_grid, overlay_patches, patch_grid, prefix_labels

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage


def caption_maps(
    record: AttentionRecord,
    *,
    item: int = 0,
    layer: int | str = "mean",
    head: int | str = "mean",
    grid: Grid = None,
    num_prefix_tokens: int | None = None,
) -> dict[str, Any]:
    """Each generated token's cross-attention over the image, from a captioning record
    (a ``VisionEncoderDecoderModel.generate()`` capture, or any record whose cross-attention keys
    are a ViT's tokens).

    Args:
        record: the record (it must hold cross-attention layers).
        item: the batch item.
        layer: a decoder layer number, or ``"mean"`` (the mean over the captured cross layers).
        head: a head number, or ``"mean"``.
        grid: the patch grid (found by itself for square grids).
        num_prefix_tokens: the non-patch tokens before it (found by themselves for square grids:
            [CLS], [CLS] + distillation, [CLS] + 4 registers).

    Returns:
        ``{"maps": [steps, rows, cols] weights on the patches, "prefix": [steps, prefix] weights on
        the non-patch tokens, "prefix_labels", "rows", "cols", "layer", "head"}``; row ``t`` is the
        attention while producing decoder token ``t + 1`` (the first generated token comes from
        row 0). Weights are the model's own (a row sums to 1 over prefix and patches).
    """
    cross = [lay for lay in record.layers if lay.kind == "cross"]
    if not cross:
        raise ValueError(
            "this record holds no cross-attention: capture a captioning (encoder-decoder) model's generate() or forward"
        )
    if layer != "mean":
        chosen = [lay for lay in cross if lay.index == layer]
        if not chosen:
            raise ValueError(f"cross-attention layer {layer} was not captured; captured: {[c.index for c in cross]}")
        cross = chosen
    if not 0 <= item < cross[0].weights.shape[0]:
        raise ValueError(f"item {item} is out of range for a batch of {cross[0].weights.shape[0]}")
    blocks = []
    for lay in cross:
        w = lay.weights[item].float()  # [heads, steps, keys]
        if head == "mean":
            blocks.append(w.mean(dim=0))
        else:
            heads = list(getattr(lay, "head_indices", None) or range(w.shape[0]))
            if head not in heads:
                raise ValueError(f"head {head} was not captured; captured: {heads}")
            blocks.append(w[heads.index(head)])
    weights = torch.stack(blocks).mean(dim=0)  # [steps, keys]
    prefix, rows, cols = patch_grid(weights.shape[-1], grid, num_prefix_tokens)
    return {
        "maps": weights[:, prefix:].reshape(-1, rows, cols),
        "prefix": weights[:, :prefix],
        "prefix_labels": prefix_labels(prefix),
        "rows": rows,
        "cols": cols,
        "layer": layer,
        "head": head,
    }


def _step_labels(record: AttentionRecord, item: int, steps: int, tokens: Sequence[Any] | None) -> list[str]:
    """The token each row of cross-attention produced (decoder token t + 1), or "step t"."""
    from ..analysis.tokens import readable_token

    if tokens is None:
        decoder = getattr(record, "decoder_tokens", None)
        tokens = decoder[item] if decoder and item < len(decoder) else None
        tokens = tokens[1:] if tokens is not None else None
    labels = [f"step {t + 1}" for t in range(steps)]
    for t, tok in enumerate(list(tokens or [])[:steps]):
        labels[t] = display_label(readable_token(str(tok)).strip() or repr(tok))
    return labels


def _caption_inputs(
    record: AttentionRecord,
    image: Any,
    tokens: Sequence[Any] | None,
    item: int,
    layer: int | str,
    head: int | str,
    grid: Grid,
    num_prefix_tokens: int | None,
    max_steps: int,
) -> tuple[dict[str, Any], np.ndarray, list[str], np.ndarray | None, float]:
    """What both caption figures draw: the maps, their first ``max_steps`` patch maps as an array,
    the token labels, the image array and the shared top of the colour scale."""
    maps = caption_maps(record, item=item, layer=layer, head=head, grid=grid, num_prefix_tokens=num_prefix_tokens)
    heat = maps["maps"][:max_steps].numpy()
    labels = _step_labels(record, item, heat.shape[0], tokens)
    return maps, heat, labels, image_array(image), float(heat.max()) or 1.0


def _prefix_note(maps: dict[str, Any], t: int) -> str:
    return ", ".join(f"{name} {float(v):.2f}" for name, v in zip(maps["prefix_labels"], maps["prefix"][t], strict=True))


@contextual
def caption_attention(
    record: AttentionRecord,
    image: Any = None,
    *,
    tokens: Sequence[Any] | None = None,
    item: int = 0,
    layer: int | str = "mean",
    head: int | str = "mean",
    grid: Grid = None,
    num_prefix_tokens: int | None = None,
    columns: int = 4,
    cmap: str = "inferno",
    alpha: float = 0.6,
    show_grid: bool = True,
    max_steps: int = 32,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Small multiples, one per generated token: the image under that token's cross-attention over
    the patches (patch grid drawn and numbered; the weight on [CLS]/registers, which are not on the
    grid, written under each panel). All panels share one colour scale, from 0 to the largest patch
    weight, which the colour bar states.

    ``tokens``: the generated tokens (default: the record's decoder tokens after the start token);
    ``image``: a PIL image, an array or ``pixel_values``. Other options as :func:`caption_maps`.

    Args:
        record: a captioning record (see :func:`caption_maps`).
        image: the image, or ``None`` (patch maps alone).
        tokens: the generated tokens.
        item: the batch item.
        layer: a decoder layer number, or ``"mean"``.
        head: a head number, or ``"mean"``.
        grid: the patch grid.
        num_prefix_tokens: the non-patch tokens before it.
        columns: panels per row.
        cmap: a matplotlib colormap name.
        alpha: opacity of the heat map over the image.
        show_grid: draw the patch borders.
        max_steps: the most tokens shown.
        title: the title.
        path: save to this .png, .svg or .pdf file as well.

    Returns:
        The Figure.
    """
    maps, heat, labels, img, vmax = _caption_inputs(
        record, image, tokens, item, layer, head, grid, num_prefix_tokens, max_steps
    )
    steps, rows, cols = heat.shape
    ncols = max(1, min(columns, steps))
    nrows = math.ceil(steps / ncols)
    aspect = (img.shape[1] / img.shape[0]) if img is not None else cols / rows
    fig = new_figure(1.7 * aspect * ncols + 0.8, 1.95 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    shown: AxesImage | None = None
    for t in range(nrows * ncols):
        ax = axes[t // ncols][t % ncols]
        if t >= steps:
            ax.axis("off")
            continue
        shown, width, height = overlay_patches(ax, img, heat[t], vmax, cmap, alpha, show_grid)
        ax.set_title(f"{t + 1}. {labels[t]}", fontsize=7)
        label_patch_grid(ax, rows, cols, width, height, 0)
        # the prefix tokens' shares, wrapped to the panel's width (one line ran into the next panel)
        ax.set_xlabel(textwrap.fill(_prefix_note(maps, t), max(16, int(36 * aspect))) or " ", fontsize=6)
    assert shown is not None  # one panel per step, at least one
    bar = fig.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02)
    label_bar(bar, f"cross-attention weight (scale 0 to {vmax:.3f}, all panels)")
    bar.outline.set_linewidth(0.5)
    which = (
        ("mean of layers" if layer == "mean" else f"layer {layer}")
        + ", "
        + ("mean of heads" if head == "mean" else f"head {head}")
    )
    fig.suptitle(title or f"where each generated token looks ({which}; {rows}x{cols} patches)")
    return finish(fig, path)


def caption_gif(
    record: AttentionRecord,
    image: Any,
    path: str | os.PathLike[str],
    *,
    tokens: Sequence[Any] | None = None,
    item: int = 0,
    layer: int | str = "mean",
    head: int | str = "mean",
    grid: Grid = None,
    num_prefix_tokens: int | None = None,
    cmap: str = "inferno",
    alpha: float = 0.6,
    fps: float = 1.25,
    dpi: int = 100,
    max_steps: int = 64,
) -> Figure:
    """An animated GIF (matplotlib's PillowWriter, as :func:`attn_plugins.plots.animate_generation`),
    one frame per generated token: the caption so far over the image under the newest token's
    cross-attention (one colour scale for all frames). Returns the Figure (the last frame).

    Options as :func:`caption_attention`.

    Args:
        record: a captioning record (see :func:`caption_maps`).
        image: the image, or ``None``.
        path: the ``.gif`` file to write.
        tokens: the generated tokens.
        item: the batch item.
        layer: a decoder layer number, or ``"mean"``.
        head: a head number, or ``"mean"``.
        grid: the patch grid.
        num_prefix_tokens: the non-patch tokens before it.
        cmap: a matplotlib colormap name.
        alpha: opacity of the heat map over the image.
        fps: frames per second.
        dpi: resolution of the frames.
        max_steps: the most tokens animated.

    Returns:
        The Figure (the last frame).
    """
    from matplotlib.animation import PillowWriter

    from .canvas import style

    path = str(path)
    if not path.lower().endswith(".gif"):
        raise ValueError(f"an animation is written as a .gif file, got {path!r}")
    maps, heat, labels, img, vmax = _caption_inputs(
        record, image, tokens, item, layer, head, grid, num_prefix_tokens, max_steps
    )
    steps, rows, cols = heat.shape
    with style():
        fig = new_figure(3.2, 3.5, layout=None)
        ax = fig.add_axes((0.04, 0.12, 0.92, 0.76))
        bottom = fig.text(0.5, 0.04, "", ha="center", fontsize=7)
        writer = PillowWriter(fps=fps)  # type: ignore[arg-type]  # the stub says int; fractional rates work
        with atomic_path(path, suffix=".gif") as tmp, writer.saving(fig, tmp, dpi=dpi):
            for t in range(steps):
                ax.clear()
                overlay_patches(ax, img, heat[t], vmax, cmap, alpha, True)
                ax.set_xticks([])
                ax.set_yticks([])
                caption = " ".join(labels[: t + 1])
                fig.suptitle(caption if len(caption) < 48 else "..." + caption[-45:], fontsize=8)
                note = _prefix_note(maps, t)
                bottom.set_text(f"step {t + 1} of {steps}: {labels[t]}" + (f" ({note})" if note else ""))
                writer.grab_frame(facecolor="white")
    return fig


__all__ = ["caption_attention", "caption_gif", "caption_maps"]
