"""Attention blocks ready for analysis: a record, a layer or a plain tensor turned into
:class:`View` s (float64 weights with the query/key masks that say which rows and columns are
real), the record's layers to analyse, and the per-head reductions every statistic shares.

Every analysis function accepts:

* an :class:`~attn_plugins.record.AttentionRecord` (one result per selected layer: ``[layers, heads]``),
* a list of :class:`~attn_plugins.record.LayerAttention` or a single one (``[heads]``),
* a plain tensor or array ``[batch, heads, q, k]``, ``[heads, q, k]`` (``[heads]``) or ``[q, k]`` (a scalar).

Masks come from the record's inputs (``attention_mask``, ``decoder_attention_mask``) or are given
as ``attention_mask=`` (``[batch, k]`` or ``[k]``; used for the query rows too when ``q == k``)
and ``query_mask=``. Padded query rows are left out of every average and padded keys out of every
sum. Rows are not renormalised: in a correct model the weight on padded keys is 0, and
:func:`attn_plugins.analysis.diagnostics.diagnose` reports it when it is not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..record import AttentionRecord, LayerAttention
from .tokens import token_mask

ANY = ...


@dataclass
class View:
    """One attention block ready for analysis."""

    weights: torch.Tensor  # [b, h, q, k] float64
    query_mask: torch.Tensor  # [b, q] bool
    key_mask: torch.Tensor  # [b, k] bool
    label: str = ""
    heads: list[int] = field(default_factory=list)
    kind: str = "self"
    stack: str | None = None
    index: int = 0
    query_tokens: list[list[str]] | None = None
    key_tokens: list[list[str]] | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.weights.shape)

    def query_positions(self) -> torch.Tensor:
        """Key position of each query row (self-attention: the last ``q`` of the ``k`` positions)."""
        if self.kind != "self":
            raise ValueError(
                f"{self.label or 'this layer'} is {self.kind}-attention: queries and keys are different sequences, "
                "so positional statistics (distance, previous/next token, self) are not defined"
            )
        q, k = self.weights.shape[-2:]
        if q > k:
            raise ValueError(
                f"{self.label or 'this block'} has more queries ({q}) than keys ({k}); "
                "positional statistics need self-attention with q <= k"
            )
        return torch.arange(k - q, k)

    def valid_pairs(self) -> torch.Tensor:
        """``[b, 1, q, k]`` bool: query row and key column both real."""
        return (self.query_mask[:, :, None] & self.key_mask[:, None, :])[:, None]

    def support(self) -> torch.Tensor:
        """``[b, q, k]`` bool: the keys each real query could attend to.

        A key is in a row's support when it is real (not padding) and at least one head of this
        layer gives it a non-zero weight; this recovers causal, sliding-window and block masks
        without knowing the model.
        """
        reachable = (torch.nan_to_num(self.weights, nan=0.0).abs() > 0).any(dim=1)
        return reachable & self.key_mask[:, None, :] & self.query_mask[:, :, None]

    def select_item(self, item: int | None) -> View:
        if item is None:
            return self
        b = self.weights.shape[0]
        if not -b <= item < b:
            raise IndexError(f"item {item} does not exist: the batch has {b} item(s)")
        item = item % b
        return View(
            weights=self.weights[item : item + 1],
            query_mask=self.query_mask[item : item + 1],
            key_mask=self.key_mask[item : item + 1],
            label=self.label,
            heads=self.heads,
            kind=self.kind,
            stack=self.stack,
            index=self.index,
            query_tokens=[self.query_tokens[item]] if self.query_tokens else None,
            key_tokens=[self.key_tokens[item]] if self.key_tokens else None,
        )


# ---------------------------------------------------------------------------------------------
# building views
# ---------------------------------------------------------------------------------------------
def _as_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64)
    return torch.as_tensor(x, dtype=torch.float64)


def _fit_mask(mask: Any, batch: int, length: int, what: str, strict: bool) -> torch.Tensor:
    """A ``[batch, length]`` bool mask from a user or record mask (``None``: all real)."""
    if mask is None:
        return torch.ones(batch, length, dtype=torch.bool)
    m = torch.as_tensor(mask).detach().to("cpu")
    if m.dim() == 1:
        m = m[None].expand(batch, -1)
    if m.dim() != 2:
        raise ValueError(f"{what} must be [batch, length] or [length], got shape {tuple(m.shape)}")
    if m.shape[0] != batch:
        if m.shape[0] == 1:
            m = m.expand(batch, -1)
        else:
            raise ValueError(f"{what} has batch {m.shape[0]} but the attention has batch {batch}")
    if m.shape[1] != length:
        if m.shape[1] > length and not strict:  # e.g. a generation mask covering more positions
            m = m[:, -length:]
        elif strict:
            raise ValueError(f"{what} has length {m.shape[1]} but the attention has {length} positions")
        else:
            return torch.ones(batch, length, dtype=torch.bool)
    return m != 0


def _fit_tokens(tokens: Any, length: int) -> list[list[str]] | None:
    if not tokens:
        return None
    out = []
    for row in tokens:
        row = list(row)
        if len(row) >= length:
            out.append(row[len(row) - length :])
        else:
            out.append(row + [""] * (length - len(row)))
    return out


def _tensor_view(
    x: Any,
    attention_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
    label: str = "",
    tokens: Any = None,
    kind: str = "self",
) -> View:
    w = _as_tensor(x)
    if w.dim() == 2:
        w = w[None, None]
    elif w.dim() == 3:
        w = w[None]
    if w.dim() != 4:
        raise ValueError(f"attention must be [batch, heads, q, k], [heads, q, k] or [q, k]; got shape {tuple(w.shape)}")
    b, h, q, k = w.shape
    key_mask = _fit_mask(attention_mask, b, k, "attention_mask", strict=True)
    if query_mask is not None:
        qmask = _fit_mask(query_mask, b, q, "query_mask", strict=True)
    elif attention_mask is not None and q <= k and kind == "self":
        qmask = key_mask[:, k - q :]
    else:
        qmask = torch.ones(b, q, dtype=torch.bool)
    if tokens is not None and tokens and isinstance(tokens[0], str):
        tokens = [list(tokens)] * b
    tokens = _fit_tokens(tokens, k)
    return View(
        w,
        qmask,
        key_mask,
        label=label,
        heads=list(range(h)),
        kind=kind,
        key_tokens=tokens,
        query_tokens=_fit_tokens(tokens, q) if kind == "self" else None,
    )


def layer_label(layer: LayerAttention) -> str:
    """``"L3"``, ``"encoder L3"``, ``"decoder cross L1"``: short and unique within a record."""
    parts = []
    if layer.stack:
        parts.append(str(layer.stack))
    if layer.kind != "self":
        parts.append(layer.kind)
    parts.append(f"L{layer.index}")
    return " ".join(parts)


def record_view(record: AttentionRecord, layer: LayerAttention) -> View:
    w = _as_tensor(layer.weights)
    b, h, q, k = w.shape
    enc_mask = record.inputs.get("attention_mask")
    dec_mask = record.inputs.get("decoder_attention_mask")
    enc_tokens, dec_tokens = record.tokens, record.decoder_tokens
    if layer.stack == "decoder":
        qm, qt = dec_mask, dec_tokens
        km, kt = (enc_mask, enc_tokens) if layer.kind == "cross" else (dec_mask, dec_tokens)
    elif layer.kind == "cross" and dec_tokens is None and not record.select(layer.stack, "self"):
        # a cross-only record (a hand-written Luong/Bahdanau decoder): its tokens are the source
        # (the keys); the decoder's steps have no strings (as in the BertViz panels: "step i")
        qm, km = dec_mask, enc_mask
        qt, kt = [[f"step {i}" for i in range(q)]] * b, enc_tokens
    elif layer.kind == "cross":  # a decoder-only stack attending to some other sequence
        qm, qt, km, kt = enc_mask, enc_tokens, None, None
    else:
        qm = km = enc_mask
        qt = kt = enc_tokens
    return View(
        weights=w,
        query_mask=_fit_mask(qm, b, q, "mask", strict=False),
        key_mask=_fit_mask(km, b, k, "mask", strict=False),
        label=layer_label(layer),
        heads=layer.head_indices,
        kind=layer.kind,
        stack=layer.stack,
        index=layer.index,
        query_tokens=_fit_tokens(qt, q),
        key_tokens=_fit_tokens(kt, k),
    )


def select_layers(
    record: AttentionRecord, layers: Any = None, stack: Any = ANY, kind: str | None = "self"
) -> list[LayerAttention]:
    """The record's layers to analyse: ``layers`` (indices, negative from the end, or LayerAttention
    objects) among those of ``stack``/``kind`` (default: every self-attention layer, record order)."""
    pool = [
        layer
        for layer in record.layers
        if (stack is ANY or layer.stack == stack) and (kind is None or layer.kind == kind)
    ]
    if not pool:
        have = sorted({(layer.stack, layer.kind) for layer in record.layers}, key=str)
        raise ValueError(f"the record has no {kind or ''} attention layers for stack={stack!r}; it has {have}")
    if layers is None:
        return pool
    if isinstance(layers, (int, LayerAttention)):
        layers = [layers]
    chosen = []
    for sel in layers:
        if isinstance(sel, LayerAttention):
            chosen.append(sel)
            continue
        if len({layer.stack for layer in pool}) > 1:
            raise ValueError(
                "layer indices are ambiguous in an encoder-decoder record: pass stack='encoder' or 'decoder'"
            )
        indices = [layer.index for layer in pool]
        n = max(indices) + 1
        target = sel % n if -n <= sel < 0 else sel
        hit = [layer for layer in pool if layer.index == target]
        if not hit:
            raise IndexError(f"no captured {kind}-attention layer {sel}; captured layers: {sorted(indices)}")
        chosen.append(hit[0])
    return chosen


def views(
    obj: Any,
    *,
    attention_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
    tokens: Any = None,
    layers: Any = None,
    stack: Any = ANY,
    kind: str | None = "self",
    item: int | None = None,
) -> tuple[list[View], str]:
    """Views for ``obj`` and the shape of the result: ``"layers"`` ([L, H]), ``"heads"`` ([H]) or ``"scalar"``."""
    if isinstance(obj, AttentionRecord):
        out = [record_view(obj, layer) for layer in select_layers(obj, layers, stack, kind)]
        if attention_mask is not None or query_mask is not None:
            out = [_override_masks(v, attention_mask, query_mask) for v in out]
        shape = "layers"
    elif isinstance(obj, LayerAttention):
        v = _tensor_view(obj.weights, attention_mask, query_mask, layer_label(obj), tokens, obj.kind)
        v.heads, v.stack, v.index = obj.head_indices, obj.stack, obj.index
        out, shape = [v], "heads"
    elif isinstance(obj, (list, tuple)) and obj and all(isinstance(o, LayerAttention) for o in obj):
        out = []
        for layer in obj:
            v = _tensor_view(layer.weights, attention_mask, query_mask, layer_label(layer), tokens, layer.kind)
            v.heads, v.stack, v.index = layer.head_indices, layer.stack, layer.index
            out.append(v)
        shape = "layers"
    else:
        dims = _as_tensor(obj).dim()
        out = [_tensor_view(obj, attention_mask, query_mask, "", tokens, kind or "self")]
        shape = "scalar" if dims == 2 else "heads"
    return [v.select_item(item) for v in out], shape


def _override_masks(view: View, attention_mask: torch.Tensor | None, query_mask: torch.Tensor | None) -> View:
    b, _, q, k = view.weights.shape
    if attention_mask is not None:
        view.key_mask = _fit_mask(attention_mask, b, k, "attention_mask", strict=True)
        if query_mask is None and view.kind == "self":
            view.query_mask = view.key_mask[:, k - q :]
    if query_mask is not None:
        view.query_mask = _fit_mask(query_mask, b, q, "query_mask", strict=True)
    return view


def reduce_rows(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` ``[b, h, q]`` over the rows where ``rows`` (``[b, q]`` or ``[b, h, q]``) is
    true, pooled over the batch: ``[h]`` (NaN for a head with no such row)."""
    if rows.dim() == 2:
        rows = rows[:, None, :].expand_as(values)
    rows = rows.to(torch.bool)
    total = torch.where(rows, values, torch.zeros((), dtype=values.dtype)).sum(dim=(0, 2))
    count = rows.sum(dim=(0, 2)).to(values.dtype)
    out = total / count
    return torch.where(count > 0, out, torch.full_like(out, float("nan")))


def assemble(per_view: list[torch.Tensor], shape: str) -> torch.Tensor:
    """Stack per-view ``[h]`` results into the documented output shape."""
    if shape == "scalar":
        return per_view[0][0]
    if shape == "heads":
        return per_view[0]
    width = max(t.shape[0] for t in per_view)
    out = torch.full((len(per_view), width), float("nan"), dtype=torch.float64)
    for i, t in enumerate(per_view):
        out[i, : t.shape[0]] = t
    return out


def key_selection(view: View, special: Any, what: str) -> torch.Tensor:
    """``[b, k]`` bool mask of the keys chosen by ``special`` for ``view``.

    ``special`` is a set/list of token strings or a predicate (needs tokens), a bool mask
    (``[k]`` or ``[b, k]``), or an iterable of key indices.
    """
    b, _, _, k = view.weights.shape
    if isinstance(special, torch.Tensor) or (hasattr(special, "dtype") and hasattr(special, "shape")):
        m = torch.as_tensor(special)
        if m.dtype == torch.bool:
            return _fit_mask(m, b, k, what, strict=True)
        special = [int(i) for i in m.reshape(-1).tolist()]
    if callable(special) or (
        isinstance(special, (set, frozenset, list, tuple)) and special and all(isinstance(s, str) for s in special)
    ):
        if not view.key_tokens:
            raise ValueError(f"{what}: choosing keys by token needs tokens (capture with a tokenizer, or pass tokens=)")
        return token_mask(view.key_tokens, special)
    if isinstance(special, Iterable):
        out = torch.zeros(b, k, dtype=torch.bool)
        for i in special:
            out[:, int(i)] = True
        return out
    raise TypeError(
        f"{what}: expected token strings, a predicate, a bool mask or key indices; got {type(special).__name__}"
    )
