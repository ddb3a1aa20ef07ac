"""The pruning curve as a figure: metric against heads removed, by importance and at random."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .pruning import PruningCurve


def figure(width: float, height: float, columns: int) -> tuple[Any, Any]:
    """A Figure on its own Agg canvas (no pyplot, matplotlib's backend untouched) and its axes."""
    from ..plots.canvas import new_figure

    fig = new_figure(width, height)
    return fig, fig.subplots(1, columns, squeeze=False)[0]


def pruning_plot(curve: PruningCurve, *, metric: str = "accuracy", path: str | os.PathLike[str] | None = None) -> Any:
    """The metric as heads are removed in order of importance (and each random order, with their mean).

    Args:
        curve: a :func:`attn_plugins.pruning_curve` result.
        metric: the y-axis label.
        path: also save the figure (``.png``, ``.svg`` or ``.pdf``).

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    fig, (ax,) = figure(4.0, 3.0, 1)
    x = np.asarray(curve.fraction)
    first = "most" if curve.info.get("most_important_first") else "least"
    ax.plot(x, curve.by_importance, marker="o", label=f"by importance ({first} important first)")
    for values in curve.random:
        ax.plot(x, values, color="0.7", linewidth=0.8)
    if curve.random:
        ax.plot(x, curve.random_mean, color="0.3", linestyle="--", label=f"random order (mean of {len(curve.random)})")
    ax.set_xlabel(f"fraction of the {curve.total} heads removed")
    ax.set_ylabel(metric)
    ax.legend(fontsize="small")
    if path is not None:
        from ..plots import save

        save(fig, path)
    return fig
