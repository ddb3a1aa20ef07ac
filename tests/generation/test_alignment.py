"""Alignment evaluation: Pharaoh parsing and validation, induced alignments, AER/precision/recall by hand."""

from __future__ import annotations

import numpy as np
import pytest

from attn_plugins.errors import InputError
from attn_plugins.generation import SequenceAttribution
from attn_plugins.generation.alignment import alignment_scores, evaluate, induced_alignment, parse_pharaoh, to_pharaoh


def test_parse_pharaoh_sure_and_possible():
    sure, possible = parse_pharaoh("0-0 2-1  1?1\n", n_source=3, n_target=2)
    assert sure == {(0, 0), (2, 1)} and possible == {(0, 0), (2, 1), (1, 1)}
    assert to_pharaoh(sure) == "0-0 2-1"


@pytest.mark.parametrize("bad", ["0-0 1_1", "a-b", "-1-0", "0-5", "7-0"])
def test_parse_pharaoh_refuses_bad_pairs(bad):
    with pytest.raises(InputError):
        parse_pharaoh(bad, n_source=3, n_target=3)


def test_induced_alignments():
    m = np.array([[0.1, -0.7, 0.2], [0.4, 0.0, 0.6], [0.0, 0.0, 0.0]])
    assert induced_alignment(m) == {(1, 0), (2, 1)}  # |scores|; an all-zero row links nothing
    assert induced_alignment(m, 0.35) == {(1, 0), (0, 1), (2, 1)}
    assert induced_alignment(m, source_mask=[True, False, True]) == {(2, 0), (2, 1)}
    with pytest.raises(InputError):
        induced_alignment(m, 1.5)


def test_scores_by_hand():
    # A = {a, b, c}; S = {a, d}; P = S + {b}: |A&S| = 1, |A&P| = 2
    a, b, c, d = (0, 0), (1, 0), (2, 1), (3, 1)
    scores = alignment_scores({a, b, c}, {a, d}, {b})
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(1 / 2)
    assert scores["aer"] == pytest.approx(1 - 3 / 5)
    assert alignment_scores({a, d}, {a, d})["aer"] == 0.0


def test_evaluate_pools_links_over_sentences():
    diag = SequenceAttribution(["a", "b"], ["x", "y"], ["<s>", "x"], {"m": np.eye(2)}, {"m": np.zeros((2, 2))})
    flip = SequenceAttribution(["a", "b"], ["x", "y"], ["<s>", "x"], {"m": np.eye(2)[::-1]}, {"m": np.zeros((2, 2))})
    out = evaluate([diag, flip], ["0-0 1-1", "0-0 1-1"])
    assert out["m"] == {"aer": 0.5, "precision": 0.5, "recall": 0.5}
    with pytest.raises(InputError):
        evaluate([diag], ["0-0 5-1"])


def test_evaluate_one_sentence_with_its_masks():
    res = SequenceAttribution(["a", "b"], ["x", "</s>"], ["<s>", "x"], {"m": np.eye(2)}, {"m": np.zeros((2, 2))})
    assert evaluate(res, "0-0", target_mask=[True, False])["m"] == {"aer": 0.0, "precision": 1.0, "recall": 1.0}
