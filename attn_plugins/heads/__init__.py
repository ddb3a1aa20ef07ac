"""Heads: ablation, importance, knockout and pruning under the model's own attention kernel.

========================= ===================================================================
:func:`ablate`            remove (``"zero"``) or mean-replace chosen heads inside a ``with``
:func:`head_means`        each head's mean output over data (for ``mode="mean"``)
:func:`head_importance`   Michel et al.'s ``E|dL/dgate|`` per head, one backward per batch
:func:`knockout`          block query->key edges in chosen blocks through the kernel's mask
:func:`pruning_curve`     a metric as heads go, by importance against random orders
:func:`pruning_plot`      that curve as a figure
:func:`importance_rows`   each head's importance beside its attention statistics
:func:`importance_stats_plot` the same as scatters, with Spearman's rho
:func:`attention_units`   the attention blocks, in the order ``heads={layer: ...}`` counts them
========================= ===================================================================
"""

from .ablation import ablate, head_means
from .attends import importance_rows, importance_stats_plot
from .importance import HeadImportance, head_importance
from .knockout import knockout
from .plot import pruning_plot
from .pruning import PruningCurve, pruning_curve
from .units import HeadUnit, attention_units

__all__ = [
    "HeadImportance",
    "HeadUnit",
    "PruningCurve",
    "ablate",
    "attention_units",
    "head_importance",
    "head_means",
    "importance_rows",
    "importance_stats_plot",
    "knockout",
    "pruning_curve",
    "pruning_plot",
]
