"""The user's run is never changed or broken by a capture, and the capture changes only what it must."""

import subprocess
import sys

import pytest
import torch

import attn_plugins as ap
from attn_plugins.errors import CaptureError, InputError, MemoryBudgetError
from fixtures.tiny_models import build

from .helpers import first_tensor, hooks_left, max_diff


def _pair(name, attention_dropout=None, hidden_dropout=None):
    """``(sdpa model, eager model with the same weights, inputs)``; BERT's dropout probabilities set
    (attention: on the probabilities; hidden: everywhere else)."""
    model, inputs = build(name)
    eager, _ = build(name, "eager")
    for m in (model, eager):
        for path, module in m.named_modules():
            if isinstance(module, torch.nn.Dropout):
                value = attention_dropout if path.endswith("attention.self.dropout") else hidden_dropout
                module.p = module.p if value is None else value
    eager.load_state_dict(model.state_dict())
    return model, eager, inputs


# ----- (a) autocast --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["bert", "llama"])
def test_autocast_bfloat16_with_a_padded_batch(name):
    model, eager, inputs = _pair(name)
    assert (inputs["attention_mask"] == 0).any()  # padded
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        plain = first_tensor(model(**inputs))
        with ap.capture(model) as cap:
            inside = first_tensor(model(**inputs))
        reference = eager(**inputs, output_attentions=True).attentions
    assert torch.equal(plain, inside)  # the user's forward is untouched
    record = cap.record
    assert record.metadata["compute_dtype"] == ["float32"]
    rows = inputs["attention_mask"].bool()
    # the model's queries and keys are bfloat16 under autocast: the reference softmax ran in bfloat16
    assert max_diff(reference, [layer.weights for layer in record.layers], rows) <= 2e-2
    for layer in record.layers:
        assert layer.weights.dtype == torch.float32
        sums = layer.weights.sum(-1)[rows[:, None, :].expand(-1, layer.weights.shape[1], -1)]
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)


# ----- (b) gradient checkpointing -------------------------------------------------------------------------
@pytest.mark.parametrize("reentrant", [True, False])
def test_gradient_checkpointing_backward_adds_no_layers(reentrant):
    model, eager, inputs = _pair("bert", attention_dropout=0.0, hidden_dropout=0.0)
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    assert model.is_gradient_checkpointing
    own_hooks = hooks_left(model)  # transformers' own (inputs that require grad)
    with ap.capture(model) as cap:
        out = model(**inputs).last_hidden_state
        out.sum().backward()  # recomputes each layer's forward
    assert len(cap.records) == 1
    record = cap.record
    assert len(record.layers) == model.config.num_hidden_layers == 2
    assert all(p.grad is not None for p in model.encoder.parameters())
    with torch.no_grad():
        reference = eager.eval()(**inputs, output_attentions=True).attentions
    rows = inputs["attention_mask"].bool()
    assert max_diff(reference, [layer.weights for layer in record.layers], rows) <= 1e-5
    assert hooks_left(model) == own_hooks


# ----- (c) tuple outputs of models asked for output_attentions ---------------------------------------------
def _legacy(name):
    import transformers as tf

    torch.manual_seed(0)
    if name == "gpt_neo":
        config = tf.GPTNeoConfig(
            hidden_size=32,
            num_heads=4,
            num_layers=2,
            vocab_size=99,
            max_position_embeddings=64,
            attention_types=[[["global", "local"], 1]],
            window_size=4,
        )
        return tf.GPTNeoModel(config).eval()
    config = tf.BloomConfig(hidden_size=32, n_head=4, n_layer=2, vocab_size=99)
    return tf.BloomForCausalLM(config).eval()


@pytest.mark.parametrize("name", ["gpt_neo", "bloom"])
@pytest.mark.parametrize("how", ["argument", "config"])
def test_return_dict_false_gives_the_users_tuple_and_a_full_record(name, how):
    model = _legacy(name)
    ids = torch.randint(3, 99, (2, 7), generator=torch.Generator().manual_seed(0))
    kwargs = {"return_dict": False} if how == "argument" else {}
    if how == "config":
        model.config.return_dict = False
    with torch.no_grad():
        plain = model(ids, **kwargs)
        with ap.capture(model) as cap:
            inside = model(ids, **kwargs)
        model.config.return_dict = True
        reference = model(ids, output_attentions=True).attentions
    assert isinstance(inside, tuple) and len(inside) == len(plain)
    assert torch.equal(inside[0], plain[0])
    assert len(cap.record.layers) == 2
    assert max_diff(reference, [layer.weights for layer in cap.record.layers]) == 0.0


# ----- (d) restore exactly what the capture changed --------------------------------------------------------
def test_the_users_own_generate_attribute_is_kept():
    model, inputs = build("gpt2")
    calls = []

    def my_generate(*args, **kwargs):
        calls.append(kwargs)
        return type(model).generate(model, *args, **kwargs)

    model.generate = my_generate
    with torch.no_grad(), ap.capture(model) as cap:
        model.generate(inputs["input_ids"][:1], max_new_tokens=2, do_sample=False)
    assert calls and model.generate is my_generate
    assert cap.record.metadata["generation_steps"] == 2  # the prompt's forward and one more step
    del model.generate
    with ap.capture(model):
        pass
    assert "generate" not in vars(model)


def test_changes_the_user_makes_inside_the_block_stay():
    model, inputs = build("bert")
    assert not model.training
    frozen = model.embeddings.word_embeddings.weight
    with ap.capture(model):
        model.train()
        frozen.requires_grad_(False)
        model(**inputs)
    assert model.training and all(m.training for m in model.modules())
    assert not frozen.requires_grad
    assert hooks_left(model) == []


@pytest.mark.parametrize("first_out", ["small", "large"])
def test_a_finished_captures_guard_is_not_kept_alive_by_another_capture(first_out):
    """Two captures of one model in two threads share one generate wrapper; whichever leaves first,
    the other's generate is still its own (guarded by its budget only), and nothing stays behind."""
    import threading

    model, inputs = build("gpt2")
    ids = inputs["input_ids"][:1]
    entered = {k: threading.Event() for k in ("small", "large")}
    left = {k: threading.Event() for k in ("small", "large")}
    errors, caps = [], {}

    def run(key, budget):
        other = "large" if key == "small" else "small"
        try:
            with torch.no_grad(), ap.capture(model, max_bytes=budget) as cap:
                caps[key] = cap
                entered[key].set()
                assert entered[other].wait(20)
                if key != first_out:
                    assert left[other].wait(20)  # the other capture has finished
                if key == "large":
                    model.generate(ids, max_new_tokens=2, do_sample=False)  # the small budget would refuse it
                else:
                    with pytest.raises(MemoryBudgetError):
                        model.generate(ids, max_new_tokens=2, do_sample=False)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            left[key].set()

    threads = [threading.Thread(target=run, args=("small", 100)), threading.Thread(target=run, args=("large", None))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert caps["large"].record.metadata["generation_steps"] == 2
    assert "generate" not in vars(model) and hooks_left(model) == []


# ----- (e) training mode: both paths store the probabilities before dropout --------------------------------
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_training_mode_records_probabilities_before_dropout(impl):
    model, eager, inputs = _pair("bert", attention_dropout=0.5, hidden_dropout=0.0)
    captured = model if impl == "sdpa" else eager
    captured.train()
    torch.manual_seed(0)
    with torch.no_grad():
        plain = captured(**inputs).last_hidden_state
    torch.manual_seed(0)
    with torch.no_grad(), ap.capture(captured) as cap:
        inside = captured(**inputs).last_hidden_state
    assert torch.equal(plain, inside)  # the model's own dropout draws are unchanged
    record = cap.record
    assert record.metadata["training"] is True and "before dropout" in record.metadata["dropout"]
    assert "before dropout" in record.summary()
    rows = inputs["attention_mask"].bool()
    with torch.no_grad():
        reference = eager.eval()(**inputs, output_attentions=True).attentions
    # layer 0 sees the same input as in eval mode: its probabilities are the eval ones, undropped
    assert max_diff(reference[:1], [record.layers[0].weights], rows) <= 1e-5
    for layer in record.layers:
        sums = layer.weights.sum(-1)[rows[:, None, :].expand(-1, layer.weights.shape[1], -1)]
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)


def test_legacy_model_in_training_records_probabilities_before_dropout():
    model = _legacy("gpt_neo")
    for layer in model.h:
        layer.attn.attention.attn_dropout.p = 0.5
    model.train()
    ids = torch.randint(3, 99, (1, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), ap.capture(model) as cap:
        model(ids)
    assert cap.record.metadata["training"] is True
    for layer in cap.record.layers:
        sums = layer.weights.sum(-1)
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)


def test_eval_mode_says_so():
    model, inputs = build("bert")
    with torch.no_grad(), ap.capture(model) as cap:
        model(**inputs)
    assert cap.record.metadata["training"] is False and "dropout" not in cap.record.metadata


def test_info_prints_the_dropout_note(tmp_path):
    model, _, inputs = _pair("bert", attention_dropout=0.5)
    model.train()
    with torch.no_grad(), ap.capture(model) as cap:
        model(**inputs)
    path = cap.record.save(tmp_path / "train.safetensors")
    out = subprocess.run(
        [sys.executable, "-m", "attn_plugins.cli", "info", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert "dropout: training mode: the weights are the attention probabilities before dropout" in out


# ----- (f) a failed capture says so ----------------------------------------------------------------------
def test_record_of_a_failed_capture_says_why():
    model, inputs = build("bert")

    class BoomError(Exception):
        pass

    with pytest.raises(BoomError):
        with ap.capture(model) as cap:
            model(**inputs)
            raise BoomError("the body broke")
    with pytest.raises(CaptureError, match=r"the capture failed \(BoomError: the body broke\)"):
        _ = cap.record  # reading it raises
    assert "failed" in repr(cap)
    with pytest.raises(CaptureError, match="has not finished"):
        with ap.capture(model) as running:
            _ = running.record  # reading it raises


# ----- section 4: bounded input ---------------------------------------------------------------------------
def test_input_longer_than_the_models_positions_is_refused_before_the_forward():
    model, _ = build("bert")
    limit = model.config.max_position_embeddings
    ids = torch.randint(3, 99, (1, limit + 88))
    with ap.capture(model) as cap:
        with pytest.raises(InputError, match=rf"{limit + 88} tokens long.*{limit}"):
            model(input_ids=ids)
        model(input_ids=ids[:, :limit])  # at the limit: runs
    assert cap.record.layers[0].weights.shape[-1] == limit
    assert hooks_left(model) == []


def test_explicit_position_ids_decide_what_must_fit():
    """A long input whose caller gives positions within the table (e.g. modulo the limit) runs, and its
    record equals eager attention; positions past the table are refused before the forward."""
    model, eager, _ = _pair("bert")
    limit = model.config.max_position_embeddings
    ids = torch.randint(3, 99, (1, limit + 8))
    positions = torch.arange(ids.shape[1])[None, :] % limit
    with torch.no_grad(), ap.capture(model) as cap:
        out = model(input_ids=ids, position_ids=positions)
        with pytest.raises(InputError, match=rf"{limit + 1} tokens long.*{limit}"):
            model(input_ids=ids[:, : limit + 1], position_ids=torch.arange(limit + 1)[None, :])
    with torch.no_grad():
        reference = eager.eval()(input_ids=ids, position_ids=positions, output_attentions=True)
    assert (reference.last_hidden_state - out.last_hidden_state).abs().max() <= 1e-5
    assert max_diff(reference.attentions, [layer.weights for layer in cap.record.layers]) <= 1e-5


def test_rotary_models_have_no_position_limit():
    model, _ = build("llama")  # max_position_embeddings=64, but rotary positions: longer inputs run
    ids = torch.randint(3, 99, (1, model.config.max_position_embeddings + 6))
    with torch.no_grad(), ap.capture(model) as cap:
        model(input_ids=ids)
    assert cap.record.layers[0].weights.shape[-1] == ids.shape[1]


def test_huge_selections_and_batches_are_refused_up_front():
    model, inputs = build("bert")
    with pytest.raises(InputError, match="heads= selects 1000000 entries"):
        ap.capture(model, heads=range(10**6))
    with pytest.raises(InputError, match="layers= selects"):
        ap.capture(model, layers=list(range(10**5)))
    huge = {"input_ids": torch.zeros(1, 16, dtype=torch.long).expand(10**6, 16)}  # refused before the model runs
    with ap.capture(model, max_bytes="1MB"):
        with pytest.raises(MemoryBudgetError, match="batch 1000000"):
            model(**huge)
