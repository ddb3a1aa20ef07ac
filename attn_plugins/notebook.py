"""Notebook one-liners and the IPython extension.

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

The IPython extension captures whatever a cell runs::

    %load_ext attn_plugins

    %%attention --model model --view head
    model(**tok("The cat sat on the mat.", return_tensors="pt"))

``%%attention`` options: ``--model NAME`` (a model or pipeline in the namespace, repeatable;
default: every model in the namespace), ``--tokenizer NAME``, ``--view`` (``head``, ``model``,
``neuron``, ``long``, ``heatmap``, ``grid``, ``stats``, ``summary``), ``--layers``/``--heads``
(what to capture), ``--item`` (which batch item to show), ``--record NAME`` (where the record
is stored; default ``_attention``). The line form is ``%attention [options] -- statement``.
Loading the extension also makes matplotlib figures (all ``attn_plugins.plots`` functions
return one) display as PNG.
"""

from __future__ import annotations

import argparse
import io
import shlex

BERTVIZ_VIEWS = ("head", "model", "neuron", "long")
FIGURE_VIEWS = ("heatmap", "grid", "stats", "similarity")
VIEWS = BERTVIZ_VIEWS + FIGURE_VIEWS
RECORD_METHODS = ("attention", "rollout", "flow")
COMPARE_METHODS = ("attention", "rollout", "grad_attention", "saliency", "integrated_gradients")


# ---------------------------------------------------------------------------------------------
# figures that display themselves
# ---------------------------------------------------------------------------------------------
class FigureView:
    """A matplotlib figure that shows as a PNG in a notebook; ``save(path)`` writes PNG/SVG/PDF
    (by extension), ``figure`` is the Figure and other attributes are the Figure's."""

    def __init__(self, figure, dpi: int = 110) -> None:
        self.figure = figure
        self.dpi = dpi

    def _repr_png_(self) -> bytes:
        from .plots._base import style

        buffer = io.BytesIO()
        with style():
            self.figure.savefig(buffer, format="png", dpi=self.dpi, bbox_inches="tight", pad_inches=0.05,
                                facecolor="white")
        return buffer.getvalue()

    def save(self, path) -> str:
        from .plots import save

        return save(self.figure, path)

    def __getattr__(self, name):
        if name.startswith("_") or name == "figure":
            raise AttributeError(name)
        return getattr(self.figure, name)

    def __repr__(self) -> str:
        return f"FigureView({self.figure!r})"


def _figure_png(figure) -> bytes:
    return FigureView(figure)._repr_png_()


# ---------------------------------------------------------------------------------------------
# from a model, pipeline or record to a record
# ---------------------------------------------------------------------------------------------
def _is_record(obj) -> bool:
    from .record import AttentionRecord

    return isinstance(obj, AttentionRecord)


def _unpack(obj, tokenizer):
    """``(model, tokenizer)`` from a model or a transformers pipeline."""
    import torch

    if not isinstance(obj, torch.nn.Module) and hasattr(obj, "model") and isinstance(obj.model, torch.nn.Module):
        return obj.model, tokenizer if tokenizer is not None else getattr(obj, "tokenizer", None)
    if isinstance(obj, torch.nn.Module):
        return obj, tokenizer
    raise TypeError(f"expected a model, a transformers pipeline or an AttentionRecord, got {type(obj).__name__}")


def _need_tokenizer(model, tokenizer):
    if tokenizer is not None:
        return tokenizer
    from .loading import tokenizer_for

    return tokenizer_for(model)


def _encode(tokenizer, text):
    """Model inputs for a text, a list of texts or a pair ``(text_a, text_b)``."""
    if isinstance(text, tuple) and len(text) == 2 and all(isinstance(t, str) for t in text):
        return tokenizer(text[0], text[1], return_tensors="pt")
    texts = [text] if isinstance(text, str) else list(text)
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError("text must be a non-empty string, a list of them or a pair (text_a, text_b)")
    restore = False
    if len(texts) > 1 and getattr(tokenizer, "pad_token", None) is None and getattr(tokenizer, "eos_token", None):
        tokenizer.pad_token, restore = tokenizer.eos_token, True
    try:
        return tokenizer(texts, return_tensors="pt", padding=True)
    finally:
        if restore:
            tokenizer.pad_token = None


def record_for(obj, text=None, tokenizer=None, **capture_options):
    """The record of ``obj`` (returned as is) or of a model/pipeline run on ``text``."""
    if _is_record(obj):
        return obj
    import torch

    from .capturing import capture

    model, tokenizer = _unpack(obj, tokenizer)
    if text is None:
        raise ValueError(f"give the text to run {type(model).__name__} on (or pass a captured AttentionRecord)")
    tokenizer = _need_tokenizer(model, tokenizer)
    from .report import forward_inputs

    enc = _encode(tokenizer, text)
    device = getattr(model, "device", None)
    if device is not None:
        enc = enc.to(device)
    enc = forward_inputs(model, enc)
    with torch.no_grad(), capture(model, tokenizer=tokenizer, **capture_options) as cap:
        model(**enc)
    return cap.record


def _default_stack(record):
    return "encoder" if record.is_encoder_decoder else ...


# ---------------------------------------------------------------------------------------------
# one-liners
# ---------------------------------------------------------------------------------------------
def show(obj, text=None, tokenizer=None, view: str = "head", **options):
    """One line from a model, a pipeline or a record (and a text) to a view.

    ``view``: a BertViz view (``"head"``, ``"model"``, ``"neuron"``, ``"long"``; ``options`` go to
    the ``"bertviz"`` exporter, e.g. ``layer=``, ``heads=``, ``item=``) or a figure
    (``"heatmap"``, ``"grid"``, ``"stats"``, ``"similarity"``; see :func:`heatmap`). Returns an
    object that displays itself in a notebook and has ``save(path)``.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {', '.join(VIEWS)}")
    record = record_for(obj, text, tokenizer, keep_queries_keys=(view == "neuron"))
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


def heatmap(obj, text=None, tokenizer=None, *, layer: int = -1, head="mean", grid: bool = False, item: int = 0,
            **options) -> FigureView:
    """A heatmap of one head (``head="mean"``: the mean of the heads) of ``layer`` (negative from
    the end), or with ``grid=True`` every head of the layer. ``options`` go to
    :func:`attn_plugins.plots.heatmap` / :func:`~attn_plugins.plots.head_grid` (``path=`` saves)."""
    from . import plots

    record = record_for(obj, text, tokenizer)
    options.setdefault("stack", _default_stack(record))
    if grid:
        return FigureView(plots.head_grid(record, layer, item=item, **options))
    return FigureView(plots.heatmap(record, layer, head, item=item, **options))


def _saliency_results(obj, text, tokenizer, method: str, target, options: dict) -> list:
    """Saliency results of ``method`` for a model/pipeline (its task head, or the embedding
    similarity of a pair for a bare encoder) or a record (attention methods)."""
    from .saliency import Explainer, SimilarityExplainer, attention_saliency
    from .saliency.problem import detect_task

    if _is_record(obj):
        if method not in RECORD_METHODS:
            raise ValueError(f"a record alone supports the methods {', '.join(RECORD_METHODS)}; {method!r} needs "
                             "the model")
        return attention_saliency(obj, method, **options)
    model, tokenizer = _unpack(obj, tokenizer)
    if text is None:
        raise ValueError("give the text to explain")
    tokenizer = _need_tokenizer(model, tokenizer)
    task = detect_task(model)
    if task != "custom":
        return Explainer(model, tokenizer).explain(text, method, target=target, progress=False, **options)
    pairs = (isinstance(text, tuple) and len(text) == 2 and all(isinstance(t, str) for t in text)) or \
        (isinstance(text, list) and text and all(isinstance(t, tuple) and len(t) == 2 for t in text))
    if pairs:
        return SimilarityExplainer(model, tokenizer).explain(text, method, progress=False, **options)
    if method in RECORD_METHODS:
        return attention_saliency(record_for(model, text, tokenizer), method, **options)
    raise ValueError(f"{type(model).__name__} has no task head to explain: pass a pair of texts (a, b) to explain "
                     f"their embedding similarity, or an attention method ({', '.join(RECORD_METHODS)})")


def explain(obj, text=None, tokenizer=None, method: str | None = None, *, view: str = "saliency",
            target="predicted", **options):
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


def compare(obj, text=None, tokenizer=None, methods=None, *, target="predicted", options=None, **export_options):
    """Several saliency methods side by side with their agreement (the ``"comparison"`` exporter).

    ``methods`` defaults to attention, rollout, attention x gradient, saliency and integrated
    gradients (attention, rollout and flow for a record); ``options`` maps a method to its options.
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


# ---------------------------------------------------------------------------------------------
# the IPython extension
# ---------------------------------------------------------------------------------------------
MAGIC_VIEWS = BERTVIZ_VIEWS + ("heatmap", "grid", "stats", "summary")


def _magic_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="%%attention", add_help=False,
                                     description="capture the attention of the models a cell runs and show it")
    parser.add_argument("--model", action="append", help="a model or pipeline in the namespace (repeatable)")
    parser.add_argument("--tokenizer", help="a tokenizer in the namespace (default: found by itself)")
    parser.add_argument("--view", default="head", choices=MAGIC_VIEWS)
    parser.add_argument("--layers", type=int, nargs="+", help="layer indices to capture")
    parser.add_argument("--heads", type=int, nargs="+", help="head indices to capture")
    parser.add_argument("--item", type=int, default=0, help="which batch item to show")
    parser.add_argument("--record", default="_attention", help="the name the record is stored under")
    return parser


class _MagicError(Exception):
    pass


def _parse_magic(line: str):
    parser = _magic_parser()

    def fail(message):
        raise _MagicError(f"{message}\n{parser.format_usage().strip()}")

    parser.error = fail
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise _MagicError(f"cannot read the options: {exc}") from None
    return parser.parse_args(words)


def _models_in(namespace: dict, names, user_ns: dict) -> list[tuple[str, object, object]]:
    """``[(name, model, tokenizer)]``: the named models/pipelines, or every model in the namespace."""
    import sys

    if "torch" not in sys.modules:
        if names:
            raise _MagicError("torch is not imported: there is no model to capture")
        return []
    import torch

    found = []
    if names:
        for name in names:
            try:
                obj = eval(name, user_ns)  # noqa: S307 - a name or attribute path the user typed
            except Exception as exc:  # noqa: BLE001
                raise _MagicError(f"--model {name}: {type(exc).__name__}: {exc}") from None
            try:
                model, tok = _unpack(obj, None)
            except TypeError as exc:
                raise _MagicError(f"--model {name}: {exc}") from None
            found.append((name, model, tok))
        return found
    for name, obj in namespace.items():
        if name.startswith("_"):
            continue
        try:
            model, tok = _unpack(obj, None)
        except (TypeError, AttributeError):
            continue
        if not isinstance(model, torch.nn.Module) or not hasattr(model, "config"):
            continue
        if any(model is m for _, m, _ in found):
            continue
        found.append((name, model, tok))
    inner = {id(sub) for _, m, _ in found for sub in m.modules() if sub is not m}
    return [f for f in found if id(f[1]) not in inner]


def _find_tokenizer(user_ns: dict):
    import sys

    if "transformers" not in sys.modules:
        return None
    from transformers import PreTrainedTokenizerBase

    toks = [v for k, v in user_ns.items() if not k.startswith("_") and isinstance(v, PreTrainedTokenizerBase)]
    return toks[0] if len({id(t) for t in toks}) == 1 else None


def _show_record(record, args):
    if args.view == "summary":
        print(record.summary())
        return None
    if args.view in ("heatmap", "grid"):
        return heatmap(record, grid=(args.view == "grid"), item=args.item)
    if args.view == "stats":
        return show(record, view="stats")
    return show(record, view=args.view, item=args.item)


def attention_magic(line: str, cell: str | None = None, shell=None):
    """``%%attention [options]`` (cell) / ``%attention [options] -- statement`` (line)."""
    from contextlib import ExitStack

    from IPython.display import HTML, display

    from .capturing import NoAttentionError, capture

    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if cell is None:
        stripped = line.strip()
        if stripped.startswith("-- "):
            line, code = "", stripped[3:]
        elif " -- " in f" {line} ":
            line, code = f" {line} ".split(" -- ", 1)
        elif stripped.startswith("-"):
            print("usage: %attention [options] -- statement   (or the cell magic %%attention [options])")
            return None
        else:
            line, code = "", line
    else:
        code = cell
    try:
        args = _parse_magic(line)
        user_ns = shell.user_ns
        models = _models_in(user_ns, args.model, user_ns)
        tokenizer = user_ns.get(args.tokenizer) if args.tokenizer else _find_tokenizer(user_ns)
        if args.tokenizer and tokenizer is None:
            raise _MagicError(f"--tokenizer {args.tokenizer}: no such name in the namespace")
    except _MagicError as exc:
        print(f"%attention: {exc}")
        return None
    if not models:
        print("%attention: no model found to capture (pass --model NAME)")
    captures = []
    with ExitStack() as stack:
        for name, model, tok in models:
            cap = capture(model, tokenizer=tok or tokenizer, layers=args.layers, heads=args.heads,
                          keep_queries_keys=(args.view == "neuron"))
            try:
                stack.enter_context(cap)
            except NoAttentionError:
                if args.model:
                    print(f"%attention: {name} has no attention to capture")
                continue
            except Exception as exc:  # noqa: BLE001 - a capture that cannot start is reported, the cell still runs
                print(f"%attention: cannot capture {name}: {type(exc).__name__}: {exc}")
                continue
            captures.append((name, cap))
        result = shell.run_cell(code, store_history=False)
    if not getattr(result, "success", True):
        return None
    records = {}
    for name, cap in captures:
        if cap.records:
            records[name] = cap.record
    if not records:
        if models:
            print(f"%attention: the cell ran none of {', '.join(n for n, _, _ in models)}; nothing was captured")
        return None
    user_ns[args.record] = next(reversed(records.values()))
    user_ns[f"{args.record}_records"] = records
    for name, record in records.items():
        if len(records) > 1:
            display(HTML(f"<h4>{_escape(name)}</h4>"))
        try:
            view = _show_record(record, args)
        except Exception as exc:  # noqa: BLE001 - the capture worked; say why the view did not
            print(f"%attention: cannot show the {args.view} view of {name}: {type(exc).__name__}: {exc}")
            continue
        if view is not None:
            display(view)
    return None


def _escape(text) -> str:
    import html

    return html.escape(str(text), quote=True)


def load_ipython_extension(ipython) -> None:
    """``%load_ext attn_plugins``: the ``%attention`` / ``%%attention`` magic, and matplotlib
    figures shown as PNG."""

    def magic(line, cell=None):
        return attention_magic(line, cell, shell=ipython)

    magic.__doc__ = attention_magic.__doc__ + "\n\n" + _magic_parser().format_help()
    ipython.register_magic_function(magic, magic_kind="line_cell", magic_name="attention")
    png = ipython.display_formatter.formatters["image/png"]
    try:
        png.lookup_by_type("matplotlib.figure.Figure")
    except KeyError:
        png.for_type_by_name("matplotlib.figure", "Figure", _figure_png)


__all__ = ["FigureView", "compare", "explain", "heatmap", "load_ipython_extension", "record_for", "show"]
