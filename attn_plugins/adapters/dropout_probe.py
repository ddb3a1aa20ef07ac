"""Probabilities before dropout, for modules that hand back their weights after it.

In training mode an eager attention module returns ``dropout(softmax(...))``: some entries zeroed,
the rest scaled by ``1 / (1 - p)``. The recompute paths (sdpa, flex, flash, ``nn.MultiheadAttention``)
store the probabilities before dropout, so the eager paths do too: while a watched module runs,
the first 4-D tensor it passes to ``torch.nn.functional.dropout`` (what ``nn.Dropout`` and the
modeling files' ``eager_attention_forward`` call) is the probabilities, and is kept. The wrapper
(:class:`~attn_plugins.adapters.scope.SharedPatch`) calls the original unchanged, so the model's
dropout masks and random numbers are untouched; outside a watched module in this thread it only
passes the call on.
"""

from __future__ import annotations

import threading

import torch

from .scope import attribute_patch

_PROBES = threading.local()  # the probes of the watched modules running in this thread (a stack)


class Probe:
    """Collects the 4-D inputs of dropout calls made while it is on this thread's stack.

    Args:
        limit: how many to keep (1: the module's attention probabilities; ``None``: all, in order).
    """

    def __init__(self, limit: int | None = 1) -> None:
        self.limit = limit
        self.seen: list[torch.Tensor] = []

    def __enter__(self) -> Probe:
        self.seen = []
        stack = getattr(_PROBES, "stack", None)
        if stack is None:
            stack = _PROBES.stack = []
        stack.append(self)
        return self

    def __exit__(self, *exc) -> None:
        stack = getattr(_PROBES, "stack", None)
        if stack and self in stack:
            stack.remove(self)

    def first(self, like: torch.Tensor) -> torch.Tensor:
        """The probabilities before dropout when one was seen with ``like``'s shape, else ``like``."""
        if self.seen and self.seen[0].shape == like.shape:
            return self.seen[0]
        return like


def _make_dropout(original, _patch):
    def dropout(input, p=0.5, training=True, inplace=False):  # noqa: A002 - torch's own argument name
        stack = getattr(_PROBES, "stack", None)
        if stack and training and p > 0 and isinstance(input, torch.Tensor) and input.dim() == 4:
            probe = stack[-1]
            if probe.limit is None or len(probe.seen) < probe.limit:
                probe.seen.append(input.detach().clone() if inplace else input.detach())
        return original(input, p, training, inplace)

    dropout.__wrapped__ = original
    return dropout


def watch_dropout(session):
    """Share the ``torch.nn.functional.dropout`` wrapper for ``session``; release the returned patch."""
    return attribute_patch(torch.nn.functional, "dropout", session, _make_dropout)
