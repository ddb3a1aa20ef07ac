"""Beam search inside capture: each returned sequence's matrices equal a teacher-forced eager forward.

The references are transformers' own eager attention (``output_attentions=True``) over each final
sequence; nothing of the capture's beam bookkeeping is used to build them (lengths come from the
returned ids and the EOS token).
"""

import pytest
import torch

import attn_plugins as ap
from attn_plugins.errors import CaptureError, MemoryBudgetError
from fixtures.tiny_models import build

from .helpers import hooks_left, max_diff

TOL = 1e-5
NEW = 6
DECODER_ONLY = ("gpt2", "llama")
_MODELS: dict = {}


def _marian(attn_implementation=None):
    import transformers as tf

    config = tf.MarianConfig(
        vocab_size=99,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        max_position_embeddings=64,
        pad_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        forced_eos_token_id=None,
    )
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    torch.manual_seed(0)
    model = tf.AutoModelForSeq2SeqLM.from_config(config, **kwargs).eval()
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 99, (2, 9), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0
    return model, {"input_ids": ids, "attention_mask": mask}


def _pair(name):
    """(model under capture, eager twin with the same weights, inputs, an EOS that beams reach early)."""
    if name not in _MODELS:
        if name == "marian":
            (model, inputs), (eager, _) = _marian(), _marian("eager")
        else:
            (model, inputs), (eager, _) = build(name), build(name, "eager")
        eager.load_state_dict(model.state_dict())
        inputs = {k: v for k, v in inputs.items() if not k.startswith("decoder_")}
        with torch.no_grad():  # tokens greedy decoding emits at step 4: some hypotheses end there, others go on
            greedy = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, num_beams=1, do_sample=False)
        _MODELS[name] = model, eager, inputs, sorted({int(greedy[0, -1]), int(greedy[1, -1])})
    return _MODELS[name]


def _options(eos, num_beams, returned, early_stopping, length_penalty=1.0):
    return dict(
        max_new_tokens=NEW,
        min_new_tokens=3,
        num_beams=num_beams,
        num_return_sequences=returned,
        do_sample=False,
        early_stopping=early_stopping,
        length_penalty=length_penalty,
        eos_token_id=eos,
    )


def _fed_rows(sequences, prompt_len, eos):
    """[S, q] bool: the decoder positions fed back as queries (up to each sequence's EOS, or the end)."""
    generated = sequences[:, prompt_len:]
    hit = torch.isin(generated, torch.tensor(eos))
    length = torch.where(
        hit.any(1), hit.int().argmax(1) + 1, torch.full_like(hit[:, 0], generated.shape[1], dtype=torch.long)
    )
    steps = torch.arange(sequences.shape[1] - 1)
    return steps[None, :] < (prompt_len + length - 1)[:, None]


def _reference(name, eager, inputs, sequences, returned, eos):
    """Eager attentions over each returned sequence and the query rows to compare (padding excluded)."""
    repeat = {k: v.repeat_interleave(returned, dim=0) for k, v in inputs.items()}
    processed = sequences[:, :-1]
    with torch.no_grad():
        if name in DECODER_ONLY:
            prompt = inputs["input_ids"].shape[1]
            fed = _fed_rows(sequences, prompt, eos)
            mask = torch.cat([repeat["attention_mask"], torch.ones_like(processed[:, prompt:])], dim=1)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            out = eager(input_ids=processed, attention_mask=mask, position_ids=positions, output_attentions=True)
            return {"attentions": (out.attentions, fed & mask.bool(), fed)}
        fed = _fed_rows(sequences, 1, eos)
        out = eager(**repeat, decoder_input_ids=processed, output_attentions=True)
    return {
        "encoder_attentions": (out.encoder_attentions, None, None),
        "decoder_attentions": (out.decoder_attentions, fed, fed),
        "cross_attentions": (out.cross_attentions, fed, fed),
    }


def _check(name, record, eager, inputs, sequences, returned, eos) -> float:
    got = record.as_hf_outputs()
    worst = 0.0
    for key, (expected, rows, fed) in _reference(name, eager, inputs, sequences, returned, eos).items():
        diff = max_diff(expected, got[key], query_rows=rows)
        assert diff <= TOL, (key, diff)
        worst = max(worst, diff)
        if fed is not None:  # the rows after a sequence ended were never run: zeros
            assert all(float((g * ~fed[:, None, :, None]).abs().max()) == 0 for g in got[key]), key
    return worst


SETTINGS = [(2, 1, False, 1.0), (2, 2, True, 1.0), (4, 1, True, 2.0), (4, 2, False, 0.5), (4, 2, True, 1.0)]


@pytest.mark.parametrize(
    "num_beams,returned,early_stopping,length_penalty",
    SETTINGS,
    ids=[f"beams{b}-ret{r}-early{int(e)}-lp{p}" for b, r, e, p in SETTINGS],
)
@pytest.mark.parametrize("name", ["marian", "bart", "t5", "gpt2", "llama"])
def test_each_returned_sequence_equals_teacher_forcing(name, num_beams, returned, early_stopping, length_penalty):
    model, eager, inputs, eos = _pair(name)
    options = _options(eos, num_beams, returned, early_stopping, length_penalty)
    with torch.no_grad():
        outside = model.generate(**inputs, **options)
    with torch.no_grad(), ap.capture(model) as cap:
        inside = model.generate(**inputs, **options)
    assert isinstance(inside, torch.Tensor) and torch.equal(inside, outside)  # what generate() returns, unchanged
    assert hooks_left(model) == [] and "generate" not in vars(model)
    record = cap.record
    diff = _check(name, record, eager, inputs, inside, returned, eos)
    print(
        f"\n{name} beams={num_beams} returned={returned} early_stopping={early_stopping} "
        f"length_penalty={length_penalty}: max diff {diff:.2e}"
    )
    ids = "input_ids" if name in DECODER_ONLY else "decoder_input_ids"
    assert torch.equal(record.inputs[ids], inside[:, :-1])
    assert record.metadata["decoding"] == {
        "strategy": "beam_search",
        "num_beams": num_beams,
        "num_return_sequences": returned,
        "early_stopping": early_stopping,
        "length_penalty": length_penalty,
    }
    assert [(r["input"], r["rank"]) for r in record.metadata["beam_rows"]] == [
        (i, k) for i in range(2) for k in range(returned)
    ]


def test_some_hypotheses_end_early():
    """The EOS tokens chosen end some returned sequences before others (their padding rows are excluded
    above and must be zeros), so finished hypotheses kept from earlier steps are followed too."""
    for name in ("t5", "llama"):
        model, _, inputs, eos = _pair(name)
        with torch.no_grad():
            sequences = model.generate(**inputs, **_options(eos, 4, 2, False, 0.5))
        prompt = inputs["input_ids"].shape[1] if name in DECODER_ONLY else 1
        assert len(set(_fed_rows(sequences, prompt, eos).sum(1).tolist())) > 1, name


def test_dict_output_is_what_the_caller_asked_for():
    model, eager, inputs, eos = _pair("bart")
    options = dict(_options(eos, 4, 2, True), return_dict_in_generate=True, output_scores=True)
    with torch.no_grad():
        outside = model.generate(**inputs, **options)
    with torch.no_grad(), ap.capture(model) as cap:
        inside = model.generate(**inputs, **options)
    assert set(inside.keys()) == set(outside.keys())
    for key in ("sequences", "sequences_scores", "beam_indices"):
        assert torch.equal(inside[key], outside[key]), key
    assert all(torch.equal(a, b) for a, b in zip(inside.scores, outside.scores, strict=True))
    assert cap.record.metadata["beam_indices"] == outside.beam_indices.tolist()
    _check("bart", cap.record, eager, inputs, inside.sequences, 2, eos)


def test_beam_sampling_is_followed_too():
    model, eager, inputs, eos = _pair("llama")
    options = dict(_options(eos, 2, 2, False), do_sample=True, top_k=0, temperature=1.5)
    torch.manual_seed(3)
    with torch.no_grad():
        outside = model.generate(**inputs, **options)
    torch.manual_seed(3)
    with torch.no_grad(), ap.capture(model) as cap:
        inside = model.generate(**inputs, **options)
    assert torch.equal(inside, outside)
    assert cap.record.metadata["decoding"]["strategy"] == "beam_sampling"
    _check("llama", cap.record, eager, inputs, inside, 2, eos)


def test_greedy_and_sampling_records_say_so():
    model, _, inputs, _ = _pair("gpt2")
    with torch.no_grad(), ap.capture(model) as cap:
        model.generate(**inputs, max_new_tokens=2, do_sample=False)
        model.generate(**inputs, max_new_tokens=2, do_sample=True, top_k=5)
    assert cap.records[0].metadata["decoding"] == {"strategy": "greedy"}
    sampling = cap.records[1].metadata["decoding"]
    assert sampling["strategy"] == "sampling" and sampling["top_k"] == 5


def test_group_beam_search_is_refused_clearly():
    model, _, inputs, _ = _pair("bart")
    with pytest.raises(CaptureError, match="group .*beam search"):
        with torch.no_grad(), ap.capture(model):
            model.generate(**inputs, num_beams=4, num_beam_groups=2, diversity_penalty=0.5, max_new_tokens=3)
    assert hooks_left(model) == [] and "generate" not in vars(model)


def test_queries_and_keys_follow_the_beams():
    """keep_queries_keys: each sequence's queries and keys equal those of a captured teacher-forced forward
    over it (llama, whose returned sequences end at different steps)."""
    model, _, inputs, eos = _pair("llama")
    with torch.no_grad(), ap.capture(model, keep_queries_keys=True) as cap:
        sequences = model.generate(**inputs, **_options(eos, 4, 2, False, 0.5))
    prompt = inputs["input_ids"].shape[1]
    fed = _fed_rows(sequences, prompt, eos)
    mask = torch.cat([inputs["attention_mask"].repeat_interleave(2, 0), torch.ones_like(sequences[:, prompt:-1])], 1)
    with torch.no_grad(), ap.capture(model, keep_queries_keys=True) as forced:
        model(input_ids=sequences[:, :-1], attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
    rows = (fed & mask.bool())[:, None, :, None]
    for got, ref in zip(cap.record.layers, forced.record.layers, strict=True):
        assert got.queries.shape == ref.queries.shape and got.keys.shape == ref.keys.shape
        assert float(((got.queries - ref.queries) * rows).abs().max()) <= TOL
        assert float(((got.keys - ref.keys) * rows).abs().max()) <= TOL
        assert float((got.keys * ~fed[:, None, :, None]).abs().max()) == 0  # past a sequence's end: nothing


def test_beam_search_without_cache_is_refused_before_it_runs():
    model, _, inputs, eos = _pair("gpt2")
    with pytest.raises(CaptureError, match="use_cache=False"):
        with torch.no_grad(), ap.capture(model) as cap:
            model.generate(**inputs, **dict(_options(eos, 2, 1, False), use_cache=False))
    assert cap.collector.segments == [] and hooks_left(model) == []


@pytest.mark.parametrize("name,returned", [("bart", 2), ("bart", 1), ("llama", 2)])
def test_streaming_gives_the_same_record(name, returned, tmp_path):
    model, _, inputs, eos = _pair(name)
    options = _options(eos, 4, returned, False, 0.5)
    with torch.no_grad(), ap.capture(model) as cap:
        model.generate(**inputs, **options)
    with torch.no_grad(), ap.capture(model, stream_to=tmp_path / "beams") as streamed:
        model.generate(**inputs, **options)
    memory, disk = cap.record, streamed.record
    assert [layer.name for layer in memory.layers] == [layer.name for layer in disk.layers]
    for a, b in zip(memory.layers, disk.layers, strict=True):
        assert torch.equal(a.weights, torch.as_tensor(b.weights)), a.name
    assert all(torch.equal(memory.inputs[k], disk.inputs[k]) for k in memory.inputs)
    assert disk.metadata["beam_rows"] == memory.metadata["beam_rows"]


def test_memory_guard_counts_beams():
    """The estimate grows with the beams: a budget that holds greedy decoding refuses 4 beams up front."""
    model, _, inputs, eos = _pair("gpt2")
    with torch.no_grad(), ap.capture(model) as cap:
        model.generate(**inputs, **dict(_options(eos, 1, 1, False), min_new_tokens=NEW))
    greedy_bytes = sum(layer.weights.numel() * 4 for layer in cap.record.layers)
    with pytest.raises(MemoryBudgetError, match="batch 8"):
        with torch.no_grad(), ap.capture(model, max_bytes=greedy_bytes * 2):
            model.generate(**inputs, **_options(eos, 4, 2, False))
    with torch.no_grad(), ap.capture(model, max_bytes=greedy_bytes * 6) as cap:
        model.generate(**inputs, **_options(eos, 4, 2, False))
    assert cap.record.layers[0].weights.shape[0] == 4
