"""attn-plugins: exact attention capture from any PyTorch model, one record type, many views."""

import typing as _typing

from . import _version
from ._version import __version__
from .adapters.declare import attention_output, register_attention_module, unregister_attention_module
from .capturing import capture
from .errors import (
    AssetsMissingError,
    AttnPluginsError,
    CaptureError,
    CorpusError,
    InputError,
    LoadError,
    MemoryBudgetError,
    MissingDependencyError,
    NoAttentionError,
    RecordFormatError,
    ReportError,
    ShardError,
    StreamError,
    UnknownNameError,
)
from .heads import ablate, head_importance, knockout, pruning_curve
from .integrations import export
from .record import AttentionRecord, LayerAttention

_version.check_transformers_version()  # an unsupported transformers fails here, naming the supported range

__all__ = [
    "AssetsMissingError",
    "AttnPluginsError",
    "CorpusError",
    "InputError",
    "LoadError",
    "MissingDependencyError",
    "NoAttentionError",
    "ReportError",
    "ShardError",
    "StreamError",
    "UnknownNameError",
    "AttentionRecord",
    "CaptureError",
    "LayerAttention",
    "MemoryBudgetError",
    "RecordFormatError",
    "__version__",
    "ablate",
    "attention_output",
    "capture",
    "compare",
    "evaluate",
    "explain",
    "explain_generation",
    "export",
    "head_importance",
    "heatmap",
    "knockout",
    "load_ipython_extension",
    "pruning_curve",
    "register_attention_module",
    "show",
    "unregister_attention_module",
]


if _typing.TYPE_CHECKING:  # annotations only: no helper name in the package namespace
    from typing import Any


# Notebook one-liners (attn_plugins.notebook, imported only when called).
def show(obj: "Any", text: "Any" = None, tokenizer: "Any" = None, view: str = "head", **options: "Any") -> "Any":
    """A view (BertViz ``view="head"``/``"model"``/``"neuron"``, or ``"heatmap"``...) of a model,
    pipeline or record in one line; see :func:`attn_plugins.notebook.show`."""
    from .notebook import show as _show

    return _show(obj, text, tokenizer, view, **options)


def heatmap(obj: "Any", text: "Any" = None, tokenizer: "Any" = None, **options: "Any") -> "Any":
    """A heatmap of one head or a layer's heads, shown as PNG; see :func:`attn_plugins.notebook.heatmap`."""
    from .notebook import heatmap as _heatmap

    return _heatmap(obj, text, tokenizer, **options)


def explain(
    obj: "Any", text: "Any" = None, tokenizer: "Any" = None, method: str | None = None, **options: "Any"
) -> "Any":
    """Saliency of a prediction in one line; see :func:`attn_plugins.notebook.explain`."""
    from .notebook import explain as _explain

    return _explain(obj, text, tokenizer, method, **options)


def compare(obj: "Any", text: "Any" = None, tokenizer: "Any" = None, methods: "Any" = None, **options: "Any") -> "Any":
    """Saliency methods side by side with their agreement; see :func:`attn_plugins.notebook.compare`."""
    from .notebook import compare as _compare

    return _compare(obj, text, tokenizer, methods, **options)


def evaluate(
    model: "Any",
    tokenizer: "Any",
    texts: "Any" = None,
    methods: "Any" = ("attention", "rollout", "saliency", "integrated_gradients"),
    **options: "Any",
) -> "Any":
    """Faithfulness (comprehensiveness, sufficiency, deletion/insertion, leave-one-out tau, plausibility,
    randomization check) of saliency methods; see :func:`attn_plugins.faithfulness.evaluate`."""
    from .faithfulness import evaluate as _evaluate

    return _evaluate(model, tokenizer, texts, methods, **options)


def explain_generation(
    model: "Any",
    tokenizer: "Any",
    source: "Any",
    target: "Any" = None,
    methods: "Any" = ("attention", "integrated_gradients"),
    **options: "Any",
) -> "Any":
    """Attribution of every generated token to the source and the target prefix; see
    :func:`attn_plugins.generation.explain_generation`."""
    from .generation import explain_generation as _explain_generation

    return _explain_generation(model, tokenizer, source, target, methods, **options)


def load_ipython_extension(ipython: "Any") -> None:
    """``%load_ext attn_plugins``: the ``%%attention`` magic (see :mod:`attn_plugins.magic`)."""
    from .magic import load_ipython_extension as _load

    _load(ipython)
