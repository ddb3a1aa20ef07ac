"""Exact ``nn.MultiheadAttention`` weights, beside the real call.

The module's own forward is called a second time with ``need_weights=True,
average_attn_weights=False`` and the call's own arguments, so the weights are exactly what the
module would return; the real call (and its output bits) is not touched.
"""

from __future__ import annotations

import contextlib
import inspect

import torch
from torch import nn
from torch.nn import functional

from ..errors import CaptureError

MHA_ARGS = (
    "query",
    "key",
    "value",
    "key_padding_mask",
    "need_weights",
    "attn_mask",
    "average_attn_weights",
    "is_causal",
)
_SIGNATURES: dict[type, tuple] = {}


def mha_forward(module: nn.MultiheadAttention):
    """The module class's forward and its signature; it must take MultiheadAttention's arguments."""
    cls = type(module)
    cached = _SIGNATURES.get(cls)
    if cached is None:
        forward = cls.forward
        try:
            signature = inspect.signature(forward)
        except (TypeError, ValueError):
            signature = None
        if signature is None or not all(name in signature.parameters for name in MHA_ARGS):
            cached = (None, None)
        else:
            cached = (forward, signature)
        _SIGNATURES[cls] = cached
    if cached[0] is None:
        raise CaptureError(
            f"{cls.__name__} subclasses nn.MultiheadAttention with a forward that does not take its arguments "
            f"({', '.join(MHA_ARGS)}); declare it instead: register_attention_module({cls.__name__}, weights=...)"
        )
    return cached


def bind_mha_call(module: nn.MultiheadAttention, args: tuple, kwargs: dict) -> dict:
    """The call's arguments by name, defaults filled in."""
    _, signature = mha_forward(module)
    try:
        bound = signature.bind(module, *args, **kwargs)
    except TypeError as exc:
        raise CaptureError(f"cannot read the arguments of a {type(module).__name__} call: {exc}") from None
    bound.apply_defaults()
    return {name: bound.arguments.get(name) for name in MHA_ARGS}


@contextlib.contextmanager
def _without_dropout(module: nn.MultiheadAttention):
    dropout = module.dropout
    if module.training and dropout:
        module.dropout = 0.0
    try:
        yield
    finally:
        module.dropout = dropout


def _recompute_grad_mode(module: nn.MultiheadAttention, call: dict):
    """Grad mode for the recompute: off, unless turning it off would change the path the call takes.

    ``MultiheadAttention.forward`` picks its fused fast path only when no argument needs grad; in
    eval mode with grad enabled and such an argument, keep grad on so the recompute takes the same
    (slow) path as a ``need_weights=True`` call would.
    """
    if module.training or not torch.is_grad_enabled():
        return torch.no_grad()
    tensors = (
        call["query"],
        call["key"],
        call["value"],
        module.in_proj_weight,
        module.in_proj_bias,
        module.out_proj.weight,
        module.out_proj.bias,
    )
    if any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors):
        return contextlib.nullcontext()
    return torch.no_grad()


def mha_weights(module: nn.MultiheadAttention, call: dict) -> torch.Tensor:
    """``module(**call, need_weights=True, average_attn_weights=False)[1]``, detached, batched."""
    forward, _ = mha_forward(module)
    arguments = dict(call, need_weights=True, average_attn_weights=False)
    with _recompute_grad_mode(module, call), _without_dropout(module):
        _, weights = forward(module, **arguments)
    weights = weights.detach()
    return weights if weights.dim() == 4 else weights.unsqueeze(0)


def _batch_major(module: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 2:
        return x.unsqueeze(0)
    return x if module.batch_first else x.transpose(0, 1)


def mha_queries_keys(module: nn.MultiheadAttention, call: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head queries and keys ``[b, h, len, head_dim]`` after the input projection (keys with the
    ``bias_k`` / zero-attention rows the module appends)."""
    with torch.no_grad():
        query = _batch_major(module, call["query"])
        key = _batch_major(module, call["key"])
        embed = module.embed_dim
        if module._qkv_same_embed_dim:
            w_q, w_k, _ = module.in_proj_weight.chunk(3)
        else:
            w_q, w_k = module.q_proj_weight, module.k_proj_weight
        b_q = b_k = None
        if module.in_proj_bias is not None:
            b_q, b_k, _ = module.in_proj_bias.chunk(3)
        q = functional.linear(query, w_q, b_q)
        k = functional.linear(key, w_k, b_k)
        batch = q.shape[0]
        if module.bias_k is not None:
            k = torch.cat([k, module.bias_k.reshape(1, 1, embed).expand(batch, 1, embed)], dim=1)
        if module.add_zero_attn:
            k = torch.cat([k, k.new_zeros(batch, 1, embed)], dim=1)
        heads, dim = module.num_heads, module.head_dim
        q = q.reshape(batch, q.shape[1], heads, dim).transpose(1, 2)
        k = k.reshape(batch, k.shape[1], heads, dim).transpose(1, 2)
    return q, k


def queries_are_keys(module: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor) -> bool:
    """Whether a call attends from a sequence to itself: the same tensor, or the query holds the
    key's last positions (one decoding step over a cache of the same sequence)."""
    if query is key:
        return True
    if query.shape[-1] != key.shape[-1] or query.dim() != key.dim():
        return False
    q, k = _batch_major(module, query), _batch_major(module, key)
    n = q.shape[-2]
    return n <= k.shape[-2] and q.shape[:-2] == k.shape[:-2] and torch.equal(q, k[..., k.shape[-2] - n :, :])


def seq_len(module: nn.MultiheadAttention, x: torch.Tensor) -> int:
    """The sequence length of a query or key given to ``module``."""
    if x.dim() == 3:
        return x.shape[1] if module.batch_first else x.shape[0]
    return x.shape[0]
