"""Attention across generation steps and training checkpoints, against hand-computed values."""

import math

import pytest
import torch

from attn_plugins.analysis.evolution import checkpoint_evolution, generation_evolution

from .fixtures import H0, H1, record_of

# A generate() record: prompt of 2 tokens, 3 steps -> 2 + (3 - 1) = 4 query rows over 4 keys.
GEN = torch.tensor(
    [
        [1.0, 0.0, 0.0, 0.0],
        [0.4, 0.6, 0.0, 0.0],  # step 0: the prompt's last row
        [0.2, 0.3, 0.5, 0.0],  # step 1
        [0.1, 0.2, 0.3, 0.4],  # step 2
    ]
)


def approx(x):
    return pytest.approx(x, abs=1e-6)


def gen_record():
    return record_of(GEN[None, None], tokens=[["a", "b", "c", "d"]], metadata={"generation_steps": 3})


def test_generation_steps_by_hand():
    evo = generation_evolution(gen_record())
    assert (evo.prompt_length, evo.steps, evo.kind) == (2, 3, "self")
    assert evo.step_tokens == ["b", "c", "d"]
    assert evo.weights.shape == (3, 1, 1, 4)
    assert evo.head(0, 0)[1].tolist() == [approx(0.2), approx(0.3), approx(0.5), approx(0.0)]
    assert evo.entropy[:, 0, 0].tolist() == [
        approx(-(0.4 * math.log(0.4) + 0.6 * math.log(0.6))),
        approx(-(0.2 * math.log(0.2) + 0.3 * math.log(0.3) + 0.5 * math.log(0.5))),
        approx(-(0.1 * math.log(0.1) + 0.2 * math.log(0.2) + 0.3 * math.log(0.3) + 0.4 * math.log(0.4))),
    ]
    assert evo.prompt_share[:, 0, 0].tolist() == [approx(1.0), approx(0.5), approx(0.3)]  # keys 0 and 1
    assert evo.first_token_share[:, 0, 0].tolist() == [approx(0.4), approx(0.2), approx(0.1)]
    # distance back from positions 1, 2, 3: .4*1; .2*2 + .3*1; .1*3 + .2*2 + .3*1
    assert evo.distance[:, 0, 0].tolist() == [approx(0.4), approx(0.7), approx(1.0)]
    assert evo.peak[:, 0, 0].tolist() == [1, 2, 3]
    assert "step 2 'd'" in str(evo)


def test_generation_needs_a_record():
    with pytest.raises(TypeError):
        generation_evolution(GEN)
    with pytest.raises(ValueError, match="generation steps"):
        generation_evolution(record_of(GEN[None, None], metadata={"generation_steps": 9}))


def test_checkpoints_by_hand():
    first = record_of(H0[None, None], tokens=[["x", "y"]])
    last = record_of(H1[None, None], tokens=[["x", "y"]])
    evo = checkpoint_evolution([first, last], ["epoch 1", "epoch 2"])
    # entropy: epoch 1 rows (0, ln 2) -> ln2 / 2; epoch 2 rows (0, 0)
    assert evo.stats["entropy"][:, 0, 0].tolist() == [approx(math.log(2) / 2), approx(0.0)]
    # moved: mean JS distance of the rows: 1 and sqrt(H(.75, .25) - .5)
    moved = (1.0 + math.sqrt(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)) - 0.5)) / 2
    assert math.isnan(evo.drift[0, 0, 0].item())
    assert evo.drift[1, 0, 0].item() == approx(moved)
    assert evo.drift_from_final[:, 0, 0].tolist() == [approx(moved), approx(0.0)]
    assert evo.maps(0, 0).shape == (2, 2, 2)
    assert evo.tokens() == (["x", "y"], ["x", "y"])
    assert "moved" in str(evo)


def test_checkpoints_must_share_inputs():
    with pytest.raises(ValueError, match="same inputs"):
        checkpoint_evolution([record_of(H0[None, None]), record_of(torch.eye(3)[None, None])])
