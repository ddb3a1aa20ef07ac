"""Exactness against HF's eager attention on every claimed architecture (tiny models from configs)."""

import pytest
import torch

import attn_plugins as ap
from fixtures.tiny_models import NAMES, OTHER, build, build_other

from .helpers import attn_impls, hooks_left, max_diff

TOL = 1e-5


def _pair(name):
    model, inputs = build(name)
    eager, _ = build(name, "eager")
    eager.load_state_dict(model.state_dict())
    return model, eager, inputs


@pytest.mark.parametrize("name", NAMES)
def test_capture_matches_eager_and_keeps_outputs(name):
    model, eager, inputs = _pair(name)
    impls_before = attn_impls(model)
    with torch.no_grad():
        reference = model(**inputs)
        with ap.capture(model) as cap:
            inside = model(**inputs)
        expected = eager(**inputs, output_attentions=True)
    # the model's own outputs are bit-identical inside and outside the capture
    assert list(reference.keys()) == list(inside.keys())
    for key in reference.keys():
        if isinstance(reference[key], torch.Tensor):
            assert torch.equal(reference[key], inside[key]), key
    record = cap.record
    outputs = record.as_hf_outputs()
    expected_keys = [
        k
        for k in ("attentions", "encoder_attentions", "decoder_attentions", "cross_attentions")
        if getattr(expected, k, None)
    ]  # BERT returns cross_attentions=() when not a decoder
    assert sorted(outputs) == sorted(expected_keys)
    for key in expected_keys:
        assert max_diff(getattr(expected, key), outputs[key]) <= TOL, key
    assert hooks_left(model) == []
    assert attn_impls(model) == impls_before
    # the default: weights kept in float32 on the model's device
    assert all(layer.weights.dtype == torch.float32 and layer.weights.device.type == "cpu" for layer in record.layers)


@pytest.mark.parametrize("model_type", OTHER)
def test_other_architectures(model_type):
    model, inputs = build_other(model_type)
    eager, _ = build_other(model_type, "eager")
    eager.load_state_dict(model.state_dict())
    with torch.no_grad():
        reference = model(**inputs)
        with ap.capture(model) as cap:
            inside = model(**inputs)
        expected = eager(**inputs, output_attentions=True)
    for key in reference.keys():
        if isinstance(reference[key], torch.Tensor):
            assert torch.equal(reference[key], inside[key]), key
    for key, got in cap.record.as_hf_outputs().items():  # every row, padded ones included
        assert max_diff(getattr(expected, key), got) <= TOL, key
    assert hooks_left(model) == []


def test_real_minilm_padded_batch(minilm, minilm_tokenizer, minilm_path):
    from transformers import AutoModel

    eager = AutoModel.from_pretrained(minilm_path, attn_implementation="eager").eval()
    texts = ["Attention is all you need, they said.", "Short one", "A third, medium-length sentence here."]
    enc = minilm_tokenizer(texts, return_tensors="pt", padding=True)
    assert minilm.config._attn_implementation == "sdpa"
    with torch.no_grad():
        reference = minilm(**enc).last_hidden_state
        with ap.capture(minilm, tokenizer=minilm_tokenizer) as cap:
            inside = minilm(**enc).last_hidden_state
        expected = eager(**enc, output_attentions=True).attentions
    assert torch.equal(reference, inside)
    record = cap.record
    length = enc.input_ids.shape[1]
    assert len(record.layers) == 6 and record.layers[0].weights.shape == (3, 12, length, length)
    assert max_diff(expected, record.as_hf_outputs()["attentions"]) <= TOL
    assert record.tokens[1][:4] == ["[CLS]", "short", "one", "[SEP]"]
    assert record.tokens[1][4:] == ["[PAD]"] * (enc.input_ids.shape[1] - 4)
    assert torch.equal(record.attention_mask, enc.attention_mask)
    assert [layer.name for layer in record.layers][0] == "encoder.layer.0.attention.self"
    assert hooks_left(minilm) == []


@pytest.mark.parametrize("name", ["llama", "gemma2"])
def test_flex_attention_kernel(name):
    """flex_attention (BlockMask masks; Gemma2 adds logit softcapping) compiled on the CPU."""
    pytest.importorskip("torch._inductor")
    model, inputs = build(name, "flex_attention")
    eager, _ = build(name, "eager")
    eager.load_state_dict(model.state_dict())
    with torch.no_grad():
        reference = model(**inputs).logits
        with ap.capture(model) as cap:
            inside = model(**inputs).logits
        expected = eager(**inputs, output_attentions=True).attentions
    assert model.config._attn_implementation == "flex_attention"
    assert torch.equal(reference, inside)
    assert max_diff(expected, cap.record.as_hf_outputs()["attentions"]) <= TOL


LEGACY = {
    "bloom": lambda tf: (tf.BloomConfig(hidden_size=32, n_head=4, n_layer=2, vocab_size=99), tf.AutoModelForCausalLM),
    "gpt_neo": lambda tf: (
        tf.GPTNeoConfig(
            hidden_size=32,
            num_heads=4,
            num_layers=2,
            window_size=4,
            vocab_size=99,
            attention_types=[[["global", "local"], 1]],
            max_position_embeddings=64,
        ),
        tf.AutoModelForCausalLM,
    ),
    "deberta_v2": lambda tf: (
        tf.DebertaV2Config(
            hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=37, vocab_size=99
        ),
        tf.AutoModel,
    ),
    "xlnet": lambda tf: (tf.XLNetConfig(d_model=32, n_head=4, n_layer=2, d_inner=37, vocab_size=99), tf.AutoModel),
    "falcon": lambda tf: (
        tf.FalconConfig(
            hidden_size=32, num_attention_heads=4, num_hidden_layers=2, vocab_size=99, new_decoder_architecture=False
        ),
        tf.AutoModelForCausalLM,
    ),
}


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_models_outside_the_attention_interface(name):
    """Modeling files without AttentionInterface or output-recording specs (Falcon calls torch's sdpa itself)."""
    import copy

    import transformers as tf

    config, auto = LEGACY[name](tf)
    torch.manual_seed(0)
    model = auto.from_config(copy.deepcopy(config)).eval()
    eager = auto.from_config(copy.deepcopy(config), attn_implementation="eager").eval()
    eager.load_state_dict(model.state_dict())
    ids = torch.randint(3, 99, (2, 8))
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=mask)
        with ap.capture(model) as cap:
            inside = model(input_ids=ids, attention_mask=mask)
        expected = eager(input_ids=ids, attention_mask=mask, output_attentions=True).attentions
    assert list(inside.keys()) == list(reference.keys())  # no attentions handed to the user
    for key in reference.keys():
        if isinstance(reference[key], torch.Tensor):
            assert torch.equal(reference[key], inside[key]), key
    assert max_diff(expected, cap.record.as_hf_outputs()["attentions"]) <= TOL
    assert hooks_left(model) == []
    assert torch.nn.functional.scaled_dot_product_attention.__module__ == "torch._C._nn"


@pytest.mark.parametrize("name", ["data2vec-vision", "beit"])
def test_vision_models_with_their_own_sdpa_class(name):
    """BEiT-style models pick an Sdpa class at init that returns no weights: torch's sdpa is intercepted."""
    import copy

    import transformers as tf

    config = tf.AutoConfig.for_model(
        name,
        hidden_size=32,
        num_attention_heads=4,
        num_hidden_layers=2,
        intermediate_size=37,
        image_size=16,
        patch_size=4,
        use_relative_position_bias=True,
    )
    auto = tf.AutoModel
    torch.manual_seed(0)
    model = auto.from_config(copy.deepcopy(config)).eval()
    eager = auto.from_config(copy.deepcopy(config), attn_implementation="eager").eval()
    eager.load_state_dict(model.state_dict())
    pixels = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert model.config._attn_implementation == "sdpa"
    with torch.no_grad():
        reference = model(pixel_values=pixels).last_hidden_state
        with ap.capture(model, heads=[0, 3], keep_queries_keys=True) as cap:
            inside = model(pixel_values=pixels).last_hidden_state
        expected = eager(pixel_values=pixels, output_attentions=True).attentions
    assert torch.equal(reference, inside)
    assert max_diff([e[:, [0, 3]] for e in expected], cap.record.as_hf_outputs()["attentions"]) <= TOL
    assert cap.record.layers[0].queries.shape == (2, 2, 17, 8)  # 16 patches + [CLS], the two kept heads
    assert hooks_left(model) == []
