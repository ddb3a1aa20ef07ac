"""Tables whose cells are shaded by their value: a heatmap the page draws itself.

A layers x heads statistic or a methods x methods agreement is a small matrix of numbers; as an
HTML table the numbers stay readable at any zoom, can be selected and searched, and cost nothing to
draw (a matplotlib heatmap with a number in each cell costs about a second). The colour of each cell
comes from a matplotlib colormap on a stated range, and its text is black or white, whichever reads
on that colour (the rule of :func:`attn_plugins.plots.canvas.annotate_cells`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import import_optional
from .html_page import escape

__all__ = ["cell_colours", "heat_table", "text_colour"]

NAN_CELL = ("#ffffff", "#999999")


def text_colour(red: float, green: float, blue: float) -> str:
    """``"black"`` on a light colour, ``"white"`` on a dark one (channels 0..1, perceived luminance).

    Args:
        red, green, blue: the background colour.

    Returns:
        The CSS colour name of the text.
    """
    return "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"


def cell_colours(values: Any, cmap: str, vmin: float, vmax: float) -> list[list[tuple[str, str]]]:
    """(background, text) CSS colours of each value of a 2-D array on the range ``vmin..vmax``
    (values outside it take the end colours; NaN cells are white with grey text).

    Args:
        values: a 2-D array.
        cmap: a matplotlib colormap name.
        vmin, vmax: the range the colormap spans.

    Returns:
        One ``(background, text)`` pair per cell, row by row.
    """
    colormaps = import_optional("matplotlib", "shaded tables").colormaps
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"a heat table needs a 2-D array, got shape {data.shape}")
    span = vmax - vmin if vmax > vmin else 1.0
    rgba = colormaps[cmap](np.clip((np.nan_to_num(data, nan=vmin) - vmin) / span, 0.0, 1.0))
    out = []
    for i in range(data.shape[0]):
        row = []
        for j in range(data.shape[1]):
            if math.isnan(data[i, j]):
                row.append(NAN_CELL)
                continue
            red, green, blue = (float(c) for c in rgba[i, j, :3])
            hex_colour = "#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in (red, green, blue)))
            row.append((hex_colour, text_colour(red, green, blue)))
        out.append(row)
    return out


def heat_table(
    values: Any,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    *,
    cmap: str,
    vmin: float,
    vmax: float,
    title: str,
    fmt: Callable[[float], str] = lambda v: f"{v:.2f}",
    corner: str = "",
    show_values: bool = True,
    cell_title: Callable[[int, int], str] | None = None,
) -> str:
    """A shaded table: a title with the colour range it uses, column labels on top, row labels on
    the left, each cell coloured by its value (and, by default, showing it).

    Args:
        values: a 2-D array ``[rows, columns]``.
        row_labels, column_labels: the labels (escaped here).
        cmap: a matplotlib colormap name.
        vmin, vmax: the colour range, stated under the title.
        title: the table's caption.
        fmt: value -> the text shown in the cell.
        corner: the top-left cell's text (what the rows and columns are).
        show_values: write the values in the cells (else only in each cell's tooltip).
        cell_title: ``(row, column) -> tooltip`` (default: "row label, column label: value").

    Returns:
        The ``<table>`` markup.
    """
    data = np.asarray(values, dtype=np.float64)
    colours = cell_colours(data, cmap, vmin, vmax)
    if len(row_labels) != data.shape[0] or len(column_labels) != data.shape[1]:
        raise ValueError(
            f"{len(row_labels)} row and {len(column_labels)} column labels for a table of shape {data.shape}"
        )
    head = "".join(f'<th scope="col">{escape(str(c))}</th>' for c in column_labels)
    rows = []
    for i, label in enumerate(row_labels):
        cells = []
        for j in range(data.shape[1]):
            value = data[i, j]
            text = "-" if math.isnan(value) else fmt(float(value))
            tip = cell_title(i, j) if cell_title else f"{row_labels[i]}, {column_labels[j]}: {text}"
            background, colour = colours[i][j]
            cells.append(
                f'<td style="background:{background};color:{colour}" title="{escape(tip)}">'
                f"{escape(text) if show_values else ''}</td>"
            )
        rows.append(f'<tr><th scope="row">{escape(str(label))}</th>{"".join(cells)}</tr>')
    scale = f"colour scale {fmt(vmin)} to {fmt(vmax)}"
    return (
        f'<table class="ap-heat"><caption>{escape(title)} <span class="ap-scale">({escape(scale)})</span>'
        f'</caption><tr><th scope="col">{escape(corner)}</th>{head}</tr>{"".join(rows)}</table>'
    )
