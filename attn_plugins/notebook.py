"""Notebook one-liners (the IPython extension is :mod:`attn_plugins.magic`).

From a model (or a transformers ``pipeline``) and a text to a view in one line; a captured record
works too::

    import attn_plugins as ap
    ap.show(model, "The cat sat on the mat.", tokenizer=tok)          # BertViz head view
    ap.show(pipe, "The cat sat on the mat.", view="model")            # a pipeline brings its tokenizer
    ap.show(record, view="neuron")                                    # needs keep_queries_keys=True
    ap.heatmap(model, "The cat sat.", tokenizer=tok, layer=2, head=5)  # a PNG in the notebook
    ap.heatmap(record, layer=-1, grid=True)                           # every head of the last layer
    ap.explain(classifier, "a fine film", tokenizer=tok)              # saliency (integrated gradients)
    ap.explain(encoder, ("a man plays guitar", "someone makes music"), tokenizer=tok)  # embedding similarity
    ap.compare(classifier, ["a fine film", "dull"], tokenizer=tok)    # saliency methods side by side

The ``%%attention`` cell magic is in :mod:`attn_plugins.magic` (``%load_ext attn_plugins``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    from .record import AttentionRecord

BERTVIZ_VIEWS = ("head", "model", "neuron", "long")
FIGURE_VIEWS = ("heatmap", "grid", "stats", "similarity")
VIEWS = BERTVIZ_VIEWS + FIGURE_VIEWS + ("summary",)
RECORD_METHODS = ("attention", "rollout", "flow")
COMPARE_METHODS = ("attention", "rollout", "grad_attention", "saliency", "integrated_gradients")


# ---------------------------------------------------------------------------------------------
# figures that display themselves
# ---------------------------------------------------------------------------------------------
class FigureView:
    """A matplotlib figure that shows as a PNG in a notebook; ``save(path)`` writes PNG/SVG/PDF
    (by extension), ``figure`` is the Figure and other attributes are the Figure's."""

    def __init__(self, figure: Any, dpi: int = 110) -> None:
        self.figure = figure
        self.dpi = dpi

    def _repr_png_(self) -> bytes:
        from .plots.canvas import png_bytes

        return png_bytes(self.figure, self.dpi)

    def save(self, path: str | os.PathLike[str]) -> str:
        from .plots import save

        return str(save(self.figure, path))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "figure":
            raise AttributeError(name)
        return getattr(self.figure, name)

    def __repr__(self) -> str:
        return f"FigureView({self.figure!r})"


class SummaryView(str):
    """A record's summary (``record.summary()``) that a notebook shows as plain text."""

    def __repr__(self) -> str:
        return str(self)


def carry_scripts_again() -> None:
    """Let the next BertViz view shown carry require.js, jQuery and d3 again (call it after deleting
    or clearing the output of the first view, which carried them for the whole notebook)."""
    from .integrations.notebook_output import carry_scripts_again as again

    again()


def figure_png(figure: Any) -> bytes:
    """PNG bytes of a matplotlib figure, as a notebook shows it (the IPython extension's formatter)."""
    from .plots.canvas import png_bytes

    return png_bytes(figure)


# ---------------------------------------------------------------------------------------------
# from a model, pipeline or record to a record
# ---------------------------------------------------------------------------------------------
def _is_record(obj: Any) -> TypeGuard[AttentionRecord]:
    from .record import AttentionRecord

    return isinstance(obj, AttentionRecord)


def _model_and_tokenizer(obj: Any, tokenizer: Any) -> tuple[Any, Any]:
    """(model, tokenizer) of a model or pipeline; the tokenizer saved beside the model when none is given."""
    from .loading import tokenizer_for, unpack_model

    model, tokenizer = unpack_model(obj, tokenizer)
    return model, tokenizer if tokenizer is not None else tokenizer_for(model)


def record_for(obj: Any, text: Any = None, tokenizer: Any = None, **capture_options: Any) -> AttentionRecord:
    """The record of ``obj`` (returned as is) or of a model/pipeline run on ``text`` (a text, a
    list of texts or a pair ``(text_a, text_b)``; see :func:`attn_plugins.inputs.capture_texts`)."""
    if _is_record(obj):
        return obj
    from .inputs import capture_texts
    from .loading import tokenizer_for, unpack_model

    model, tokenizer = unpack_model(obj, tokenizer)
    if text is None:
        raise ValueError(f"give the text to run {type(model).__name__} on (or pass a captured AttentionRecord)")
    tokenizer = tokenizer if tokenizer is not None else tokenizer_for(model)
    return capture_texts(model, tokenizer, text, max_tokens=None, **capture_options)


def _default_stack(record: AttentionRecord) -> Any:
    return "encoder" if record.is_encoder_decoder else ...


# ---------------------------------------------------------------------------------------------
# one-liners
# ---------------------------------------------------------------------------------------------
def show(obj: Any, text: Any = None, tokenizer: Any = None, view: str = "head", **options: Any) -> Any:
    """One line from a model, a pipeline or a record (and a text) to a view.

    ``view``: a BertViz view (``"head"``, ``"model"``, ``"neuron"``, ``"long"``; ``options`` go to
    the ``"bertviz"`` exporter, e.g. ``layer=``, ``heads=``, ``item=``), a figure
    (``"heatmap"``, ``"grid"``, ``"stats"``, ``"similarity"``; see :func:`heatmap`) or
    ``"summary"`` (the record's summary as text). Returns an
    object that displays itself in a notebook and has ``save(path)``.

    Args:
        obj: a model, a transformers pipeline or an :class:`~attn_plugins.record.AttentionRecord`.
        text: the input for a model or pipeline (a text, a list of texts or a pair).
        tokenizer: the model's tokenizer (default: the pipeline's, or the one saved beside the model).
        view: the view's name (see above).
        **options: the exporter's or the figure's options.

    Returns:
        An object that displays itself in a notebook and has ``save(path)``.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    record = record_for(obj, text, tokenizer, keep_queries_keys=(view == "neuron"))
    if view == "summary":
        return SummaryView(record.summary())
    if view in FIGURE_VIEWS:
        if view in ("heatmap", "grid"):
            return heatmap(record, grid=(view == "grid"), **options)
        from . import plots

        stack = options.pop("stack", _default_stack(record))
        if view == "stats":
            stats = options.pop("stats", ("normalized_entropy", "distance", "special", "previous"))
            return FigureView(plots.head_stats_plot(record, stats, stack=stack, **options))
        return FigureView(plots.similarity_plot(record, stack=stack, **options))
    from .integrations import EXPORTERS, export

    if "bertviz" not in EXPORTERS.names():
        raise ImportError('the BertViz views need the "bertviz" exporter: pip install "attn-plugins[bertviz]"')
    return export(record, "bertviz", view=view, **options)


def heatmap(
    obj: Any,
    text: Any = None,
    tokenizer: Any = None,
    *,
    layer: int = -1,
    head: str | int = "mean",
    grid: bool = False,
    item: int = 0,
    **options: Any,
) -> FigureView:
    """A heatmap of one head (``head="mean"``: the mean of the heads) of ``layer`` (negative from
    the end), or with ``grid=True`` every head of the layer. ``options`` go to
    :func:`attn_plugins.plots.heatmap` / :func:`~attn_plugins.plots.head_grid` (``path=`` saves)."""
    from . import plots

    record = record_for(obj, text, tokenizer)
    options.setdefault("stack", _default_stack(record))
    if grid:
        return FigureView(plots.head_grid(record, layer, item=item, **options))
    return FigureView(plots.heatmap(record, layer, head, item=item, **options))


def _saliency_results(
    obj: Any, text: Any, tokenizer: Any, method: str, target: Any, options: dict[str, Any]
) -> list[Any]:
    """Saliency results of ``method`` for a model/pipeline (its task head, or the embedding
    similarity of a pair for a bare encoder) or a record (attention methods)."""
    from .saliency import Explainer, SimilarityExplainer, attention_saliency
    from .saliency.problem import detect_task

    if _is_record(obj):
        if method not in RECORD_METHODS:
            raise ValueError(
                f"a record alone supports the methods {', '.join(RECORD_METHODS)}; {method!r} needs the model"
            )
        return attention_saliency(obj, method, **options)
    model, tokenizer = _model_and_tokenizer(obj, tokenizer)
    if text is None:
        raise ValueError("give the text to explain")
    task = detect_task(model)
    if task != "custom":
        return Explainer(model, tokenizer).explain(text, method, target=target, progress=False, **options)
    pairs = (isinstance(text, tuple) and len(text) == 2 and all(isinstance(t, str) for t in text)) or (
        isinstance(text, list) and text and all(isinstance(t, tuple) and len(t) == 2 for t in text)
    )
    if pairs:
        return SimilarityExplainer(model, tokenizer).explain(text, method, progress=False, **options)
    if method in RECORD_METHODS:
        return attention_saliency(record_for(model, text, tokenizer), method, **options)
    raise ValueError(
        f"{type(model).__name__} has no task head to explain: pass a pair of texts (a, b) to explain "
        f"their embedding similarity, or an attention method ({', '.join(RECORD_METHODS)})"
    )


def explain(
    obj: Any,
    text: Any = None,
    tokenizer: Any = None,
    method: str | None = None,
    *,
    view: str = "saliency",
    target: str = "predicted",
    **options: Any,
) -> Any:
    """Saliency of a prediction in one line: ``view="saliency"`` (shaded tokens) or ``"captum"``
    (Captum's own ``visualize_text`` table). ``method`` defaults to ``"integrated_gradients"``
    (``"rollout"`` for a record); ``options`` go to the method (e.g. ``n_steps=``). The returned
    view carries the results as ``.results``."""
    from .integrations import export

    method = method or ("rollout" if _is_record(obj) else "integrated_gradients")
    results = _saliency_results(obj, text, tokenizer, method, target, options)
    page = export(results, view)
    try:
        page.results = results
    except AttributeError:  # an exporter object that takes no attributes
        pass
    return page


def compare(
    obj: Any,
    text: Any = None,
    tokenizer: Any = None,
    methods: Any = None,
    *,
    target: str = "predicted",
    options: dict[str, Any] | None = None,
    **export_options: Any,
) -> Any:
    """Several saliency methods side by side with their agreement (the ``"comparison"`` exporter).

    Args:
        obj: a model, a transformers pipeline or an :class:`~attn_plugins.record.AttentionRecord`.
        text: the input to explain (not needed for a record).
        tokenizer: the model's tokenizer (default: the pipeline's, or the one saved beside the model).
        methods: the methods to compare; default attention, rollout, attention x gradient, saliency
            and integrated gradients (attention, rollout and flow for a record).
        target: the class explained (``"predicted"`` or a label or index).
        options: maps a method to its options.
        **export_options: options of the comparison page (``k=``, ``plot=``, ...).

    Returns:
        The comparison page; ``.results`` holds the results compared.
    """
    import importlib.util

    from .integrations import export

    options = options or {}
    if methods is None:
        if _is_record(obj):
            methods = RECORD_METHODS
        else:
            captum = importlib.util.find_spec("captum") is not None
            methods = [m for m in COMPARE_METHODS if captum or m not in ("saliency", "integrated_gradients")]
    table = {m: _saliency_results(obj, text, tokenizer, m, target, dict(options.get(m, {}))) for m in methods}
    page = export(table, "comparison", **export_options)
    try:
        page.results = table
    except AttributeError:
        pass
    return page


__all__ = [
    "FigureView",
    "SummaryView",
    "carry_scripts_again",
    "compare",
    "explain",
    "figure_png",
    "heatmap",
    "record_for",
    "show",
]
