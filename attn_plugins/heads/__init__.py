"""Heads: ablation, importance, knockout and pruning under the model's own attention kernel.

========================= ===================================================================
:func:`ablate`            remove (``"zero"``) or mean-replace chosen heads inside a ``with``
:func:`head_means`        each head's mean output over data (for ``mode="mean"``)
:func:`attention_units`   the attention blocks, in the order ``heads={layer: ...}`` counts them
========================= ===================================================================
"""

from .ablation import ablate, head_means
from .units import HeadUnit, attention_units

__all__ = ["HeadUnit", "ablate", "attention_units", "head_means"]
