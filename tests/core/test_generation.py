"""generate() inside capture: every step recorded and assembled, equal to a teacher-forced eager forward."""

import pytest
import torch

import attn_plugins as ap
from fixtures.tiny_models import build

from .helpers import hooks_left, max_diff

TOL = 1e-5
NEW = 6


def _pair(name):
    model, inputs = build(name)
    eager, _ = build(name, "eager")
    eager.load_state_dict(model.state_dict())
    return model, eager, {k: v for k, v in inputs.items() if not k.startswith("decoder_")}


def _generate(model, inputs, sample):
    torch.manual_seed(7)
    options = dict(max_new_tokens=NEW, min_new_tokens=NEW, do_sample=sample)
    if sample:
        options.update(top_k=0, temperature=1.5)
    with torch.no_grad(), ap.capture(model) as cap:
        sequences = model.generate(**inputs, **options)
    return cap.record, sequences


@pytest.mark.parametrize("sample", [False, True], ids=["greedy", "sampling"])
@pytest.mark.parametrize("name", ["gpt2", "llama", "mistral", "gemma2"])
def test_decoder_only_generation(name, sample):
    model, eager, inputs = _pair(name)
    record, sequences = _generate(model, inputs, sample)
    processed = sequences[:, :-1]  # the last generated token is never fed back as a query
    mask = torch.cat(
        [inputs["attention_mask"], torch.ones(processed.shape[0], NEW - 1, dtype=inputs["attention_mask"].dtype)], dim=1
    )
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = eager(
            input_ids=processed, attention_mask=mask, position_ids=positions, output_attentions=True
        ).attentions
    got = record.as_hf_outputs()["attentions"]
    assert got[0].shape == (2, 4, processed.shape[1], processed.shape[1])
    # rows of left-padding queries attend to nothing real; compare every real query row
    assert max_diff(expected, got, query_rows=mask.bool()) <= TOL
    assert record.metadata["generation_steps"] == NEW
    assert torch.equal(record.inputs["input_ids"], processed)
    assert hooks_left(model) == [] and "generate" not in vars(model)


@pytest.mark.parametrize("sample", [False, True], ids=["greedy", "sampling"])
@pytest.mark.parametrize("name", ["bart", "t5"])
def test_encoder_decoder_generation(name, sample):
    model, eager, inputs = _pair(name)
    record, sequences = _generate(model, inputs, sample)
    decoder_ids = sequences[:, :-1]
    with torch.no_grad():
        expected = eager(**inputs, decoder_input_ids=decoder_ids, output_attentions=True)
    got = record.as_hf_outputs()
    for key in ("encoder_attentions", "decoder_attentions", "cross_attentions"):
        assert max_diff(getattr(expected, key), got[key]) <= TOL, key
    cross = got["cross_attentions"][0]
    assert cross.shape == (2, 4, decoder_ids.shape[1], inputs["input_ids"].shape[1])  # target x source alignment
    assert torch.equal(record.inputs["decoder_input_ids"], decoder_ids)
    assert torch.equal(record.inputs["input_ids"], inputs["input_ids"])


def test_manual_decoding_loop_with_cache_is_assembled():
    model, eager, inputs = _pair("llama")
    ids = inputs["input_ids"][:1, :5]
    with torch.no_grad(), ap.capture(model) as cap:
        out = model(input_ids=ids, use_cache=True)
        past, step = out.past_key_values, ids
        for _ in range(3):
            nxt = out.logits[:, -1:].argmax(-1)
            step = torch.cat([step, nxt], dim=1)
            out = model(input_ids=nxt, past_key_values=past, use_cache=True)
            past = out.past_key_values
        expected = eager(input_ids=step, output_attentions=True).attentions
    assert len(cap.records) == 1
    assert max_diff(expected, cap.record.as_hf_outputs()["attentions"]) <= TOL


def test_independent_forwards_make_separate_records():
    model, _, inputs = _pair("gpt2")
    with torch.no_grad(), ap.capture(model) as cap:
        model(**inputs)
        model(input_ids=inputs["input_ids"][:, :4])
    assert len(cap.records) == 2
    assert cap.record.layers[0].weights.shape[-1] == 4


def test_submodule_called_without_its_owner():
    """Calling a model's encoder directly opens an implicit pass (this once deadlocked)."""
    model, eager, inputs = _pair("gpt2")
    bert, bert_inputs = build("bert")
    embeddings = bert.embeddings(input_ids=bert_inputs["input_ids"])
    with torch.no_grad(), ap.capture(bert) as cap:
        bert.encoder(embeddings)
    assert len(cap.record.layers) == 2 and cap.record.layers[0].weights.shape == (2, 4, 9, 9)
