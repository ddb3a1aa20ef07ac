"""The analysis functions on records captured from the real MiniLM and tiny models built from configs."""

import math

import pytest
import torch

from attn_plugins.analysis import diagnostics, evolution, stats
from attn_plugins.analysis import head_similarity as similarity

from .fixtures import gpt2_checkpoint_records, gpt2_generate_record, minilm_record, whisper_records


@pytest.fixture(scope="module")
def minilm_rec(minilm, minilm_tokenizer):
    return minilm_record(minilm, minilm_tokenizer)


def test_minilm_head_stats(minilm_rec):
    hs = stats.head_stats(minilm_rec)
    assert hs.entropy.shape == (6, 12) and torch.isfinite(hs.entropy).all()
    assert (hs.entropy <= hs.uniform_entropy + 1e-9).all()
    for name in ("special", "previous", "next", "self", "normalized_entropy"):
        values = hs.get(name)
        assert ((values >= -1e-9) & (values <= 1 + 1e-9)).all(), name
    # [CLS], [SEP] and punctuation draw a large share of BERT-style attention (Clark et al. 2019)
    assert hs.special.mean() > 0.3
    assert set(hs.groups) == {"[CLS]/BOS", "[SEP]/EOS", "punctuation"}


def test_minilm_mask_is_honoured(minilm_rec):
    """Stats of the padded item equal those of its matrices cropped to the real tokens."""
    n = int(minilm_rec.attention_mask[1].sum())
    assert n < minilm_rec.attention_mask.shape[1]  # the second sentence is padded
    for layer in minilm_rec.layers[:2]:
        cropped = layer.weights[1:2, :, :n, :n]
        for fn in (stats.entropy, stats.mean_distance, stats.previous_token_share):
            got = fn(minilm_rec, item=1, layers=[layer.index])[0]
            assert torch.allclose(got, fn(cropped), atol=1e-9), fn.__name__


def test_minilm_similarity_and_diagnostics(minilm_rec):
    d = similarity.head_distances(minilm_rec)
    assert d.values.shape == (72, 72)
    assert torch.allclose(d.values, d.values.T) and (d.values.diagonal() == 0).all()
    assert ((d.values >= 0) & (d.values <= 1)).all()
    assert len(d.cluster(n_clusters=4).groups()) == 4
    layers = similarity.layer_similarity(minilm_rec)
    assert layers.values.shape == (6, 6)
    found = diagnostics.diagnose(minilm_rec)
    assert not found.of("nan") and not found.of("inf") and not found.of("padding") and not found.of("unnormalized")


def test_gpt2_generation_evolution():
    record = gpt2_generate_record()
    evo = evolution.generation_evolution(record, item=0)
    assert evo.steps == record.metadata["generation_steps"] == 5
    assert evo.prompt_length == 4
    assert evo.prompt_share[0].allclose(torch.ones_like(evo.prompt_share[0]))  # step 0 sees only the prompt
    # the left padding of item 0 gets no weight, and each step's row sums to 1
    assert evo.weights[..., :2].abs().max() < 1e-6
    assert torch.allclose(evo.weights.sum(-1), torch.ones(5, 2, 2, dtype=torch.float64), atol=1e-5)
    assert (evo.prompt_share[1:] < 1).all()
    assert len(evo.step_tokens) == 5
    assert diagnostics.diagnose(record).of("padding") == []


def test_whisper_cross_attention_evolution():
    generated, forced, _ = whisper_records()
    evo = evolution.generation_evolution(generated, kind="cross")
    assert evo.kind == "cross" and evo.weights.shape[-1] == 25  # encoder frames
    assert torch.isnan(evo.prompt_share).all()
    assert torch.allclose(evo.weights.sum(-1), torch.ones_like(evo.weights.sum(-1)), atol=1e-5)
    hs = stats.head_stats(forced, stack="decoder", kind="cross")
    assert torch.isnan(hs.distance).all() and torch.isfinite(hs.entropy).all()


def test_checkpoint_evolution_on_a_tiny_model():
    records = gpt2_checkpoint_records()
    evo = evolution.checkpoint_evolution(records, [f"epoch {i}" for i in range(3)])
    assert evo.stats["entropy"].shape == (3, 2, 2)
    assert torch.isnan(evo.drift[0]).all() and (evo.drift[1:] > 0).all()
    assert (evo.drift_from_final[-1] == 0).all()
    assert not math.isnan(evo.stats["special"][0, 0, 0].item())  # '.' is punctuation
