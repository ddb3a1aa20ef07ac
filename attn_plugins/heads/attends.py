"""Heads beside what they attend to: each head's importance (Michel et al. 2019) next to its
attention statistics (Clark et al. 2019). Do the sharp heads, the [CLS]/[SEP] heads and the
previous-token heads matter to the prediction?"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..analysis.ranks import spearman_rho
from ..analysis.stats import HeadStats
from ..errors import InputError
from .importance import HeadImportance
from .plot import figure

STATS = ("normalized_entropy", "special", "previous")
TITLES = {
    "normalized_entropy": "entropy / uniform",
    "special": "[CLS]/[SEP] share",
    "previous": "previous-token share",
    "next": "next-token share",
    "self": "self share",
    "distance": "mean distance",
    "entropy": "entropy",
}


def importance_rows(importance: HeadImportance, stats: HeadStats, names: Sequence[str] = STATS) -> list[dict[str, Any]]:
    """One dict per head: ``layer``, ``head``, ``importance`` and each statistic of ``names``.

    Args:
        importance: a :func:`attn_plugins.head_importance` result.
        stats: the :func:`~attn_plugins.analysis.stats.head_stats` of the same model's attention.
            The blocks are matched in order: with a capture of chosen layers, compute the importance
            of the same layers (``head_importance(..., layers=[layer.name for layer in record.layers])``);
            a capture of chosen heads keeps those heads' rows (importance is scored, and normalised
            per layer, over every head of a block, so a head's value does not depend on the selection).
        names: the statistics to put beside the importance.

    Returns:
        The rows, in model order (the captured heads of each captured layer).
    """
    scores = importance.matrix()
    counts = [int(np.sum(~np.isnan(row))) for row in scores]
    if scores.shape[0] != len(stats.labels) or any(h and max(h) >= counts[i] for i, h in enumerate(stats.heads)):
        raise InputError(
            f"importance covers {scores.shape[0]} blocks with {counts} heads, the statistics "
            f"{len(stats.labels)} layers with heads {stats.heads}: compute the importance on the "
            "layers that were captured, of the same model"
        )
    rows = []
    for li, label in enumerate(stats.labels):
        for hi, head in enumerate(stats.heads[li]):
            row = {"layer": label, "head": head, "importance": float(scores[li, head])}
            row.update({name: float(stats.get(name)[li, hi]) for name in names})
            rows.append(row)
    return rows


def importance_stats_plot(
    importance: HeadImportance,
    stats: HeadStats,
    names: Sequence[str] = STATS,
    *,
    path: str | os.PathLike[str] | None = None,
) -> Any:
    """One scatter per statistic: each head's importance (y) against the statistic (x), coloured
    by layer, with Spearman's rho over heads in the panel title.

    Args:
        importance: as for :func:`importance_rows`.
        stats: as for :func:`importance_rows`.
        names: as for :func:`importance_rows`.
        path: also save the figure (``.png``, ``.svg`` or ``.pdf``).

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    rows = importance_rows(importance, stats, names)
    layers = {label: i for i, label in enumerate(dict.fromkeys(r["layer"] for r in rows))}
    y = np.array([r["importance"] for r in rows])
    colour = np.array([layers[r["layer"]] for r in rows])
    fig, axes = figure(3.0 * len(names), 2.8, len(names))
    for ax, name in zip(axes, names, strict=True):
        x = np.array([r[name] for r in rows])
        ok = np.isfinite(x) & np.isfinite(y)
        points = ax.scatter(x[ok], y[ok], c=colour[ok], cmap="viridis", s=14, vmin=0, vmax=max(1, len(layers) - 1))
        rho = spearman_rho(x[ok], y[ok]) if ok.sum() > 2 else float("nan")
        ax.set_title(f"{TITLES.get(name, name)} (rho {rho:.2f})", fontsize=9)
        ax.set_xlabel(TITLES.get(name, name))
    axes[0].set_ylabel("head importance")
    fig.colorbar(points, ax=axes[-1], label="layer")
    if path is not None:
        from ..plots import save

        save(fig, path)
    return fig
