"""The faithfulness table as HTML, for the comparison page and the report."""

from __future__ import annotations

import math
from html import escape

from .result import FaithfulnessResult


def faithfulness_table_html(result: FaithfulnessResult, digits: int = 3) -> str:
    """One row per method, ``mean [low, high]`` per metric, with each column's better direction
    in its title; the best mean of each column is bold.

    Args:
        result: an :func:`attn_plugins.evaluate` result.
        digits: decimals shown.

    Returns:
        A ``<table class="ap-metrics ap-faith">`` fragment (numbers also in ``data-value``).
    """
    summary, columns = result.summary(), result.columns()
    head = (
        "<tr><th>method</th>"
        + "".join(
            f'<th title="{"higher" if up else "lower" if up is not None else "falls when faithful"} is better">'
            f"{escape(title)} {'&uarr;' if up else '&darr;' if up is not None else ''}</th>"
            for _, title, up in columns
        )
        + "</tr>"
    )
    best = {}
    for name, _, up in columns:
        means = [(s[name]["mean"], m) for m, s in summary.items() if name in s and not math.isnan(s[name]["mean"])]
        if means and up is not None:
            best[name] = (max if up else min)(means)[1]
    rows = []
    for method, stats in summary.items():
        cells = []
        for name, _, _ in columns:
            s = stats.get(name)
            if s is None or s["n"] == 0:
                cells.append("<td>-</td>")
                continue
            text = f"{s['mean']:.{digits}f} <small>[{s['low']:.{digits}f}, {s['high']:.{digits}f}]</small>"
            if best.get(name) == method:
                text = f"<b>{text}</b>"
            cells.append(f'<td data-metric="{name}" data-value="{s["mean"]!r}">{text}</td>')
        rows.append(f'<tr><td style="text-align:left">{escape(method)}</td>{"".join(cells)}</tr>')
    n = max((s["n"] for st in summary.values() for s in st.values()), default=0)
    note = (
        f'<p style="font-size:12px;color:#555">Faithfulness ({escape(str(result.settings.get("removal", "")))} '
        f"removal) over {n} instances; {result.confidence:.0%} bootstrap intervals; best mean in bold.</p>"
    )
    return f'{note}<table class="ap-metrics ap-faith">{head}{"".join(rows)}</table>'
