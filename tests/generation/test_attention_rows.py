"""Attention rows are the captured cross-attention of the same teacher-forced forward (exactly) and
HF's eager ``output_attentions`` (to float rounding); step scores come from the model's own logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attn_plugins as ap
from attn_plugins.generation import explain_generation

from .models import SOURCE, tiny

TARGET = [11, 12, 13, 14]


def _forward_inputs(model, result):
    return dict(input_ids=torch.tensor([SOURCE]), decoder_input_ids=torch.tensor([result.info["prefix_ids"]]))


@pytest.mark.parametrize("arch", ["bart", "t5"])
def test_cross_attention_rows_are_the_captured_weights(arch):
    model = tiny(arch)
    methods = [("attention", {"layer": 0, "head": 1}), ("attention", {"layer": -1}), ("attention", {"layer": "mean"})]
    result = explain_generation(model, None, SOURCE, TARGET, methods=methods, progress=False)
    with ap.capture(model) as cap:
        with torch.no_grad():
            model(**_forward_inputs(model, result))
    cross = cap.record.select("decoder", "cross")
    self_ = cap.record.select("decoder", "self")
    assert np.array_equal(result.source["attention(head=1,layer=0)"], cross[0].weights[0, 1].double().numpy())
    assert np.array_equal(result.prefix["attention(head=1,layer=0)"], self_[0].weights[0, 1].double().numpy())
    assert np.array_equal(result.source["attention(layer=-1)"], cross[-1].weights[0].double().mean(0).numpy())
    mean = torch.stack([x.weights[0].double().mean(0) for x in cross]).mean(0).numpy()
    assert np.array_equal(result.source["attention(layer=mean)"], mean)
    # the independent reference: transformers' eager attention with output_attentions=True
    model.set_attn_implementation("eager")
    with torch.no_grad():
        eager = model(**_forward_inputs(model, result), output_attentions=True)
    np.testing.assert_allclose(
        result.source["attention(head=1,layer=0)"], eager.cross_attentions[0][0, 1].numpy(), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_decoder_only_rows_split_at_the_prompt(arch):
    model = tiny(arch)
    result = explain_generation(
        model, None, SOURCE, TARGET, methods=[("attention", {"layer": 1, "head": 2}), "rollout"], progress=False
    )
    full = torch.tensor([SOURCE + TARGET[:-1]])
    with ap.capture(model) as cap:
        with torch.no_grad():
            model(input_ids=full)
    weights = cap.record.select(None, "self")[1].weights[0, 2].double()
    rows = weights[len(SOURCE) - 1 :]
    assert np.array_equal(result.source["attention(head=2,layer=1)"], rows[:, : len(SOURCE)].numpy())
    assert np.array_equal(result.prefix["attention(head=2,layer=1)"], rows[:, len(SOURCE) :].numpy())
    total = result.source["rollout"].sum(1) + result.prefix["rollout"].sum(1)
    np.testing.assert_allclose(total, 1.0, atol=1e-9)  # rollout rows are shares of the whole input


def test_encoder_decoder_rollout_rows_are_shares_of_the_source():
    model = tiny("bart")
    result = explain_generation(model, None, SOURCE, TARGET, methods=["rollout"], progress=False)
    np.testing.assert_allclose(result.source["rollout"].sum(1), 1.0, atol=1e-9)
    assert (result.source["rollout"] >= 0).all()


def test_step_scores_are_the_models_probabilities():
    model = tiny("bart")
    alt = 7
    result = explain_generation(model, None, SOURCE, TARGET, methods=["attention"], contrast=alt, progress=False)
    with torch.no_grad():
        logits = model(**_forward_inputs(model, result)).logits[0].double()
    probs = torch.softmax(logits, -1)
    expected = probs[torch.arange(len(TARGET)), torch.tensor(TARGET)].numpy()
    np.testing.assert_allclose(result.step_scores["probability"], expected, atol=1e-12)
    entropy = -(probs * probs.log()).sum(-1).numpy()
    np.testing.assert_allclose(result.step_scores["entropy"], entropy, atol=1e-10)
    np.testing.assert_allclose(result.step_scores["contrast"], expected - probs[:, alt].numpy(), atol=1e-12)


def test_generated_target_is_greedy_output_and_model_is_left_as_it_was():
    model = tiny("gpt2")
    model.train()
    with torch.no_grad():
        greedy = model.eval().generate(torch.tensor([SOURCE]), max_new_tokens=3, min_new_tokens=3, do_sample=False)
    model.train()
    result = explain_generation(
        model,
        None,
        SOURCE,
        methods=["saliency"],
        progress=False,
        generate_kwargs={"max_new_tokens": 3, "min_new_tokens": 3},
    )
    assert result.target_ids == greedy[0, len(SOURCE) :].tolist()
    assert model.training and all(m.training for m in model.modules())
    assert not model._forward_hooks and not model.get_input_embeddings()._forward_hooks  # noqa: SLF001


def test_bad_input_fails_clearly():
    model = tiny("gpt2")
    with pytest.raises(ap.UnknownNameError):
        explain_generation(model, None, SOURCE, TARGET, methods=["no_such_method"], progress=False)
    with pytest.raises(ap.InputError):
        explain_generation(model, None, SOURCE, TARGET, methods=[], progress=False)
    with pytest.raises(ap.InputError):
        explain_generation(model, None, "text without tokenizer", TARGET, methods=["saliency"], progress=False)
    with pytest.raises(ap.InputError):
        explain_generation(model, None, SOURCE, TARGET, methods=["saliency"], output="odds", progress=False)
