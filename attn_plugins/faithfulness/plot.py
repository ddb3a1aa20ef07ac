"""Deletion and insertion curves of each method, averaged over instances (matplotlib, Agg canvas)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from ..heads.plot import figure
from .result import FaithfulnessResult


def curves_plot(
    result: FaithfulnessResult,
    methods: Sequence[str] | None = None,
    *,
    points: int = 21,
    path: str | os.PathLike[str] | None = None,
) -> Any:
    """Mean deletion (left, lower is more faithful) and insertion (right, higher is more faithful)
    curves of each method: target probability against the fraction of tokens removed / inserted,
    most important first.

    Args:
        result: an :func:`attn_plugins.evaluate` result computed with the deletion/insertion metrics.
        methods: the methods to draw (default all).
        points: the common grid the per-instance curves are interpolated onto.
        path: also save the figure (``.png``, ``.svg`` or ``.pdf``).

    Returns:
        The :class:`matplotlib.figure.Figure`.
    """
    methods = list(methods or result.methods)
    unknown = [m for m in methods if m not in result.instances]
    if unknown:
        raise InputError(f"no results for {unknown}; methods: {result.methods}")
    fig, axes = figure(7.0, 2.8, 2)
    for ax, curve, title in zip(
        axes, ("deletion", "insertion"), ("Deletion (lower is better)", "Insertion (higher is better)"), strict=True
    ):
        for method in methods:
            grid, mean = result.mean_curve(method, curve, points)
            ax.plot(grid, mean, label=method)
        ax.set_title(title)
        ax.set_xlabel("fraction of tokens " + ("removed" if curve == "deletion" else "inserted"))
        ax.set_ylabel("target probability")
        ax.set_xlim(0, 1)
    axes[1].legend(fontsize="small")
    if path is not None:
        from ..plots import save

        save(fig, path)
    return fig
