"""Vision transformers: attention rollout laid over the image's patches."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..record import AttentionRecord
from ._base import contextual, finish, new_figure


def _image_array(image) -> np.ndarray | None:
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
    return np.clip(arr, 0, 1)


def patch_grid(num_tokens: int, grid=None, num_prefix_tokens: int | None = None) -> tuple[int, int, int]:
    """``(prefix, rows, cols)``: how many leading non-patch tokens ([CLS], distillation, registers)
    precede a ``rows x cols`` patch grid in a sequence of ``num_tokens``."""
    if grid is not None:
        rows, cols = (grid, grid) if isinstance(grid, int) else tuple(grid)
        prefix = num_tokens - rows * cols if num_prefix_tokens is None else num_prefix_tokens
        if prefix < 0 or prefix + rows * cols != num_tokens:
            raise ValueError(f"a {rows}x{cols} grid does not fit {num_tokens} tokens"
                             f"{'' if num_prefix_tokens is None else f' with {num_prefix_tokens} prefix tokens'}")
        return prefix, rows, cols
    # [CLS]; no prefix; [CLS] + distillation token; [CLS] + 4 registers
    candidates = [num_prefix_tokens] if num_prefix_tokens is not None else [1, 0, 2, 5]
    for prefix in candidates:
        side = math.isqrt(max(num_tokens - prefix, 0))
        if side > 0 and side * side == num_tokens - prefix:
            return prefix, side, side
    raise ValueError(f"cannot lay {num_tokens} tokens on a square patch grid; pass grid=(rows, cols)")


def rollout_map(record: AttentionRecord, *, item: int = 0, query="cls", grid=None, num_prefix_tokens=None,
                head_fusion: str = "mean", start_layer: int = 0, stack=...) -> tuple[torch.Tensor, int]:
    """``([rows, cols] map, prefix)``: the rollout of ``query`` (``"cls"``: token 0; ``"mean"``:
    the average over patch tokens) over the image patches, normalised to sum 1."""
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
def vit_rollout(record: AttentionRecord, image=None, *, item: int = 0, query="cls", grid=None, num_prefix_tokens=None,
                head_fusion: str = "mean", start_layer: int = 0, alpha: float = 0.55, cmap: str = "inferno",
                show_grid: bool = True, title: str | None = None, path=None):
    """Attention rollout (Abnar & Zuidema 2020) of a vision transformer, laid over the image: the
    image, then the same image under a heat map of how much the [CLS] token draws from each
    patch (patch borders drawn faintly). Rollout comes from :mod:`attn_plugins.analysis.rollout`.

    ``image``: a PIL image, an ``HxWxC`` array or the ``pixel_values`` tensor (normalised values
    are stretched back to [0, 1]); without it only the patch map is drawn.
    """
    heat, prefix = rollout_map(record, item=item, query=query, grid=grid, num_prefix_tokens=num_prefix_tokens,
                               head_fusion=head_fusion, start_layer=start_layer)
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
    overlay = ax.imshow(heat.numpy(), cmap=cmap, alpha=alpha if img is not None else 1.0, extent=extent,
                        interpolation="nearest", vmin=0.0, vmax=float(heat.max()) or 1.0)
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
    bar = fig.colorbar(overlay, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label("share of rolled-out attention")
    bar.outline.set_linewidth(0.5)
    if title:
        fig.suptitle(title)
    return finish(fig, path)


__all__ = ["patch_grid", "rollout_map", "vit_rollout"]
