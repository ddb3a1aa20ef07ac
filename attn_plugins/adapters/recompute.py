"""Recompute attention probabilities beside a fast kernel.

The model keeps calling its own kernel (sdpa, flex, flash) for the output; for the captured
layers and heads we compute ``softmax(q @ k^T * scaling [softcap] + bias + mask [, sinks])``
separately, honouring the mask semantics of the kernel the call was made for. Inputs are never
modified, so the model's outputs stay bit-identical.
"""

from __future__ import annotations

import contextlib

import torch

# Keyword arguments that attention functions receive but that do not change the probabilities.
NEUTRAL_KWARGS = frozenset(
    {
        "dropout",
        "output_attentions",
        "use_cache",
        "position_ids",
        "cache_position",
        "past_key_values",
        "past_key_value",
        "layer_idx",
        "head_mask",
        "return_dict",
        "is_causal",
        "scaling",
        "sliding_window",
        "softcap",
        "s_aux",
        "sinks",
        "position_bias",
        "cu_seq_lens_q",
        "cu_seq_lens_k",
        "max_length_q",
        "max_length_k",
        "target_dtype",
        "output_hidden_states",
        "token_type_ids",
    }
)


@contextlib.contextmanager
def own_precision():
    """No autograd and no autocast (CPU or CUDA) for a recompute: the probabilities are computed in the
    dtype the capture chose, whatever ``torch.autocast`` the user's forward runs under (under a
    bfloat16 autocast the scores would come out in bfloat16 and the float32 mask fill would overflow)."""
    with torch.no_grad(), torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
        yield


class UnsupportedAttentionCallError(Exception):
    """The call carries something this module cannot reproduce exactly; the caller falls back."""


def dense_mask_from_blockmask(block_mask, batch: int, heads: int, q_len: int, kv_len: int, device) -> torch.Tensor:
    """A flex ``BlockMask`` as a dense boolean ``[b, h|1, q, k]`` mask (True = attend)."""
    from torch.nn.attention.flex_attention import create_mask

    mask_mod = getattr(block_mask, "mask_mod", None)
    if mask_mod is None:
        raise UnsupportedAttentionCallError("BlockMask without mask_mod")
    return create_mask(mask_mod, batch, heads, q_len, kv_len, device=device)


def _kv_index(num_kv_heads: int, num_query_heads: int, heads: list[int]) -> list[int]:
    """The key/value head each (selected) query head reads: repeat_kv without materialising it."""
    if num_query_heads % num_kv_heads:
        raise UnsupportedAttentionCallError(f"{num_query_heads} query heads over {num_kv_heads} key heads")
    n_rep = num_query_heads // num_kv_heads
    return [h // n_rep for h in heads]


_INDEX_CACHE: dict = {}


def _index(values, device) -> torch.Tensor:
    """An index tensor on ``device``, made once: building one from a list on a GPU waits for the GPU."""
    key = (str(device), tuple(values))
    cached = _INDEX_CACHE.get(key)
    if cached is None:
        if len(_INDEX_CACHE) > 4096:
            _INDEX_CACHE.clear()
        cached = _INDEX_CACHE[key] = torch.tensor(list(values), dtype=torch.long, device=device)
    return cached


def _part(tensor: torch.Tensor | None, items: slice, heads: slice, rows: slice) -> torch.Tensor | None:
    """The [items, heads, rows, k] part of a tensor that broadcasts over batch, heads and/or rows."""
    if tensor is None:
        return None
    if tensor.shape[0] > 1:
        tensor = tensor[items]
    if tensor.shape[1] > 1:
        tensor = tensor[:, heads]
    if tensor.shape[2] > 1:
        tensor = tensor[:, :, rows]
    return tensor


# Scores are computed this many bytes at a time: small enough on CPU to stay in cache and to reuse
# freed memory instead of faulting in new pages (measured: 4 MB chunks 1.5x faster than one 100 MB
# block for MiniLM at 8 x 512), large enough on GPU to keep kernel launches few.
DEFAULT_CHUNK_BYTES = {"cpu": 4 * 2**20, "cuda": 256 * 2**20}


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
    out_dtype: torch.dtype | None = None,
    chunk_bytes: int | None = None,
) -> torch.Tensor:
    """Attention probabilities ``[batch, len(heads) or H, q, k]`` computed in ``compute_dtype``
    (default: float32, or float64 for float64 inputs) and returned in ``out_dtype`` (default: the
    compute dtype).

    The scores are computed ``chunk_bytes`` at a time (default: 4 MB on CPU, 256 MB on GPU; whole
    batch items, whole heads, or row blocks of one head) and each chunk's softmax is written
    straight into the output, so the memory used beyond the output is one chunk, whatever the length.

    ``kernel`` names the mask convention of the call: ``"sdpa"`` (4-D bool with True = keep, or
    additive float; ``None`` with ``is_causal`` means top-left causal), ``"flash"`` (2-D padding mask
    ``[b, k]``, bottom-right causal, sliding window) or ``"flex"`` (``BlockMask`` or additive float).
    """
    if compute_dtype is None:  # float32 at least, float64 for float64 models
        compute_dtype = torch.float64 if query.dtype == torch.float64 else torch.float32
    out_dtype = out_dtype or compute_dtype
    batch, num_heads, q_len, _ = query.shape
    head_list = list(range(num_heads)) if heads is None else list(heads)
    kv_index = _kv_index(key.shape[1], num_heads, head_list)
    kv_len = key.shape[2]
    device = query.device
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    min_value = torch.finfo(compute_dtype).min

    # masks and biases as tensors that broadcast to [b, selected heads, q, k]
    keep = additive = None
    mask = attention_mask
    if kernel == "flex" and mask is not None and not isinstance(mask, torch.Tensor):
        mask = dense_mask_from_blockmask(mask, batch, 1, q_len, kv_len, device)
    if kernel == "flash":
        keep = torch.ones(q_len, kv_len, dtype=torch.bool, device=device)
        offset = kv_len - q_len  # bottom-right alignment: query i sits at absolute position offset + i
        rows = torch.arange(q_len, device=device)[:, None] + offset
        cols = torch.arange(kv_len, device=device)[None, :]
        if is_causal:
            keep &= cols <= rows
        if sliding_window is not None:
            keep &= rows - cols < sliding_window
        keep = keep[None, None]
        if mask is not None:
            keep = keep & mask[:, None, None, -kv_len:].bool()
    elif mask is None and is_causal and q_len > 1:
        keep = torch.ones(q_len, kv_len, dtype=torch.bool, device=device).tril()[None, None]
    elif mask is not None:
        mask = mask[..., :kv_len]
        while mask.dim() < 4:
            mask = mask.unsqueeze(0)
        if heads is not None and mask.shape[1] > 1:
            mask = mask.index_select(1, _index(heads, mask.device))
        if mask.dtype == torch.bool:
            keep = mask
        else:
            additive = mask
    bias = position_bias
    if bias is not None:
        if heads is not None and bias.shape[1] > 1:
            bias = bias.index_select(1, _index(heads, bias.device))
        bias = bias[..., :kv_len]
    sink = None
    if sinks is not None:
        sink = sinks if heads is None else sinks.index_select(0, _index(heads, sinks.device))

    count = len(head_list)
    itemsize = torch.empty((), dtype=compute_dtype).element_size()
    if chunk_bytes is None:
        chunk_bytes = DEFAULT_CHUNK_BYTES.get(device.type, DEFAULT_CHUNK_BYTES["cpu"])
    chunks = list(_chunks(batch, count, q_len, kv_len * itemsize, chunk_bytes))
    out = None if len(chunks) == 1 else torch.empty(batch, count, q_len, kv_len, dtype=out_dtype, device=device)
    whole_query = query if heads is None else None
    for bs, hs, rs in chunks:
        if whole_query is not None:
            q_part = whole_query[bs, hs, rs]
        else:
            q_part = query[bs].index_select(1, _index(head_list[hs], device))[:, :, rs]
        kv = kv_index[hs]
        if kv == list(range(kv[0], kv[0] + len(kv))):
            k_part = key[bs, kv[0] : kv[0] + len(kv)]
        else:
            k_part = key[bs].index_select(1, _index(kv, key.device))
        scores = torch.matmul(q_part.to(compute_dtype), k_part.to(compute_dtype).transpose(-1, -2))
        scores.mul_(scaling)
        if softcap is not None:
            scores = torch.tanh(scores / softcap) * softcap
        if bias is not None:
            scores = scores + _part(bias, bs, hs, rs).to(compute_dtype)
        if keep is not None:
            scores = scores.masked_fill(~_part(keep, bs, hs, rs), min_value)
        if additive is not None:
            scores = scores + _part(additive, bs, hs, rs).to(compute_dtype)
        if sink is not None:
            column = sink[hs].to(compute_dtype).reshape(1, -1, 1, 1).expand(*scores.shape[:3], 1)
            combined = torch.cat([scores, column], dim=-1)
            combined = combined - combined.max(dim=-1, keepdim=True).values
            probs = torch.softmax(combined, dim=-1)[..., :-1]
        elif out is not None and out_dtype == compute_dtype:
            torch.softmax(scores, dim=-1, out=out[bs, hs, rs])  # a contiguous slice: written in place
            continue
        else:
            probs = torch.softmax(scores, dim=-1)
        if out is None:
            return probs.to(out_dtype)
        out[bs, hs, rs] = probs
    return out


def _chunks(batch: int, heads: int, rows: int, row_bytes: int, limit: int):
    """``(batch, heads, rows)`` slices of at most ``limit`` bytes of scores, each a contiguous block
    of the ``[batch, heads, rows, keys]`` output: whole items, else whole heads of one item, else
    row blocks of one head."""
    head_bytes = rows * row_bytes
    if heads * head_bytes * batch <= limit:
        yield slice(0, batch), slice(0, heads), slice(0, rows)
        return
    if heads * head_bytes <= limit:
        step = max(1, limit // (heads * head_bytes))
        for b0 in range(0, batch, step):
            yield slice(b0, min(batch, b0 + step)), slice(0, heads), slice(0, rows)
        return
    for b in range(batch):
        if head_bytes <= limit:
            step = max(1, limit // head_bytes)
            for h0 in range(0, heads, step):
                yield slice(b, b + 1), slice(h0, min(heads, h0 + step)), slice(0, rows)
        else:
            step = max(1, limit // max(row_bytes, 1))
            for h in range(heads):
                for r0 in range(0, rows, step):
                    yield slice(b, b + 1), slice(h, h + 1), slice(r0, min(rows, r0 + step))
