"""Spearman's rho and Kendall's tau-b against scipy.stats (the reference), with ties, negative
values, long vectors (the blocked pairwise sum) and the NaN cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from attn_plugins.analysis.ranks import average_ranks, kendall_tau_b, spearman_rho


def _vectors():
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 17, 64, 300):
        yield rng.normal(size=n), rng.normal(size=n)
        yield rng.integers(0, 4, n).astype(float), rng.integers(0, 3, n).astype(float)  # many ties
        x = rng.normal(size=n)
        yield x, -2 * x + 1  # perfectly discordant
        yield x, np.round(x, 1)  # ties in one vector only
    x = rng.normal(size=2500)  # more rows than one block of the pairwise matrix
    yield x, x + rng.normal(scale=0.5, size=2500)


@pytest.mark.parametrize("index", range(25))
def test_rank_correlations_match_scipy(index):
    x, y = list(_vectors())[index]
    assert kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
    assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert np.array_equal(average_ranks(x), stats.rankdata(x))


@pytest.mark.parametrize(
    "x, y",
    [([1.0], [2.0]), ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]), ([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]), ([1.0, math.nan], [1, 2])],
)
def test_undefined_correlations_are_nan(x, y):
    assert math.isnan(kendall_tau_b(x, y)) and math.isnan(spearman_rho(x, y))


def test_lengths_must_match():
    with pytest.raises(ValueError, match="differ in length"):
        kendall_tau_b([1, 2, 3], [1, 2])
