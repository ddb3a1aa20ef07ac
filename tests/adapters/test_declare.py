"""Declaring user-written attention modules: one line makes ``capture`` record them."""

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_impl

import attn_plugins as ap
from attn_plugins.adapters import declare
from attn_plugins.adapters import torch as torch_adapter
from attn_plugins.adapters.declare import attention_output, register_attention_module, unregister_attention_module
from attn_plugins.collector import CaptureError


@pytest.fixture(autouse=True)
def clean_declarations():
    saved = (dict(declare._BY_CLASS), dict(declare._BY_NAME), dict(declare._BY_INSTANCE))
    yield
    declare._BY_CLASS.clear(), declare._BY_CLASS.update(saved[0])
    declare._BY_NAME.clear(), declare._BY_NAME.update(saved[1])
    declare._BY_INSTANCE.clear(), declare._BY_INSTANCE.update(saved[2])
    assert not torch_adapter._WATCHED


# --------------------------------------------------------------------------------------------------
# a user's own Bahdanau seq2seq, declared with one line
# --------------------------------------------------------------------------------------------------
@attention_output(index=1, kind="cross")
class Bahdanau(nn.Module):
    """Additive attention: ``forward(query [b, d], keys [b, S, d], mask) -> (context, weights [b, S])``."""

    def __init__(self, d):
        super().__init__()
        self.w_q, self.w_k, self.v = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False), nn.Linear(d, 1)

    def forward(self, query, keys, mask):
        scores = self.v(torch.tanh(self.w_q(query)[:, None] + self.w_k(keys))).squeeze(-1)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        return (weights[:, :, None] * keys).sum(1), weights


class Seq2Seq(nn.Module):
    def __init__(self, d=8, attention_cls=Bahdanau):
        super().__init__()
        self.encoder = nn.GRU(d, d, batch_first=True)
        self.cell = nn.GRUCell(2 * d, d)
        self.attention = attention_cls(d)

    def forward(self, src, steps, mask):
        keys, h = self.encoder(src)
        h = h[0]
        context = torch.zeros_like(h)
        outputs = []
        for _ in range(steps):
            h = self.cell(torch.cat([context, h], -1), h)
            context, _ = self.attention(h, keys, mask)
            outputs.append(context)
        return torch.stack(outputs, 1)


def seq2seq_inputs():
    torch.manual_seed(0)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    return torch.randn(2, 6, 8), mask


def returned_weights(model, run):
    seen = []
    handle = model.attention.register_forward_hook(lambda m, a, out: seen.append(out[1].detach()))
    try:
        out = run()
    finally:
        handle.remove()
    return out, torch.stack(seen, 1)  # [b, steps, S]


def test_bahdanau_decoder_steps_form_one_alignment_matrix():
    model = Seq2Seq().eval()
    src, mask = seq2seq_inputs()
    expected_out, expected = returned_weights(model, lambda: model(src, 5, mask))
    with ap.capture(model) as cap:
        out = model(src, 5, mask)
    assert torch.equal(out, expected_out)
    (layer,) = cap.record.layers
    assert (layer.name, layer.kind, layer.stack, layer.index) == ("attention", "cross", None, 0)
    assert layer.weights.shape == (2, 1, 5, 6)
    assert torch.equal(layer.weights[:, 0], expected)
    assert torch.all(layer.weights[1, :, :, 4:] == 0)
    assert cap.record.as_hf_outputs()["cross_attentions"][0] is layer.weights


def test_two_forwards_give_two_records_and_training_mode_is_kept():
    model = Seq2Seq().train()
    src, mask = seq2seq_inputs()
    with ap.capture(model) as cap:
        model(src, 3, mask)
        model(src[:1], 2, mask[:1])
    assert [r.layers[0].weights.shape for r in cap.records] == [(2, 1, 3, 6), (1, 1, 2, 6)]
    assert all(m.training for m in model.modules())


# --------------------------------------------------------------------------------------------------
# the ways to declare
# --------------------------------------------------------------------------------------------------
class Plain(nn.Module):
    """Returns a dict, keeps the weights as an attribute too."""

    def __init__(self, d=8):
        super().__init__()
        self.proj = nn.Linear(d, d)

    def forward(self, query, keys, mask=None):
        weights = (self.proj(query)[:, None] * keys).sum(-1).softmax(-1)  # [b, S]
        self.last = weights
        return {"context": (weights[:, :, None] * keys).sum(1), "attn": weights}


class Wrapper(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.attention = inner

    def forward(self, query, keys):
        return self.attention(query, keys)


@pytest.mark.parametrize("how", ["class", "dotted_name", "bare_name", "instance", "decorator_on_instance"])
def test_declaring_by_class_name_or_instance(how):
    inner = Plain()
    model = Wrapper(inner)
    if how == "class":
        register_attention_module(Plain, weights="attn")
    elif how == "dotted_name":
        register_attention_module(f"{Plain.__module__}.Plain", weights="attn")
    elif how == "bare_name":
        register_attention_module("Plain", weights="attn")
    elif how == "instance":
        register_attention_module(model.get_submodule("attention"), weights="attn")
    else:
        attention_output(weights="attn")(inner)
    query, keys = torch.randn(3, 8), torch.randn(3, 5, 8)
    with ap.capture(model) as cap:
        out = model(query, keys)
    assert torch.equal(cap.record.layers[0].weights[:, 0, 0], out["attn"])
    unregister_attention_module(
        {"class": Plain, "dotted_name": f"{Plain.__module__}.Plain", "bare_name": "Plain"}.get(how, inner)
    )
    with pytest.raises(ap.CaptureError, match="no adapter handles Wrapper"):
        with ap.capture(model):
            pass


@pytest.mark.parametrize(
    "weights",
    [
        lambda out: out["attn"],
        lambda out, call: call.module.last,
    ],
)
def test_callable_weights(weights):
    register_attention_module(Plain, weights=weights)
    model = Wrapper(Plain())
    with ap.capture(model) as cap:
        out = model(torch.randn(2, 8), torch.randn(2, 4, 8))
    assert torch.equal(cap.record.layers[0].weights[:, 0, 0], out["attn"])


def test_instance_declaration_overrides_class_and_subclasses_inherit():
    class Sub(Plain):
        pass

    register_attention_module(Plain, weights="attn", kind="self")
    a, b = Sub(), Sub()
    register_attention_module(b, weights="attn", kind="cross")
    model = nn.ModuleDict({"a": Wrapper(a), "b": Wrapper(b)})
    assert declare.declaration_for(a).kind == "self" and declare.declaration_for(b).kind == "cross"
    with ap.capture(model) as cap:
        model["a"](torch.randn(2, 8), torch.randn(2, 4, 8))
        model["b"](torch.randn(2, 8), torch.randn(2, 4, 8))
    assert {(layer.name, layer.kind) for r in cap.records for layer in r.layers} == {
        ("a.attention", "self"),
        ("b.attention", "cross"),
    }


@pytest.mark.parametrize(
    "layout,shape", [("bk", (2, 5)), ("kb", (5, 2)), ("bqk", (2, 3, 5)), ("qbhk", (3, 2, 4, 5)), ("bhk", (2, 4, 5))]
)
def test_layouts(layout, shape):
    torch.manual_seed(1)
    raw = torch.rand(shape)

    class Fixed(nn.Module):
        def forward(self, x):
            return x, raw

    register_attention_module(Fixed, weights=1, layout=layout)
    model = Fixed()
    with ap.capture(model) as cap:
        model(torch.zeros(1))
    got = cap.record.layers[0].weights
    order = [layout.index(c) for c in "bhqk" if c in layout]
    expected = raw.permute(*order)
    for position, letter in enumerate("bhqk"):
        if letter not in layout:
            expected = expected.unsqueeze(position)
    assert torch.equal(got, expected)


# --------------------------------------------------------------------------------------------------
# steps, kinds, stacks, nesting
# --------------------------------------------------------------------------------------------------
class Shared(nn.Module):
    """One attention module used by every layer (ALBERT style) or at every step."""

    def __init__(self, attention, calls=3):
        super().__init__()
        self.attn = attention
        self.calls = calls

    def forward(self, x):
        for _ in range(self.calls):
            x = x + self.attn(x)[0]
        return x


@attention_output(index=1)
class SelfAttention(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)

    def forward(self, x):
        q, k, v = self.qkv(x).chunk(3, -1)
        weights = (q @ k.transpose(-1, -2) / 8**0.5).softmax(-1)
        return weights @ v, weights  # weights [b, q, k]


@pytest.mark.parametrize(
    "steps,query_len,expect",
    [
        ("auto", 4, [(0, (2, 1, 4, 4)), (1, (2, 1, 4, 4)), (2, (2, 1, 4, 4))]),  # calls are layers
        ("auto", 1, [(0, (2, 1, 3, 3))]),  # one query per call: decoding steps (self-attention: placed by position)
        (True, 4, [(0, (2, 1, 12, 4))]),
        (False, 1, [(0, (2, 1, 1, 1)), (1, (2, 1, 1, 1)), (2, (2, 1, 1, 1))]),
    ],
)
def test_repeated_calls_are_layers_or_steps(steps, query_len, expect):
    register_attention_module(SelfAttention, weights=1, kind="cross" if steps is True else None, steps=steps)
    model = Shared(SelfAttention())
    with ap.capture(model) as cap:
        model(torch.randn(2, query_len, 8))
    assert [(layer.index, tuple(layer.weights.shape)) for layer in cap.record.layers] == expect


def test_kind_and_stack_from_paths_callables_and_nesting():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.self_attn = SelfAttention()
            self.cross_attn = SelfAttention()

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.ModuleList([Block()])
            self.decoder = nn.ModuleList([Block()])

        def forward(self, x):
            for block in (*self.encoder, *self.decoder):
                x = block.self_attn(x)[0] + block.cross_attn(x)[0]
            return x

    model = Model()
    with ap.capture(model) as cap:
        model(torch.randn(1, 3, 8))
    got = sorted((layer.name, layer.stack, layer.kind) for layer in cap.record.layers)
    assert got == [
        ("decoder.0.cross_attn", "decoder", "cross"),
        ("decoder.0.self_attn", "decoder", "self"),
        ("encoder.0.cross_attn", "encoder", "cross"),
        ("encoder.0.self_attn", "encoder", "self"),
    ]
    register_attention_module(SelfAttention, weights=1, kind=lambda m: "self", stack=lambda m: None)
    with ap.capture(model) as cap:
        model(torch.randn(1, 3, 8))
    assert {(layer.stack, layer.kind) for layer in cap.record.layers} == {(None, "self")}
    assert [layer.index for layer in cap.record.layers] == [0, 1, 2, 3]


def test_nested_declared_and_mha_inside_a_declared_module_are_not_double_counted():
    @attention_output(index=1)
    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = SelfAttention()
            self.mha = nn.MultiheadAttention(8, 2, batch_first=True)

        def forward(self, x):
            out, weights = self.inner(x)
            return self.mha(out, out, out)[0], weights

    model = Outer()
    with ap.capture(model) as cap:
        model(torch.randn(1, 3, 8))
    assert [layer.name for layer in cap.record.layers] == [""]


def test_declared_kind_for_a_torch_mha():
    model = nn.ModuleDict({"attn": nn.MultiheadAttention(8, 2)})
    register_attention_module(model["attn"], kind="cross")
    with ap.capture(model) as cap:
        model["attn"](torch.randn(3, 1, 8), torch.randn(5, 1, 8), torch.randn(5, 1, 8))
    (layer,) = cap.record.layers
    assert layer.kind == "cross" and layer.weights.shape == (1, 2, 3, 5)  # still the exact recompute


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------
def test_bad_declarations_are_refused_with_clear_messages():
    with pytest.raises(TypeError, match="torch.nn.Module subclass, a dotted class name or a module instance"):
        register_attention_module(42)
    with pytest.raises(TypeError, match="not a torch.nn.Module subclass"):
        register_attention_module(dict)
    with pytest.raises(ValueError, match="not a class name"):
        register_attention_module("pkg.")
    with pytest.raises(TypeError, match="weights must be an int"):
        register_attention_module(Plain, weights=1.5)
    with pytest.raises(ValueError, match="kind must be 'self', 'cross'"):
        register_attention_module(Plain, kind="both")
    with pytest.raises(ValueError, match="invalid layout 'bx'"):
        register_attention_module(Plain, layout="bx")
    with pytest.raises(ValueError, match="invalid layout 'bqq'"):
        attention_output(index=1, layout="bqq")
    with pytest.raises(ValueError, match="steps must be 'auto', True or False"):
        register_attention_module(Plain, steps=2)
    with pytest.raises(TypeError, match="index= or weights=, not both"):
        attention_output(index=1, weights="attn")
    with pytest.raises(TypeError, match="index must be an int"):
        attention_output(index="1")
    assert declare.declaration_for(Plain()) is None


@pytest.mark.parametrize(
    "weights,layout,message",
    [
        (5, None, r"cannot read its weights with weights=5 from an output of type dict"),
        ("context", "bhqk", r"layout 'bhqk' has 4 dimensions but the weights have shape \(2, 8\)"),
        (lambda out: "nope", None, r"returned str where its attention weights should be"),
        (lambda out: torch.ones(2, 1, 1, 1, 4), None, r"no default layout"),
    ],
)
def test_bad_weights_at_run_time_name_the_module(weights, layout, message):
    register_attention_module(Plain, weights=weights, layout=layout)
    model = Wrapper(Plain())
    before = dict(module_impl._global_forward_hooks)
    with pytest.raises(CaptureError, match=message) as info:
        with ap.capture(model):
            model(torch.randn(2, 8), torch.randn(2, 4, 8))
    assert "'attention'" in str(info.value)
    assert dict(module_impl._global_forward_hooks) == before


def test_calls_without_weights_are_skipped_with_a_warning():
    register_attention_module(Plain, weights=lambda out: None)
    model = Wrapper(Plain())
    with pytest.warns(UserWarning, match="returned no weights"):
        with ap.capture(model) as cap:
            model(torch.randn(2, 8), torch.randn(2, 4, 8))
    assert cap.records == []


def test_exported_names():
    assert callable(declare.attention_output) and callable(declare.register_attention_module)
    assert set(declare.__all__) >= {"attention_output", "register_attention_module", "unregister_attention_module"}
