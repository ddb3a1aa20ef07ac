"""Every registered adapter removes every hook when the model raises in the middle of its forward.

As Captum's ``test_hook_removal``: a model whose forward raises after at least one attention module
ran, under each adapter in ``ADAPTERS``; afterwards no forward or pre-hook is left on any module, no
global module hook, no wrapped ``AttentionInterface`` entry and no wrapped torch sdpa function.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.modules import module as module_impl

import attn_plugins as ap
from attn_plugins.adapters import ADAPTERS

BUILTIN = ("huggingface", "allennlp", "torch")


class BoomError(Exception):
    pass


class Raiser(nn.Module):
    """Stands where the rest of the model would run: raises after the first attention module ran."""

    def __init__(self, ran: list) -> None:
        super().__init__()
        self.ran = ran

    def forward(self, *args, **kwargs):
        assert self.ran, "no attention module ran before the failure"
        raise BoomError


def _ran_hook(ran: list):
    return lambda module, args, output: ran.append(type(module).__name__)


def _huggingface(ran):
    from fixtures.tiny_models import build

    model, inputs = build("bert")
    layer = model.encoder.layer[0]
    layer.intermediate = Raiser(ran)  # after layer 0's attention, before layer 1's
    probe = layer.attention.self.register_forward_hook(_ran_hook(ran))
    return model, lambda: model(**inputs), [probe]


def _allennlp(ran):
    from attn_plugins.compat import install_allennlp_compat

    install_allennlp_compat()
    pytest.importorskip("allennlp")
    from allennlp.data import Vocabulary
    from allennlp.models import Model
    from allennlp.modules.attention import DotProductAttention
    from allennlp.modules.transformer import SelfAttention
    from allennlp.nn.beam_search import BeamSearch

    class Failing(Model):
        def __init__(self):
            super().__init__(Vocabulary())
            self.encoder_attention = SelfAttention(hidden_size=16, num_attention_heads=4)
            self.attention = DotProductAttention()
            self.beam = BeamSearch(end_index=0, max_steps=2, beam_size=1)
            self.rest = Raiser(ran)

        def forward(self, x):
            encoded = self.encoder_attention(x).hidden_states
            self.attention(encoded[:, 0], encoded)
            return self.rest(encoded)

    model = Failing().eval()
    probe = model.encoder_attention.register_forward_hook(_ran_hook(ran))
    x = torch.randn(2, 5, 16)
    return model, lambda: model(x), [probe]


def _torch(ran):
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True)
    # eval + no_grad: the encoder layers take their fused fast path, watched through global module hooks
    model = nn.Sequential(
        nn.TransformerEncoder(layer, 2, enable_nested_tensor=False),
        Raiser(ran),
        nn.MultiheadAttention(8, 2, batch_first=True),
    ).eval()
    probe = module_impl.register_module_forward_hook(
        lambda module, args, output: ran.append("layer") if isinstance(module, nn.TransformerEncoderLayer) else None
    )
    return model, lambda: model(torch.randn(2, 4, 8)), [probe]


BUILDERS = {"huggingface": _huggingface, "allennlp": _allennlp, "torch": _torch}


def _global_state():
    state = {
        "forward_hooks": dict(module_impl._global_forward_hooks),
        "forward_pre_hooks": dict(module_impl._global_forward_pre_hooks),
        "backward_hooks": dict(module_impl._global_backward_hooks),
        "sdpa": torch.nn.functional.scaled_dot_product_attention,
    }
    try:
        from transformers.modeling_utils import AttentionInterface

        state["attention_interface"] = dict(AttentionInterface._global_mapping)
    except ImportError:  # pragma: no cover - transformers is a test dependency
        pass
    return state


def _module_hooks(model) -> dict[str, int]:
    counts = {}
    for name, m in model.named_modules():
        n = sum(
            len(d)
            for d in (
                m._forward_hooks,
                m._forward_pre_hooks,
                m._forward_hooks_with_kwargs,
                m._forward_pre_hooks_with_kwargs,
                m._backward_hooks,
                m._backward_pre_hooks,
            )
        )
        if n:
            counts[name or "<root>"] = n
    return counts


def test_the_builtin_adapters_are_registered():
    assert set(BUILTIN) <= set(ADAPTERS.names()) and set(BUILDERS) == set(BUILTIN)


@pytest.mark.parametrize("name", ADAPTERS.names())
def test_no_hook_left_when_the_forward_raises_midway(name):
    if name not in BUILDERS:
        pytest.fail(f"adapter {name!r} is registered but has no failing model here: add one to BUILDERS")
    ran: list = []
    model, run, probes = BUILDERS[name](ran)
    try:
        hooks_before, state_before = _module_hooks(model), _global_state()
        with pytest.raises(BoomError):
            with torch.no_grad(), ap.capture(model, adapter=name):
                run()
        assert ran, "the forward failed before any attention module ran"
        assert _module_hooks(model) == hooks_before
        assert _global_state() == state_before
        if name == "allennlp":
            assert "search" not in vars(model.beam)  # the wrapped BeamSearch.search is gone again
        ran.clear()
        with pytest.raises(BoomError):  # and the model runs as before: the same failure, no capture
            run()
        assert ran
    finally:
        for probe in probes:
            probe.remove()
