"""Rank correlations of two score vectors: Spearman's rho and Kendall's tau-b, with ties.

The one place attn-plugins computes them (method agreement, leave-one-out faithfulness, the
randomization check, head importance). They are what ``scipy.stats.spearmanr`` and
``scipy.stats.kendalltau`` (its default tau-b) return, checked against scipy in the tests, in a few
lines of numpy: importing ``scipy.stats`` costs about a second, a fifth of a report's own work.
Both are NaN when a vector has fewer than two entries, contains NaN, or is constant.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["average_ranks", "kendall_tau_b", "spearman_rho"]

_BLOCK = 1024  # rows of the pairwise sign matrix at once (memory: BLOCK x n bytes)


def average_ranks(values: Any) -> np.ndarray:
    """1-based ranks, ties given the mean of the ranks they span (``scipy.stats.rankdata``'s default).

    Args:
        values: a 1-D array.

    Returns:
        The ranks as float64.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], len(x)]
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def _pair(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray] | None:
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"score vectors differ in length: {x.shape} vs {y.shape}")
    if len(x) < 2 or np.isnan(x).any() or np.isnan(y).any() or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return x, y


def spearman_rho(a: Any, b: Any) -> float:
    """Spearman's rank correlation: Pearson's correlation of the average ranks.

    Args:
        a, b: 1-D score vectors of one length.

    Returns:
        rho in [-1, 1], or NaN (see the module).
    """
    pair = _pair(a, b)
    if pair is None:
        return math.nan
    x, y = (average_ranks(v) for v in pair)
    x -= x.mean()
    y -= y.mean()
    rho = float(np.dot(x, y) / math.sqrt(float(np.dot(x, x)) * float(np.dot(y, y))))
    return max(-1.0, min(1.0, rho))


def _tied_pairs(x: np.ndarray) -> int:
    _, counts = np.unique(x, return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


def kendall_tau_b(a: Any, b: Any) -> float:
    """Kendall's tau-b: (concordant - discordant pairs) / sqrt((pairs - ties in a) (pairs - ties in b)).

    Args:
        a, b: 1-D score vectors of one length.

    Returns:
        tau in [-1, 1], or NaN (see the module).
    """
    pair = _pair(a, b)
    if pair is None:
        return math.nan
    x, y = pair
    n = len(x)
    score = 0  # sum over ordered pairs i != j of sign(x_i - x_j) sign(y_i - y_j): twice the unordered sum
    for start in range(0, n, _BLOCK):
        sx = np.sign(x[start : start + _BLOCK, None] - x[None, :]).astype(np.int8)
        sy = np.sign(y[start : start + _BLOCK, None] - y[None, :]).astype(np.int8)
        score += int(np.einsum("ij,ij->", sx, sy, dtype=np.int64))
    pairs = n * (n - 1) // 2
    denominator = math.sqrt(float(pairs - _tied_pairs(x)) * float(pairs - _tied_pairs(y)))
    tau = (score / 2) / denominator
    return max(-1.0, min(1.0, tau))
