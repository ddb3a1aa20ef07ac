"""The report: one offline HTML page that shows a model's attention from every side attn-plugins has.

    from attn_plugins.report import build_report
    path = build_report()                                   # bundled MiniLM + fixture sentences -> out/report.html
    path = build_report(model, tokenizer, ["some text", "more text"], out_dir="out")
    path = build_report(model_dir="path/to/saved/model", texts=["..."])

or from the shell: ``attn-plugins report [--model DIR] [--text "..."]... [--text-file F] [--out DIR]``.

The page (``report.html``) is self-contained: styles, scripts and images are inline, a
Content-Security-Policy forbids any network access, and every token and text is HTML-escaped.
Figures are drawn once, for the screen; ``--figures png,svg,pdf`` (``figures=``) also writes each to
``plots/`` in those print formats (PNG at 300 dpi). Beside the page, ``head_stats.csv`` holds the per-head
statistics and ``record.safetensors`` the captured record (``attn-plugins info`` reads it).

Sections: model and inputs, BertViz views, heatmaps, head statistics, head similarity and
clustering, diagnostics, attention over generation steps (generative models), saliency (with
Captum's own view) and the comparison of saliency methods. A section whose part is not installed
says how to get it; a section that fails is replaced by a short note (the error is logged on the
``attn_plugins.report`` logger) and the rest of the report still renders.

The package: :mod:`~attn_plugins.report.inputs` (the texts), :mod:`~attn_plugins.report.context`
(the model, the record and what sections share), the sections in
:mod:`~attn_plugins.report.overview`, :mod:`~attn_plugins.report.heads`,
:mod:`~attn_plugins.report.generation` and :mod:`~attn_plugins.report.explanations`,
:mod:`~attn_plugins.report.page` (the HTML document, its CSS in ``static/report.css``) and
:mod:`~attn_plugins.report.build` (:func:`build_report`).
"""

from __future__ import annotations

from ..errors import ReportError
from ..loading import load_model_dir
from .build import SECTIONS, build_report
from .generation import GENERATION_STEPS
from .inputs import DEFAULT_SENTENCES, FIXTURE_SENTENCES, default_texts, read_text_file

__all__ = [
    "DEFAULT_SENTENCES",
    "FIXTURE_SENTENCES",
    "GENERATION_STEPS",
    "ReportError",
    "SECTIONS",
    "build_report",
    "default_texts",
    "load_model_dir",
    "read_text_file",
]
