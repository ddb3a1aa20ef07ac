"""png_bytes draws a figure once and cuts out its tight box: the same picture savefig(bbox_inches=
"tight") writes (which draws twice), the figure left as it was, and savefig's own path whenever
something reaches past the figure's edge."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from attn_plugins import plots
from attn_plugins.plots.canvas import new_figure, png_bytes, style


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _savefig(fig, dpi=100, pad=0.02) -> bytes:
    buffer = io.BytesIO()
    with style():
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", pad_inches=pad, facecolor="white")
    return buffer.getvalue()


def _figures():
    g = torch.Generator().manual_seed(0)
    weights = torch.softmax(torch.randn(1, 4, 7, 7, generator=g), dim=-1)
    tokens = ["[CLS]", "the", "cat", "sat", "on", "mat", "[SEP]"]
    yield plots.heatmap(weights, 0, 1, tokens=tokens)
    yield plots.head_grid(weights, 0, tokens=tokens)


@pytest.mark.parametrize("index", [0, 1])
def test_one_draw_gives_savefigs_tight_picture(index):
    fig = list(_figures())[index]
    ours, theirs = _pixels(png_bytes(fig, 100, 0.02)), _pixels(_savefig(fig))
    assert abs(ours.shape[0] - theirs.shape[0]) <= 2 and abs(ours.shape[1] - theirs.shape[1]) <= 2
    h, w = min(ours.shape[0], theirs.shape[0]) - 2, min(ours.shape[1], theirs.shape[1]) - 2
    # the same content, at most a pixel or two apart (the tight box is rounded to whole pixels)
    best = min(
        np.abs(ours[dy : dy + h, dx : dx + w] - theirs[ey : ey + h, ex : ex + w]).mean()
        for dy in range(3)
        for dx in range(3)
        for ey in range(3)
        for ex in range(3)
    )
    assert best < 6, best  # sub-pixel offsets change the anti-aliasing of text, not what is drawn
    ink_ours, ink_theirs = (ours < 200).any(axis=2).mean(), (theirs < 200).any(axis=2).mean()
    assert ink_ours == pytest.approx(ink_theirs, rel=0.05)


def test_the_figure_is_left_as_it_was_and_overhanging_text_is_kept():
    fig = new_figure(2.0, 1.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1])
    fig.set_facecolor("#123456")
    dpi = fig.dpi
    fig.text(1.3, 0.5, "far to the right of the figure")  # past the canvas: only savefig's path shows it
    data = png_bytes(fig, 100)
    assert fig.dpi == dpi and fig.get_facecolor()[:3] == pytest.approx((0x12 / 255, 0x34 / 255, 0x56 / 255))
    width = _pixels(data).shape[1]
    assert width > 2.0 * 100 * 1.3  # the canvas grew to the text
    assert width == _pixels(_savefig(fig, pad=0.05)).shape[1]


def test_long_colorbar_labels_stay_within_the_figure():
    """A colorbar label longer than a short figure is tall is broken onto lines (it used to run past
    the top and bottom, over the title)."""
    from attn_plugins.plots.canvas import label_bar

    fig = new_figure(4.0, 1.6)
    ax = fig.add_subplot(1, 1, 1)
    bar = fig.colorbar(ax.imshow([[0.0, 1.0]], vmin=0, vmax=1), ax=ax)
    label_bar(bar, "cross-attention weight, mean of heads and layers (fixed scale 0 to 1)")
    fig.canvas.draw()
    extent = bar.ax.yaxis.label.get_window_extent()
    assert "\n" in bar.ax.get_ylabel() and extent.height <= fig.bbox.height
    short = new_figure(4.0, 4.0)
    bar = short.colorbar(short.add_subplot(1, 1, 1).imshow([[0.0]]), ax=short.axes[0])
    label_bar(bar, "weight (fixed scale 0 to 1)")
    assert bar.ax.get_ylabel() == "weight (fixed scale 0 to 1)"  # fits: left on one line


def test_caption_panels_prefix_notes_do_not_run_into_each_other():
    from attn_plugins import plots
    from tests.plots.test_vision_caption import captioner, generate

    model, pixels = captioner("registers")
    record, _ = generate(model, pixels)
    fig = plots.caption_attention(record, pixels)
    fig.canvas.draw()
    panels = [ax for ax in fig.axes if ax.get_title()]
    boxes = [ax.xaxis.label.get_window_extent() for ax in panels]
    assert len(boxes) >= 2 and all("[REG4]" in ax.get_xlabel() for ax in panels)
    for left, right in zip(boxes, boxes[1:], strict=False):
        if abs(left.y0 - right.y0) < 1:  # same row
            assert left.x1 <= right.x0, (left, right)
