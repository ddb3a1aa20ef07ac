"""Outbound plugins: exporters that turn a record into a view or another library's format.

``export(record, target, path=None, **options)`` is the one entry point. An exporter factory is
called as ``factory(record, **options)`` and returns an object that displays in a notebook
(``_repr_html_``) and has ``save(path)``. Third parties add exporters through the entry point
group ``attn_plugins.exporters``.
"""

from __future__ import annotations

import os

from ..registry import Registry

EXPORTERS = Registry("exporter", "attn_plugins.exporters")


def export(record, target: str, path: str | os.PathLike | None = None, **options):
    """Export ``record`` to ``target`` (a registered exporter name); with ``path=``, also write it."""
    factory = EXPORTERS.get(target)
    result = factory(record, **options)
    if path is not None:
        result.save(path)
    return result


def _bertviz(record, view: str = "head", **options):
    """BertViz head/model/neuron views and the long-input view (imported only when asked for)."""
    from .bertviz import export_bertviz

    return export_bertviz(record, view, **options)


def _long(record, **options):
    """The canvas view for inputs of 1,000 tokens and more (the same view as ``"bertviz"``, ``view="long"``)."""
    from .longview import longview

    return longview(record, **options)


EXPORTERS.register("bertviz", _bertviz)
EXPORTERS.register("long", _long)


# ----- saliency exporters (imported only when asked for) -----
def _captum(result, **options):
    """Captum VisualizationDataRecords of saliency results (``visualize_text`` renders them)."""
    from .captum import export_captum

    return export_captum(result, **options)


def _allennlp(result, **options):
    """AllenNLP Interpret's saliency JSON (``{"instance_1": {"grad_input_1": [...]}}``)."""
    from .allennlp_json import export_allennlp

    return export_allennlp(result, **options)


def _saliency(result, **options):
    """AllenNLP-demo-style saliency page: shaded tokens, top-k, values on hover."""
    from .saliency_html import export_saliency

    return export_saliency(result, **options)


def _comparison(result, **options):
    """Saliency methods side by side with their agreement (Kendall, Spearman, top-k, JSD)."""
    from .comparison import export_comparison

    return export_comparison(result, **options)


def _generation(result, **options):
    """Generation attribution page: target tokens clickable, their source attributions shaded."""
    from ..generation.views import export_generation

    return export_generation(result, **options)


EXPORTERS.register("generation", _generation)
EXPORTERS.register("captum", _captum)
EXPORTERS.register("allennlp", _allennlp)
EXPORTERS.register("saliency", _saliency)
EXPORTERS.register("comparison", _comparison)
