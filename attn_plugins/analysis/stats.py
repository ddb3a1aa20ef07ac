"""Per-head statistics of attention (Clark et al. 2019, "What Does BERT Look At?").

Each function takes a record (result ``[layers, heads]``), a layer or list of layers, or a plain
tensor ``[batch, heads, q, k]`` / ``[heads, q, k]`` (result ``[heads]``) or ``[q, k]`` (a scalar),
and returns a float64 tensor. A head's value is the mean over the real query rows of the batch
(token-weighted; ``item=`` picks one batch item); padded keys are left out of every sum (see
:mod:`attn_plugins.analysis.blocks`).

* :func:`entropy`: ``-sum_j p_ij log p_ij`` (nats; ``base=2`` for bits; ``normalized=True``
  divides each row by the log of the number of keys it can reach, so 1 is uniform).
* :func:`mean_distance`: ``sum_j p_ij |i - j|`` in token positions.
* :func:`special_token_share`: ``sum_{j special} p_ij`` ([CLS], [SEP], BOS/EOS, punctuation by default).
* :func:`previous_token_share`, :func:`next_token_share`, :func:`self_share`: ``p_{i,i-1}``,
  ``p_{i,i+1}``, ``p_{i,i}``; rows whose neighbour does not exist or is padding are left out.
* :func:`head_stats`: all of them at once, as a :class:`HeadStats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .blocks import ANY, assemble, key_selection, reduce_rows, views
from .tokens import SPECIAL_TOKENS, is_punctuation, is_special_token

BOS_LIKE = frozenset(
    {"[CLS]", "<s>", "<bos>", "<cls>", "<|begin_of_text|>", "<|startoftext|>", "<|endoftext|>", "<|startoftranscript|>"}
)
EOS_LIKE = frozenset({"[SEP]", "</s>", "<eos>", "<sep>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>"})


def default_special(token: str) -> bool:
    """The default "special" keys: markup tokens ([CLS], [SEP], BOS/EOS, <|...|>) and punctuation."""
    return is_special_token(token) or is_punctuation(token)


DEFAULT_GROUPS = {
    "[CLS]/BOS": BOS_LIKE,
    "[SEP]/EOS": EOS_LIKE,
    "punctuation": is_punctuation,
}


def _plogp(p: torch.Tensor) -> torch.Tensor:
    """``p * log p`` with ``0 log 0 = 0`` (NaN/Inf propagate)."""
    safe = torch.where(p > 0, p, torch.ones((), dtype=p.dtype))
    return torch.where(p > 0, p * torch.log(safe), torch.where(p == 0, torch.zeros((), dtype=p.dtype), p * math.nan))


def _row_entropy(view: Any, base: float | None) -> torch.Tensor:
    """``[b, h, q]`` entropy of each row over the real keys."""
    p = torch.where(view.key_mask[:, None, None, :], view.weights, torch.zeros((), dtype=torch.float64))
    h = -_plogp(p).sum(dim=-1)
    if base is not None:
        h = h / math.log(base)
    return h


def entropy(
    attn: Any,
    *,
    normalized: bool = False,
    base: float | None = None,
    item: int | None = None,
    attention_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
    layers: Any = None,
    stack: Any = ANY,
    kind: str = "self",
) -> torch.Tensor:
    """Mean entropy of each head's attention rows.

    ``normalized=True`` divides each row's entropy by ``log(n)``, ``n`` the number of keys that row
    can reach (real keys that some head of the layer weights above 0: causal and window masks are
    honoured), and averages over rows with ``n >= 2``: 1.0 is uniform attention, 0.0 one token.
    """
    out = []
    vs, shape = views(
        attn, attention_mask=attention_mask, query_mask=query_mask, layers=layers, stack=stack, kind=kind, item=item
    )
    for v in vs:
        h = _row_entropy(v, None if normalized else base)
        rows = v.query_mask
        if normalized:
            n = v.support().sum(dim=-1).to(torch.float64)  # [b, q]
            rows = rows & (n >= 2)
            h = h / torch.log(torch.clamp(n, min=2))[:, None, :]
        out.append(reduce_rows(h, rows))
    return assemble(out, shape)


def uniform_entropy(
    attn: Any,
    *,
    base: float | None = None,
    item: int | None = None,
    attention_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
    layers: Any = None,
    stack: Any = ANY,
    kind: str = "self",
) -> torch.Tensor:
    """The entropy a uniform head would have on the same rows: mean of ``log n`` (the baseline
    Clark et al. draw beside the heads' entropies). Same shape as :func:`entropy`."""
    out = []
    vs, shape = views(
        attn, attention_mask=attention_mask, query_mask=query_mask, layers=layers, stack=stack, kind=kind, item=item
    )
    for v in vs:
        n = v.support().sum(dim=-1).to(torch.float64)
        h = torch.log(torch.clamp(n, min=1))
        if base is not None:
            h = h / math.log(base)
        h = h[:, None, :].expand(-1, v.weights.shape[1], -1)
        out.append(reduce_rows(h, v.query_mask))
    return assemble(out, shape)


def mean_distance(
    attn: Any,
    *,
    item: int | None = None,
    attention_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
    layers: Any = None,
    stack: Any = ANY,
    kind: str = "self",
) -> torch.Tensor:
    """Mean attention distance ``sum_j p_ij |i - j|`` (token positions), averaged over real rows.

    Query row ``i`` of a ``q x k`` block sits at key position ``k - q + i`` (a generation step's
    rows come last). Self-attention only.
    """
    out = []
    vs, shape = views(
        attn, attention_mask=attention_mask, query_mask=query_mask, layers=layers, stack=stack, kind=kind, item=item
    )
    for v in vs:
        qpos = v.query_positions().to(torch.float64)
        kpos = torch.arange(v.weights.shape[-1], dtype=torch.float64)
        dist = (qpos[:, None] - kpos[None, :]).abs()  # [q, k]
        p = torch.where(v.key_mask[:, None, None, :], v.weights, torch.zeros((), dtype=torch.float64))
        out.append(reduce_rows((p * dist).sum(dim=-1), v.query_mask))
    return assemble(out, shape)


def token_share(
    attn: Any,
    keys: Any,
    *,
    item: int | None = None,
    attention_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
    tokens: Any = None,
    layers: Any = None,
    stack: Any = ANY,
    kind: str = "self",
) -> torch.Tensor:
    """Mean share of each row's attention that goes to the keys picked by ``keys``.

    ``keys``: a set of token strings or a predicate on a token (uses the record's tokens, or
    ``tokens=`` for a plain tensor), a bool mask ``[k]``/``[batch, k]``, or key indices.
    """
    out = []
    vs, shape = views(
        attn,
        attention_mask=attention_mask,
        query_mask=query_mask,
        tokens=tokens,
        layers=layers,
        stack=stack,
        kind=kind,
        item=item,
    )
    for v in vs:
        chosen = key_selection(v, keys, "token_share") & v.key_mask
        p = torch.where(chosen[:, None, None, :], v.weights, torch.zeros((), dtype=torch.float64))
        out.append(reduce_rows(p.sum(dim=-1), v.query_mask))
    return assemble(out, shape)


def special_token_share(attn: Any, special: Any = None, **kwargs: Any) -> torch.Tensor:
    """Share of attention to special tokens: by default markup tokens ([CLS], [SEP], ``<s>``,
    ``</s>``, ``<|endoftext|>``...) and punctuation; ``special=`` replaces the set (see
    :func:`token_share`)."""
    return token_share(attn, default_special if special is None else special, **kwargs)


def token_group_shares(attn: Any, groups: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, torch.Tensor]:
    """:func:`token_share` for each named group (default: ``[CLS]/BOS``, ``[SEP]/EOS``, ``punctuation``)."""
    groups = DEFAULT_GROUPS if groups is None else groups
    return {name: token_share(attn, keys, **kwargs) for name, keys in groups.items()}


def relative_share(
    attn: Any,
    offset: int,
    *,
    item: int | None = None,
    attention_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
    layers: Any = None,
    stack: Any = ANY,
    kind: str = "self",
) -> torch.Tensor:
    """Mean weight a row puts on the key ``offset`` positions away (``-1`` previous, ``0`` itself,
    ``+1`` next). Rows whose target key is outside the sequence or padding are left out."""
    out = []
    vs, shape = views(
        attn, attention_mask=attention_mask, query_mask=query_mask, layers=layers, stack=stack, kind=kind, item=item
    )
    for v in vs:
        b, h, q, k = v.weights.shape
        target = v.query_positions() + offset  # [q]
        inside = (target >= 0) & (target < k)
        idx = target.clamp(0, k - 1)
        picked = v.weights[:, :, torch.arange(q), idx]  # [b, h, q]
        rows = v.query_mask & inside[None, :] & v.key_mask[:, idx]
        out.append(reduce_rows(picked, rows))
    return assemble(out, shape)


def previous_token_share(attn: Any, **kwargs: Any) -> torch.Tensor:
    """Mean weight on the previous token (``p_{i,i-1}``)."""
    return relative_share(attn, -1, **kwargs)


def next_token_share(attn: Any, **kwargs: Any) -> torch.Tensor:
    """Mean weight on the next token (``p_{i,i+1}``); 0 for causal heads."""
    return relative_share(attn, 1, **kwargs)


def self_share(attn: Any, **kwargs: Any) -> torch.Tensor:
    """Mean weight a token puts on itself (``p_{i,i}``)."""
    return relative_share(attn, 0, **kwargs)


# ---------------------------------------------------------------------------------------------
# all at once
# ---------------------------------------------------------------------------------------------
STAT_NAMES = ("entropy", "normalized_entropy", "distance", "special", "previous", "next", "self")
STAT_TITLES = {
    "entropy": "entropy (nats)",
    "normalized_entropy": "entropy / uniform",
    "distance": "mean attention distance (tokens)",
    "special": "share to special tokens",
    "previous": "share to previous token",
    "next": "share to next token",
    "self": "share to itself",
}


@dataclass
class HeadStats:
    """Per-head statistics of the selected layers; every field is ``[layers, heads]`` (NaN where a
    layer has fewer heads, or a statistic is undefined, e.g. positions for cross-attention)."""

    labels: list[str]
    heads: list[list[int]]
    entropy: torch.Tensor
    normalized_entropy: torch.Tensor
    uniform_entropy: torch.Tensor
    distance: torch.Tensor
    special: torch.Tensor
    previous: torch.Tensor
    next: torch.Tensor
    self: torch.Tensor
    groups: dict[str, torch.Tensor] = field(default_factory=dict)

    def get(self, name: str) -> torch.Tensor:
        if name in self.groups:
            return self.groups[name]
        if name not in STAT_NAMES and name != "uniform_entropy":
            raise KeyError(f"unknown statistic {name!r}; available: {', '.join(STAT_NAMES + tuple(self.groups))}")
        value: torch.Tensor = getattr(self, name)
        return value

    def rows(self) -> list[dict[str, Any]]:
        """One dict per (layer, head): ``{"layer": label, "head": index, "entropy": ..., ...}``."""
        out = []
        for li, label in enumerate(self.labels):
            for hi, head in enumerate(self.heads[li]):
                row = {"layer": label, "head": head}
                for name in STAT_NAMES:
                    row[name] = float(getattr(self, name)[li, hi])
                for name, values in self.groups.items():
                    row[name] = float(values[li, hi])
                out.append(row)
        return out

    def __str__(self) -> str:
        cols = ("entropy", "distance", "special", "previous", "next", "self")
        lines = ["layer        " + " ".join(f"{c:>9}" for c in cols) + "   (mean over heads)"]
        for li, label in enumerate(self.labels):
            vals = []
            for c in cols:
                row = getattr(self, c)[li]
                row = row[~torch.isnan(row)]
                vals.append(f"{row.mean().item():9.3f}" if row.numel() else f"{'-':>9}")
            lines.append(f"{label:<12} " + " ".join(vals))
        return "\n".join(lines)


def head_stats(
    attn: Any,
    *,
    item: int | None = None,
    attention_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
    tokens: Any = None,
    layers: Any = None,
    stack: Any = ANY,
    kind: str = "self",
    special: Any = None,
    groups: dict[str, Any] | None = None,
) -> HeadStats:
    """Every per-head statistic of a record (or tensor) at once (``groups``: extra named
    :func:`token_share` groups; tokens are needed for the defaults)."""
    common = dict(
        item=item, attention_mask=attention_mask, query_mask=query_mask, layers=layers, stack=stack, kind=kind
    )
    vs, shape = views(attn, tokens=tokens, **common)

    def two_d(t: torch.Tensor) -> torch.Tensor:
        return t.reshape(1, -1) if shape != "layers" else t

    has_tokens = all(v.key_tokens for v in vs)
    nan = torch.full((len(vs), max(v.weights.shape[1] for v in vs)), float("nan"), dtype=torch.float64)
    positional = kind == "self"
    result = HeadStats(
        labels=[v.label or "attention" for v in vs],
        heads=[v.heads for v in vs],
        entropy=two_d(entropy(attn, **common)),
        normalized_entropy=two_d(entropy(attn, normalized=True, **common)),
        uniform_entropy=two_d(uniform_entropy(attn, **common)),
        distance=two_d(mean_distance(attn, **common)) if positional else nan.clone(),
        special=(
            two_d(special_token_share(attn, special, tokens=tokens, **common))
            if (special is not None or has_tokens)
            else nan.clone()
        ),
        previous=two_d(previous_token_share(attn, **common)) if positional else nan.clone(),
        next=two_d(next_token_share(attn, **common)) if positional else nan.clone(),
        self=two_d(self_share(attn, **common)) if positional else nan.clone(),
    )
    if groups is not None or has_tokens:
        result.groups = {k: two_d(v) for k, v in token_group_shares(attn, groups, tokens=tokens, **common).items()}
    return result


def uniform_baseline(record: Any, **options: Any) -> HeadStats:
    """The statistics a uniform head would have on the same rows: every query spreads its attention
    evenly over the keys it can reach (the keys any head of its layer attends to at all, so padding
    and causal masks are honoured). A share of 0.11 over 9 tokens is what uniform attention gives;
    a head is remarkable only where it beats this baseline.

    Args:
        record: an :class:`~attn_plugins.record.AttentionRecord`.
        **options: :func:`head_stats` options (``stack=``, ``kind=``, ``layers=``, ...).

    Returns:
        :class:`HeadStats` of the uniform record, laid out as ``head_stats(record, **options)``.
    """
    import copy

    uniform = copy.copy(record)
    uniform.layers = []
    for layer in record.layers:
        w = layer.weights.detach().to(torch.float32)
        reach = (torch.nan_to_num(w, nan=0.0) > 0).any(dim=1, keepdim=True).expand_as(w).to(torch.float32)
        u = reach / reach.sum(dim=-1, keepdim=True).clamp_min(1.0)
        uniform.layers.append(copy.copy(layer))
        uniform.layers[-1].weights = u
    return head_stats(uniform, **options)


__all__ = [
    "BOS_LIKE",
    "DEFAULT_GROUPS",
    "EOS_LIKE",
    "HeadStats",
    "SPECIAL_TOKENS",
    "STAT_NAMES",
    "STAT_TITLES",
    "default_special",
    "entropy",
    "head_stats",
    "is_punctuation",
    "is_special_token",
    "mean_distance",
    "next_token_share",
    "previous_token_share",
    "relative_share",
    "self_share",
    "special_token_share",
    "token_group_shares",
    "token_share",
    "uniform_baseline",
    "uniform_entropy",
]
