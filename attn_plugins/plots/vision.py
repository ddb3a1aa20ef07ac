"""Vision transformers: attention rollout laid over the image's patches, and a captioning model's
cross-attention: where each generated token looks in the image (small multiples, or a GIF)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..record import AttentionRecord
from .canvas import contextual, display_label, finish, new_figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage

Grid = int | tuple[int, int] | None
"""A patch grid: ``rows`` (square) or ``(rows, cols)``; ``None`` finds a square grid by itself."""


def _image_array(image: Any) -> np.ndarray | None:
    """An ``[H, W, C]`` float array in [0, 1] from a PIL image, an array or a (normalised) tensor."""
    if image is None:
        return None
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL
        image = np.asarray(image.convert("RGB"))
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    arr = arr.astype(np.float64)
    if arr.ndim == 4:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.transpose(arr, (1, 2, 0))  # CHW -> HWC (pixel_values)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise ValueError(f"image must be HxW, HxWxC, CxHxW or a PIL image; got shape {arr.shape}")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 or hi > 1:  # uint8 pixels or normalised pixel_values: stretch to [0, 1]
        arr = arr / 255.0 if lo >= 0 and hi <= 255 and hi > 1 else (arr - lo) / (hi - lo if hi > lo else 1.0)
    clipped: np.ndarray = np.clip(arr, 0, 1)
    return clipped


def patch_grid(num_tokens: int, grid: Grid = None, num_prefix_tokens: int | None = None) -> tuple[int, int, int]:
    """How many leading non-patch tokens ([CLS], distillation, registers) precede a patch grid.

    Args:
        num_tokens: the sequence length.
        grid: ``rows`` (square) or ``(rows, cols)``; found by itself for square grids.
        num_prefix_tokens: the non-patch tokens before the grid (tried: 1, 0, 2, 5).

    Returns:
        ``(prefix, rows, cols)``.
    """
    if grid is not None:
        rows, cols = (grid, grid) if isinstance(grid, int) else (int(grid[0]), int(grid[1]))
        prefix = num_tokens - rows * cols if num_prefix_tokens is None else num_prefix_tokens
        if prefix < 0 or prefix + rows * cols != num_tokens:
            raise ValueError(
                f"a {rows}x{cols} grid does not fit {num_tokens} tokens"
                f"{'' if num_prefix_tokens is None else f' with {num_prefix_tokens} prefix tokens'}"
            )
        return prefix, rows, cols
    # [CLS]; no prefix; [CLS] + distillation token; [CLS] + 4 registers
    candidates = [num_prefix_tokens] if num_prefix_tokens is not None else [1, 0, 2, 5]
    for prefix in candidates:
        side = math.isqrt(max(num_tokens - prefix, 0))
        if side > 0 and side * side == num_tokens - prefix:
            return prefix, side, side
    raise ValueError(f"cannot lay {num_tokens} tokens on a square patch grid; pass grid=(rows, cols)")


def rollout_map(
    record: AttentionRecord,
    *,
    item: int = 0,
    query: int | str = "cls",
    grid: Grid = None,
    num_prefix_tokens: int | None = None,
    head_fusion: str = "mean",
    start_layer: int = 0,
    stack: Any = ...,
) -> tuple[torch.Tensor, int]:
    """The rollout of one token over the image patches, normalised to sum 1.

    Args:
        record: a vision transformer's record.
        item: the batch item.
        query: ``"cls"`` (token 0), ``"mean"`` (the average over patch tokens) or a token index.
        grid: the patch grid (see :func:`patch_grid`).
        num_prefix_tokens: the non-patch tokens before the grid.
        head_fusion: how rollout fuses heads (``"mean"``, ``"max"``, ``"min"``).
        start_layer: the first layer rolled out.
        stack: the stack of the record's layers.

    Returns:
        ``([rows, cols] map, prefix)``.
    """
    from ..analysis.rollout import rollout

    matrix = rollout(record, stack=stack, head_fusion=head_fusion, start_layer=start_layer)[item]  # [n, n]
    n = matrix.shape[-1]
    prefix, rows, cols = patch_grid(n, grid, num_prefix_tokens)
    if query == "cls":
        if prefix == 0:
            raise ValueError("the model has no [CLS] token (no prefix tokens): use query='mean'")
        row = matrix[0]
    elif query == "mean":
        row = matrix[prefix:].mean(dim=0)
    elif isinstance(query, int):
        row = matrix[query]
    else:
        raise ValueError(f"query must be 'cls', 'mean' or a token index, got {query!r}")
    patches = row[prefix:]
    total = patches.sum()
    patches = patches / total if total > 0 else patches
    return patches.reshape(rows, cols), prefix


@contextual
def vit_rollout(
    record: AttentionRecord,
    image: Any = None,
    *,
    item: int = 0,
    query: int | str = "cls",
    grid: Grid = None,
    num_prefix_tokens: int | None = None,
    head_fusion: str = "mean",
    start_layer: int = 0,
    alpha: float = 0.55,
    cmap: str = "inferno",
    show_grid: bool = True,
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Attention rollout (Abnar & Zuidema 2020) of a vision transformer, laid over the image: the
    image, then the same image under a heat map of how much the [CLS] token draws from each
    patch (patch borders drawn faintly). Rollout comes from :mod:`attn_plugins.analysis.rollout`.

    ``image``: a PIL image, an ``HxWxC`` array or the ``pixel_values`` tensor (normalised values
    are stretched back to [0, 1]); without it only the patch map is drawn.

    Args:
        record: a vision transformer's record.
        image: the image (see above), or ``None``.
        item: the batch item.
        query: ``"cls"``, ``"mean"`` or a token index (see :func:`rollout_map`).
        grid: the patch grid (see :func:`patch_grid`).
        num_prefix_tokens: the non-patch tokens before the grid.
        head_fusion: how rollout fuses heads.
        start_layer: the first layer rolled out.
        alpha: opacity of the heat map over the image.
        cmap: a matplotlib colormap name.
        show_grid: draw the patch borders.
        title: the title.
        path: save to this .png, .svg or .pdf file as well.

    Returns:
        The Figure.
    """
    heat, prefix = rollout_map(
        record,
        item=item,
        query=query,
        grid=grid,
        num_prefix_tokens=num_prefix_tokens,
        head_fusion=head_fusion,
        start_layer=start_layer,
    )
    rows, cols = heat.shape
    img = _image_array(image)
    height, width = (img.shape[0], img.shape[1]) if img is not None else (rows, cols)
    panels = 2 if img is not None else 1
    aspect = width / height
    fig = new_figure(2.3 * aspect * panels + 0.7, 2.5)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    extent = (0, width, height, 0)
    if img is not None:
        axes[0].imshow(img, cmap="gray" if img.ndim == 2 else None, extent=extent, interpolation="bilinear")
        axes[0].set_title("image")
    ax = axes[-1]
    if img is not None:
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, extent=extent, interpolation="bilinear")
    overlay = ax.imshow(
        heat.numpy(),
        cmap=cmap,
        alpha=alpha if img is not None else 1.0,
        extent=extent,
        interpolation="nearest",
        vmin=0.0,
        vmax=float(heat.max()) or 1.0,
    )
    if show_grid:
        for r in range(1, rows):
            ax.axhline(r * height / rows, color="white", linewidth=0.25, alpha=0.5)
        for c in range(1, cols):
            ax.axvline(c * width / cols, color="white", linewidth=0.25, alpha=0.5)
    what = "[CLS]" if query == "cls" else ("mean of patches" if query == "mean" else f"token {query}")
    ax.set_title(f"rollout of {what} ({rows}x{cols} patches)")
    for a in axes:
        a.set_xticks([])
        a.set_yticks([])
    label_patch_grid(ax, rows, cols, width, height, prefix)
    bar = fig.colorbar(overlay, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label("share of rolled-out attention")
    bar.outline.set_linewidth(0.5)
    if title:
        fig.suptitle(title)
    return finish(fig, path)


def prefix_labels(prefix: int) -> list[str]:
    """Names of the non-patch tokens before the grid: [CLS], then a distillation token (DeiT: 2
    in all) or registers (any other count).

    Args:
        prefix: the number of non-patch tokens.

    Returns:
        One name per token.
    """
    if prefix <= 0:
        return []
    if prefix == 2:
        return ["[CLS]", "[DIST]"]
    return ["[CLS]"] + [f"[REG{i}]" for i in range(1, prefix)]


def label_patch_grid(ax: Axes, rows: int, cols: int, width: float, height: float, prefix: int) -> None:
    """Patch row and column numbers on the axes (at most about 8 a side) and what the prefix
    tokens are, so a patch can be named ("row 3, column 5").

    Args:
        ax: the axes the image is drawn on.
        rows: patch rows.
        cols: patch columns.
        width: the image's width in data units.
        height: the image's height in data units.
        prefix: the number of non-patch tokens (named in the x label).
    """
    step_c, step_r = max(1, math.ceil(cols / 8)), max(1, math.ceil(rows / 8))
    ax.set_xticks([(c + 0.5) * width / cols for c in range(0, cols, step_c)], [str(c) for c in range(0, cols, step_c)])
    ax.set_yticks([(r + 0.5) * height / rows for r in range(0, rows, step_r)], [str(r) for r in range(0, rows, step_r)])
    ax.tick_params(length=1.5, pad=1, labelsize=5)
    names = prefix_labels(prefix)
    ax.set_xlabel(
        f"patch column ({rows}x{cols} grid)" + (f"; not on the grid: {' '.join(names)}" if names else ""), fontsize=6
    )


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
    return maps, heat, labels, _image_array(image), float(heat.max()) or 1.0


def _overlay(
    ax: Axes, img: np.ndarray | None, heat: np.ndarray, vmax: float, cmap: str, alpha: float, show_grid: bool
) -> tuple[AxesImage, int, int]:
    rows, cols = heat.shape
    height, width = (img.shape[0], img.shape[1]) if img is not None else (rows, cols)
    extent = (0, width, height, 0)
    if img is not None:
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, extent=extent, interpolation="bilinear")
    shown = ax.imshow(
        heat,
        cmap=cmap,
        alpha=alpha if img is not None else 1.0,
        extent=extent,
        interpolation="nearest",
        vmin=0.0,
        vmax=vmax,
    )
    if show_grid:
        for r in range(1, rows):
            ax.axhline(r * height / rows, color="white", linewidth=0.25, alpha=0.5)
        for c in range(1, cols):
            ax.axvline(c * width / cols, color="white", linewidth=0.25, alpha=0.5)
    return shown, width, height


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
        shown, width, height = _overlay(ax, img, heat[t], vmax, cmap, alpha, show_grid)
        ax.set_title(f"{t + 1}. {labels[t]}", fontsize=7)
        label_patch_grid(ax, rows, cols, width, height, 0)
        ax.set_xlabel(_prefix_note(maps, t) or " ", fontsize=6)
    assert shown is not None  # one panel per step, at least one
    bar = fig.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02)
    bar.set_label(f"cross-attention weight (scale 0 to {vmax:.3f}, all panels)")
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
        with writer.saving(fig, path, dpi=dpi):
            for t in range(steps):
                ax.clear()
                _overlay(ax, img, heat[t], vmax, cmap, alpha, True)
                ax.set_xticks([])
                ax.set_yticks([])
                caption = " ".join(labels[: t + 1])
                fig.suptitle(caption if len(caption) < 48 else "..." + caption[-45:], fontsize=8)
                note = _prefix_note(maps, t)
                bottom.set_text(f"step {t + 1} of {steps}: {labels[t]}" + (f" ({note})" if note else ""))
                writer.grab_frame(facecolor="white")
    return fig


__all__ = [
    "caption_attention",
    "caption_gif",
    "caption_maps",
    "patch_grid",
    "prefix_labels",
    "rollout_map",
    "vit_rollout",
]
