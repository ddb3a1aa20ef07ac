"""ap.ablate against the eager reference with the chosen heads' probabilities zeroed / mean-replaced."""

import pytest
import torch

import attn_plugins as ap
from attn_plugins.errors import InputError
from attn_plugins.heads import attention_units, head_means
from fixtures.tiny_models import build

from .reference import Edits, eager_reference, output_of

# encoder, decoder, decoder with grouped-query attention, encoder-decoder (with cross-attention)
CASES = {
    "bert": {0: [1, 3], 1: [0]},
    "gpt2": {0: [2], 1: [0, 1, 3]},
    "llama": {0: [0, 3], 1: [1]},
    "bart": {0: [1], 3: [2, 3], 4: "all", -1: [0]},
}


def hooks_left(model):
    return [n for n, m in model.named_modules() if m._forward_pre_hooks or m._forward_hooks]


def _edits(model, heads):
    units = attention_units(model)
    edits = Edits()
    for key, hs in heads.items():
        unit = units[key]
        edits.zero[id(unit.core)] = list(range(unit.num_heads)) if hs == "all" else hs
    return edits


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
def test_zero_ablation_equals_zeroed_probabilities(name, kernel):
    model, batch = build(name, kernel)
    reference, _ = build(name, "eager")
    heads = CASES[name]
    with torch.no_grad():
        plain = output_of(model(**batch), batch)
        with ap.ablate(model, heads) as removed:
            ablated = output_of(model(**batch), batch)
        with eager_reference(reference, Edits()):
            same = output_of(reference(**batch), batch)
        with eager_reference(reference, _edits(reference, heads)):
            expected = output_of(reference(**batch), batch)
        after = output_of(model(**batch), batch)
    torch.testing.assert_close(same, plain, atol=1e-5, rtol=0)  # the reference is the model's attention
    assert (ablated - expected).abs().max() < 1e-5
    assert (ablated - plain).abs().max() > 1e-3  # the heads mattered
    torch.testing.assert_close(after, plain, atol=0, rtol=0)  # restored exactly
    assert not hooks_left(model) and len(removed) == len(heads)


def test_gqa_model_really_groups_heads():
    model, _ = build("llama", "sdpa")
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    assert [u.num_heads for u in attention_units(model)] == [4, 4]


@pytest.mark.parametrize("name", ["bert", "llama", "bart"])
def test_mean_ablation_equals_head_output_replaced_by_its_mean(name):
    model, batch = build(name, "sdpa")
    reference, _ = build(name, "eager")
    means = head_means(model, [batch])
    units = attention_units(model)
    heads = {0: [1, 2], len(units) - 1: [3]}
    edits = Edits()
    for key, hs in heads.items():
        unit = attention_units(reference)[key]
        edits.mean[id(unit.core)] = {h: means[unit.name][h] for h in hs}
    with torch.no_grad():
        with ap.ablate(model, heads, mode="mean", means=means):
            ablated = output_of(model(**batch), batch)
        with eager_reference(reference, edits):
            expected = output_of(reference(**batch), batch)
        zeroed = None
        with ap.ablate(model, heads):
            zeroed = output_of(model(**batch), batch)
    assert (ablated - expected).abs().max() < 1e-5
    assert (ablated - zeroed).abs().max() > 1e-4  # a mean is not a zero


def test_head_means_skip_padding():
    model, batch = build("bert", "sdpa")
    unit = attention_units(model)[0]
    seen = []
    handle = unit.proj.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
    with torch.no_grad():
        model(**batch)
    handle.remove()
    x, mask = seen[0], batch["attention_mask"].bool()
    expected = x[mask].mean(0).reshape(unit.num_heads, unit.head_dim)
    torch.testing.assert_close(head_means(model, [batch])[unit.name], expected, atol=1e-6, rtol=0)


def _mha_reference(mha, x, zero):
    """nn.MultiheadAttention from its formula, with heads' probabilities zeroed."""
    e, h = mha.embed_dim, mha.num_heads
    d = e // h
    q, k, v = torch.nn.functional.linear(x, mha.in_proj_weight, mha.in_proj_bias).split(e, dim=-1)
    split = lambda t: t.reshape(t.shape[0], t.shape[1], h, d).transpose(1, 2)  # noqa: E731
    probs = torch.softmax(split(q) @ split(k).transpose(-1, -2) / d**0.5, dim=-1)
    probs[:, zero] = 0
    out = (probs @ split(v)).transpose(1, 2).reshape(x.shape)
    return mha.out_proj(out)


@pytest.mark.parametrize("grad", [False, True])  # no_grad: torch's fused fast path
def test_plain_multihead_attention(grad):
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = torch.randn(2, 5, 16)
    weight = mha.out_proj.weight
    with torch.set_grad_enabled(grad):
        plain = mha(x, x, x)[0]
        with ap.ablate(mha, {0: [0, 2]}):
            ablated = mha(x, x, x)[0]
        expected = _mha_reference(mha, x, [0, 2])
        after = mha(x, x, x)[0]
    assert (ablated - expected).abs().max() < 1e-5 and (ablated - plain).abs().max() > 1e-3
    assert mha.out_proj.weight is weight
    assert type(mha.out_proj) is torch.nn.modules.linear.NonDynamicallyQuantizableLinear
    torch.testing.assert_close(after, plain, atol=0, rtol=0)


def test_mha_mean_mode_inside_a_transformer_encoder():
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(16, 4, 32, batch_first=True, dropout=0.0)
    encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    units = attention_units(encoder)
    assert [u.name for u in units] == ["layers.0.self_attn", "layers.1.self_attn"]
    mean = torch.randn(4, 4)
    x = torch.randn(2, 5, 16)
    mha = encoder.layers[0].self_attn
    with torch.no_grad():
        with ap.ablate(encoder, {0: [1]}, mode="mean", means={0: mean}):
            block = mha(x, x, x)[0]
    e, d = 16, 4
    q, k, v = torch.nn.functional.linear(x, mha.in_proj_weight, mha.in_proj_bias).split(e, dim=-1)
    split = lambda t: t.reshape(2, 5, 4, d).transpose(1, 2)  # noqa: E731
    heads = torch.softmax(split(q) @ split(k).transpose(-1, -2) / d**0.5, dim=-1) @ split(v)
    heads[:, 1] = mean[1]
    expected = mha.out_proj(heads.transpose(1, 2).reshape(2, 5, 16))
    assert (block - expected).abs().max() < 1e-5


def test_restored_after_an_error_and_bad_input():
    model, batch = build("bert", "sdpa")
    with pytest.raises(RuntimeError, match="boom"):
        with ap.ablate(model, {0: [0]}):
            raise RuntimeError("boom")
    assert not hooks_left(model)
    with pytest.raises(InputError, match="out of range"):
        with ap.ablate(model, {7: [0]}):
            pass
    with pytest.raises(InputError, match="not in 0..3"):
        with ap.ablate(model, {0: [4]}):
            pass
    with pytest.raises(InputError, match="mode must be"):
        with ap.ablate(model, {0: [0]}, mode="noise"):
            pass
    with pytest.raises(InputError, match="needs means"):
        with ap.ablate(model, {0: [0]}, mode="mean"):
            pass
    assert not hooks_left(model)


def test_layers_by_path_match_capture_names():
    model, batch = build("bert", "sdpa")
    with torch.no_grad(), ap.capture(model) as cap:
        model(**batch)
    name = cap.record.layers[1].name
    with ap.ablate(model, {name: [2]}) as removed:
        pass
    assert removed == {attention_units(model)[1].name: [2]}


def test_zero_ablation_under_flex_attention():
    """The same hook point serves transformers' flex_attention kernel (GQA Llama)."""
    model, batch = build("llama", "flex_attention")
    reference, _ = build("llama", "eager")
    heads = CASES["llama"]
    with torch.no_grad():
        with ap.ablate(model, heads):
            ablated = output_of(model(**batch), batch)
        with eager_reference(reference, _edits(reference, heads)):
            expected = output_of(reference(**batch), batch)
    assert (ablated - expected).abs().max() < 1e-5 and not hooks_left(model)
