"""The plain-PyTorch adapter: nn.MultiheadAttention (every mask, layout and fast path) captured exactly.

"Exact" means equal to calling the module with ``need_weights=True, average_attn_weights=False``
on the same inputs; the model's own output must stay bit-identical.
"""

import warnings

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_impl

import attn_plugins as ap
from attn_plugins.adapters import ADAPTERS, adapter_for
from attn_plugins.adapters import torch as torch_adapter
from attn_plugins.collector import CaptureError

E, H = 16, 4

# nn.Transformer builds its encoder with enable_nested_tensor=True and says when it cannot use it
pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")


def seq_first(x, batch_first):
    return x if batch_first else x.transpose(0, 1)


def padding(lengths, total, dtype=torch.bool):
    pad = torch.arange(total)[None, :] >= torch.tensor(lengths)[:, None]
    if dtype == torch.bool:
        return pad
    return torch.zeros(pad.shape).masked_fill(pad, float("-inf"))


def causal(n, dtype=torch.bool):
    upper = torch.ones(n, n, dtype=torch.bool).triu(1)
    return upper if dtype == torch.bool else torch.zeros(n, n).masked_fill(upper, float("-inf"))


def global_hooks():
    return (dict(module_impl._global_forward_hooks), dict(module_impl._global_forward_pre_hooks))


def hooks_left(model):
    return [name for name, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks]


# --------------------------------------------------------------------------------------------------
# standalone nn.MultiheadAttention
# --------------------------------------------------------------------------------------------------
# each builder takes (query length, key length, batch size)
MASKS = {
    "none": lambda q, k, b: {},
    "padding_bool": lambda q, k, b: {"key_padding_mask": padding([k, k - 2, 1][:b], k)},
    "padding_float": lambda q, k, b: {"key_padding_mask": padding([k, k - 2, 1][:b], k, torch.float)},
    "attn_bool": lambda q, k, b: {"attn_mask": torch.rand(q, k, generator=torch.Generator().manual_seed(3)) > 0.7},
    "attn_float": lambda q, k, b: {"attn_mask": torch.randn(q, k, generator=torch.Generator().manual_seed(4))},
    "attn_3d": lambda q, k, b: {"attn_mask": torch.randn(b * H, q, k, generator=torch.Generator().manual_seed(5))},
    "causal": lambda q, k, b: {"attn_mask": causal(q), "is_causal": True},
    "causal_and_padding": lambda q, k, b: {"attn_mask": causal(q), "key_padding_mask": padding([k, k - 2, 2][:b], k)},
    "float_both": lambda q, k, b: {
        "attn_mask": causal(q, torch.float),
        "key_padding_mask": padding([k, 3, 2][:b], k, torch.float),
    },
}


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("mask", sorted(MASKS))
@pytest.mark.parametrize("mode", ["eval_no_grad", "eval_grad", "train"])
def test_self_attention_exact_and_output_unchanged(batch_first, mask, mode):
    torch.manual_seed(0)
    batch, q_len = 3, 6
    mha = nn.MultiheadAttention(E, H, batch_first=batch_first)
    mha.train(mode == "train")
    x = seq_first(torch.randn(batch, q_len, E), batch_first)
    kwargs = MASKS[mask](q_len, q_len, batch)
    context = torch.no_grad() if mode == "eval_no_grad" else torch.enable_grad()
    with context:
        expected_out = mha(x, x, x, need_weights=False, **kwargs)[0]
        expected = mha(x, x, x, need_weights=True, average_attn_weights=False, **kwargs)[1]
        with ap.capture(mha) as cap:
            out = mha(x, x, x, need_weights=False, **kwargs)[0]
    assert torch.equal(out, expected_out)
    (layer,) = cap.record.layers
    assert layer.kind == "self" and layer.stack is None and layer.index == 0
    assert torch.equal(layer.weights, expected)


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("variant", ["kdim_vdim", "bias_kv", "zero_attn", "bias_kv_zero_attn_padding", "no_bias"])
def test_cross_attention_module_options_exact(batch_first, variant):
    torch.manual_seed(1)
    batch, q_len, k_len = 2, 4, 7
    options = {
        "kdim_vdim": dict(kdim=10, vdim=6),
        "bias_kv": dict(add_bias_kv=True),
        "zero_attn": dict(add_zero_attn=True),
        "bias_kv_zero_attn_padding": dict(add_bias_kv=True, add_zero_attn=True),
        "no_bias": dict(bias=False),
    }[variant]
    mha = nn.MultiheadAttention(E, H, batch_first=batch_first, **options).eval()
    q = seq_first(torch.randn(batch, q_len, E), batch_first)
    k = seq_first(torch.randn(batch, k_len, options.get("kdim", E)), batch_first)
    v = seq_first(torch.randn(batch, k_len, options.get("vdim", E)), batch_first)
    kwargs = {"key_padding_mask": padding([k_len, 3], k_len)} if "padding" in variant else {}
    expected_out = mha(q, k, v, need_weights=False, **kwargs)[0]
    expected = mha(q, k, v, need_weights=True, average_attn_weights=False, **kwargs)[1]
    with ap.capture(mha) as cap:
        out = mha(q, k, v, need_weights=False, **kwargs)[0]
    assert torch.equal(out, expected_out)
    (layer,) = cap.record.layers
    assert torch.equal(layer.weights, expected)
    extra = options.get("add_bias_kv", False) + options.get("add_zero_attn", False)
    assert layer.weights.shape == (batch, H, q_len, k_len + extra)
    assert layer.kind == "cross"  # another query than key: cross-attention, whatever the dimensions


def test_unbatched_input_and_weights_already_asked_for():
    torch.manual_seed(2)
    mha = nn.MultiheadAttention(E, H).eval()
    x = torch.randn(5, E)
    expected = mha(x, x, x, need_weights=True, average_attn_weights=False)[1]
    with ap.capture(mha) as cap:
        mha(x, x, x)  # averaged weights asked for: per-head ones are recomputed
        mha(x, x, x, need_weights=True, average_attn_weights=False)  # read from the output
    first, second = cap.records
    assert torch.equal(first.layers[0].weights, expected[None])
    assert torch.equal(second.layers[0].weights, expected[None])


def test_training_dropout_untouched_and_weights_before_dropout():
    torch.manual_seed(3)
    mha = nn.MultiheadAttention(E, H, dropout=0.3, batch_first=True).train()
    x = torch.randn(2, 6, E, requires_grad=True)
    torch.manual_seed(10)
    expected_out = mha(x, x, x, need_weights=False)[0]
    torch.manual_seed(10)
    with ap.capture(mha) as cap:
        out = mha(x, x, x, need_weights=False)[0]
        after = torch.rand(3)  # the random stream continues where it would have without the capture
    torch.manual_seed(10)
    mha(x, x, x, need_weights=False)
    assert torch.equal(out, expected_out) and torch.equal(after, torch.rand(3))
    mha.dropout = 0.0
    expected = mha(x, x, x, need_weights=True, average_attn_weights=False)[1].detach()
    assert mha.training
    assert torch.equal(cap.record.layers[0].weights, expected)
    out.sum().backward()  # the captured model's graph is intact
    assert x.grad is not None and not cap.record.layers[0].weights.requires_grad


def test_incremental_decoding_calls_are_steps_of_one_matrix():
    torch.manual_seed(4)
    mha = nn.MultiheadAttention(E, H, batch_first=True).eval()
    x = torch.randn(2, 5, E)
    mask = causal(5)
    full = mha(x, x, x, attn_mask=mask, need_weights=True, average_attn_weights=False)[1]
    with ap.capture(mha) as cap:
        for t in range(5):  # one query per call over a growing cache
            mha(x[:, t : t + 1], x[:, : t + 1], x[:, : t + 1], need_weights=False)
    (layer,) = cap.record.layers
    assert layer.kind == "self"  # the query is the key's last row: a step over a cache, not cross-attention
    assert layer.weights.shape == (2, H, 5, 5)
    torch.testing.assert_close(layer.weights, full, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# nn.Transformer: encoder self, decoder self, decoder cross
# --------------------------------------------------------------------------------------------------
def reference_weights(model, run):
    """Per-head weights of every MultiheadAttention call, by patching forwards (no hooks)."""
    found = []
    originals = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            original = module.forward
            originals[name] = (module, original)

            def patched(*args, _original=original, _name=name, **kwargs):
                out = _original(*args, **kwargs)
                kwargs = dict(kwargs, need_weights=True, average_attn_weights=False)
                found.append((_name, _original(*args, **kwargs)[1].detach()))
                return out

            module.forward = patched
    try:
        out = run()
    finally:
        for module, _ in originals.values():
            del module.forward
    return out, found


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("norm_first", [False, True])
def test_nn_transformer_all_three_kinds(batch_first, norm_first):
    torch.manual_seed(5)
    model = nn.Transformer(
        E,
        H,
        num_encoder_layers=2,
        num_decoder_layers=3,
        dim_feedforward=32,
        dropout=0.0,
        batch_first=batch_first,
        norm_first=norm_first,
    ).train()
    src = seq_first(torch.randn(2, 7, E), batch_first)
    tgt = seq_first(torch.randn(2, 5, E), batch_first)
    masks = dict(
        tgt_mask=nn.Transformer.generate_square_subsequent_mask(5),
        tgt_is_causal=True,
        src_key_padding_mask=padding([7, 4], 7),
        memory_key_padding_mask=padding([7, 4], 7),
    )
    expected_out, found = reference_weights(model, lambda: model(src, tgt, **masks))
    with ap.capture(model) as cap:
        out = model(src, tgt, **masks)
    assert torch.equal(out, expected_out)
    record = cap.record
    assert record.is_encoder_decoder
    groups = {(s, k): record.select(s, k) for s in ("encoder", "decoder") for k in ("self", "cross")}
    assert [len(groups[key]) for key in sorted(groups)] == [3, 3, 0, 2]  # decoder cross, self; encoder
    assert [layer.name for layer in groups["decoder", "cross"]] == [
        f"decoder.layers.{i}.multihead_attn" for i in range(3)
    ]
    by_name = dict(found)
    for layer in record.layers:
        assert torch.equal(layer.weights, by_name[layer.name]), layer.name
    hf = record.as_hf_outputs()
    assert len(hf["encoder_attentions"]) == 2 and len(hf["cross_attentions"]) == 3


def test_decoder_layer_self_attention_on_its_fast_path():
    """In eval under no_grad, MultiheadAttention itself takes torch's native fast path."""
    torch.manual_seed(6)
    layer = nn.TransformerDecoderLayer(E, H, 32, batch_first=True).eval()
    tgt, memory = torch.randn(2, 5, E), torch.randn(2, 6, E)
    with torch.no_grad():
        expected_out, found = reference_weights(layer, lambda: layer(tgt, memory))
        with ap.capture(layer) as cap:
            out = layer(tgt, memory)
    assert torch.equal(out, expected_out)
    assert [(layer.name, layer.kind) for layer in cap.record.layers] == [
        ("self_attn", "self"),
        ("multihead_attn", "cross"),
    ]
    for layer_attention, (_, ref) in zip(cap.record.layers, found, strict=True):
        assert torch.equal(layer_attention.weights, ref)


# --------------------------------------------------------------------------------------------------
# nn.TransformerEncoderLayer / nn.TransformerEncoder fast path (self_attn.forward never runs)
# --------------------------------------------------------------------------------------------------
def encoder(norm_first=False, layers=2):
    torch.manual_seed(7)
    layer = nn.TransformerEncoderLayer(E, H, 32, dropout=0.1, batch_first=True, norm_first=norm_first)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=True).eval()


def test_encoder_nested_fast_path_exact_and_untouched():
    model = encoder()
    x = torch.randn(3, 6, E)
    lengths = [6, 4, 2]
    pad = padding(lengths, 6)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "nested tensors are a prototype"
        expected_out = model(x, src_key_padding_mask=pad)
        with ap.capture(model) as cap:
            out = model(x, src_key_padding_mask=pad)
        # the reference, layer by layer as the encoder ran them
        hidden = torch._nested_tensor_from_mask(x, pad.logical_not(), mask_check=False)
        float_pad = padding(lengths, 6, torch.float)
        refs = []
        for layer in model.layers:
            padded = hidden.to_padded_tensor(0.0, x.size())
            refs.append(
                layer.self_attn(
                    padded, padded, padded, key_padding_mask=float_pad, need_weights=True, average_attn_weights=False
                )[1]
            )
            hidden = layer(hidden)
    assert torch.equal(out, expected_out)
    assert out[1, 4:].abs().sum() == 0 and out[2, 2:].abs().sum() == 0  # the nested fast path did run
    assert len(cap.record.layers) == 2
    rows = ~pad
    for layer_attention, ref in zip(cap.record.layers, refs, strict=True):
        assert torch.equal(layer_attention.weights, ref * rows[:, None, :, None])
        # padded positions do not exist on this path
        assert torch.all(layer_attention.weights.transpose(1, 2)[~rows] == 0)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_fused_fast_path_with_src_mask(norm_first):
    model = encoder(norm_first=norm_first, layers=1).layers[0]
    x = torch.randn(2, 5, E)
    mask = causal(5, torch.float)
    with torch.no_grad():
        expected_out = model(x, src_mask=mask, is_causal=True)
        with ap.capture(model) as cap:
            out = model(x, src_mask=mask, is_causal=True)
        inner = model.norm1(x) if norm_first else x
        ref = model.self_attn(inner, inner, inner, attn_mask=mask, need_weights=True, average_attn_weights=False)[1]
        slow = model.train()(x, src_mask=mask, is_causal=True)  # dropout applies: different anyway
        model.eval()
    assert torch.equal(out, expected_out)
    assert not torch.equal(out, slow)
    assert torch.equal(cap.record.layers[0].weights, ref)
    assert torch.all(cap.record.layers[0].weights.triu(1) == 0)


def test_encoder_slow_path_captured_through_self_attn():
    model = encoder()
    x = torch.randn(2, 6, E)
    pad = padding([6, 3], 6)
    model.train()
    for layer in model.layers:
        layer.dropout.p = layer.dropout1.p = layer.dropout2.p = layer.self_attn.dropout = 0.0
    expected_out, found = reference_weights(model, lambda: model(x, src_key_padding_mask=pad))
    with ap.capture(model) as cap:
        out = model(x, src_key_padding_mask=pad)
    assert torch.equal(out, expected_out)
    assert [torch.equal(layer.weights, ref) for layer, (_, ref) in zip(cap.record.layers, found, strict=True)] == [
        True,
        True,
    ]


# --------------------------------------------------------------------------------------------------
# selection, queries/keys, adapter choice
# --------------------------------------------------------------------------------------------------
def test_layer_and_head_selection_and_queries_keys():
    torch.manual_seed(8)
    model = nn.Transformer(
        E, H, num_encoder_layers=3, num_decoder_layers=2, dim_feedforward=32, dropout=0.0, batch_first=True
    ).eval()
    src, tgt = torch.randn(2, 6, E), torch.randn(2, 4, E)
    with ap.capture(model) as full:
        model(src, tgt)
    with ap.capture(model, layers=[-1], heads=[1, 3], keep_queries_keys=True) as cap:
        model(src, tgt)
    got = {(layer.stack, layer.kind, layer.index) for layer in cap.record.layers}
    assert got == {("encoder", "self", 2), ("decoder", "self", 1), ("decoder", "cross", 1)}
    for layer in cap.record.layers:
        reference = full.record.layer(layer.index, stack=layer.stack, kind=layer.kind).weights[:, [1, 3]]
        assert torch.equal(layer.weights, reference) and layer.heads == [1, 3]
        scores = layer.queries @ layer.keys.transpose(-1, -2) / (E // H) ** 0.5
        torch.testing.assert_close(scores.softmax(-1), layer.weights, rtol=1e-4, atol=1e-5)
    with ap.capture(model, layers=["decoder.layers.0"]) as by_path:
        model(src, tgt)
    assert sorted(layer.name for layer in by_path.record.layers) == [
        "decoder.layers.0.multihead_attn",
        "decoder.layers.0.self_attn",
    ]


def test_adapter_is_chosen_for_plain_models_only():
    assert "torch" in ADAPTERS.names()
    assert adapter_for(nn.Transformer(E, H, 1, 1, 32)) is ADAPTERS.get("torch")
    assert adapter_for(nn.Sequential(nn.Linear(2, 2))) is None
    assert ADAPTERS.get("torch").priority == 90


# --------------------------------------------------------------------------------------------------
# safety and errors
# --------------------------------------------------------------------------------------------------
class BoomError(Exception):
    pass


def test_everything_restored_when_the_body_raises():
    model = encoder()
    model.train()
    model.layers[0].linear1.weight.requires_grad_(False)
    modes = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    before = global_hooks()
    with pytest.raises(BoomError):
        with ap.capture(model) as cap:
            model(torch.randn(2, 3, E))
            assert global_hooks() != before
            raise BoomError
    assert global_hooks() == before and hooks_left(model) == []
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == grads
    assert not torch_adapter._WATCHED
    assert all(layer.self_attn.dropout == 0.1 for layer in model.layers)
    with pytest.raises(CaptureError):
        _ = cap.record  # reading it raises


def test_restored_when_the_model_raises_inside_attention():
    mha = nn.MultiheadAttention(E, H, batch_first=True)
    before = global_hooks()
    with pytest.raises(AssertionError):
        with ap.capture(mha):
            mha(torch.randn(2, 3, E), torch.randn(2, 4, E + 1), torch.randn(2, 4, E))  # wrong key size
    assert global_hooks() == before and hooks_left(mha) == [] and not torch_adapter._WATCHED


def test_the_same_module_cannot_be_captured_twice_at_once():
    shared = nn.MultiheadAttention(E, H)
    a, b = nn.ModuleList([shared]), nn.ModuleDict({"attn": shared})
    with ap.capture(a):
        with pytest.raises(CaptureError, match="already being captured"):
            with ap.capture(b):
                pass
    assert not torch_adapter._WATCHED


def test_clear_errors():
    with pytest.raises(ap.CaptureError, match="no adapter handles Linear"):
        with ap.capture(nn.Linear(2, 2)):
            pass
    with pytest.raises(ap.CaptureError, match="register_attention_module"):
        with ap.capture(nn.Linear(2, 2), adapter="torch"):
            pass
    mha = nn.MultiheadAttention(E, H)
    with pytest.raises(ValueError, match="head 7 does not exist.*4 heads"):
        with ap.capture(mha, heads=[7]):
            mha(torch.randn(3, 1, E), torch.randn(3, 1, E), torch.randn(3, 1, E))

    class Odd(nn.MultiheadAttention):
        def forward(self, x):
            return super().forward(x, x, x)

    odd = Odd(E, H)
    with pytest.raises(CaptureError, match="declare it instead"):
        with ap.capture(odd):
            odd(torch.randn(3, 1, E))
    assert not torch_adapter._WATCHED


def test_plain_module_around_a_transformers_model():
    """A user's torch classifier over a transformers encoder: the HF adapter is used for the inner model."""
    import transformers as tf

    from tests.core.helpers import hooks_left

    class Classifier(torch.nn.Module):
        def __init__(self, encoder):
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(32, 2)

        def forward(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return self.head(hidden[:, 0])

    config = tf.BertConfig(
        hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=37, vocab_size=99
    )
    torch.manual_seed(0)
    model = Classifier(tf.BertModel(config)).eval()
    import copy

    eager = tf.BertModel._from_config(copy.deepcopy(config), attn_implementation="eager").eval()
    eager.load_state_dict(model.encoder.state_dict())
    ids = torch.randint(3, 99, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0
    with torch.no_grad():
        reference = model(ids, mask)
        with ap.capture(model) as cap:
            inside = model(ids, mask)
        expected = eager(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    assert torch.equal(reference, inside)
    layers = cap.record.layers
    assert [layer.name for layer in layers] == [
        "encoder.encoder.layer.0.attention.self",
        "encoder.encoder.layer.1.attention.self",
    ]
    for layer, ref in zip(layers, expected, strict=True):
        assert (layer.weights - ref).abs().max() <= 1e-5
    assert hooks_left(model) == []


def test_mha_called_with_another_query_than_key_is_cross_attention():
    """``mha(q, kv, kv)``: the call, not the module's name, says it is cross-attention; ``mha(x, x, x)``
    stays self-attention. The weights are what the module itself returns."""

    class Reader(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)  # a name that says nothing

        def forward(self, x, memory=None):
            kv = x if memory is None else memory
            return self.attn(x, kv, kv, need_weights=True, average_attn_weights=False)

    torch.manual_seed(0)
    model = Reader().eval()
    x, memory = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    with torch.no_grad():
        _, expected_cross = model(x, memory)
        _, expected_self = model(x)
    with torch.no_grad(), ap.capture(model) as cap:
        model(x, memory)
    (layer,) = cap.record.layers
    assert layer.kind == "cross"
    assert layer.weights.shape == (2, 2, 3, 5)
    torch.testing.assert_close(layer.weights, expected_cross, rtol=0, atol=1e-6)
    with torch.no_grad(), ap.capture(model) as cap:
        model(x)
    (layer,) = cap.record.layers
    assert layer.kind == "self"
    torch.testing.assert_close(layer.weights, expected_self, rtol=0, atol=1e-6)
