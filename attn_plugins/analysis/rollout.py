"""Attention rollout (Abnar & Zuidema 2020) and the raw attention of one query row.

Rollout treats each layer's attention as a mixing matrix and follows it down to the input:

1. fuse the heads of a layer (``head_fusion="mean"``, the paper's choice; ``"max"``/``"min"`` are
   the common variants of later work),
2. add the identity for the residual connection and re-normalise every row (``W + I`` with rows
   summing to 1 is the paper's ``0.5 W + 0.5 I``),
3. multiply the layers: ``R = A_L @ ... @ A_2 @ A_1``.

``R[i, j]`` is then how much of output token ``i`` is attributed to input token ``j``. Everything
works on plain tensors (``rollout_matrices``) or on an :class:`~attn_plugins.record.AttentionRecord`
(``rollout``); both keep the batch dimension. Padding needs no special care: a real query gives
exactly zero probability to a masked key, so padded positions never leak into real rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ..record import AttentionRecord

HEAD_FUSIONS = ("mean", "max", "min")


def as_batched(attentions: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], bool]:
    """Per-layer square self-attention ``[heads, q, q]`` or ``[batch, heads, q, q]`` as batched
    tensors, and whether the input was unbatched (so the result drops the batch again).

    Rollout and flow both chain layers, so they refuse cross-attention, cached steps and mixed shapes here.
    """
    if isinstance(attentions, torch.Tensor):
        attentions = [attentions]
    layers = []
    unbatched = None
    for i, a in enumerate(attentions):
        a = torch.as_tensor(a)
        if a.dim() == 3:
            a, this_unbatched = a.unsqueeze(0), True
        elif a.dim() == 4:
            this_unbatched = False
        else:
            raise ValueError(f"attention {i} must be [heads, q, k] or [batch, heads, q, k], got shape {tuple(a.shape)}")
        if unbatched is not None and this_unbatched != unbatched:
            raise ValueError("mix of batched and unbatched attention matrices")
        unbatched = this_unbatched
        if a.shape[-1] != a.shape[-2]:
            raise ValueError(
                f"attention {i} is {a.shape[-2]}x{a.shape[-1]} (query x key): rollout needs square self-attention "
                "(cross-attention and cached generation steps cannot be rolled out)"
            )
        layers.append(a)
    if not layers:
        raise ValueError("no attention matrices to roll out")
    shapes = {tuple(a.shape[-2:]) for a in layers} | set()
    if len(shapes) > 1 or len({a.shape[0] for a in layers}) > 1:
        raise ValueError(f"attention matrices have different shapes: {[tuple(a.shape) for a in layers]}")
    return layers, bool(unbatched)


def fuse_heads(attention: torch.Tensor, head_fusion: str = "mean") -> torch.Tensor:
    """``[batch, heads, q, k]`` -> ``[batch, q, k]``."""
    if head_fusion == "mean":
        return attention.mean(dim=1)
    if head_fusion == "max":
        return attention.amax(dim=1)
    if head_fusion == "min":
        return attention.amin(dim=1)
    raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")


def residual_attention(
    attention: torch.Tensor, *, head_fusion: str = "mean", add_residual: bool = True
) -> torch.Tensor:
    """One layer's mixing matrix: heads fused, identity added, rows normalised to sum 1.

    ``attention`` is ``[batch, heads, n, n]``; the result is ``[batch, n, n]`` in float64.
    Rows that are all zero (never the case for softmax rows) are left zero.
    """
    fused = fuse_heads(attention.to(torch.float64), head_fusion)
    if add_residual:
        fused = fused + torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
    sums = fused.sum(dim=-1, keepdim=True)
    return torch.where(sums > 0, fused / torch.where(sums > 0, sums, torch.ones_like(sums)), fused)


def rollout_matrices(
    attentions: Sequence[torch.Tensor],
    *,
    head_fusion: str = "mean",
    add_residual: bool = True,
    start_layer: int = 0,
) -> torch.Tensor:
    """Roll out a list of self-attention matrices (first layer first).

    Each entry is ``[batch, heads, n, n]`` (or ``[heads, n, n]``). Returns ``[batch, n, n]`` float64
    (``[n, n]`` for unbatched input) with ``R[b, i, j]``: share of output token ``i`` that comes
    from input token ``j``; every row sums to 1. ``start_layer`` skips the first layers.
    """
    layers, unbatched = as_batched(attentions)
    if not 0 <= start_layer < len(layers):
        raise ValueError(f"start_layer={start_layer} is out of range for {len(layers)} layers")
    result: torch.Tensor | None = None
    for attention in layers[start_layer:]:
        mixing = residual_attention(attention, head_fusion=head_fusion, add_residual=add_residual)
        result = mixing if result is None else torch.matmul(mixing, result)
    assert result is not None  # start_layer < len(layers): at least one layer
    return result[0] if unbatched else result


def self_layers(record: AttentionRecord, stack: Any, kind: str = "self") -> list[Any]:
    """The record's layers of ``stack`` that rollout and flow chain (an encoder-decoder's encoder by
    default), with a warning when the capture left layers or heads out (the chain then covers only those)."""
    if stack is ... and record.is_encoder_decoder:
        stack = "encoder"
    layers = record.select(stack, kind)
    if not layers:
        have = sorted({(layer.stack, layer.kind) for layer in record.layers}, key=str)
        raise ValueError(f"the record has no {kind}-attention layers for stack {stack!r}; it has {have}")
    indices = [layer.index for layer in layers]
    if indices != list(range(indices[0], indices[0] + len(indices))) or indices[0] != 0:
        warnings.warn(
            f"the record holds layers {indices} only: rollout and flow cover the captured layers, not the whole model",
            stacklevel=3,
        )
    heads = {tuple(layer.head_indices) for layer in layers}
    if any(layer.heads is not None for layer in layers):
        warnings.warn(
            f"the record holds a head selection {sorted(heads)}: heads are fused over those only", stacklevel=3
        )
    return layers


def rollout(
    record: AttentionRecord,
    *,
    stack: Any = ...,
    head_fusion: str = "mean",
    add_residual: bool = True,
    start_layer: int = 0,
) -> torch.Tensor:
    """Attention rollout of a record's self-attention layers: ``[batch, n, n]`` float64.

    ``stack`` picks ``"encoder"``/``"decoder"`` in an encoder-decoder record (default: encoder).
    """
    layers = self_layers(record, stack)
    return rollout_matrices(
        [layer.weights for layer in layers], head_fusion=head_fusion, add_residual=add_residual, start_layer=start_layer
    )


def valid_lengths(record: AttentionRecord, batch: int | None = None) -> list[int]:
    """How many real (unpadded) tokens each item has; right padding assumed when a mask exists."""
    mask = record.attention_mask
    n = record.layers[0].weights.shape[-1] if record.layers else 0
    size = batch if batch is not None else record.batch_size
    if mask is None or mask.dim() != 2:
        return [n] * size
    return [int(v) for v in mask[:, :n].sum(dim=-1).tolist()]


def resolve_query(query: Any, length: int, mask_row: torch.Tensor | None = None) -> int:
    """A query position among the real (unmasked) tokens of one item.

    ``query`` is an int indexing the real tokens (negative counts from the last real token), or
    ``"cls"``/``"first"`` (the first real token) or ``"last"`` (the last real token). Returns the
    position in the padded sequence.
    """
    if mask_row is not None:
        real = torch.nonzero(mask_row[:length]).flatten().tolist() or list(range(length))
    else:
        real = list(range(length))
    if query in ("cls", "first"):
        query = 0
    elif query == "last":
        query = -1
    if isinstance(query, bool) or not isinstance(query, int):
        raise TypeError(f"query must be an int, 'cls' or 'last', got {query!r}")
    if not -len(real) <= query < len(real):
        raise IndexError(f"query {query} is out of range for {len(real)} tokens")
    return int(real[query])


def raw_attention(
    record: AttentionRecord,
    *,
    query: int = 0,
    layer: int | str = -1,
    head: int | str | None = None,
    stack: Any = ...,
    kind: str = "self",
) -> torch.Tensor:
    """The attention of one query row: ``[batch, key]`` float64.

    ``layer``: position in the captured layers of the stack (``-1``: last) or ``"mean"`` (average
    of all captured layers). ``head``: a model head index, or ``None``/``"mean"`` for the average
    over the captured heads, or ``"max"``. ``query``: token position, ``"cls"`` or ``"last"``
    (the last real token of each item, for causal models).
    """
    layers = record.select("encoder" if stack is ... and record.is_encoder_decoder else stack, kind)
    if not layers:
        raise ValueError(f"the record has no {kind}-attention layers to read")
    if layer == "mean":
        chosen = layers
    else:
        if isinstance(layer, bool) or not isinstance(layer, int):
            raise TypeError(f"layer must be an int or 'mean', got {layer!r}")
        if not -len(layers) <= layer < len(layers):
            raise IndexError(f"layer {layer} is out of range: {len(layers)} layers captured")
        chosen = [layers[layer]]
    stacked = []
    for lay in chosen:
        w = lay.weights.to(torch.float64)
        if head is None or head == "mean":
            w = w.mean(dim=1)
        elif head == "max":
            w = w.amax(dim=1)
        else:
            if head not in lay.head_indices:
                raise IndexError(f"head {head} was not captured in layer {lay.index}; captured: {lay.head_indices}")
            w = w[:, lay.head_indices.index(head)]
        stacked.append(w)
    weights = torch.stack(stacked).mean(dim=0)  # [batch, q, k]
    mask = record.attention_mask
    rows = []
    for b in range(weights.shape[0]):
        mask_row = mask[b] if mask is not None and mask.dim() == 2 else None
        q = resolve_query(query, weights.shape[1], mask_row)
        rows.append(weights[b, q])
    return torch.stack(rows)
