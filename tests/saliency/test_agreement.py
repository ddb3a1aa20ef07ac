"""Agreement metrics against SciPy called directly."""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from attn_plugins.saliency import TokenSaliency
from attn_plugins.saliency.agreement import agreement, jensen_shannon, pair_metrics, top_k_overlap


def test_pair_metrics_match_scipy():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.random(9), rng.random(9)
        got = pair_metrics(a, b, k=3)
        assert got["kendall_tau"] == pytest.approx(stats.kendalltau(a, b).statistic)
        assert got["spearman_rho"] == pytest.approx(stats.spearmanr(a, b).statistic)
        assert got["jensen_shannon"] == pytest.approx(jensenshannon(a / a.sum(), b / b.sum(), base=2) ** 2)
        top = len(set(np.argsort(-a)[:3]) & set(np.argsort(-b)[:3])) / 3
        assert got["top_k_overlap"] == pytest.approx(top)


def test_edge_cases():
    assert jensen_shannon([1, 0], [1, 0]) == 0.0
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)
    assert math.isnan(jensen_shannon([0, 0], [1, 0]))
    assert top_k_overlap([3, 2, 1], [1, 2, 3], k=5) == 1.0  # k capped at the length
    constant = pair_metrics([1, 1, 1], [1, 2, 3])
    assert math.isnan(constant["kendall_tau"]) and math.isnan(constant["spearman_rho"])


def test_agreement_table_and_specials():
    def sal(method, scores):
        return TokenSaliency(
            tokens=["[CLS]", "a", "b", "c", "[SEP]"],
            scores=scores,
            method=method,
            special=[True, False, False, False, True],
        )

    table = {
        "attention": [[sal("attention", [9, 1, 2, 3, 9])], [sal("attention", [9, 3, 2, 1, 9])]],
        "saliency": [[sal("saliency", [0, 1, 2, 3, 0])], [sal("saliency", [0, -1, -2, -3, 0])]],
    }
    agree = agreement(table, k=1, families={"attention": "attention", "saliency": "gradient"})
    # magnitudes, specials excluded: instance 1 identical ranking (tau 1), instance 2 reversed (tau -1)
    assert agree.per_unit[0][("attention", "saliency")]["kendall_tau"] == pytest.approx(1.0)
    assert agree.per_unit[1][("attention", "saliency")]["kendall_tau"] == pytest.approx(-1.0)
    assert agree.mean("attention", "saliency", "kendall_tau") == pytest.approx(0.0)
    assert agree.mean("saliency", "attention", "top_k_overlap") == pytest.approx(0.5)
    assert agree.matrix("kendall_tau")[0, 0] == 1.0
    md = agree.cross_table("kendall_tau")
    assert "| attention | 0.000 |" in md
    signed = agreement(table, absolute=False, families={"attention": "attention", "saliency": "gradient"})
    assert signed.per_unit[1][("attention", "saliency")]["kendall_tau"] == pytest.approx(1.0)
