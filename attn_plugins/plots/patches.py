"""The patch grid of a vision transformer's tokens, and drawing a patch map over the image: shared by the
rollout figure (:mod:`.vision`) and the captioning figures (:mod:`.captions`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.image import AxesImage

Grid = int | tuple[int, int] | None
"""A patch grid: ``rows`` (square) or ``(rows, cols)``; ``None`` finds a square grid by itself."""


def image_array(image: Any) -> np.ndarray | None:
    """An ``[H, W, C]`` float array in [0, 1] from a PIL image, an array or a (normalised) tensor, so
    every figure can lay its patch map over whatever form of the image the user has at hand.

    Args:
        image: a PIL image, an ``HxW``/``HxWxC``/``CxHxW`` array or tensor (``pixel_values``), or ``None``.

    Returns:
        The array (``HxW`` for one channel), or ``None`` without an image.
    """
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


def overlay_patches(
    ax: Axes, img: np.ndarray | None, heat: np.ndarray, vmax: float, cmap: str, alpha: float, show_grid: bool
) -> tuple[AxesImage, int, int]:
    """One patch map over the image on ``ax`` (nearest-neighbour patches, so the grid stays visible),
    on a fixed colour scale so several panels or frames can be compared.

    Args:
        ax: the axes to draw on.
        img: the image array (see :func:`image_array`), or ``None`` (the map alone, opaque).
        heat: the ``[rows, cols]`` patch map.
        vmax: the top of the colour scale (its bottom is 0).
        cmap: a matplotlib colormap name.
        alpha: opacity of the map over the image.
        show_grid: draw the patch borders.

    Returns:
        ``(the drawn map, width, height)``, width and height in data units.
    """
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


__all__ = ["Grid", "image_array", "label_patch_grid", "overlay_patches", "patch_grid", "prefix_labels"]
