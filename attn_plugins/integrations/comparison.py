"""Exporter ``"comparison"``: several saliency methods side by side, with their agreement.

    table = explainer.compare(texts, ["attention", "rollout", "flow", "saliency", "integrated_gradients"])
    page = ap.export(table, "comparison", path="comparison.html")
    print(page.agreement.summary())

Each instance shows one row of shaded tokens per method and the pairwise agreement of the methods
on it (Kendall tau, Spearman rho, top-k overlap, Jensen-Shannon divergence; see
:mod:`attn_plugins.saliency.agreement`); the end of the page averages them over all instances and
plots the averaged matrices (matplotlib, inline PNG, so the page works offline and in notebooks).
This is the analysis of "Attention is not Explanation" (Jain & Wallace 2019) as a reusable tool.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

from ..saliency.agreement import LABELS, METRICS, Agreement, agreement
from ..saliency.collect import Instance, as_method_table
from .html_page import HtmlExport, escape
from .saliency_html import CSS as SALIENCY_CSS
from .saliency_html import token_row

CSS = (
    SALIENCY_CSS
    + """
<style>
.ap-cmp table.ap-rows { border-collapse: collapse; margin: 4px 0 8px; }
.ap-cmp table.ap-rows td { padding: 2px 8px; vertical-align: middle; }
.ap-cmp table.ap-rows td.ap-name { font-size: 12px; color: #444; white-space: nowrap; text-align: right; }
.ap-cmp table.ap-metrics { border-collapse: collapse; font-size: 12px; margin: 4px 0 14px; }
.ap-cmp table.ap-metrics th, .ap-cmp table.ap-metrics td {
  border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
.ap-cmp table.ap-metrics th { background: #f4f4f4; }
.ap-cmp details { margin: 2px 0 12px; }
.ap-cmp img.ap-plot { max-width: 100%; }
</style>
"""
)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def metric_scale(metric: str) -> tuple[str, float, float]:
    """The colour scale of an agreement metric, in the plot and the shaded table: rank correlations
    -1..1 (red-blue), top-k overlap 0..1 (blues), Jensen-Shannon divergence 0..1 (reds: darker is
    less agreement).

    Args:
        metric: one of :data:`~attn_plugins.saliency.agreement.METRICS`.

    Returns:
        ``(colormap name, vmin, vmax)``.
    """
    if metric == "jensen_shannon":
        return "Reds", 0.0, 1.0
    if metric in ("kendall_tau", "spearman_rho"):
        return "RdBu", -1.0, 1.0
    return "Blues", 0.0, 1.0


def _shades(columns: list[list[float]]) -> list[list[str]]:
    """Inline styles of each cell of the averaged table, per metric column on its scale (plain
    cells when matplotlib, which holds the colormaps, is not installed)."""
    from ..errors import MissingDependencyError

    try:
        from .heat_table import cell_colours

        shaded = [cell_colours([values], *metric_scale(m))[0] for m, values in zip(METRICS, columns, strict=True)]
    except MissingDependencyError:
        return [["" for _ in values] for values in columns]
    return [[f' style="background:{bg};color:{fg}"' for bg, fg in column] for column in shaded]


def _pairs_table(agree: Agreement, unit: int | None) -> str:
    """The metrics of every pair of methods on one instance (``unit``), or averaged (``None``: the
    cells shaded on each metric's colour scale, as in the plot)."""
    head = "<tr><th>methods</th>" + "".join(f"<th>{escape(LABELS[m])}</th>" for m in METRICS) + "</tr>"
    source = agree.per_unit[unit] if unit is not None else None
    keys = list(agree.per_unit[0]) if agree.per_unit else []
    values = [
        [source[(a, b)][m] for m in METRICS] if source is not None else [agree.mean(a, b, m) for m in METRICS]
        for a, b in keys
    ]
    columns = [[row[i] for row in values] for i in range(len(METRICS))]
    styles = _shades(columns) if source is None and keys else [["" for _ in keys] for _ in METRICS]
    rows = [
        f'<tr><td style="text-align:left">{escape(a)} / {escape(b)}</td>'
        + "".join(f"<td{styles[i][r]}>{_fmt(v)}</td>" for i, v in enumerate(values[r]))
        + "</tr>"
        for r, (a, b) in enumerate(keys)
    ]
    return f'<table class="ap-metrics">{head}{"".join(rows)}</table>'


def agreement_plot(agree: Agreement, fmt: str = "png") -> str:
    """The averaged metric matrices as heatmaps.

    Args:
        agree: the agreement of the methods.
        fmt: ``"png"`` or ``"svg"``.

    Returns:
        A ``data:`` URI of the PNG, or the inline SVG text.
    """
    from ..errors import import_optional as optional

    Figure = optional("matplotlib.figure", "the comparison plot").Figure  # noqa: N806 - a class

    n = len(agree.methods)
    size = max(3.2, 0.55 * n + 1.8)
    # one layout pass while drawing (tight_layout() before savefig drew the figure twice)
    fig = Figure(figsize=(2 * size, 2 * size * 0.9), dpi=90, layout="constrained")
    for index, metric in enumerate(METRICS):
        ax = fig.add_subplot(2, 2, index + 1)
        data = agree.matrix(metric)
        cmap, lower, upper = metric_scale(metric)
        image = ax.imshow(data, cmap=cmap, vmin=lower, vmax=upper)
        ax.set_xticks(range(n), agree.methods, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), agree.methods, fontsize=8)
        ax.set_title(LABELS[metric] + (f" (k={agree.k})" if metric == "top_k_overlap" else ""), fontsize=10)
        for i in range(n):
            for j in range(n):
                value = data[i, j]
                if not math.isnan(value):
                    ax.text(
                        j,
                        i,
                        f"{value:.2f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if abs(value) > 0.6 else "black",
                    )
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"Agreement averaged over {len(agree.units)} instances", fontsize=11)
    buffer = io.BytesIO()
    if fmt == "svg":
        fig.savefig(buffer, format="svg")
        svg = buffer.getvalue().decode("utf-8")
        return svg[svg.index("<svg") :]
    fig.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class ComparisonExport(HtmlExport):
    """The comparison page; ``agreement`` holds the numbers, ``table`` the results compared.

    Args:
        body: the page's HTML.
        head: its CSS.
        agreement: the agreement of the methods.
        table: ``{method: [instance]}``, the results compared.
        title: the page title.
    """

    def __init__(
        self, body: str, head: str, agreement: Agreement, table: dict[str, list[Instance]], title: str
    ) -> None:
        super().__init__(body, title=title, head=head)
        self.agreement = agreement
        self.table = table

    def summary(self) -> str:
        """The agreement's text summary.

        Returns:
            :meth:`Agreement.summary <attn_plugins.saliency.agreement.Agreement.summary>`.
        """
        return self.agreement.summary()

    def __repr__(self) -> str:
        return f"ComparisonExport({len(self.agreement.methods)} methods, {len(self.agreement.units)} instances)"


def export_comparison(
    obj: Any,
    *,
    methods: Any = None,
    k: int = 3,
    absolute: bool = True,
    skip_special: bool = True,
    top_k: int | None = None,
    merge_words: bool | str = False,
    plot: str | None = "png",
    max_instances: int | None = 50,
    title: str = "Saliency methods compared",
    faithfulness: Any = None,
    **options: Any,
) -> ComparisonExport:
    """A comparison page for ``{method: [results]}`` (or a record: its attention methods; or a
    :class:`~attn_plugins.generation.SequenceAttribution`: one instance per target step).

    Args:
        obj: ``{method: [results]}`` (``Explainer.compare``), a list of results, a record, or a
            ``SequenceAttribution`` (agreement per target step and averaged).
        methods: the methods to show (for a record: to compute).
        k: the top-k of the overlap metric (and the outlined tokens unless ``top_k``).
        absolute: compare magnitudes (else signed scores).
        skip_special: leave special tokens out of the agreement.
        top_k: how many tokens are outlined (default ``k``).
        merge_words: ``True``/``"sum"``/``"mean"``/``"max"`` merges word pieces into words.
        plot: ``"png"`` (default), ``"svg"`` or ``None``.
        max_instances: how many instances get their own rows on the page (all of them count in the
            averages).
        title: the page's heading.
        faithfulness: a :class:`~attn_plugins.faithfulness.FaithfulnessResult` (``ap.evaluate``)
            shown as a table after the agreement: agreement says whether methods concur,
            faithfulness whether they are right.
        **options: per-method options, for a record.

    Returns:
        The page, with ``agreement`` and ``table``.
    """
    families = None
    if type(obj).__name__ == "SequenceAttribution" and hasattr(obj, "method_table"):
        # generation attribution: one instance per target step (its source row), agreement per step and averaged
        families = obj.families()
        obj = {m: v for m, v in obj.method_table().items() if methods is None or m in methods}
    table = as_method_table(obj, methods=methods, merge_words=merge_words, **options)
    if not table:
        raise ValueError("nothing to compare: no methods given")
    if len(table) < 2:
        raise ValueError(f"a comparison needs at least two methods, got {list(table)}")
    agree = agreement(table, k=k, absolute=absolute, skip_special=skip_special, families=families)
    names = list(table)
    shown = top_k if top_k is not None else k
    parts = [
        '<div class="ap-sal ap-cmp">',
        f'<h2 style="font-size:17px">{escape(title)}</h2>',
        f'<p style="font-size:12px;color:#555">{len(names)} methods, {len(agree.units)} instances. '
        f"Shade: share of each method's total absolute score, relative to its largest; outlined: top {shown}. "
        f"Agreement over {'magnitudes' if absolute else 'signed scores'}"
        f"{', special tokens excluded' if skip_special else ''}.</p>",
    ]
    unit = 0
    count = len(table[names[0]])
    for i in range(count):
        fields = table[names[0]][i]
        for f, first in enumerate(fields):
            if max_instances is None or i < max_instances:
                heading = f"Instance {i + 1}"
                if len(fields) > 1:
                    heading += f" ({escape(first.field)})"
                if first.text:
                    heading += f": {escape(first.text)}"
                target = first.target_label if first.target_label is not None else first.target
                if target is not None:
                    heading += f" &middot; target {escape(target)}"
                parts.append(f'<h3>{heading}</h3><table class="ap-rows">')
                for name in names:
                    row = token_row(table[name][i][f], top_k=min(shown, len(first.tokens)))
                    parts.append(f'<tr><td class="ap-name">{escape(name)}</td><td>{row}</td></tr>')
                parts.append(
                    '</table><details><summary style="font-size:12px">agreement on this instance'
                    f"</summary>{_pairs_table(agree, unit)}</details>"
                )
            unit += 1
    if max_instances is not None and count > max_instances:
        parts.append(
            f'<p style="font-size:12px;color:#555">{count - max_instances} more instances are '
            "included in the averages below.</p>"
        )
    parts.append(f"<h3>Averaged over {len(agree.units)} instances</h3>{_pairs_table(agree, None)}")
    if plot:
        image = agreement_plot(agree, plot)
        if plot == "svg":
            parts.append(f'<div class="ap-plot">{image}</div>')
        else:
            parts.append(f'<img class="ap-plot" alt="agreement between methods" src="{image}">')
    if faithfulness is not None:
        from ..faithfulness.html import faithfulness_table_html

        parts.append(f"<h3>Faithfulness</h3>{faithfulness_table_html(faithfulness)}")
    parts.append("</div>")
    return ComparisonExport("\n".join(parts), CSS, agree, table, title=f"attn-plugins: {title}")
