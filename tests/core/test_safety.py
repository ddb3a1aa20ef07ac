"""The user's model is left exactly as it was: hooks, implementation, training mode, requires_grad."""

import threading

import pytest
import torch

import attn_plugins as ap
from attn_plugins.adapters import huggingface as hf_adapter
from attn_plugins.collector import CaptureError
from fixtures.tiny_models import build

from .helpers import attn_impls, hooks_left, max_diff


class BoomError(Exception):
    pass


@pytest.mark.parametrize("name", ["bert", "bart", "falcon_like"])
def test_everything_restored_when_the_body_raises(name):
    if name == "falcon_like":  # a model whose attention calls torch's sdpa itself (intercepted)
        import transformers as tf

        model = tf.FalconForCausalLM(
            tf.FalconConfig(
                hidden_size=32,
                num_attention_heads=4,
                num_hidden_layers=2,
                vocab_size=99,
                new_decoder_architecture=False,
            )
        ).eval()
        inputs = {"input_ids": torch.randint(3, 99, (1, 5))}
    else:
        model, inputs = build(name)
    model.train()
    frozen = next(model.parameters())
    frozen.requires_grad_(False)
    grads = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    impls = attn_impls(model)
    mapping_before = dict(hf_adapter.__dict__.get("_WRAPPED", {}))
    from transformers.modeling_utils import AttentionInterface

    functions_before = dict(AttentionInterface._global_mapping)
    sdpa_before = torch.nn.functional.scaled_dot_product_attention
    with pytest.raises(BoomError):
        with ap.capture(model) as cap:
            model(**inputs)
            raise BoomError
    assert hooks_left(model) == []
    assert attn_impls(model) == impls
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == grads
    assert dict(AttentionInterface._global_mapping) == functions_before
    assert hf_adapter._WRAPPED == mapping_before and not hf_adapter._HANDLERS
    assert torch.nn.functional.scaled_dot_product_attention is sdpa_before
    with pytest.raises(CaptureError, match="not finished|nothing"):
        _ = cap.record  # reading it raises


def test_nested_capture_on_same_model_is_a_clear_error():
    model, inputs = build("bert")
    with ap.capture(model):
        with pytest.raises(CaptureError, match="already being captured"):
            with ap.capture(model):
                pass
        model(**inputs)
    assert hooks_left(model) == []


def test_nested_capture_of_two_models():
    bert, bert_inputs = build("bert")
    llama, llama_inputs = build("llama")
    with torch.no_grad(), ap.capture(bert) as outer:
        with ap.capture(llama) as inner:
            llama(**llama_inputs)
            bert(**bert_inputs)
        bert(**bert_inputs)
    assert len(inner.records) == 1 and inner.record.model_class == "LlamaForCausalLM"
    assert len(outer.records) == 2 and outer.record.model_class == "BertModel"
    assert hooks_left(bert) == [] and hooks_left(llama) == []


def test_two_threads_two_models():
    pairs = {name: build(name) for name in ("bert", "gpt2")}
    eager = {}
    for name in pairs:
        eager[name], _ = build(name, "eager")
        eager[name].load_state_dict(pairs[name][0].state_dict())
    results, errors = {}, []
    barrier = threading.Barrier(2)

    def work(name):
        try:
            model, inputs = pairs[name]
            with torch.no_grad(), ap.capture(model) as cap:
                barrier.wait()
                for _ in range(3):
                    model(**inputs)
            results[name] = cap.record
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for name, (model, inputs) in pairs.items():
        with torch.no_grad():
            expected = eager[name](**inputs, output_attentions=True).attentions
        assert max_diff(expected, results[name].as_hf_outputs()["attentions"]) <= 1e-5
        assert hooks_left(model) == []


def test_gradients_flow_and_outputs_unchanged_in_training_mode():
    model, inputs = build("bert")
    model.train()
    torch.manual_seed(0)
    reference = model(**inputs).last_hidden_state
    torch.manual_seed(0)
    with ap.capture(model):
        inside = model(**inputs).last_hidden_state
    assert torch.equal(reference, inside)
    inside.sum().backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
