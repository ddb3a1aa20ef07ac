"""Attention knockout: block attention from chosen query positions to chosen key positions.

    with ap.knockout(model, queries=[0], keys=[3, 4], layers=[2, 3]):
        model(**batch)

The edges are removed through the mask the kernel receives: for the duration, the model's entry in
transformers' ``AttentionInterface`` (``"sdpa"``, or ``"eager"``, whose default is each modeling
file's own ``eager_attention_forward``) is wrapped; for calls from the chosen blocks the wrapper
adds the blocked edges to ``attention_mask`` in the kernel's own format (boolean: ``False``; additive
float: the dtype's minimum) before calling the original. Where no mask was passed, the wrapper
builds one (with the causal triangle the kernel would have applied). Softmax then renormalises each
query row over its remaining keys, exactly as an eager model with those scores at ``-inf``.
Positions index the padded sequence the kernel sees. transformers keeps no ``"eager"`` entry in the
interface (each file passes its own function as the default), so for an eager model the wrapper is
added under ``"eager"`` for the duration and calls the calling module's own file's function. A query row
left with no key is undefined (every kernel returns something different), so leave each query at least one key.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .units import chosen_units

KERNELS = ("eager", "sdpa")
_LOCK = threading.RLock()
_MISSING = object()


def _pairs(
    edges: Iterable[Any] | None, queries: Iterable[int] | None, keys: Iterable[int] | None
) -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    if edges is not None:
        for edge in edges:
            if (
                not isinstance(edge, (tuple, list))
                or len(edge) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in edge)
            ):
                raise InputError(f"an edge is a (query, key) pair of ints, got {edge!r}")
            pairs.append((int(edge[0]), int(edge[1])))
    if (queries is None) != (keys is None):
        raise InputError("pass both queries= and keys= (every query is cut from every key), or edges=")
    if queries is not None and keys is not None:
        chosen_keys = list(keys)
        pairs.extend((int(q), int(k)) for q in queries for k in chosen_keys)
    if not pairs:
        raise InputError("knockout needs edges=[(query, key), ...] or queries= and keys=")
    return pairs


def _impl_of(module: nn.Module, model: nn.Module) -> str | None:
    config = getattr(module, "config", None) or getattr(model, "config", None)
    return getattr(config, "_attn_implementation", None)


def _eager_default(module: nn.Module) -> Callable[..., Any]:
    fn = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if not callable(fn):
        raise InputError(f"{type(module).__name__}'s modeling file has no eager_attention_forward to wrap")
    return fn  # type: ignore[no-any-return]


def blocked_mask(
    pairs: Iterable[tuple[int, int]],
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask: torch.Tensor | None,
    module: nn.Module,
    kernel: str,
    kwargs: Mapping[str, Any],
) -> torch.Tensor:
    """``attention_mask`` with the ``pairs`` removed, in the kernel's format."""
    if attention_mask is not None:
        q_len, k_len = attention_mask.shape[-2], attention_mask.shape[-1]
    else:
        q_len, k_len = query.shape[-2], key.shape[-2]
    blocked = torch.zeros(q_len, k_len, dtype=torch.bool, device=query.device)
    for q, k in pairs:
        if not (-q_len <= q < q_len and -k_len <= k < k_len):
            raise InputError(f"edge ({q}, {k}) is outside this call's {q_len} queries x {k_len} keys")
        blocked[q, k] = True
    if attention_mask is None:
        allowed = ~blocked
        causal = kwargs.get("is_causal")
        causal = getattr(module, "is_causal", kernel == "sdpa") if causal is None else causal
        if kernel == "sdpa" and causal and q_len > 1:
            allowed &= torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril()
        allowed = allowed[None, None]
        if kernel == "sdpa":
            return allowed
        zero = torch.zeros((), dtype=query.dtype, device=query.device)
        return torch.where(allowed, zero, torch.finfo(query.dtype).min)
    if attention_mask.dtype == torch.bool:
        return attention_mask & ~blocked
    return attention_mask.masked_fill(blocked, torch.finfo(attention_mask.dtype).min)


def _wrapper(
    kernel: str, original: Any, targets: Mapping[int, Any], pairs: list[tuple[int, int]]
) -> Callable[..., Any]:
    def attn_plugins_knockout_wrapper(
        module: nn.Module,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        fn = original if original is not _MISSING else _eager_default(module)
        if id(module) in targets:
            attention_mask = blocked_mask(pairs, query, key, attention_mask, module, kernel, kwargs)
        return fn(module, query, key, value, attention_mask, *args, **kwargs)

    return attn_plugins_knockout_wrapper


@contextlib.contextmanager
def knockout(
    model: nn.Module,
    edges: Iterable[Any] | None = None,
    *,
    queries: Iterable[int] | None = None,
    keys: Iterable[int] | None = None,
    layers: Iterable[int | str] | None = None,
) -> Iterator[list[str]]:
    """Block attention along query->key edges in chosen blocks while inside the ``with`` block.

    Args:
        model: a transformers model running ``"eager"`` or ``"sdpa"`` attention.
        edges: ``[(query position, key position), ...]``.
        queries, keys: every query in ``queries`` is cut from every key in ``keys`` (with or instead of ``edges``).
        layers: the blocks (indices or paths, as :func:`ablate`); default every block.

    Returns:
        A context manager yielding the paths of the blocks edited.

    Raises:
        InputError: bad edges, unknown layers, a kernel other than eager/sdpa, ``nn.MultiheadAttention``
        (pass its ``attn_mask`` yourself).
    """
    from transformers.modeling_utils import AttentionInterface

    pairs = _pairs(edges, queries, keys)
    _, chosen = chosen_units(
        model,
        layers,
        unfused_reason="knockout edits transformers' attention masks; "
        "for nn.MultiheadAttention pass attn_mask to the module yourself",
    )
    kernels: dict[str, dict[int, Any]] = {}
    for unit in chosen:
        impl = _impl_of(unit.core, model)
        if impl not in KERNELS:
            raise InputError(
                f"{unit.name} runs {impl!r} attention; knockout supports {KERNELS} "
                "(model.set_attn_implementation('sdpa'))"
            )
        if impl == "eager":
            _eager_default(unit.core)
        kernels.setdefault(impl, {})[id(unit.core)] = unit
    mapping = AttentionInterface._global_mapping
    saved: dict[str, Any] = {}
    with _LOCK:
        try:
            for kernel, targets in kernels.items():
                saved[kernel] = mapping.get(kernel, _MISSING)
                mapping[kernel] = _wrapper(kernel, saved[kernel], targets, pairs)
            yield [u.name for u in chosen]
        finally:
            for kernel, original in saved.items():
                if original is _MISSING:
                    mapping.pop(kernel, None)
                else:
                    mapping[kernel] = original
