"""The probability recomputation against transformers' own eager functions, per kernel convention."""

import pytest
import torch

from attn_plugins.adapters.recompute import attention_probs

B, H, KV, Q, D = 2, 4, 2, 5, 8


def _qk(q_len=Q, k_len=Q):
    g = torch.Generator().manual_seed(0)
    return torch.randn(B, H, q_len, D, generator=g), torch.randn(B, KV, k_len, D, generator=g)


def _module(**attrs):
    module = torch.nn.Module().eval()
    module.num_key_value_groups = H // KV
    for k, v in attrs.items():
        setattr(module, k, v)
    return module


def _additive(keep):
    return torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min)


def _keep_causal_padded(q_len, k_len):
    keep = torch.ones(q_len, k_len, dtype=torch.bool).tril(diagonal=k_len - q_len)[None, None].repeat(B, 1, 1, 1)
    keep[1, :, :, :2] = False  # left padding of item 1
    keep[1, :, :2, 0] = True  # (a row must keep something)
    return keep


def test_softcap_matches_gemma2_eager():
    from transformers.models.gemma2.modeling_gemma2 import eager_attention_forward

    q, k = _qk()
    keep = _keep_causal_padded(Q, Q)
    module = _module(attn_logit_softcapping=2.0)
    _, expected = eager_attention_forward(module, q, k, k, _additive(keep), scaling=0.3, softcap=2.0)
    got = attention_probs(q, k, keep, kernel="sdpa", scaling=0.3, softcap=2.0)
    assert (got - expected).abs().max() <= 1e-6


def test_sinks_match_gpt_oss_eager():
    from transformers.models.gpt_oss.modeling_gpt_oss import eager_attention_forward

    q, k = _qk()
    keep = _keep_causal_padded(Q, Q)
    sinks = torch.tensor([0.5, -1.0, 2.0, 0.0])
    module = _module(sinks=sinks)
    _, expected = eager_attention_forward(module, q, k, k, _additive(keep), scaling=0.3, s_aux=sinks)
    got = attention_probs(q, k, keep, kernel="sdpa", scaling=0.3, sinks=sinks)
    assert (got - expected).abs().max() <= 1e-6
    assert (got.sum(-1) < 1).all()  # the sink takes part of every row
    heads = [1, 3]
    assert (attention_probs(q, k, keep, scaling=0.3, sinks=sinks, heads=heads) - expected[:, heads]).abs().max() <= 1e-6


def test_position_bias_matches_t5_style_eager():
    from transformers.models.llama.modeling_llama import eager_attention_forward

    q, k = _qk()
    bias = torch.randn(1, H, Q, Q)
    keep = _keep_causal_padded(Q, Q)
    _, expected = eager_attention_forward(_module(), q, k, k, _additive(keep) + bias, scaling=1.0)
    got = attention_probs(q, k, keep, scaling=1.0, position_bias=bias)
    assert (got - expected).abs().max() <= 1e-6


@pytest.mark.parametrize("q_len, k_len", [(5, 5), (1, 7), (3, 7)])
@pytest.mark.parametrize("window", [None, 3])
def test_flash_conventions_equal_explicit_masks(q_len, k_len, window):
    """Flash: 2-D padding mask, causal aligned bottom-right, sliding window."""
    from transformers.models.llama.modeling_llama import eager_attention_forward

    q, k = _qk(q_len, k_len)
    padding = torch.ones(B, k_len, dtype=torch.long)
    padding[1, :1] = 0
    rows = torch.arange(q_len)[:, None] + (k_len - q_len)
    cols = torch.arange(k_len)[None, :]
    keep = cols <= rows
    if window is not None:
        keep &= rows - cols < window
    keep = keep[None, None] & padding[:, None, None, :].bool()
    _, expected = eager_attention_forward(_module(), q, k, k, _additive(keep), scaling=0.25)
    got = attention_probs(q, k, padding, kernel="flash", scaling=0.25, is_causal=True, sliding_window=window)
    assert (got - expected).abs().max() <= 1e-6


@pytest.mark.parametrize("mask_kind", ["none_causal", "bool", "float"])
def test_sdpa_conventions_against_torch_sdpa(mask_kind):
    """torch's own sdpa with the identity as values returns its probabilities: an independent reference."""
    q, k = _qk(4, 4)
    k_full = k.repeat_interleave(H // KV, 1)
    identity = torch.eye(4).expand(B, H, 4, 4)
    keep = _keep_causal_padded(4, 4)
    if mask_kind == "none_causal":
        expected = torch.nn.functional.scaled_dot_product_attention(q, k_full, identity, is_causal=True)
        got = attention_probs(q, k, None, kernel="sdpa", is_causal=True)
    elif mask_kind == "bool":
        expected = torch.nn.functional.scaled_dot_product_attention(q, k_full, identity, attn_mask=keep)
        got = attention_probs(q, k, keep, kernel="sdpa")
    else:
        additive = _additive(keep)
        expected = torch.nn.functional.scaled_dot_product_attention(q, k_full, identity, attn_mask=additive)
        got = attention_probs(q, k, additive, kernel="sdpa")
    assert (got - expected).abs().max() <= 1e-6


def test_flex_block_mask_is_expanded():
    from torch.nn.attention.flex_attention import create_block_mask

    q, k = _qk(6, 6)

    def causal(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx

    block_mask = create_block_mask(causal, B, None, 6, 6, device="cpu")
    got = attention_probs(q, k, block_mask, kernel="flex", scaling=0.5)
    expected = attention_probs(q, k, torch.ones(6, 6, dtype=torch.bool).tril()[None, None], kernel="sdpa", scaling=0.5)
    assert (got - expected).abs().max() <= 1e-6


@pytest.mark.parametrize(
    "kernel, extra",
    [
        ("sdpa", dict(is_causal=True)),
        ("sdpa", dict(mask="bool")),
        ("sdpa", dict(mask="float", sinks=True)),
        ("flash", dict(is_causal=True, sliding_window=5, mask="padding")),
    ],
)
def test_chunked_recompute_equals_one_chunk(kernel, extra):
    """Chunks of heads and of rows (long inputs) give the same probabilities as one big chunk."""
    torch.manual_seed(0)
    b, h, kv_h, q_len, d = 2, 6, 3, 24, 8
    q, k = torch.randn(b, h, q_len, d), torch.randn(b, kv_h, q_len, d)
    mask = None
    kind = extra.pop("mask", None)
    if kind == "bool":
        mask = torch.rand(b, 1, q_len, q_len) > 0.3
        mask[..., 0] = True
    elif kind == "float":
        mask = torch.randn(b, 1, q_len, q_len)
    elif kind == "padding":
        mask = torch.ones(b, q_len, dtype=torch.long)
        mask[1, :5] = 0
    sinks = torch.randn(h) if extra.pop("sinks", False) else None
    bias = torch.randn(1, h, q_len, q_len)
    args = dict(kernel=kernel, scaling=0.4, sinks=sinks, position_bias=bias, heads=[5, 0, 3], **extra)
    whole = attention_probs(q, k, mask, chunk_bytes=2**30, **args)
    per_head = q_len * q_len * 4
    for chunk in (per_head * 3 * 1, per_head * 2, per_head, per_head // 5, 1):  # one item, two heads, one head,
        # row blocks, single rows
        got = attention_probs(q, k, mask, chunk_bytes=chunk, **args)
        assert (got - whole).abs().max() <= 1e-6, chunk
    half = attention_probs(q, k, mask, chunk_bytes=per_head // 5, out_dtype=torch.bfloat16, **args)
    assert half.dtype == torch.bfloat16 and torch.equal(half, whole.to(torch.bfloat16))
