"""Shaded tables: each cell's colour is matplotlib's colormap at the value on the stated range, the
text reads on it, NaN is marked, labels are escaped."""

from __future__ import annotations

import html
import re

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.colors import to_hex

from attn_plugins.integrations.heat_table import cell_colours, heat_table, text_colour


def test_cell_colours_are_the_colormap_on_the_fixed_range():
    values = np.array([[0.0, 0.25, 1.0], [0.5, np.nan, 2.0]])
    colours = cell_colours(values, "viridis", 0.0, 1.0)
    cmap = colormaps["viridis"]
    for i, j in [(0, 0), (0, 1), (0, 2), (1, 0)]:
        assert colours[i][j][0] == to_hex(cmap(values[i, j]))
    assert colours[1][2][0] == to_hex(cmap(1.0))  # above the range: the top colour
    assert colours[1][1] == ("#ffffff", "#999999")  # NaN
    # text: white on viridis' dark end, black on its light end
    assert colours[0][0][1] == "white" and colours[0][2][1] == "black"


def test_text_colour_follows_luminance():
    assert text_colour(1, 1, 1) == "black" and text_colour(0, 0, 0) == "white"
    assert text_colour(0, 0, 1) == "white" and text_colour(1, 1, 0) == "black"


def test_heat_table_shows_values_range_and_escapes_labels():
    hostile = '<img src=x onerror="alert(1)">'
    markup = heat_table(
        [[0.1, 0.9]], [hostile], ["a&b", "c"], cmap="Blues", vmin=0.0, vmax=1.0, title="share <x>", corner="l\\h"
    )
    assert "<img" not in markup and html.escape(hostile, quote=True) in markup
    assert "a&amp;b" in markup and "share &lt;x&gt;" in markup
    assert "colour scale 0.00 to 1.00" in markup
    cells = re.findall(r'<td style="background:(#[0-9a-f]{6});color:(\w+)" title="([^"]*)">([^<]*)</td>', markup)
    assert [c[3] for c in cells] == ["0.10", "0.90"]
    assert cells[0][0] == to_hex(colormaps["Blues"](0.1)) and cells[1][1] == "white"
    hidden = heat_table([[0.1, 0.9]], ["r"], ["a", "b"], cmap="Blues", vmin=0, vmax=1, title="t", show_values=False)
    assert re.findall(r'title="r, b: 0.90"></td>', hidden)


def test_heat_table_refuses_mismatched_labels():
    with pytest.raises(ValueError, match="labels for a table of shape"):
        heat_table([[1.0, 2.0]], ["r", "s"], ["a", "b"], cmap="Blues", vmin=0, vmax=1, title="t")
    with pytest.raises(ValueError, match="2-D"):
        cell_colours([1.0, 2.0], "Blues", 0, 1)
