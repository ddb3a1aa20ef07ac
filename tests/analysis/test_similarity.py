"""Jensen-Shannon head distances, clustering and layer similarity, against hand-computed values."""

import math

import pytest
import torch

from attn_plugins.analysis import head_similarity as similarity
from attn_plugins.analysis.divergence import js_divergence_rows
from attn_plugins.record import LayerAttention

from .fixtures import H0, H1, record_of

# Row 0: (1, 0) vs (0, 1): m = (.5, .5), JS = H(m) - (H(p) + H(q)) / 2 = 1 - 0 = 1 bit.
# Row 1: (.5, .5) vs (1, 0): m = (.75, .25), H(m) = -(.75 log2 .75 + .25 log2 .25), JS = H(m) - (1 + 0) / 2.
H_M = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
JS_ROW1 = H_M - 0.5
MEAN_DIVERGENCE = (1.0 + JS_ROW1) / 2
MEAN_DISTANCE = (1.0 + math.sqrt(JS_ROW1)) / 2


def approx(x):
    return pytest.approx(x, abs=1e-6)


def three_heads():
    return record_of(torch.stack([H0, H1, H0])[None])  # head 2 is a copy of head 0


def test_js_divergence_rows():
    assert js_divergence_rows(H0, H1).tolist() == [approx(1.0), approx(JS_ROW1)]
    assert js_divergence_rows(H0, H0).tolist() == [approx(0.0), approx(0.0)]


def test_head_distances_by_hand():
    d = similarity.head_distances(three_heads())
    assert d.labels == ["L0H0", "L0H1", "L0H2"]
    assert d.values[0, 1].item() == approx(MEAN_DISTANCE)
    assert d.values[1, 2].item() == approx(MEAN_DISTANCE)
    assert d.values[0, 2].item() == approx(0.0)
    assert torch.equal(d.values, d.values.T)
    div = similarity.head_distances(three_heads(), measure="divergence")
    assert div.values[0, 1].item() == approx(MEAN_DIVERGENCE)
    total = similarity.head_distances(three_heads(), measure="divergence", reduce="sum")
    assert total.values[0, 1].item() == approx(1.0 + JS_ROW1)  # Clark et al.: summed over tokens
    assert "Jensen-Shannon" in str(d)


def test_padded_rows_do_not_count():
    batch = torch.stack([torch.stack([H0, H1]), torch.stack([H0, H1])])  # [2, 2, 2, 2]
    batch[1, :, 1] = torch.tensor([[0.9, 0.1], [0.1, 0.9]])  # row 1 of item 1 is a padded query: junk
    mask = torch.tensor([[1, 1], [1, 0]])
    # item 1's row 0 pads key 1: (1, [0]) vs (0, [1]) -> on the real key 1 vs 0: JS = 1 (p=(1), q=(0))
    d = similarity.head_distances(batch, attention_mask=mask)
    # real rows: item 0 rows 0 and 1 (1 and sqrt(JS_ROW1)), item 1 row 0 with key 1 removed: (1) vs (0)
    # -> m = (.5), H(m) = .5, H(p) = 0, H(q) = 0 -> JS = .5 bit, distance sqrt(.5)
    expected = (1.0 + math.sqrt(JS_ROW1) + math.sqrt(0.5)) / 3
    assert d.values[0, 1].item() == approx(expected)


def test_clustering_groups_identical_heads():
    clusters = similarity.head_distances(three_heads()).cluster(n_clusters=2)
    assert clusters.linkage.shape == (2, 4)
    assert clusters.linkage[0][2] == approx(0.0)  # heads 0 and 2 merge first, at distance 0
    assert clusters.linkage[1][2] == approx(MEAN_DISTANCE)  # then head 1 joins at the average distance
    assert clusters.assignments[0] == clusters.assignments[2] != clusters.assignments[1]
    assert sorted(clusters.order) == [0, 1, 2]
    assert sorted(len(v) for v in clusters.groups().values()) == [1, 2]


def test_layer_similarity():
    layers = [
        LayerAttention("a", None, "self", 0, H0[None, None]),
        LayerAttention("b", None, "self", 1, H1[None, None]),
    ]
    js = similarity.layer_similarity(layers)
    assert js.labels == ["L0", "L1"]
    assert js.values[0, 1].item() == approx(1 - MEAN_DISTANCE)
    assert js.values[0, 0].item() == approx(1.0)
    cos = similarity.layer_similarity(layers, method="cosine")
    # (1, 0, .5, .5) . (0, 1, 1, 0) = .5; norms sqrt(1.5) and sqrt(2)
    assert cos.values[0, 1].item() == approx(0.5 / (math.sqrt(1.5) * math.sqrt(2)))


def test_cluster_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        similarity.cluster(torch.tensor([[0.0, float("nan")], [float("nan"), 0.0]]))
