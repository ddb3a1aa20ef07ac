"""Attention rollout and raw attention against direct computations on fixture matrices."""

import numpy as np
import pytest
import torch

from attn_plugins.analysis.rollout import raw_attention, rollout, rollout_matrices

from .helpers import minilm_path

# Two layers, two heads, three tokens: rows sum to 1.
L0 = np.array(
    [[[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]], [[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.0, 0.5, 0.5]]]
)
L1 = np.array(
    [[[0.2, 0.2, 0.6], [0.9, 0.05, 0.05], [0.4, 0.4, 0.2]], [[1.0, 0.0, 0.0], [0.25, 0.5, 0.25], [0.1, 0.1, 0.8]]]
)


def hand_rollout(layers):
    """Abnar & Zuidema by hand: heads averaged, 0.5 A + 0.5 I, rows normalised, product."""
    result = np.eye(layers[0].shape[-1])
    for layer in layers:
        avg = np.zeros(layer.shape[1:])
        for head in layer:
            avg += head / len(layer)
        mixed = 0.5 * avg + 0.5 * np.eye(len(avg))
        mixed = mixed / mixed.sum(axis=1, keepdims=True)
        result = mixed @ result
    return result


def test_rollout_equals_hand_computation_on_fixture_matrices():
    got = rollout_matrices([torch.tensor(L0), torch.tensor(L1)])
    expected = hand_rollout([L0, L1])
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)
    # first row worked out on paper: A0 = 0.5*mean(L0)+0.5I, A1 likewise, R = A1 @ A0
    a0 = 0.5 * L0.mean(0) + 0.5 * np.eye(3)
    a1 = 0.5 * L1.mean(0) + 0.5 * np.eye(3)
    np.testing.assert_allclose(got.numpy()[0], (a1 @ a0)[0], atol=1e-12)
    np.testing.assert_allclose(got.sum(-1).numpy(), np.ones(3), atol=1e-12)


def test_rollout_batched_single_layer_and_options():
    batched = rollout_matrices([torch.tensor(L0)[None].repeat(2, 1, 1, 1), torch.tensor(L1)[None].repeat(2, 1, 1, 1)])
    assert batched.shape == (2, 3, 3)
    np.testing.assert_allclose(batched[1].numpy(), hand_rollout([L0, L1]), atol=1e-12)
    one = rollout_matrices([torch.tensor(L0)])
    np.testing.assert_allclose(one.numpy(), 0.5 * L0.mean(0) + 0.5 * np.eye(3), atol=1e-12)
    skip = rollout_matrices([torch.tensor(L0), torch.tensor(L1)], start_layer=1)
    np.testing.assert_allclose(skip.numpy(), 0.5 * L1.mean(0) + 0.5 * np.eye(3), atol=1e-12)
    no_res = rollout_matrices([torch.tensor(L0), torch.tensor(L1)], add_residual=False)
    np.testing.assert_allclose(no_res.numpy(), L1.mean(0) @ L0.mean(0), atol=1e-12)
    mx = rollout_matrices([torch.tensor(L0)], head_fusion="max")
    fused = L0.max(0) + np.eye(3)
    np.testing.assert_allclose(mx.numpy(), fused / fused.sum(1, keepdims=True), atol=1e-12)


def test_rollout_rejects_bad_input():
    with pytest.raises(ValueError, match="square"):
        rollout_matrices([torch.rand(2, 3, 4)])
    with pytest.raises(ValueError, match="head_fusion"):
        rollout_matrices([torch.tensor(L0)], head_fusion="median")
    with pytest.raises(ValueError, match="no attention"):
        rollout_matrices([])


@pytest.fixture(scope="module")
def minilm_record():
    from transformers import AutoModel, AutoTokenizer

    import attn_plugins as ap

    tok = AutoTokenizer.from_pretrained(minilm_path())
    model = AutoModel.from_pretrained(minilm_path()).eval()  # sdpa: weights recomputed by the capture
    eager = AutoModel.from_pretrained(minilm_path(), attn_implementation="eager").eval()
    enc = tok(["A short one.", "A somewhat longer sentence with more tokens in it."], return_tensors="pt", padding=True)
    with torch.no_grad(), ap.capture(model, tok) as cap:
        model(**enc)
    with torch.no_grad():
        attentions = eager(**enc, output_attentions=True).attentions
    return cap.record, [a.double() for a in attentions], enc


def test_record_rollout_matches_eager_attentions(minilm_record):
    record, attentions, enc = minilm_record
    got = rollout(record)
    expected = np.stack([hand_rollout([a[b].numpy() for a in attentions]) for b in range(2)])
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


def test_padding_does_not_leak_into_real_rows(minilm_record):
    record, attentions, enc = minilm_record
    n = int(enc["attention_mask"][0].sum())
    alone = hand_rollout([a[0, :, :n, :n].numpy() / a[0, :, :n, :n].numpy().sum(-1, keepdims=True) for a in attentions])
    np.testing.assert_allclose(rollout(record)[0, :n, :n].numpy(), alone, atol=1e-5)
    assert float(rollout(record)[0, :n, n:].abs().max()) < 1e-6


def test_raw_attention_rows(minilm_record):
    record, attentions, enc = minilm_record
    np.testing.assert_allclose(raw_attention(record).numpy(), attentions[-1][:, :, 0].mean(1).numpy(), atol=1e-5)
    np.testing.assert_allclose(
        raw_attention(record, layer=2, head=5, query=3).numpy(), attentions[2][:, 5, 3].numpy(), atol=1e-5
    )
    mean_layers = torch.stack([a[:, :, 0].mean(1) for a in attentions]).mean(0)
    np.testing.assert_allclose(raw_attention(record, layer="mean").numpy(), mean_layers.numpy(), atol=1e-5)
    last = raw_attention(record, query="last")
    n0 = int(enc["attention_mask"][0].sum())
    np.testing.assert_allclose(last[0].numpy(), attentions[-1][0, :, n0 - 1].mean(0).numpy(), atol=1e-5)
    with pytest.raises(IndexError):
        raw_attention(record, layer=6)
    with pytest.raises(IndexError):
        raw_attention(record, query=40)
