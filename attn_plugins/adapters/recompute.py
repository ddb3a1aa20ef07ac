"""Recompute attention probabilities beside a fast kernel.

The model keeps calling its own kernel (sdpa, flex, flash) for the output; for the captured
layers and heads we compute ``softmax(q @ k^T * scaling [softcap] + bias + mask [, sinks])``
separately, honouring the mask semantics of the kernel the call was made for. Inputs are never
modified, so the model's outputs stay bit-identical.
"""

from __future__ import annotations

import torch

# Keyword arguments that attention functions receive but that do not change the probabilities.
NEUTRAL_KWARGS = frozenset(
    {
        "dropout", "output_attentions", "use_cache", "position_ids", "cache_position", "past_key_values",
        "past_key_value", "layer_idx", "head_mask", "return_dict", "is_causal", "scaling", "sliding_window",
        "softcap", "s_aux", "sinks", "position_bias", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q",
        "max_length_k", "target_dtype", "output_hidden_states", "token_type_ids",
    }
)


class UnsupportedAttentionCall(Exception):
    """The call carries something this module cannot reproduce exactly; the caller falls back."""


def dense_mask_from_blockmask(block_mask, batch: int, heads: int, q_len: int, kv_len: int, device) -> torch.Tensor:
    """A flex ``BlockMask`` as a dense boolean ``[b, h|1, q, k]`` mask (True = attend)."""
    from torch.nn.attention.flex_attention import create_mask

    mask_mod = getattr(block_mask, "mask_mod", None)
    if mask_mod is None:
        raise UnsupportedAttentionCall("BlockMask without mask_mod")
    return create_mask(mask_mod, batch, heads, q_len, kv_len, device=device)


def _gqa_keys(key: torch.Tensor, num_query_heads: int, heads: list[int] | None) -> torch.Tensor:
    """Keys aligned with the (selected) query heads: repeat_kv without materialising unused heads."""
    kv_heads = key.shape[1]
    if num_query_heads % kv_heads:
        raise UnsupportedAttentionCall(f"{num_query_heads} query heads over {kv_heads} key heads")
    n_rep = num_query_heads // kv_heads
    if heads is None:
        if n_rep == 1:
            return key
        return key.repeat_interleave(n_rep, dim=1)
    index = torch.tensor([h // n_rep for h in heads], device=key.device)
    return key.index_select(1, index)


def attention_probs(
    query: torch.Tensor,
    key: torch.Tensor,
    attention_mask=None,
    *,
    kernel: str = "sdpa",
    scaling: float | None = None,
    is_causal: bool = False,
    position_bias: torch.Tensor | None = None,
    softcap: float | None = None,
    sinks: torch.Tensor | None = None,
    sliding_window: int | None = None,
    heads: list[int] | None = None,
    compute_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Attention probabilities ``[batch, len(heads) or H, q, k]`` in ``compute_dtype`` (default: float32, or float64 for float64 inputs).

    ``kernel`` names the mask convention of the call: ``"sdpa"`` (4-D bool with True = keep, or
    additive float; ``None`` with ``is_causal`` means top-left causal), ``"flash"`` (2-D padding mask
    ``[b, k]``, bottom-right causal, sliding window) or ``"flex"`` (``BlockMask`` or additive float).
    """
    if compute_dtype is None:  # float32 at least, float64 for float64 models
        compute_dtype = torch.float64 if query.dtype == torch.float64 else torch.float32
    batch, num_heads, q_len, _ = query.shape
    q = query if heads is None else query.index_select(1, torch.tensor(heads, device=query.device))
    k = _gqa_keys(key, num_heads, heads)
    kv_len = k.shape[2]
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scores = torch.matmul(q.to(compute_dtype), k.to(compute_dtype).transpose(-1, -2))
    scores.mul_(scaling)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if position_bias is not None:
        bias = position_bias
        if heads is not None and bias.shape[1] > 1:
            bias = bias.index_select(1, torch.tensor(heads, device=bias.device))
        scores = scores + bias[..., :kv_len].to(compute_dtype)

    min_value = torch.finfo(compute_dtype).min
    mask = attention_mask
    if kernel == "flex" and mask is not None and not isinstance(mask, torch.Tensor):
        mask = dense_mask_from_blockmask(mask, batch, 1, q_len, kv_len, scores.device)
    if kernel == "flash":
        keep = torch.ones(q_len, kv_len, dtype=torch.bool, device=scores.device)
        offset = kv_len - q_len  # bottom-right alignment: query i sits at absolute position offset + i
        rows = torch.arange(q_len, device=scores.device)[:, None] + offset
        cols = torch.arange(kv_len, device=scores.device)[None, :]
        if is_causal:
            keep &= cols <= rows
        if sliding_window is not None:
            keep &= rows - cols < sliding_window
        keep = keep[None, None]
        if mask is not None:
            keep = keep & mask[:, None, None, -kv_len:].bool()
        scores = scores.masked_fill(~keep, min_value)
    else:
        if mask is None and is_causal and q_len > 1:
            keep = torch.ones(q_len, kv_len, dtype=torch.bool, device=scores.device).tril()
            scores = scores.masked_fill(~keep[None, None], min_value)
        elif mask is not None:
            mask = mask[..., :kv_len]
            if heads is not None and mask.dim() == 4 and mask.shape[1] > 1:
                mask = mask.index_select(1, torch.tensor(heads, device=mask.device))
            if mask.dtype == torch.bool:
                scores = scores.masked_fill(~mask, min_value)
            else:
                scores = scores + mask.to(compute_dtype)

    if sinks is not None:
        sink = sinks if heads is None else sinks.index_select(0, torch.tensor(heads, device=sinks.device))
        sink = sink.to(compute_dtype).reshape(1, -1, 1, 1).expand(batch, -1, q_len, 1)
        combined = torch.cat([scores, sink], dim=-1)
        combined = combined - combined.max(dim=-1, keepdim=True).values
        return torch.softmax(combined, dim=-1)[..., :-1]
    return torch.softmax(scores, dim=-1)
