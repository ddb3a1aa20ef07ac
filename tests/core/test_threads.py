"""A capture touches only its own thread (or asyncio task): real threads, forced interleavings.

Threads are stopped at chosen points with the user's own forward hooks (an Event inside a hooked
module) or with ``sys.settrace`` (inside the function that wraps an attention kernel), and every
interleaving is repeated: a race that shows one time in twenty fails here.
"""

import asyncio
import sys
import threading

import pytest
import torch

import attn_plugins as ap
from attn_plugins.adapters import huggingface as hf_adapter
from attn_plugins.adapters import torch as torch_adapter
from attn_plugins.adapters.scope import SharedPatch
from attn_plugins.errors import CaptureError, MemoryBudgetError
from fixtures.tiny_models import build

from .helpers import first_tensor, hooks_left, max_diff

ROUNDS = 20
WAIT = 20  # seconds: a thread that waits longer is stuck (the test fails, it does not hang)


# ----- models and independent references -----------------------------------------------------------
def _falcon(impl="sdpa"):
    import transformers as tf

    torch.manual_seed(0)
    config = tf.FalconConfig(
        hidden_size=32,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=99,
        new_decoder_architecture=False,
        attn_implementation=impl,
    )
    return tf.FalconModel(config).eval()


class _Encoder(torch.nn.Module):
    """Plain PyTorch: two nn.TransformerEncoderLayer (fused fast path in eval under no_grad)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(99, 32)
        layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def forward(self, input_ids):
        return self.encoder(self.embed(input_ids))


def _model(name):
    """``(model, layer modules to pause in, reference(inputs) -> per-layer weights)``."""
    if name in ("bert", "bert_eager", "gpt2"):
        model, _ = build(name.split("_")[0], "eager" if name.endswith("eager") else None)
        eager, _ = build(name.split("_")[0], "eager")
        eager.load_state_dict(model.state_dict())
        layers = model.encoder.layer if name.startswith("bert") else model.transformer.h

        def reference(inputs):
            with torch.no_grad():
                return eager(**inputs, output_attentions=True).attentions

        return model, list(layers), reference
    if name == "falcon":
        model = _falcon()
        eager = _falcon("eager")
        eager.load_state_dict(model.state_dict())

        def reference(inputs):
            with torch.no_grad():
                return eager(**inputs, output_attentions=True).attentions

        return model, list(model.h), reference
    model = _Encoder().eval()

    def reference(inputs):
        with torch.no_grad():
            x = model.embed(inputs["input_ids"])
            out = []
            for layer in model.encoder.layers:
                out.append(layer.self_attn(x, x, x, need_weights=True, average_attn_weights=False)[1])
                x = layer(x)
            return out

    return model, list(model.encoder.layers), reference


def _inputs(batch, length, seed):
    generator = torch.Generator().manual_seed(seed)
    return {"input_ids": torch.randint(3, 99, (batch, length), generator=generator)}


def _weights(record):
    return [layer.weights for layer in record.layers]


class Pauses:
    """The user's own forward hook on a module: a chosen thread stops there until released."""

    def __init__(self, module, pre=False):
        self.stops: dict[threading.Thread, tuple[threading.Event, threading.Event]] = {}
        register = module.register_forward_pre_hook if pre else module.register_forward_hook
        self.handle = register(self._hook)

    def arm(self, thread):
        self.stops[thread] = (threading.Event(), threading.Event())
        return self.stops[thread]

    def _hook(self, *args):
        stop = self.stops.pop(threading.current_thread(), None)
        if stop is not None:
            stop[0].set()  # reached
            assert stop[1].wait(WAIT), "never released"
        return None

    def remove(self):
        self.handle.remove()


def _run(target, errors):
    def body():
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    return threading.Thread(target=body)


def _no_leftovers(model):
    assert hooks_left(model) == []
    assert not hf_adapter._HANDLERS and not hf_adapter._WRAPPED and not torch_adapter._WATCHED
    assert not SharedPatch._registry
    assert "generate" not in vars(model)


# ----- 1. a capture in thread A, plain forwards of the same model in thread B ---------------------------
@pytest.mark.parametrize("name", ["bert", "gpt2", "falcon", "torch_encoder"])
def test_other_threads_are_neither_recorded_nor_guarded(name):
    model, layers, reference = _model(name)
    inputs_a, inputs_b = _inputs(1, 5, 1), _inputs(2, 9, 2)
    expected_a = reference(inputs_a)
    with torch.no_grad():
        plain_b = first_tensor(model(**inputs_b))
    # A's budget holds A's three forwards; B's larger batch would be refused if A's guard saw it
    budget = 3 * 2 * 4 * 1 * 5 * 5 * 4 + 1
    for round_ in range(ROUNDS):
        order = round_ % 3
        pause = Pauses(layers[round_ % 2], pre=bool(round_ % 4 // 2))
        errors, outputs = [], {}
        b_started = threading.Event()

        def thread_b(b_started=b_started, outputs=outputs):  # this round's event and dict
            b_started.set()
            with torch.no_grad():
                outputs["b"] = first_tensor(model(**inputs_b))

        b = _run(thread_b, errors)
        reached, go = pause.arm(b)
        if order == 0:  # B stopped mid-forward before A enters; resumes while A's block is open
            b.start()
            assert reached.wait(WAIT)
        with torch.no_grad(), ap.capture(model, max_bytes=budget) as cap:
            model(**inputs_a)
            if order == 0:
                go.set()
                b.join(WAIT)
            else:
                b.start()
                assert reached.wait(WAIT)  # B is inside the forward, in a hooked module
            model(**inputs_a)
            if order == 2:
                go.set()
                b.join(WAIT)
            model(**inputs_a)
        if order == 1:  # A exited while B was mid-forward
            go.set()
            b.join(WAIT)
        pause.remove()
        assert not b.is_alive() and not errors, (round_, errors)
        assert torch.equal(outputs["b"], plain_b), round_
        assert len(cap.records) == 3, (round_, len(cap.records))
        for record in cap.records:
            assert torch.equal(record.inputs["input_ids"], inputs_a["input_ids"])
            assert max_diff(expected_a, _weights(record)) <= 1e-5, round_
        _no_leftovers(model)


# ----- 2. two captures of one model in two threads -------------------------------------------------------
@pytest.mark.parametrize("name", ["bert", "bert_eager", "falcon", "torch_encoder"])
def test_two_captures_of_one_model_in_two_threads_are_each_exact(name):
    model, layers, reference = _model(name)
    inputs = {"a": _inputs(1, 5, 1), "b": _inputs(2, 7, 2)}
    expected = {k: reference(v) for k, v in inputs.items()}
    for round_ in range(ROUNDS):
        order = round_ % 2
        pause = Pauses(layers[0])
        errors, caps = [], {}
        a_may_exit, b_entered, b_done = threading.Event(), threading.Event(), threading.Event()

        def thread_a(caps=caps, a_may_exit=a_may_exit):  # this round's dict and event
            with torch.no_grad(), ap.capture(model) as cap:
                caps["a"] = cap
                model(**inputs["a"])  # stops after layer 0 until B has run
                assert a_may_exit.wait(WAIT)
                model(**inputs["a"])

        a = _run(thread_a, errors)
        reached, go = pause.arm(a)
        a_done = threading.Event()

        def thread_b(
            caps=caps, order=order, reached=reached, go=go, a_done=a_done, b_entered=b_entered, b_done=b_done
        ):  # this round's events
            assert reached.wait(WAIT)  # A is mid-forward, inside its capture
            with torch.no_grad(), ap.capture(model) as cap:
                caps["b"] = cap
                b_entered.set()
                model(**inputs["b"])
                if order == 1:
                    go.set()  # A resumes and finishes while B's capture is still open
                    assert a_done.wait(WAIT)
                model(**inputs["b"])
            b_done.set()

        b = _run(thread_b, errors)
        a.start()
        b.start()
        if order == 0:
            assert b_done.wait(WAIT)
            go.set()
            a_may_exit.set()
            a.join(WAIT)
        else:
            a_may_exit.set()
            a.join(WAIT)
            a_done.set()
            b.join(WAIT)
        a.join(WAIT)
        b.join(WAIT)
        pause.remove()
        assert not errors, (round_, errors)
        for key in ("a", "b"):
            records = caps[key].records
            assert len(records) == 2, (round_, key, len(records))
            for record in records:
                assert torch.equal(record.inputs["input_ids"], inputs[key]["input_ids"])
                assert max_diff(expected[key], _weights(record)) <= 1e-5, (round_, key)
        _no_leftovers(model)


# ----- 3. a capture leaves while another thread is inside the wrapped kernel ------------------------------
@pytest.mark.parametrize(
    "name,wrapper", [("falcon", "scaled_dot_product_attention"), ("bert", "attn_plugins_capture_wrapper")]
)
def test_uninstall_while_another_thread_is_inside_the_kernel_wrapper(name, wrapper):
    model, _, _ = _model(name)
    inputs_b = _inputs(2, 6, 3)
    with torch.no_grad():
        plain = model(**inputs_b).last_hidden_state
    sdpa = torch.nn.functional.scaled_dot_product_attention
    for round_ in range(ROUNDS):
        reached, go, errors, outputs = threading.Event(), threading.Event(), [], {}

        def tracer(frame, event, arg, reached=reached, go=go):  # this round's events
            code = frame.f_code
            if (
                event == "call"
                and code.co_name == wrapper
                and "attn_plugins" in code.co_filename
                and not reached.is_set()
            ):
                reached.set()  # stopped inside the capture's wrapper, before it calls the original
                assert go.wait(WAIT)
            return None

        def thread_b(tracer=tracer, outputs=outputs):  # this round's tracer and dict
            sys.settrace(tracer)
            try:
                with torch.no_grad():
                    outputs["b"] = model(**inputs_b).last_hidden_state
            finally:
                sys.settrace(None)

        b = _run(thread_b, errors)
        with torch.no_grad(), ap.capture(model) as cap:
            model(**_inputs(1, 4, 4))
            b.start()
            assert reached.wait(WAIT), "thread B never reached the wrapper"
        go.set()  # the capture has uninstalled its wrapper; B continues inside it
        b.join(WAIT)
        assert not errors, (round_, errors)
        assert torch.equal(outputs["b"], plain)
        assert len(cap.records) == 1
        assert torch.nn.functional.scaled_dot_product_attention is sdpa
        _no_leftovers(model)


# ----- 4. asyncio tasks and generate() in other threads -------------------------------------------------
def test_a_capture_records_only_its_own_asyncio_task():
    model, _, reference = _model("bert")
    inputs_a, inputs_b = _inputs(1, 5, 1), _inputs(2, 8, 2)
    expected = reference(inputs_a)

    async def capturing():
        with torch.no_grad(), ap.capture(model) as cap:
            for _ in range(3):
                model(**inputs_a)
                await asyncio.sleep(0)  # the other task runs here, inside this capture's block
        return cap

    async def plain():
        for _ in range(6):
            with torch.no_grad():
                model(**inputs_b)
            await asyncio.sleep(0)

    async def main():
        return await asyncio.gather(capturing(), plain())

    for _ in range(5):
        cap, _ = asyncio.run(main())
        assert len(cap.records) == 3
        for record in cap.records:
            assert max_diff(expected, _weights(record)) <= 1e-5
        _no_leftovers(model)


def test_generate_in_another_thread_is_not_recorded_nor_guarded():
    model, _ = build("gpt2")
    ids = _inputs(1, 4, 5)["input_ids"]
    with torch.no_grad():
        plain = model.generate(ids, max_new_tokens=3, do_sample=False)
    for _ in range(5):
        errors, outputs = [], {}
        inside = threading.Event()
        done = threading.Event()

        def thread_a(outputs=outputs, inside=inside, done=done):  # this round's dict and events
            with torch.no_grad(), ap.capture(model, max_bytes=1000) as cap:
                outputs["cap"] = cap
                inside.set()
                assert done.wait(WAIT)
                with pytest.raises(MemoryBudgetError):  # A's own generate is guarded
                    model.generate(ids, max_new_tokens=50, do_sample=False)

        def thread_b(outputs=outputs, inside=inside, done=done):  # this round's dict and events
            assert inside.wait(WAIT)
            with torch.no_grad():
                outputs["b"] = model.generate(ids, max_new_tokens=3, do_sample=False)
            done.set()

        threads = [_run(thread_a, errors), _run(thread_b, errors)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert not errors, errors
        assert torch.equal(outputs["b"], plain)
        with pytest.raises(CaptureError, match="nothing was captured"):
            _ = outputs["cap"].record  # reading it raises
        _no_leftovers(model)


def test_same_model_twice_in_one_thread_is_still_refused():
    model, _, _ = _model("bert")
    with ap.capture(model):
        with pytest.raises(CaptureError, match="already being captured"):
            with ap.capture(model):
                pass
    _no_leftovers(model)


@pytest.mark.parametrize("name", ["bert", "falcon", "torch_encoder"])
def test_another_threads_forward_only_passes_through_gates(name):
    """Not slowed: in a thread without a capture, attn-plugins code runs only its pass-through checks
    (one gate per hooked call, the kernel wrappers handing the call on), never the session's work."""
    model, _, _ = _model(name)
    inputs = _inputs(2, 6, 7)
    seen, errors = [], []
    allowed = {
        "gate",
        "_backward_running",
        "scaled_dot_product_attention",
        "attn_plugins_capture_wrapper",
        "first_active",
        "dropout",
        "<genexpr>",
    }

    def profiler(frame, event, arg):
        if event == "call" and "attn_plugins" in frame.f_code.co_filename:
            seen.append(frame.f_code.co_name)

    def thread_b():
        sys.setprofile(profiler)
        try:
            with torch.no_grad():
                model(**inputs)
        finally:
            sys.setprofile(None)

    with torch.no_grad(), ap.capture(model) as cap:
        model(**_inputs(1, 4, 8))
        b = _run(thread_b, errors)
        b.start()
        b.join(WAIT)
    assert not errors and len(cap.records) == 1
    assert seen and set(seen) <= allowed, sorted(set(seen) - allowed)
    calls = sum(1 for _ in model.modules())
    assert len(seen) <= 4 * calls  # a few checks per module call at most


# ----- modules switched to eager alone: their config copies are shared patches ---------------------------
def test_modules_switched_to_eager_get_their_own_config_back_after_threads_and_errors():
    import copy

    import transformers as tf
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    AttentionInterface.register("attn_plugins_test_unknown", sdpa_attention_forward)  # a kernel we cannot mirror
    try:
        torch.manual_seed(0)
        config = tf.BertConfig(
            hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=37, vocab_size=99
        )
        model = tf.BertModel._from_config(copy.deepcopy(config), attn_implementation="attn_plugins_test_unknown").eval()
        eager = tf.BertModel._from_config(copy.deepcopy(config), attn_implementation="eager").eval()
        eager.load_state_dict(model.state_dict())
        own = {name: m.__dict__["config"] for name, m in model.named_modules() if "config" in m.__dict__}
        ids = torch.randint(3, 99, (2, 7), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            reference = eager(ids, output_attentions=True).attentions
            plain = model(ids).last_hidden_state
        records, errors = {}, []
        barrier = threading.Barrier(2, timeout=WAIT)

        def run(key):
            try:
                with torch.no_grad(), ap.capture(model) as cap:
                    barrier.wait()
                    output = model(ids).last_hidden_state
                    switched = {
                        n
                        for n, m in model.named_modules()
                        if "config" in m.__dict__ and m.__dict__["config"] is not own[n]
                    }
                    barrier.wait()
                records[key] = (cap.record, output, switched)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT * 3)
        assert not errors, errors
        for record, output, switched in records.values():
            assert switched and all(n.endswith("attention.self") for n in switched)  # only the attention modules
            assert torch.allclose(output, plain, atol=1e-6)
            assert max_diff(reference, [layer.weights for layer in record.layers]) <= 1e-6
        assert all(m.__dict__["config"] is own[n] for n, m in model.named_modules() if "config" in m.__dict__)
        with pytest.raises(RuntimeError, match="user error"):
            with torch.no_grad(), ap.capture(model):
                model(ids)
                raise RuntimeError("user error")
        assert all(m.__dict__["config"] is own[n] for n, m in model.named_modules() if "config" in m.__dict__)
        assert hooks_left(model) == []
    finally:
        AttentionInterface._global_mapping.pop("attn_plugins_test_unknown", None)
