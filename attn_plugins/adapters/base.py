"""The adapter contract: everything a third-party adapter needs, and nothing else.

An adapter teaches :func:`attn_plugins.capture` one kind of model. It finds the model's attention
modules (:class:`Target`), hooks them while the capture is active and, for every call of an
attention module, hands the probabilities to the :class:`Session` it was created with:

    call = session.begin_call(target, q_len, k_len)   # counts the call; None when not selected
    if call is not None:
        session.emit(call, weights)                   # heads, storage dtype/device, the record

Asking before computing keeps unselected layers free: an adapter that recomputes probabilities
only does so when :meth:`Session.begin_call` returned a :class:`Call`. Everything else (which
layers and heads were asked for, in which dtype and on which device blocks are kept, the memory
budget, streaming to disk, assembling records) is the session's job.

Register the adapter class under the entry point group ``attn_plugins.adapters``
(``my_adapter = "my_package.module:MyAdapter"``), or with
``attn_plugins.adapters.ADAPTERS.register("mine", MyAdapter)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

__all__ = ["Adapter", "Call", "Session", "Target"]


@dataclass(eq=False)
class Target:
    """One attention module the capture watches.

    Attributes:
        name: the module's path in the model (``"encoder.layer.0.attention.self"``); a record layer's name.
        stack: ``"encoder"``, ``"decoder"``, another submodel's name, or ``None`` for a single stack.
        kind: ``"self"`` or ``"cross"`` attention.
        owner: the module whose forward is one pass (usually the model itself); layer indices count the
            calls per ``(owner, stack, kind)`` within one pass.
        module: the attention module itself (used for memory estimates and messages).
    """

    name: str
    stack: str | None
    kind: str  # "self" or "cross"
    owner: object  # the module whose forward is one pass (hashable identity)
    module: object = None


@dataclass(frozen=True)
class Call:
    """A selected call of a target, returned by :meth:`Session.begin_call`.

    Attributes:
        target: the module that was called.
        index: its layer index (the how-manieth call of its ``(owner, stack, kind)`` in this pass).
        q_len: query length the call was counted with.
        k_len: key length the call was counted with.
        heads: the heads the capture keeps (sorted), or ``None`` for all; an adapter that recomputes
            probabilities may compute only these and say so with ``emit(..., heads_selected=True)``.
    """

    target: Target
    index: int
    q_len: int
    k_len: int
    heads: list[int] | None


@runtime_checkable
class Session(Protocol):
    """What the capture offers an adapter (``attn_plugins.capture`` implements it)."""

    keep_queries_keys: bool  # the user asked for per-head queries and keys beside the weights
    dtype: torch.dtype  # the storage dtype: recompute straight into it when you can

    def begin_pass(self, owner: object, inputs: Mapping[str, torch.Tensor]) -> None:
        """Called when ``owner``'s forward starts: layer counters restart; ``inputs`` (token ids,
        attention mask) become the record's inputs."""

    def begin_call(self, target: Target, q_len: int, k_len: int, *, num_heads: int | None = None) -> Call | None:
        """Count one call of ``target``; ``None`` when its layer is not selected (skip all work then).

        ``num_heads``: the call's head count, when the adapter will compute only ``call.heads``: a head the
        module does not have is refused here, before anything is computed.
        """

    def emit(
        self,
        call: Call,
        weights: torch.Tensor,
        *,
        queries: torch.Tensor | None = None,
        keys: torch.Tensor | None = None,
        heads_selected: bool = False,
        rows_from: int = 0,
    ) -> None:
        """Store the probabilities ``[batch, heads, q, k]`` of a selected call.

        ``queries`` ``[b, heads, q, d]`` and ``keys`` ``[b, kv_heads, k, d]`` (kept when
        ``keep_queries_keys``) hold every head; keys with fewer heads than the queries (grouped-query
        attention) are repeated. ``heads_selected``: ``weights`` already hold only ``call.heads``.
        ``rows_from``: the first query row that is new (a decoder re-run over its prefix).
        """

    def compute_dtype_for(self, input_dtype: torch.dtype) -> torch.dtype:
        """The dtype to recompute probabilities in from queries and keys of ``input_dtype``."""

    def note_precision(self, input_dtype: torch.dtype, compute_dtype: torch.dtype, how: str) -> None:
        """Record how probabilities were computed (shown in ``record.metadata["precision"]``)."""

    def warn_once(self, message: str) -> None:
        """A warning shown once per capture."""

    def current_segment(self, owner: object) -> object | None:
        """An opaque handle of the record ``owner``'s current pass writes into (``None`` before any call)."""

    def add_finisher(self, finish: Callable[[object, Any], None]) -> None:
        """``finish(segment, record)`` runs on every assembled record (add tokens, metadata)."""


class Adapter:
    """Base class of adapters. Subclasses set :attr:`name` and :attr:`priority` and implement the rest.

    The capture creates one instance per ``with`` block: ``find`` once, ``attach`` once, ``detach``
    once on exit (also when the body raised, also after a failed ``attach``), so ``detach`` must undo
    whatever part of ``attach`` happened and remove every hook.
    """

    name: ClassVar[str] = ""
    priority: ClassVar[int] = 50  # lower is tried first; the generic plain-PyTorch adapter has 90

    def __init__(self, session: Session) -> None:
        self.session = session

    @classmethod
    def matches(cls, model: torch.nn.Module) -> bool:
        """Whether this adapter handles ``model`` (cheap: no framework is imported for a no)."""
        return False

    def find(self, model: torch.nn.Module) -> list[Target]:
        """The attention modules to watch, in the order the model calls them."""
        raise NotImplementedError

    def attach(self, model: torch.nn.Module) -> None:
        """Install hooks that call ``self.session.begin_call`` / ``emit`` for the found targets."""
        raise NotImplementedError

    def detach(self) -> None:
        """Remove everything :meth:`attach` installed."""
        raise NotImplementedError
