"""Pruning curve: a metric as heads are removed, in order of importance against random orders.

Michel et al. (2019) remove heads from the least important up and watch accuracy: a model whose
metric holds while most heads go has many redundant heads; random orders are the baseline that
importance must beat. Each point runs ``metric(model)`` inside :func:`ablate` with the heads removed
so far (``mode="zero"``, under the model's own kernel).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from ..errors import InputError
from .ablation import ablate
from .importance import HeadImportance, LossFunction, head_importance
from .units import all_heads, attention_units


@dataclass
class PruningCurve:
    """``removed[i]`` heads removed -> ``by_importance[i]`` and, per random order, ``random[r][i]``."""

    removed: list[int]
    total: int
    by_importance: list[float]
    random: list[list[float]]
    order: list[tuple[int, int]]
    random_orders: list[list[tuple[int, int]]]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> list[float]:
        return [r / self.total for r in self.removed]

    @property
    def random_mean(self) -> list[float]:
        return [float(v) for v in np.mean(np.asarray(self.random), axis=0)] if self.random else []

    def to_dict(self) -> dict[str, Any]:
        """The curve as plain lists (JSON)."""
        return {
            "removed": self.removed,
            "total": self.total,
            "fraction": self.fraction,
            "by_importance": self.by_importance,
            "random": self.random,
            "random_mean": self.random_mean,
            "order": [list(p) for p in self.order],
            "info": self.info,
        }


def _steps(steps: int | Sequence[int] | None, total: int) -> list[int]:
    if steps is None:
        chosen = sorted({round(total * f / 10) for f in range(11)})
    elif isinstance(steps, int):
        chosen = sorted({round(total * i / steps) for i in range(steps + 1)})
    else:
        chosen = sorted({int(s) for s in steps})
    if not chosen or chosen[0] < 0 or chosen[-1] > total:
        raise InputError(f"steps must be numbers of heads between 0 and {total}, got {chosen}")
    return chosen


def _curve(
    model: nn.Module,
    metric: Callable[[nn.Module], float],
    order: Sequence[tuple[int, int]],
    steps: Sequence[int],
    seen: dict[frozenset[tuple[int, int]], float],
) -> list[float]:
    """The metric after removing ``order[:k]`` for each ``k`` of ``steps``. ``seen`` remembers the
    metric of each set of removed heads: every order shares the points with no head and with every
    head removed, which are measured once."""
    out = []
    for k in steps:
        removed = frozenset(order[:k])
        if removed not in seen:
            heads: dict[int, list[int]] = {}
            for unit, head in order[:k]:
                heads.setdefault(unit, []).append(head)
            if heads:
                with ablate(model, heads):
                    seen[removed] = float(metric(model))
            else:
                seen[removed] = float(metric(model))
        out.append(seen[removed])
    return out


def pruning_curve(
    model: nn.Module,
    metric: Callable[[nn.Module], float],
    *,
    importance: HeadImportance | None = None,
    batches: Iterable[Any] | None = None,
    loss: str | LossFunction = "model",
    steps: int | Sequence[int] | None = None,
    n_random: int = 3,
    seed: int = 0,
    most_important_first: bool = False,
) -> PruningCurve:
    """The metric as heads are removed by importance and in ``n_random`` random orders.

    Args:
        model: the model (its own kernel; restored after every point).
        metric: ``metric(model) -> float``, e.g. accuracy on held-out data.
        importance: a :class:`HeadImportance`; otherwise computed from ``batches`` with ``loss``.
        steps: numbers of heads removed at which to measure: a list, or a count of equal steps;
            default 0%, 10%, ..., 100% of all heads.
        n_random: random orders (seeded by ``seed``) for the baseline.
        most_important_first: remove the most important first (default: least important first, as the paper).

    Returns:
        A :class:`PruningCurve`.
    """
    units = attention_units(model)
    if importance is None:
        if batches is None:
            raise InputError("pruning_curve needs importance= or batches= to compute it")
        importance = head_importance(model, batches, loss=loss)
    order = importance.ranking(ascending=not most_important_first)
    everything = all_heads(units)
    if sorted(order) != sorted(everything):
        raise InputError("importance must score every head of the model (compute it with layers=None)")
    points = _steps(steps, len(everything))
    rng = random.Random(seed)
    orders = []
    for _ in range(int(n_random)):
        shuffled = list(everything)
        rng.shuffle(shuffled)
        orders.append(shuffled)
    seen: dict[frozenset[tuple[int, int]], float] = {}
    return PruningCurve(
        removed=points,
        total=len(everything),
        by_importance=_curve(model, metric, order, points, seen),
        random=[_curve(model, metric, o, points, seen) for o in orders],
        order=order,
        random_orders=orders,
        info={"most_important_first": most_important_first, "seed": seed},
    )
