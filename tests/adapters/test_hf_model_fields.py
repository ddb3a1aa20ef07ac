"""Models whose attention fields the spec-driven capture used to miss or misname, under their default
implementation (sdpa), against their eager twins with ``output_attentions=True`` on the same weights:

- PatchTST, Pix2Struct, LightGlue route attention through transformers' ``AttentionInterface`` but
  declare no output-capture specs (they thread ``output_attentions`` down by hand);
- SAM's vision attention calls sdpa itself, and the model returns it as ``vision_attentions``;
- T5Gemma2's encoder holds a text encoder and a vision tower, and its decoder's merged self+cross
  attention attends to the encoder's tokens beside its own.

Tiny random models from configs (two layers per stack; the architecture sweep's builder and inputs
for the composite ones), query/key weights scaled up so that no attention row is near-uniform.
"""

import copy

import pytest
import torch

import attn_plugins as ap

transformers = pytest.importorskip("transformers")


def _fields(output, prefix=""):
    """Every non-empty attention field that holds probabilities, nested keys joined with dots."""
    found = {}
    for key, value in output.items():
        if hasattr(value, "items"):
            found.update(_fields(value, f"{prefix}{key}."))
        elif (
            str(key).endswith("attentions")
            and value
            and all(isinstance(t, torch.Tensor) and t.min() >= 0 and t.max() <= 1 for t in value)
        ):
            found[prefix + key] = value
    return found


def _check(model, eager, inputs, expected_fields):
    """Capture ``model`` (default implementation) and compare with eager: same fields, shapes, weights
    within 1e-5, and the model's own outputs bit-identical inside and outside the capture."""
    with torch.no_grad():
        torch.manual_seed(0)
        reference = model(**inputs)
        torch.manual_seed(0)
        expected = _fields(eager(**inputs, output_attentions=True))
        torch.manual_seed(0)
        with ap.capture(model) as cap:
            inside = model(**inputs)
    assert sorted(expected) == sorted(expected_fields)
    for key, value in reference.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, inside[key]), key
    got = _fields(cap.record.as_hf_outputs())
    assert sorted(got) == sorted(expected)
    for path, layers in expected.items():
        assert len(layers) >= 2 and len(got[path]) == len(layers), path
        for a, b in zip(layers, got[path], strict=True):
            assert a.shape == b.shape, path
            assert (a - b).abs().max().item() <= 1e-5, path
    return cap.record


def test_patchtst_without_specs_is_recomputed_beside_sdpa():
    config = transformers.PatchTSTConfig(
        num_input_channels=2,
        context_length=32,
        patch_length=4,
        patch_stride=4,
        d_model=32,
        num_attention_heads=4,
        num_hidden_layers=2,
        ffn_dim=64,
    )
    torch.manual_seed(0)
    model = transformers.PatchTSTModel(config).eval()
    eager = transformers.PatchTSTModel._from_config(copy.deepcopy(config), attn_implementation="eager").eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                param.mul_(200)
    eager.load_state_dict(model.state_dict())
    assert model.config._attn_implementation == "sdpa"
    past = torch.randn(2, 32, 2, generator=torch.Generator().manual_seed(1))
    record = _check(model, eager, {"past_values": past}, ["attentions"])
    assert len(record.layers) == 2
    assert max(layer.weights.max().item() for layer in record.layers) > 0.5  # rows far from uniform (1/8)


@pytest.mark.parametrize(
    ("model_type", "fields", "per_image"),
    [
        ("pix2struct", ["encoder_attentions", "decoder_attentions", "cross_attentions"], None),
        ("lightglue", ["attentions"], None),
        ("sam", ["vision_attentions"], None),
        ("t5gemma2", ["encoder_attentions", "decoder_attentions", "cross_attentions"], 16),  # mm_tokens_per_image
    ],
)
def test_composite_model_fields_mirror_eager(model_type, fields, per_image):
    from tests.sweep.builder import build_pair
    from tests.sweep.inputs import candidates

    model, eager, info = build_pair(model_type)
    assert model.config._attn_implementation == "sdpa"
    hint = {"image": per_image} if per_image else None
    _, inputs = next(iter(candidates(model, set(info["special_ids"]), hint)))
    record = _check(model, eager, inputs, fields)
    if model_type == "t5gemma2":  # one record for the whole forward: the merged attention joins the encoder's pass
        with torch.no_grad(), ap.capture(model) as cap:
            model(**inputs)
        assert len(cap.records) == 1
        stacks = {layer.stack for layer in record.layers}
        assert {"encoder.text_model", "encoder.vision_tower"} <= stacks
