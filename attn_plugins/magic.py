"""The IPython extension: the ``%%attention`` cell magic (and ``%attention`` line magic).

Captures whatever a cell runs::

    %load_ext attn_plugins

    %%attention --model model --view head
    model(**tok("The cat sat on the mat.", return_tensors="pt"))

``%%attention`` options: ``--model NAME`` (a model or pipeline in the namespace, repeatable;
default: every model in the namespace), ``--tokenizer NAME``, ``--view`` (the views of
``ap.show``: ``head``, ``model``, ``neuron``, ``long``, ``heatmap``, ``grid``, ``stats``,
``similarity``, ``summary``; the cell's own value is not shown, the view is), ``--layers``/``--heads``
(what to capture), ``--item`` (which batch item to show), ``--record NAME`` (where the record
is stored; default ``_attention``). The line form is ``%attention [options] -- statement``.
Loading the extension also makes matplotlib figures (all ``attn_plugins.plots`` functions
return one) display as PNG.
"""

from __future__ import annotations

import argparse
import shlex

from .integrations.html_page import escape
from .loading import unpack_model
from .notebook import VIEWS, show

MAGIC_VIEWS = VIEWS  # the views of ap.show()


def _magic_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="%%attention", add_help=False, description="capture the attention of the models a cell runs and show it"
    )
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
                model, tok = unpack_model(obj, None)
            except TypeError as exc:
                raise _MagicError(f"--model {name}: {exc}") from None
            found.append((name, model, tok))
        return found
    for name, obj in namespace.items():
        if name.startswith("_"):
            continue
        try:
            model, tok = unpack_model(obj, None)
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
    if args.view in ("stats", "similarity"):
        return show(record, view=args.view)
    if args.view == "summary":
        return show(record, view="summary")
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
            cap = capture(
                model,
                tokenizer=tok or tokenizer,
                layers=args.layers,
                heads=args.heads,
                keep_queries_keys=(args.view == "neuron"),
            )
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
        # the cell's own value (e.g. the output object of ``model(...)``) is not shown: the view is
        interactivity = shell.ast_node_interactivity
        shell.ast_node_interactivity = "none"
        try:
            result = shell.run_cell(code, store_history=False)
        finally:
            shell.ast_node_interactivity = interactivity
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
            display(HTML(f"<h4>{escape(name)}</h4>"))
        try:
            view = _show_record(record, args)
        except Exception as exc:  # noqa: BLE001 - the capture worked; say why the view did not
            print(f"%attention: cannot show the {args.view} view of {name}: {type(exc).__name__}: {exc}")
            continue
        if view is not None:
            display(view)
    return None


def load_ipython_extension(ipython) -> None:
    """``%load_ext attn_plugins``: the ``%attention`` / ``%%attention`` magic, and matplotlib
    figures shown as PNG."""

    def magic(line, cell=None):
        return attention_magic(line, cell, shell=ipython)

    magic.__doc__ = attention_magic.__doc__ + "\n\n" + _magic_parser().format_help()
    ipython.register_magic_function(magic, magic_kind="line_cell", magic_name="attention")
    from .plots.canvas import show_figures_as_png

    show_figures_as_png(ipython)  # before any figure is drawn


__all__ = ["attention_magic", "load_ipython_extension"]
