"""Diagnostics: each problem found on a head built to have it, and nothing on a healthy head."""

import math

import pytest
import torch

from attn_plugins.analysis.diagnostics import Finding, Findings, diagnose

from .fixtures import A, record_of

UNIFORM = torch.full((3, 3), 1 / 3)
COLLAPSED = torch.tensor([[0.95, 0.025, 0.025]] * 3)
# a previous-token head is peaked, but on a different key for each query: not collapsed
PREVIOUS = torch.tensor([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.05, 0.9, 0.05]])


def test_healthy_heads_have_no_findings():
    assert diagnose(A) == []
    assert diagnose(PREVIOUS) == []
    assert str(diagnose(A)) == "no attention problems found"


def test_uniform_head():
    found = diagnose(torch.stack([A, UNIFORM])[None])
    assert [(f.head, f.problem) for f in found] == [(1, "uniform")]
    assert found[0].value == pytest.approx(1.0)
    assert "near-uniform" in found[0].reason


def test_collapsed_head():
    found = diagnose(torch.stack([COLLAPSED, PREVIOUS])[None], checks=("collapsed",))
    assert [(f.head, f.problem) for f in found] == [(0, "collapsed")]
    assert found[0].value == pytest.approx(0.95)
    assert "key 0" in found[0].reason


def test_collapsed_names_the_token():
    rec = record_of(COLLAPSED[None, None], tokens=[["[SEP]", "a", "b"]])
    (finding,) = diagnose(rec)
    assert finding.problem == "collapsed" and "'[SEP]'" in finding.reason


def test_nan_and_inf():
    bad = A.clone()
    bad[1, 1] = float("nan")
    worse = A.clone()
    worse[0, 0] = float("inf")
    found = diagnose(torch.stack([bad, worse])[None])
    assert [(f.head, f.problem, f.value) for f in found] == [(0, "nan", 1.0), (1, "inf", 1.0)]


def test_nan_in_a_padded_query_row_is_ignored():
    w = A.clone()
    w[2] = float("nan")  # the query row of a padding token
    found = diagnose(w[None, None], attention_mask=torch.tensor([[1, 1, 0]]), checks=("nan", "inf"))
    assert found == []


def test_padding_leak():
    leaky = torch.tensor([[0.5, 0.3, 0.2], [0.5, 0.5, 0.0], [0.3, 0.3, 0.4]])
    found = diagnose(leaky[None, None], attention_mask=torch.tensor([[1, 1, 0]]), checks=("padding",))
    assert len(found) == 1 and found[0].problem == "padding"
    assert found[0].value == pytest.approx(0.2)  # the worst real row: 0.2 on the padded key
    assert "20.0%" in found[0].reason and "(mean 10.0%)" in found[0].reason  # rows 0 and 1: (0.2 + 0) / 2


def test_unnormalized_scores():
    scores = torch.tensor([[2.0, 1.0, 0.5]] * 3)
    found = diagnose(scores, checks=("unnormalized",))
    assert found[0].problem == "unnormalized" and found[0].value == pytest.approx(2.5)


def test_findings_print_layer_and_head():
    rec = record_of(torch.stack([A, UNIFORM])[None], torch.stack([COLLAPSED, A])[None])
    found = diagnose(rec)
    assert isinstance(found, Findings) and all(isinstance(f, Finding) for f in found)
    assert found.heads() == [("L0", 1), ("L1", 0)]
    text = str(found)
    assert text.startswith("2 finding(s) (1 uniform, 1 collapsed):")
    assert "L0 head 1: uniform - near-uniform" in text
    assert "L1 head 0: collapsed - collapsed onto one token" in text
    assert found.of("uniform")[0].index == 0


def test_causal_rows_use_reachable_keys():
    # a causal head that spreads evenly over the keys each row can reach is uniform; the 1-key first row is skipped
    causal = torch.tensor([[1, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]])
    found = diagnose(causal)
    assert [f.problem for f in found] == ["uniform"]
    assert not math.isnan(found[0].value)


def test_unknown_check():
    with pytest.raises(ValueError, match="unknown checks"):
        diagnose(A, checks=("wobbly",))
