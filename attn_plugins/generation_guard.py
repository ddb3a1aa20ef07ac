"""The ``generate()`` wrapper a capture puts on the model instance while it is open.

One wrapper per model, shared by every capture of it (other threads may hold their own): a call
made in a capturing thread or task goes through that capture's ``run_generate`` (the memory guard counts
every step and beam the call may take, the steps become one record); any
other call goes straight to the model's own ``generate``. The user's own instance attribute, if
they set one, is what the wrapper calls and what is put back when the last capture leaves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from .adapters.scope import MISSING


def generate_wrapper(model: Any) -> Callable[[Any, Any], Callable[..., Any]]:
    """The :class:`~attn_plugins.adapters.scope.SharedPatch` replacement for ``model.generate``.

    Args:
        model: the captured model (a transformers generation model).

    Returns:
        ``replacement(original, patch)``: builds the shared ``generate`` that routes a call to the
        capture active in the calling thread or task, or to the model's own ``generate``.
    """

    def replacement(original: Any, patch: Any) -> Callable[..., Any]:
        own = original if original is not MISSING else None  # the user's instance attribute, if any

        def generate(*args: Any, **kwargs: Any) -> Any:
            method = own if own is not None else type(model).generate.__get__(model)
            session = patch.active()  # the capture of this thread or task, if any
            if session is None:
                return method(*args, **kwargs)
            return session.run_generate(method, args, kwargs)

        functools.update_wrapper(generate, own if own is not None else type(model).generate)
        return generate

    return replacement


def generate_new_tokens(model: Any, kwargs: dict[str, Any]) -> int:
    """The most tokens a ``generate()`` call may add, from its arguments or the model's generation config.

    Args:
        model: the model whose ``generation_config`` is read when the call passes none.
        kwargs: the ``generate()`` call's keyword arguments.

    Returns:
        The token count (see :func:`new_tokens`).
    """
    config = kwargs.get("generation_config") or getattr(model, "generation_config", None)
    return new_tokens(kwargs, config)


def new_tokens(kwargs: dict[str, Any], config: Any) -> int:
    """The most tokens a generate() call may add (max_new_tokens, or max_length minus the input).

    Args:
        kwargs: the ``generate()`` call's keyword arguments (read first).
        config: a ``GenerationConfig`` or ``None``.

    Returns:
        ``max_new_tokens``, else ``max_length`` minus the input length, else transformers' default 20.
    """
    sources: tuple[dict[str, Any], ...] = (kwargs, vars(config) if config is not None else {})
    for source in sources:
        value = source.get("max_new_tokens")
        if isinstance(value, int):
            return value
    ids = kwargs.get("input_ids")
    for source in sources:
        value = source.get("max_length")
        if isinstance(value, int):
            return max(value - (int(ids.shape[-1]) if isinstance(ids, torch.Tensor) else 0), 0)
    return 20  # transformers' default max_length
