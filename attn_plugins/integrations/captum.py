"""Exporter ``"captum"``: saliency results as Captum ``VisualizationDataRecord`` s.

    out = ap.export(results, "captum")               # any method, attention-based ones too
    from captum.attr import visualization as viz
    viz.visualize_text(out.records)                      # Captum's own rendering
    out.save("captum.html")                          # the same table as a standalone page

Word attributions are scaled into Captum's colour range [-1, 1] by the largest magnitude of each
instance (``normalize="max"``, keeps the sign); ``normalize="none"`` passes raw scores (Captum clips
them). Captum's ``visualize_text`` writes tokens and labels into its HTML unescaped, so by default
the records hold HTML-escaped tokens and labels (``escape=False`` keeps them raw, for code that
reads the records rather than rendering them).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..atomic import write_text
from ..saliency.collect import as_instances
from ..saliency.result import TokenSaliency
from . import html_page

_LABEL = "-"


def _viz() -> Any:
    from ..errors import import_optional as optional

    return optional("captum.attr", "the captum exporter").visualization


def _text(value: object, escape: bool) -> str:
    text = _LABEL if value is None else str(value)
    return html_page.escape(text) if escape else text


def _record(sal: TokenSaliency, *, normalize: str, escape: bool) -> Any:
    import torch

    viz = _viz()
    if normalize == "max":
        scores = sal.normalized("max", absolute=False)
    elif normalize == "none":
        scores = sal.scores
    else:
        raise ValueError(f"normalize must be 'max' or 'none', got {normalize!r}")
    pred = sal.prediction_label if sal.prediction_label is not None else sal.prediction
    prob = sal.probability if sal.probability is not None else math.nan
    if pred is None and "similarity" in sal.info:
        # a similarity task predicts no class: Captum's "Predicted label" column shows the score,
        # "cosine similarity (0.83)", not "- (nan)"
        pred, prob = "cosine similarity", float(sal.info["similarity"])
    target = sal.target_label if sal.target_label is not None else sal.target
    attr_class = target if target is not None else sal.method
    delta = sal.info.get("delta")
    return viz.VisualizationDataRecord(
        word_attributions=torch.as_tensor(np.asarray(scores, dtype=np.float64)),
        pred_prob=float(prob),
        pred_class=_text(pred, escape),
        true_class=_text(sal.true_label, escape),
        attr_class=_text(attr_class, escape),
        attr_score=float(np.sum(sal.scores)),
        raw_input_ids=[_text(t, escape) for t in sal.tokens],
        convergence_score=float(delta) if delta is not None else None,
    )


_DISPLAY_LOCK = threading.Lock()


def captum_table_html(records: Sequence[Any], legend: bool = True) -> str:
    """The HTML that ``captum.attr.visualization.visualize_text`` builds, without displaying it.

    With IPython installed, Captum's own function builds it (its ``display`` call is silenced for
    the duration); without IPython (which ``visualize_text`` requires), a similar table is built
    from Captum's cell-formatting functions.

    Args:
        records: Captum ``VisualizationDataRecord`` s.
        legend: include Captum's colour legend.

    Returns:
        The table's HTML.
    """
    viz = _viz()
    if getattr(viz, "HAS_IPYTHON", False) and hasattr(viz, "display"):
        with _DISPLAY_LOCK:
            original = viz.display
            viz.display = lambda *args, **kwargs: None
            try:
                return str(viz.visualize_text(records, legend=legend).data)
            finally:
                viz.display = original
    # Without IPython, Captum's visualize_text cannot run: a table of our own, with Captum's own
    # formatting functions for the cells (labels, shaded word importances).
    headers = ("True label", "Predicted label", "Attribution label", "Attribution score", "Word importance")
    rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in headers) + "</tr>"]
    for rec in records:
        rows.append(
            "<tr>"
            + viz.format_classname(rec.true_class)
            + viz.format_classname(f"{rec.pred_class} ({rec.pred_prob:.2f})")
            + viz.format_classname(rec.attr_class)
            + viz.format_classname(f"{rec.attr_score:.2f}")
            + viz.format_word_importances(rec.raw_input_ids, rec.word_attributions)
            + "</tr>"
        )
    legend_html = ""
    if legend:
        swatches = " ".join(
            f'<span style="display:inline-block;width:10px;height:10px;border:1px solid;'
            f'background-color:{viz._get_color(value)}"></span> {label}'
            for value, label in ((-1, "negative"), (0, "neutral"), (1, "positive"))
        )
        legend_html = f"<div><b>Legend:</b> {swatches}</div>"
    return legend_html + "<table>" + "".join(rows) + "</table>"


class CaptumExport:
    """Captum visualisation records; displays like ``visualize_text``.

    Args:
        records: one Captum ``VisualizationDataRecord`` per instance field.
        results: the saliency results they were made from, in the same order.
        legend: show Captum's colour legend.
    """

    def __init__(self, records: list[Any], results: list[TokenSaliency], legend: bool = True) -> None:
        self.records = records
        self.results = results
        self.legend = legend

    def render(self) -> Any:
        """Call Captum's ``visualize_text`` on the records.

        Returns:
            Captum's IPython ``HTML`` object (displayed in a notebook).
        """
        return _viz().visualize_text(self.records, legend=self.legend)

    def _repr_html_(self) -> str:
        return captum_table_html(self.records, self.legend)

    def document(self) -> str:
        """The standalone page.

        Returns:
            The HTML document holding the table.
        """
        return html_page.HtmlExport(self._repr_html_(), "attn-plugins: Captum view").document()

    def save(self, path: str | os.PathLike[str]) -> str:
        """Write :meth:`document` to ``path`` (atomically).

        Args:
            path: the ``.html`` file.

        Returns:
            The path written.
        """
        return write_text(path, self.document())

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.records)

    def __repr__(self) -> str:
        return f"CaptumExport({len(self.records)} VisualizationDataRecords)"


def export_captum(
    obj: Any,
    *,
    method: str | None = None,
    query: Any = 0,
    normalize: str = "max",
    escape: bool = True,
    legend: bool = True,
    merge_words: bool | str = False,
    **options: Any,
) -> CaptumExport:
    """Saliency results (or a record, with ``method=``) as Captum visualisation records.

    Args:
        obj: saliency results (see :mod:`attn_plugins.saliency.collect`) or a record.
        method: the method to pick from a ``{method: list}`` table, or to run on a record.
        query: the attention row, for a record.
        normalize: ``"max"`` (scale into [-1, 1], sign kept) or ``"none"``.
        escape: HTML-escape tokens and labels (Captum writes them into its HTML unescaped).
        legend: show Captum's colour legend.
        merge_words: ``True``/``"sum"``/``"mean"``/``"max"`` merges word pieces into words.
        **options: passed to the attention method, for a record.

    Returns:
        The export (``records``, ``save(path)``, notebook display).
    """
    instances = as_instances(obj, method=method, query=query, merge_words=merge_words, **options)
    results = [field for fields in instances for field in fields]
    records = [_record(sal, normalize=normalize, escape=escape) for sal in results]
    return CaptumExport(records, results, legend)
