"""Hostile labels cannot make a figure's canvas (or its memory) unbounded: long tokens are cut for display
(issue 12: a 1,000-character token made an 18,000 x 18,000 px PNG, a 10,000-character one an allocation
failure), and every figure side is capped."""

import struct
import time

import pytest
import torch

pytest.importorskip("matplotlib")

from attn_plugins import plots  # noqa: E402
from attn_plugins.plots.canvas import LABEL_CHARS, MAX_INCHES, new_figure  # noqa: E402
from attn_plugins.record import AttentionRecord, LayerAttention  # noqa: E402


def _png_size(path) -> tuple[int, int]:
    with open(path, "rb") as handle:
        header = handle.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def _hostile_record(length: int) -> AttentionRecord:
    tokens = ["[CLS]", "x" * length, "<b>" * (length // 3), "ok", "[SEP]"]
    weights = torch.softmax(torch.randn(1, 2, 5, 5, generator=torch.Generator().manual_seed(0)), dim=-1)
    layers = [LayerAttention(name=f"l{i}", stack=None, kind="self", index=i, weights=weights) for i in range(2)]
    return AttentionRecord(layers=layers, tokens=[tokens])


@pytest.mark.parametrize("length", [1_000, 10_000])
@pytest.mark.parametrize("draw", ["heatmap", "head_grid", "attention_entropy"])
def test_long_tokens_keep_the_canvas_small(tmp_path, length, draw):
    record = _hostile_record(length)
    start = time.perf_counter()
    path = tmp_path / f"{draw}.png"
    if draw == "attention_entropy":
        from attn_plugins.analysis import stats

        fig = plots.head_stats_plot(stats.head_stats(record), path=path)
    else:
        fig = getattr(plots, draw)(record, layer=0, path=path)
    width, height = _png_size(path)
    assert width < 4000 and height < 4000, (width, height)
    labels = [t.get_text() for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels()]
    assert labels and max(len(label) for label in labels) <= LABEL_CHARS
    assert any(label.endswith("\u2026") for label in labels) or draw == "attention_entropy"
    assert time.perf_counter() - start < 60


def test_figure_sides_are_capped():
    fig = new_figure(10_000, 0.01)
    width, height = fig.get_size_inches()
    assert width == MAX_INCHES and height >= 0.5
