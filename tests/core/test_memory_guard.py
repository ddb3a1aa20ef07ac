"""The memory guard: refuse before running out of memory, with the size and how to cut it."""

import pytest
import torch

import attn_plugins as ap
from attn_plugins.budget import Budget, MemoryBudgetError, format_bytes, parse_bytes
from fixtures.tiny_models import build

from .helpers import attn_impls, hooks_left


def test_tiny_budget_refuses_before_the_model_runs():
    model, inputs = build("bert")
    before_impl, before_training = attn_impls(model), model.training
    layers = model.config.num_hidden_layers
    heads = model.config.num_attention_heads
    batch, length = inputs["input_ids"].shape
    expected = layers * heads * batch * length * length * 4
    ran = []
    attention = model.encoder.layer[0].attention.self
    handle = attention.register_forward_pre_hook(lambda *a: ran.append(1))
    try:
        with pytest.raises(MemoryBudgetError) as info:
            with torch.no_grad(), ap.capture(model, max_bytes="1KB"):
                model(**inputs)
    finally:
        handle.remove()
    message = str(info.value)
    assert not ran  # refused before any attention module ran
    assert format_bytes(expected) in message
    assert f"{layers} layers x {heads} heads x batch {batch} x {length} x {length} x 4 bytes (float32)" in message
    for hint in ("layers=[", "heads=[", "dtype=torch.bfloat16", "stream_to=", "max_bytes="):
        assert hint in message
    assert hooks_left(model) == [] and attn_impls(model) == before_impl and model.training == before_training


def test_exact_estimate_is_the_record_size():
    model, inputs = build("bert")
    with torch.no_grad(), ap.capture(model) as cap:
        model(**inputs)
    size = sum(layer.weights.numel() * layer.weights.element_size() for layer in cap.record.layers)
    with torch.no_grad(), ap.capture(model, max_bytes=size) as cap:  # exactly enough
        model(**inputs)
    with pytest.raises(MemoryBudgetError), torch.no_grad(), ap.capture(model, max_bytes=size - 1):
        model(**inputs)


def test_selection_and_dtype_cut_the_estimate():
    model, inputs = build("bert")
    with torch.no_grad(), ap.capture(model) as cap:
        model(**inputs)
    full = sum(layer.weights.numel() * 4 for layer in cap.record.layers)
    with torch.no_grad(), ap.capture(model, layers=[0], heads=[1], dtype=torch.float16, max_bytes=full // 16) as cap:
        model(**inputs)
    assert cap.record.layers[0].weights.shape[1] == 1
    with (
        pytest.raises(MemoryBudgetError, match="1 layers x 1 heads"),
        torch.no_grad(),
        ap.capture(model, layers=[0], heads=[1], dtype=torch.float16, max_bytes=full // 64),
    ):
        model(**inputs)


def test_generate_counts_every_step():
    model, inputs = build("gpt2")
    with torch.no_grad(), ap.capture(model) as cap:
        model.generate(**inputs, max_new_tokens=6, do_sample=False)
    final = sum(layer.weights.numel() * layer.weights.element_size() for layer in cap.record.layers)
    prompt_only = final * (inputs["input_ids"].shape[1] / cap.record.layers[0].weights.shape[2]) ** 2
    # enough for the prompt's forward, not for the whole generation: refused before generating
    with (
        pytest.raises(MemoryBudgetError, match="this generate\\(\\) call") as info,
        torch.no_grad(),
        ap.capture(model, max_bytes=prompt_only * 1.5),
    ):
        model.generate(**inputs, max_new_tokens=6, do_sample=False)
    length = inputs["input_ids"].shape[1] + 6
    assert f"x {length} x {length} x" in str(info.value)
    assert hooks_left(model) == []


def test_encoder_decoder_estimate_covers_cross_attention():
    model, inputs = build("bart")
    with torch.no_grad(), ap.capture(model) as cap:
        model(**inputs)
    size = sum(layer.weights.numel() * layer.weights.element_size() for layer in cap.record.layers)
    with pytest.raises(MemoryBudgetError) as info, torch.no_grad(), ap.capture(model, max_bytes=size - 1):
        model(**inputs)
    assert format_bytes(size) in str(info.value)


def test_models_without_readable_lengths_are_stopped_block_by_block():
    """A plain torch model: nothing to estimate from, so the collector refuses at the block that crosses."""
    layer = torch.nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)
    model = torch.nn.TransformerEncoder(layer, num_layers=3, enable_nested_tensor=False).eval()
    x = torch.randn(2, 10, 16)
    one_layer = 2 * 4 * 10 * 10 * 4
    with torch.no_grad(), ap.capture(model, max_bytes=one_layer * 3) as cap:
        model(x)
    assert len(cap.record.layers) == 3
    with (
        pytest.raises(MemoryBudgetError, match="storing the next block"),
        torch.no_grad(),
        ap.capture(model, max_bytes=one_layer * 2),
    ):
        model(x)
    assert hooks_left(model) == []


def test_default_budget_is_half_of_free_memory():
    budget = Budget.for_capture(None, torch.device("cpu"), None)
    assert budget.limit > 0 and "half of the" in budget.source
    with open("/proc/meminfo") as handle:
        available = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("MemAvailable"))
    assert abs(budget.limit - available / 2) < 0.1 * available


@pytest.mark.parametrize(
    "value, expected",
    [("2GB", 2e9), ("1.5 GiB", 1.5 * 2**30), ("512", 512.0), (4096, 4096.0), (float("inf"), float("inf"))],
)
def test_parse_bytes(value, expected):
    assert parse_bytes(value) == expected


@pytest.mark.parametrize("value", ["lots", "2 parsecs", -1, 0, True, [1]])
def test_bad_budgets_are_refused_before_touching_the_model(value):
    model, _ = build("bert")
    with pytest.raises((ValueError, TypeError)):
        ap.capture(model, max_bytes=value)
    assert hooks_left(model) == []
