"""Bounds a capture checks before the model runs, so bad input fails with a clear message and not
deep inside torch (or after minutes of work).

* Length: an input longer than the model's learned absolute positions (BERT's 512) is refused
  at the capture's forward pre-hook with :func:`check_length`'s message
  (its length and the limit). Models with relative or rotary positions have no such limit.
* Selections: ``layers=`` and ``heads=`` lists longer than any model has are refused at once
  (not sorted, hashed and compared entry by entry).
* Batch and lengths: the memory guard (:mod:`attn_plugins.budget`) refuses a forward whose
  attention would exceed its budget, from batch x heads x queries x keys, before it runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .errors import InputError

MAX_TOKENS_DEFAULT = 512
# config attributes that hold the number of absolute positions a model can embed, most common first
POSITION_ATTRIBUTES = ("max_position_embeddings", "n_positions", "max_positions", "max_sequence_length")
MAX_SELECTION = 65536  # more layers or heads than any model has: a selection this long is a mistake
_POSITION_NAMES = ("pos", "wpe")
_LENGTH_INPUTS = (
    ("input_ids", False),
    ("inputs_embeds", True),
    ("decoder_input_ids", False),
    ("decoder_inputs_embeds", True),
)


def position_limit(model: Any) -> int | None:
    """The number of positions ``model`` (or a config) can embed, where its config says.

    Args:
        model: a model with a ``config``, or a config.

    Returns:
        The first positive ``max_position_embeddings``, ``n_positions``... of the config; ``None``
        for models without absolute positions or without a config.
    """
    config = getattr(model, "config", model)
    for attr in POSITION_ATTRIBUTES:
        value = getattr(config, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def token_limit(model: Any, max_tokens: int | None = MAX_TOKENS_DEFAULT) -> int | None:
    """The smaller of ``max_tokens`` and :func:`position_limit` (``None``: no limit known).

    Args:
        model: a model or its config.
        max_tokens: the caller's own limit (``None``: only the model's).

    Returns:
        The limit in tokens, or ``None``.
    """
    positions = position_limit(model)
    limits = [n for n in (max_tokens, positions) if n is not None]
    return min(limits) if limits else None


def check_length(model: Any, length: Any, max_tokens: int | None = None) -> None:
    """Refuse an input longer than the model can take (or than ``max_tokens``) with an
    :class:`InputError` naming its length and the limit; what a capture of text calls before the
    forward, so an over-long input fails here and not inside the position embedding.

    Args:
        model: the model (or its config) the input is for.
        length: the input's length in tokens, or the encoding / ``input_ids`` tensor itself
            (its last dimension).
        max_tokens: the caller's own limit (``None``: only the model's).
    """
    if not isinstance(length, int):
        ids = length["input_ids"] if isinstance(length, dict) or hasattr(length, "keys") else length
        length = int(ids.shape[-1])
    positions = position_limit(model)
    limit = token_limit(model, max_tokens)
    if limit is None or length <= limit:
        return
    name = type(model).__name__
    if positions is not None and limit == positions:
        raise InputError(
            f"the input is {length} tokens long, over the limit of {limit} tokens for this model "
            f"({name} has {positions} positions): shorten the text"
        )
    more = f" (up to the model's {positions} positions)" if positions is not None else ""
    raise InputError(
        f"the input is {length} tokens long, over the limit of {limit} tokens (max_tokens): shorten "
        f"the text or raise max_tokens / --max-tokens{more}"
    )


def check_selection(name: str, values: Sequence[Any] | None) -> None:
    """Refuse a ``layers=`` / ``heads=`` selection longer than :data:`MAX_SELECTION` entries.

    Args:
        name: ``"layers"`` or ``"heads"`` (named in the message).
        values: the selection (``None``: all, always accepted).
    """
    if values is not None and len(values) > MAX_SELECTION:
        raise InputError(
            f"{name}= selects {len(values)} entries; no model has more than {MAX_SELECTION} "
            f"{name}: pass the indices you want (or None for all)"
        )


def absolute_position_limit(model: torch.nn.Module) -> int | None:
    """The length limit of a model with learned absolute position embeddings.

    Args:
        model: the model; its config gives the limit, and an ``nn.Embedding`` named like a position
            table (``pos``, ``wpe``) of that size confirms the positions are absolute.

    Returns:
        The limit in tokens, or ``None`` (no known limit: relative or rotary positions).
    """
    limit = position_limit(model)
    if limit is None:
        return None
    for name, module in model.named_modules():
        if (
            isinstance(module, torch.nn.Embedding)
            and module.num_embeddings in (limit, limit + 2)
            and any(part in name.rsplit(".", 1)[-1].lower() for part in _POSITION_NAMES)
        ):
            return limit
    return None


def check_forward_inputs(model: Any, limit: int | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse a forward whose input (or decoder input) is longer than the model's absolute positions.

    Args:
        model: the captured model.
        limit: :func:`absolute_position_limit` of the model (``None``: nothing to check).
        args: the forward's positional arguments (the first may be the token ids).
        kwargs: its keyword arguments.
    """
    if limit is None:
        return
    positions = kwargs.get("position_ids")
    if isinstance(positions, torch.Tensor) and positions.numel():
        # the caller chose the positions itself (e.g. modulo the limit for a long input): they are what
        # the position embedding is indexed with, so they, not the length, must fit
        highest = int(positions.max())
        if highest >= limit:
            check_length(model, highest + 1)
        return
    for name, embeds in _LENGTH_INPUTS:
        value = kwargs.get(name)
        if (
            value is None
            and name == "input_ids"
            and args
            and isinstance(args[0], torch.Tensor)
            and not args[0].is_floating_point()
        ):
            value = args[0]
        if isinstance(value, torch.Tensor) and value.dim() >= (3 if embeds else 2):
            past = _past_length(kwargs)
            check_length(model, int(value.shape[1]) + past)


def _past_length(kwargs: dict[str, Any]) -> int:
    cache = kwargs.get("past_key_values")
    if cache is None:
        return 0
    try:
        return int(cache.get_seq_length()) if hasattr(cache, "get_seq_length") else int(cache[0][0].shape[-2])
    except Exception:  # noqa: BLE001 - an unknown cache layout: nothing to add
        return 0


def check_indices(name: str, values: Any) -> list[int | str] | None:
    """``layers=`` / ``heads=`` of a capture as a list, or a clear TypeError/ValueError.

    Args:
        name: ``"layers"`` (indices or module paths) or ``"heads"`` (indices).
        values: one index or path, a sequence, set, range or tensor of them, or ``None``.

    Returns:
        The entries as a list (tensor entries as Python ints); ``None`` for all.
    """
    if values is None:
        return None
    if isinstance(values, (int, str)):
        values = [values]
    if hasattr(values, "__len__"):
        check_selection(name, values)
    if not isinstance(values, Sequence) and not isinstance(values, (set, range, torch.Tensor)):
        raise TypeError(
            f"{name} must be a list of indices{' or module paths' if name == 'layers' else ''}, "
            f"got {type(values).__name__}"
        )
    values = [v.item() if isinstance(v, torch.Tensor) else v for v in values]
    if not values:
        raise ValueError(f"{name}=[] selects nothing; pass None to capture all {name}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, str)) or (name == "heads" and not isinstance(v, int)):
            paths = " or module paths" if name == "layers" else ""
            raise TypeError(f"{name} entries must be integers{paths}, got {v!r}")
    checked: list[int | str] = values
    return checked
