"""Vision transformers: attention rollout laid over the image's patches. A captioning model's
cross-attention (where each generated token looks in the image) is drawn by :mod:`.captions`;
its functions and the patch-grid helpers of :mod:`.patches` are importable from here as well."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch

from ..record import AttentionRecord
from .canvas import contextual, finish, new_figure
from .captions import caption_attention, caption_gif, caption_maps
from .patches import Grid, image_array, label_patch_grid, patch_grid, prefix_labels

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
    img = image_array(image)
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


__all__ = [
    "caption_attention",
    "caption_gif",
    "caption_maps",
    "patch_grid",
    "prefix_labels",
    "rollout_map",
    "vit_rollout",
]
