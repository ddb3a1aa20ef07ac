"""as_hf_outputs() mirrors what eager returns for models whose attention fields are not a flat tuple
of [batch, heads, query, key] blocks, and the capture leaves outputs as the model returns them.

References are the models' own eager outputs (``attn_implementation="eager"``, ``output_attentions=True``)
on the same weights; models are tiny random ones built from configs (two layers per stack).
"""

import copy
import dataclasses

import pytest
import torch

import attn_plugins as ap
from attn_plugins.errors import CaptureError

transformers = pytest.importorskip("transformers")

IDS = torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]])
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])


def _pair(model_cls, config):
    """The model under its default implementation and an eager twin with the same weights."""
    torch.manual_seed(0)
    model = model_cls(config).eval()
    eager = model_cls._from_config(copy.deepcopy(config), attn_implementation="eager").eval()
    eager.load_state_dict(model.state_dict())
    return model, eager


def _fields(output, prefix=""):
    """Every non-empty attention field, nested keys joined with dots, with its value as returned."""
    found = {}
    for key, value in output.items():
        if hasattr(value, "items"):
            found.update(_fields(value, f"{prefix}{key}."))
        elif str(key).endswith("attentions") and value:
            found[prefix + key] = value
    return found


def _assert_same(expected, got, tol=1e-5):
    """Same tuple nesting, shapes and values."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(got, torch.Tensor) and got.shape == expected.shape
        assert (expected - got).abs().max().item() <= tol
        return
    assert isinstance(got, tuple) and len(got) == len(expected)
    for a, b in zip(expected, got, strict=True):
        _assert_same(a, b, tol)


def test_groupvit_grouping_attention_comes_back_in_eager_shape_and_keys():
    config = transformers.GroupViTConfig(
        text_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=64,
            max_position_embeddings=16,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            depths=[2, 2],
            num_group_tokens=[4, 2],
            num_output_groups=[4, 2],
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
        projection_intermediate_dim=32,
    )
    model, eager = _pair(transformers.GroupViTModel, config)
    inputs = dict(input_ids=IDS, attention_mask=MASK, pixel_values=torch.randn(2, 3, 32, 32))
    with torch.no_grad():
        expected = _fields(eager(**inputs, output_attentions=True))
        with ap.capture(model) as cap:
            model(**inputs)
    got = _fields(cap.record.as_hf_outputs())
    # eager returns only the vision tower's 3-D grouping [batch, groups, patches]; the hooked text and
    # vision self-attention layers stay in record.layers, not under a key eager does not have
    assert sorted(got) == sorted(expected) == ["vision_model_output.attentions"]
    assert [t.dim() for t in expected["vision_model_output.attentions"]] == [3, 3]
    _assert_same(expected["vision_model_output.attentions"], got["vision_model_output.attentions"])


def test_bridgetower_outputs_keep_the_attentions_it_returns_unasked():
    config = transformers.BridgeTowerConfig(
        text_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            vocab_size=64,
            max_position_embeddings=32,
        ),
        vision_config=dict(hidden_size=64, num_hidden_layers=2, image_size=32, patch_size=8),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
    )
    model, eager = _pair(transformers.BridgeTowerModel, config)
    inputs = dict(
        input_ids=IDS,
        attention_mask=MASK,
        pixel_values=torch.randn(2, 3, 32, 32),
        pixel_mask=torch.ones(2, 32, 32, dtype=torch.long),
    )
    with torch.no_grad():
        plain = model(**inputs)
        with ap.capture(model) as cap:
            inside = model(**inputs)
        expected = eager(**inputs, output_attentions=True)
    assert list(inside.keys()) == list(plain.keys()) and "attentions" in plain
    for key in plain.keys():
        _assert_same(plain[key], inside[key], tol=0.0)
    # the (text, image) pair per cross-modal layer, nested as the model nests it
    _assert_same(expected.attentions, cap.record.as_hf_outputs()["attentions"])


def test_sam_vision_windowed_attention_comes_back_as_windows_times_heads():
    config = transformers.SamVisionConfig(
        hidden_size=32,
        output_channels=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=64,
        patch_size=8,
        window_size=4,
        global_attn_indexes=[1],
        mlp_dim=64,
    )
    model, eager = _pair(transformers.SamVisionModel, config)
    assert model.config._attn_implementation == "sdpa"
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = model(pixel_values=pixels)
        expected = eager(pixel_values=pixels, output_attentions=True).attentions
        with ap.capture(model) as cap:
            inside = model(pixel_values=pixels)
    assert torch.equal(reference.last_hidden_state, inside.last_hidden_state)
    rec = cap.record
    # the record keeps [batch*windows, heads, q, k]; eager (and as_hf_outputs) fold the heads in
    assert rec.layers[0].weights.shape == (2 * 4, 4, 16, 16)
    assert [tuple(t.shape) for t in expected] == [(2 * 4 * 4, 16, 16), (2 * 4, 64, 64)]
    _assert_same(tuple(expected), rec.as_hf_outputs()["attentions"])


def test_a_field_the_record_cannot_hold_is_refused_by_name():
    """A 6-D probability field (no model returns one today) must not come back under a stack's key."""

    @dataclasses.dataclass
    class Output(transformers.utils.ModelOutput):
        last_hidden_state: torch.Tensor = None
        attentions: tuple = None

    class Odd(transformers.BertModel):
        def forward(self, input_ids=None, attention_mask=None, output_attentions=None, **kwargs):
            out = super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            extra = (torch.full((1, 1, 1, 1, 2, 2), 0.5),) if output_attentions else None
            return Output(last_hidden_state=out.last_hidden_state, attentions=extra)

    config = transformers.BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=64
    )
    model = Odd(config).eval()
    with torch.no_grad(), pytest.warns(UserWarning, match="6-D probabilities"):
        with ap.capture(model) as cap:
            model(input_ids=IDS, attention_mask=MASK)
    assert len(cap.record.layers) == 2  # the hooked layers are kept
    with pytest.raises(CaptureError, match=r"attentions\[0\].*6-D"):
        cap.record.as_hf_outputs()


def test_slanet_additive_attention_is_named_and_its_steps_mirror_eager():
    """SLANet's decoder attends with a GRU cell's additive (tanh-scored) attention, one [batch, 1, positions]
    block per decoding step: not a layer of per-head softmax attention, said by name, and the model's
    ``head_attentions`` field comes back as eager returns it."""
    torch.manual_seed(0)
    model = transformers.SLANetForTableRecognition(transformers.SLANetConfig(hidden_size=32, max_text_length=6)).eval()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(pixel_values=pixels, output_attentions=True)
        with pytest.warns(UserWarning, match="SLANetAttentionGRUCell.*additive"):
            with ap.capture(model) as cap:
                inside = model(pixel_values=pixels)
    assert list(inside.keys()) == ["last_hidden_state"]
    got = cap.record.as_hf_outputs()
    assert list(got) == ["head_attentions"] and expected.head_attentions[0].shape == (2, 1, 4)
    _assert_same(expected.head_attentions, got["head_attentions"])


def test_nemotron_streaming_chunked_attention_matches_the_modules_own_eager_code():
    """The streaming encoder's chunked-limited mask reaches its attention as a bool mask under sdpa. Its
    eager twin is no reference here: transformers hands eager a float mask, which the module's
    ``attention_mask.logical_not()`` turns into "mask everything" (NaN weights). So each captured layer
    is checked against the module's own eager path run on the very inputs the sdpa pass gave it."""
    config = transformers.NemotronAsrStreamingEncoderConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        intermediate_size=64,
        subsampling_conv_channels=16,
        conv_kernel_size=3,
        sliding_window=5,
    )
    torch.manual_seed(0)
    model = transformers.NemotronAsrStreamingEncoder(config).eval()
    assert model.config._attn_implementation == "sdpa"
    calls = []
    modules = [m for m in model.modules() if type(m).__name__ == "NemotronAsrStreamingEncoderAttention"]
    handles = [
        m.register_forward_pre_hook(lambda m, a, k: calls.append((m, a, dict(k))), with_kwargs=True) for m in modules
    ]
    features = torch.randn(2, 96, 80)
    mask = torch.ones(2, 96, dtype=torch.long)
    mask[1, 64:] = 0
    try:
        with torch.no_grad(), ap.capture(model) as cap:
            model(input_features=features, attention_mask=mask)
    finally:
        for handle in handles:
            handle.remove()
    got = cap.record.as_hf_outputs()["attentions"]
    assert len(got) == len(calls) == 2
    for (module, args, kwargs), weights in zip(calls, got, strict=True):
        assert kwargs["attention_mask"].dtype == torch.bool and not kwargs["attention_mask"].all()
        own = module.config
        module.config = copy.copy(own)
        module.config._attn_implementation_internal = "eager"
        try:
            with torch.no_grad():
                _, expected = module(*args, **kwargs)
        finally:
            module.config = own
        rows = kwargs["attention_mask"].any(-1, keepdim=True)  # fully masked (padding) rows are NaN in eager
        diff = (expected - weights).abs().masked_fill(~rows, 0).nan_to_num(0.0)
        assert diff.max().item() <= 1e-5
