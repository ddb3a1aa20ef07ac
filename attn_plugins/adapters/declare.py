"""Declare your own attention modules, so that ``attn_plugins.capture`` records them.

A module you wrote (a Bahdanau or Luong layer, your own multi-head attention) is captured once
you say where its forward returns the attention weights. One line does it, in any of these forms::

    from attn_plugins.adapters.declare import attention_output, register_attention_module

    @attention_output(index=1, kind="cross")      # forward returns (context, weights)
    class LuongAttention(nn.Module):
        ...

    register_attention_module(TheirAttention, weights="attn")                  # a class you do not own
    register_attention_module("their_pkg.layers.TheirAttention", weights=1)    # by dotted class name, no import
    register_attention_module(model.get_submodule("decoder.attn"), weights=1)  # one module of one model

Then ``with attn_plugins.capture(model) as cap: model(...)`` records every call of those modules.

What the options mean:

``weights`` (or ``index``)
    where the weights are in the module's output: an int (position in the returned tuple), a str
    (key of a returned dict, or attribute of a returned object), or a callable. A callable is called
    as ``fn(output)``, or as ``fn(output, call)`` when it takes two parameters; ``call`` has
    ``.module``, ``.args`` and ``.kwargs`` (so ``lambda out, call: call.module.last_weights`` reads
    weights that the module keeps instead of returning). It may return ``None`` for a call that
    has no weights (that call is skipped).
``layout``
    the order of the weights' dimensions, with the letters ``b`` (batch), ``h`` (heads),
    ``q`` (query positions) and ``k`` (key positions); letters left out are dimensions of size 1.
    Default by rank: 2 -> ``"bk"`` (one query per call, e.g. one decoder step of a seq2seq
    model), 3 -> ``"bqk"``, 4 -> ``"bhqk"``. Use e.g. ``"kb"`` for ``[src_len, batch]``.
``kind``
    ``"self"`` (queries and keys from the same sequence) or ``"cross"`` (a decoder attending over
    the encoder, as in Bahdanau and Luong models), or a callable ``fn(module) -> str`` when one
    class serves both roles. Default: ``"cross"`` when the module's path names cross-attention
    (``cross``, ``encoder_attn``, ``src_attn``, ...), else ``"self"``.
``stack``
    ``"encoder"``, ``"decoder"`` or ``None`` (or a callable ``fn(module)``). Default: inferred from
    the module path (``encoder...``/``decoder...``) when the model has both stacks, else ``None``.
``steps``
    what repeated calls of one module within one forward mean. ``True``: decoding steps, stacked
    along the query axis into one alignment matrix (``[batch, heads, steps, src_len]``);
    ``False``: each call is a layer of its own (a module shared between layers).
    ``"auto"`` (default): steps when the module's first call in the forward had a single query.

Declarations of a class apply to its subclasses; a declared module instance overrides its class.
A declared module that sits inside another captured module is not captured separately (the
outer one is). For ``torch.nn.MultiheadAttention`` nothing needs declaring: the ``torch`` adapter
recomputes its exact per-head weights; a declaration of one only sets its ``kind``/``stack``.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "AttentionDeclaration",
    "attention_output",
    "declaration_for",
    "declared_names",
    "register_attention_module",
    "unregister_attention_module",
]

_LETTERS = "bhqk"
_DEFAULT_LAYOUTS = {2: "bk", 3: "bqk", 4: "bhqk"}
_STEPS = ("auto", True, False)

_LOCK = threading.RLock()
_BY_CLASS: dict[type, AttentionDeclaration] = {}
_BY_NAME: dict[str, AttentionDeclaration] = {}
_BY_INSTANCE: weakref.WeakKeyDictionary[torch.nn.Module, AttentionDeclaration] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Call:
    """What a ``weights`` callable with two parameters receives besides the output."""

    module: torch.nn.Module
    args: tuple
    kwargs: dict


@dataclass(frozen=True)
class AttentionDeclaration:
    """Where a module's forward returns its attention weights, and what they are."""

    weights: Any = 1
    kind: Any = None
    stack: Any = None
    layout: str | None = None
    steps: Any = "auto"

    # ----- reading the weights of one call --------------------------------------------------------
    def extract(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any, name: str):
        """The weights of this call as ``[batch, heads, query, key]`` (detached), or ``None``."""
        spec = self.weights
        try:
            if callable(spec):
                raw = spec(output, Call(module, args, kwargs)) if _takes_two(spec) else spec(output)
            elif isinstance(spec, int):
                raw = output[spec]
            elif isinstance(output, dict) or hasattr(output, "keys"):
                raw = output[spec]
            else:
                raw = getattr(output, spec)
        except (IndexError, KeyError, AttributeError, TypeError) as exc:
            from ..errors import CaptureError

            raise CaptureError(
                f"declared attention module {name!r} ({type(module).__name__}): cannot read its weights with "
                f"weights={_describe(spec)} from an output of type {type(output).__name__} ({exc}); fix the "
                "declaration (register_attention_module(..., weights=...))"
            ) from None
        if raw is None:
            return None
        return to_bhqk(raw, self.layout, name)

    def kind_for(self, module: torch.nn.Module) -> str | None:
        kind = self.kind(module) if callable(self.kind) else self.kind
        if kind is not None and kind not in ("self", "cross"):
            raise ValueError(f"kind must be 'self' or 'cross', got {kind!r} for {type(module).__name__}")
        return kind

    def stack_for(self, module: torch.nn.Module) -> str | None:
        stack = self.stack(module) if callable(self.stack) else self.stack
        if stack is not None and not isinstance(stack, str):
            raise TypeError(f"stack must be a string or None, got {stack!r} for {type(module).__name__}")
        return stack


def _takes_two(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def _describe(spec) -> str:
    return getattr(spec, "__name__", None) or repr(spec) if callable(spec) else repr(spec)


def to_bhqk(weights, layout: str | None, name: str = "module") -> torch.Tensor:
    """``weights`` in ``layout`` (letters of ``bhqk``) as a detached ``[batch, heads, query, key]`` tensor."""
    from ..errors import CaptureError

    if not isinstance(weights, torch.Tensor):
        raise CaptureError(
            f"declared attention module {name!r} returned {type(weights).__name__} where its attention weights "
            "should be; point weights= at a tensor"
        )
    if not weights.is_floating_point():
        raise CaptureError(f"declared attention module {name!r}: the weights are {weights.dtype}, not floating point")
    if layout is None:
        layout = _DEFAULT_LAYOUTS.get(weights.dim())
        if layout is None:
            raise CaptureError(
                f"declared attention module {name!r}: weights of shape {tuple(weights.shape)} have no default layout; "
                "declare layout= with the letters b (batch), h (heads), q (query), k (key), e.g. layout='bhqk'"
            )
    if len(layout) != weights.dim():
        raise CaptureError(
            f"declared attention module {name!r}: layout {layout!r} has {len(layout)} dimensions but the weights "
            f"have shape {tuple(weights.shape)}"
        )
    weights = weights.detach()
    for letter in _LETTERS:
        if letter not in layout:
            weights = weights.unsqueeze(-1)
            layout += letter
    return weights.permute(*[layout.index(letter) for letter in _LETTERS])


def _check_layout(layout) -> None:
    if layout is None:
        return
    if not isinstance(layout, str):
        raise TypeError(f"layout must be a string of the letters b, h, q, k (e.g. 'bhqk'), got {layout!r}")
    if not layout or set(layout) - set(_LETTERS) or len(set(layout)) != len(layout) or "k" not in layout:
        raise ValueError(
            f"invalid layout {layout!r}: use each of the letters b (batch), h (heads), q (query), k (key) at most "
            "once, k included, e.g. 'bk', 'bqk', 'bhqk' or 'kb'"
        )


def _check(weights, kind, stack, layout, steps) -> None:
    if isinstance(weights, bool) or not (isinstance(weights, (int, str)) or callable(weights)):
        raise TypeError(
            f"weights must be an int (tuple position), a str (dict key or attribute) or a callable, got {weights!r}"
        )
    if isinstance(weights, str) and not weights:
        raise ValueError("weights='' names nothing; give a dict key or attribute name")
    if not (kind is None or kind in ("self", "cross") or callable(kind)):
        raise ValueError(f"kind must be 'self', 'cross', None (inferred) or a callable, got {kind!r}")
    if not (stack is None or isinstance(stack, str) or callable(stack)):
        raise TypeError(f"stack must be a string ('encoder', 'decoder'), None or a callable, got {stack!r}")
    _check_layout(layout)
    if steps not in _STEPS or (isinstance(steps, int) and not isinstance(steps, bool)):
        raise ValueError(f"steps must be 'auto', True or False, got {steps!r}")


def register_attention_module(target, weights=1, *, kind=None, stack=None, layout=None, steps="auto"):
    """Declare that ``target``'s forward returns attention weights (see the module docs for the options).

    ``target`` is a module class, a dotted class name (``"pkg.module.Class"``, or just ``"Class"``;
    matched without importing anything) or one module instance. Returns ``target``, so it also
    works as a decorator. Declaring the same target again replaces the declaration.
    """
    _check(weights, kind, stack, layout, steps)
    declaration = AttentionDeclaration(weights=weights, kind=kind, stack=stack, layout=layout, steps=steps)
    with _LOCK:
        if isinstance(target, type):
            if not issubclass(target, torch.nn.Module):
                raise TypeError(f"{target.__name__} is not a torch.nn.Module subclass")
            _BY_CLASS[target] = declaration
        elif isinstance(target, str):
            if not target or target.startswith(".") or target.endswith("."):
                raise ValueError(f"not a class name: {target!r}; use 'package.module.ClassName' or 'ClassName'")
            _BY_NAME[target] = declaration
        elif isinstance(target, torch.nn.Module):
            _BY_INSTANCE[target] = declaration
        else:
            raise TypeError(
                "register_attention_module() needs a torch.nn.Module subclass, a dotted class name or a module "
                f"instance, got {type(target).__name__}"
            )
    return target


def attention_output(index: int | None = None, *, weights=None, kind=None, stack=None, layout=None, steps="auto"):
    """Class decorator: ``@attention_output(index=1)`` declares that forward returns weights at ``output[1]``.

    Give ``index`` (a tuple position) or ``weights`` (any form :func:`register_attention_module`
    takes), not both; with neither, ``index=1``. Also applicable to a module instance:
    ``attention_output(index=1)(model.decoder.attention)``.
    """
    if index is not None and weights is not None:
        raise TypeError("give index= or weights=, not both")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
        raise TypeError(
            f"index must be an int (the position of the weights in forward's returned tuple), got {index!r}"
        )
    spec = index if index is not None else (weights if weights is not None else 1)
    _check(spec, kind, stack, layout, steps)

    def decorate(target):
        return register_attention_module(target, spec, kind=kind, stack=stack, layout=layout, steps=steps)

    return decorate


def unregister_attention_module(target) -> None:
    """Remove a declaration made for ``target`` (class, name or instance); unknown targets are ignored."""
    with _LOCK:
        if isinstance(target, type):
            _BY_CLASS.pop(target, None)
        elif isinstance(target, str):
            _BY_NAME.pop(target, None)
        elif isinstance(target, torch.nn.Module):
            _BY_INSTANCE.pop(target, None)


def declaration_for(module) -> AttentionDeclaration | None:
    """The declaration that applies to ``module``: its own, else its class's (nearest in the MRO), else by name."""
    with _LOCK:
        if not (_BY_INSTANCE or _BY_CLASS or _BY_NAME):
            return None
        try:
            own = _BY_INSTANCE.get(module)
        except TypeError:  # unhashable module
            own = None
        if own is not None:
            return own
        for cls in type(module).__mro__:
            if cls in _BY_CLASS:
                return _BY_CLASS[cls]
            if _BY_NAME:
                for key in (f"{cls.__module__}.{cls.__qualname__}", cls.__qualname__, cls.__name__):
                    if key in _BY_NAME:
                        return _BY_NAME[key]
    return None


def declared_names() -> list[str]:
    """Readable names of everything declared (for messages)."""
    with _LOCK:
        names = [f"{c.__module__}.{c.__qualname__}" for c in _BY_CLASS]
        names += list(_BY_NAME)
        names += [f"<{type(m).__name__} instance>" for m in list(_BY_INSTANCE.keys())]
    return names
