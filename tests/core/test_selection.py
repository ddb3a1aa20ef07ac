"""Layer and head selection, device and dtype, and bad-input messages."""

import pytest
import torch

import attn_plugins as ap
from attn_plugins.adapters import hf_kernel as hf_adapter  # where the HF recompute is called
from attn_plugins.errors import NoAttentionError
from fixtures.tiny_models import build

from .helpers import hooks_left, max_diff


@pytest.fixture()
def bert_pair():
    model, inputs = build("bert")
    eager, _ = build("bert", "eager")
    eager.load_state_dict(model.state_dict())
    with torch.no_grad():
        expected = eager(**inputs, output_attentions=True).attentions
    return model, inputs, expected


def _count_recomputes(monkeypatch):
    calls = []
    original = hf_adapter.attention_probs

    def counting(query, key, *args, **kwargs):
        calls.append((query.shape[1], kwargs.get("heads")))
        return original(query, key, *args, **kwargs)

    monkeypatch.setattr(hf_adapter, "attention_probs", counting)
    return calls


def test_layer_and_head_selection_cut_compute(bert_pair, monkeypatch):
    model, inputs, expected = bert_pair
    calls = _count_recomputes(monkeypatch)
    with torch.no_grad(), ap.capture(model, layers=[1], heads=[0, 2]) as cap:
        model(**inputs)
    assert len(calls) == 1 and calls[0][1] == [0, 2]  # one layer recomputed, for two heads only
    (layer,) = cap.record.layers
    assert layer.index == 1 and layer.heads == [0, 2] and layer.weights.shape[1] == 2
    assert max_diff([expected[1][:, [0, 2]]], [layer.weights]) <= 1e-5


def test_negative_index_and_module_path(bert_pair):
    model, inputs, expected = bert_pair
    with torch.no_grad(), ap.capture(model, layers=[-1, "encoder.layer.0"]) as cap:
        model(**inputs)
    assert [layer.index for layer in cap.record.layers] == [0, 1]
    assert max_diff(expected, cap.record.as_hf_outputs()["attentions"]) <= 1e-5


def test_dtype_and_device(bert_pair):
    model, inputs, expected = bert_pair
    with torch.no_grad(), ap.capture(model, dtype=torch.float16, device="cpu") as cap:
        model(**inputs)
    assert all(layer.weights.dtype == torch.float16 for layer in cap.record.layers)
    assert max_diff(expected, cap.record.as_hf_outputs()["attentions"]) <= 1e-3
    assert cap.record.metadata["stored_dtype"] == "float16"


def test_encoder_decoder_selection_applies_per_stack():
    model, inputs = build("bart")
    with torch.no_grad(), ap.capture(model, layers=[0]) as cap:
        model(**inputs)
    got = {(layer.stack, layer.kind, layer.index) for layer in cap.record.layers}
    assert got == {("encoder", "self", 0), ("decoder", "self", 0), ("decoder", "cross", 0)}


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"layers": [7]}, ValueError, "layer 7 does not exist: the model has 2 layers"),
        ({"layers": ["encoder.layer.9"]}, ValueError, "no attention module at 'encoder.layer.9'"),
        ({"layers": []}, ValueError, "selects nothing"),
        ({"layers": [1.5]}, TypeError, "integers or module paths"),
        ({"heads": [-1]}, ValueError, "head indices must be >= 0"),
        ({"heads": ["a"]}, TypeError, "integers"),
        ({"dtype": torch.int64}, TypeError, "floating torch.dtype"),
        ({"adapter": "nope"}, KeyError, "unknown adapter 'nope'; available: .*'huggingface'"),
    ],
)
def test_bad_selection_messages(kwargs, error, message):
    model, inputs = build("bert")
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        with ap.capture(model, **kwargs):
            model(**inputs)
    assert hooks_left(model) == []


def test_head_out_of_range_is_reported_and_cleaned_up():
    model, inputs = build("bert")
    with pytest.raises(ValueError, match="head 9 does not exist: 'encoder.layer.0.attention.self' has 4 heads"):
        with ap.capture(model, heads=[9]):
            model(**inputs)
    assert hooks_left(model) == []


def test_model_without_attention():
    mlp = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU())
    with pytest.raises(NoAttentionError):
        with ap.capture(mlp):
            pass
    with pytest.raises(TypeError, match="torch.nn.Module"):
        ap.capture("bert-base-uncased")


def test_record_before_the_block_ends():
    model, inputs = build("bert")
    with ap.capture(model) as cap:
        model(**inputs)
        with pytest.raises(ap.CaptureError, match="has not finished"):
            _ = cap.record  # reading it raises
    with ap.capture(model) as cap:
        pass
    with pytest.raises(ap.CaptureError, match="nothing was captured"):
        _ = cap.record  # reading it raises


def test_keep_queries_keys_for_gqa():
    model, inputs = build("llama")
    with torch.no_grad(), ap.capture(model, layers=[0], keep_queries_keys=True) as cap:
        model(**inputs)
    layer = cap.record.layers[0]
    assert layer.queries.shape == (2, 4, 9, 8) and layer.keys.shape == (2, 4, 9, 8)  # keys repeated per query head
    scores = layer.queries @ layer.keys.transpose(-1, -2) * 8**-0.5
    keep = cap.record.attention_mask[:, None, None, :].bool() & torch.ones(9, 9, dtype=torch.bool).tril()
    probs = scores.masked_fill(~keep, torch.finfo(torch.float32).min).softmax(-1)
    rows = cap.record.attention_mask.bool()[:, None, :, None]
    assert ((probs - layer.weights).abs() * rows).max() <= 1e-5
