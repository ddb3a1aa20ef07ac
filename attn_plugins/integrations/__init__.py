"""Outbound plugins: exporters that turn a record into a view or another library's format.

``export(record, target, path=None, **options)`` is the one entry point. An exporter factory is
called as ``factory(record, **options)`` and returns an object that displays in a notebook
(``_repr_html_``) and has ``save(path)``. Third parties add exporters through the entry point
group ``attn_plugins.exporters``.
"""

from __future__ import annotations

import os
from typing import Any

from ..registry import Registry

EXPORTERS = Registry("exporter", "attn_plugins.exporters")


def export(record: Any, target: str, path: str | os.PathLike[str] | None = None, **options: Any) -> Any:
    """Export ``record`` to ``target`` (a registered exporter name); with ``path=``, also write it.

    Args:
        record: what the exporter takes: an :class:`~attn_plugins.record.AttentionRecord`, or
            saliency results for the saliency, Captum, AllenNLP and comparison exporters.
        target: the exporter's name in :data:`EXPORTERS` (``"bertviz"``, ``"saliency"``, ...).
        path: a file to write the result to (optional).
        **options: the exporter's own options.

    Returns:
        The exporter's result (for pages: an object with ``save(path)`` that displays in a notebook).
    """
    factory = EXPORTERS.get(target)
    result = factory(record, **options)
    if path is not None:
        result.save(path)
    return result


def _bertviz(record: Any, view: str = "head", **options: Any) -> Any:
    """BertViz head/model/neuron views and the long-input view (imported only when asked for)."""
    from .bertviz import export_bertviz

    return export_bertviz(record, view, **options)


def _long(record: Any, **options: Any) -> Any:
    """The canvas view for inputs of 1,000 tokens and more (the same view as ``"bertviz"``, ``view="long"``)."""
    from .longview import longview

    return longview(record, **options)


EXPORTERS.register("bertviz", _bertviz)
EXPORTERS.register("long", _long)


# ----- saliency exporters (imported only when asked for) -----
def _captum(result: Any, **options: Any) -> Any:
    """Captum VisualizationDataRecords of saliency results (``visualize_text`` renders them)."""
    from .captum import export_captum

    return export_captum(result, **options)


def _allennlp(result: Any, **options: Any) -> Any:
    """AllenNLP Interpret's saliency JSON (``{"instance_1": {"grad_input_1": [...]}}``)."""
    from .allennlp_json import export_allennlp

    return export_allennlp(result, **options)


def _saliency(result: Any, **options: Any) -> Any:
    """AllenNLP-demo-style saliency page: shaded tokens, top-k, values on hover."""
    from .saliency_html import export_saliency

    return export_saliency(result, **options)


def _comparison(result: Any, **options: Any) -> Any:
    """Saliency methods side by side with their agreement (Kendall, Spearman, top-k, JSD)."""
    from .comparison import export_comparison

    return export_comparison(result, **options)


def _generation(result: Any, **options: Any) -> Any:
    """Generation attribution page: target tokens clickable, their source attributions shaded."""
    from ..generation.views import export_generation

    return export_generation(result, **options)


EXPORTERS.register("generation", _generation)
EXPORTERS.register("captum", _captum)
EXPORTERS.register("allennlp", _allennlp)
EXPORTERS.register("saliency", _saliency)
EXPORTERS.register("comparison", _comparison)
