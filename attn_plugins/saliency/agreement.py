"""Agreement between saliency methods (the analysis of Jain & Wallace 2019, as a tool).

For every pair of methods and every instance (each field of an instance counts on its own):

* ``kendall_tau``: Kendall's tau-b between the token scores;
* ``spearman_rho``: Spearman's rank correlation;
* ``top_k_overlap``: ``|top-k(a) & top-k(b)| / k`` (``k`` capped at the number of tokens);
* ``jensen_shannon``: Jensen-Shannon divergence (base 2, in [0, 1]) between the scores as
  distributions (absolute values, L1-normalised).

Scores are compared by magnitude (``absolute=True``: a strongly negative gradient is as salient
as a strongly positive one), over the real tokens without [CLS]/[SEP]-like special tokens by
default (``skip_special=True``; attention methods put most of their mass there, which would
swamp the comparison). Averages ignore undefined values (a constant score vector has no rank
correlation).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..analysis.divergence import js_divergence_rows
from ..analysis.ranks import kendall_tau_b, spearman_rho

METRICS = ("kendall_tau", "spearman_rho", "top_k_overlap", "jensen_shannon")
LABELS = {
    "kendall_tau": "Kendall tau",
    "spearman_rho": "Spearman rho",
    "top_k_overlap": "top-k overlap",
    "jensen_shannon": "Jensen-Shannon divergence",
}


def _distribution(values: np.ndarray) -> np.ndarray | None:
    values = np.abs(np.asarray(values, dtype=np.float64))
    total = values.sum()
    return values / total if total > 0 else None


def jensen_shannon(a: Any, b: Any) -> float:
    """Jensen-Shannon divergence (base 2) of two non-negative score vectors, each L1-normalised."""
    p, q = _distribution(a), _distribution(b)
    if p is None or q is None:
        return math.nan
    return float(js_divergence_rows(torch.from_numpy(p), torch.from_numpy(q), base=2.0))


def top_k_overlap(a: Any, b: Any, k: int) -> float:
    n = len(a)
    k = min(int(k), n)
    if k <= 0:
        return math.nan
    top_a = set(np.argsort(-np.asarray(a), kind="stable")[:k].tolist())
    top_b = set(np.argsort(-np.asarray(b), kind="stable")[:k].tolist())
    return len(top_a & top_b) / k


def pair_metrics(a: Any, b: Any, *, k: int = 3) -> dict[str, float]:
    """All agreement metrics of two score vectors (already absolute if wanted)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"score vectors differ in length: {a.shape} vs {b.shape}")
    constant = len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0
    if constant:
        tau = rho = math.nan
    else:
        tau = kendall_tau_b(a, b)
        rho = spearman_rho(a, b)
    return {
        "kendall_tau": tau,
        "spearman_rho": rho,
        "top_k_overlap": top_k_overlap(a, b, k),
        "jensen_shannon": jensen_shannon(a, b),
    }


@dataclass
class Agreement:
    """Pairwise agreement of methods: per unit (instance/field) and averaged."""

    methods: list[str]
    units: list[str]
    per_unit: list[dict[tuple[str, str], dict[str, float]]]
    k: int
    absolute: bool
    skip_special: bool
    families: dict[str, str] = field(default_factory=dict)

    def mean(self, a: str, b: str, metric: str) -> float:
        key = (a, b) if (a, b) in self.per_unit[0] else (b, a)
        values = [unit[key][metric] for unit in self.per_unit if key in unit]
        values = [v for v in values if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan

    def count(self, a: str, b: str, metric: str) -> int:
        key = (a, b) if (a, b) in self.per_unit[0] else (b, a)
        return sum(1 for unit in self.per_unit if key in unit and not math.isnan(unit[key][metric]))

    def matrix(self, metric: str) -> np.ndarray:
        """``[methods x methods]`` of the averaged metric (diagonal: perfect agreement)."""
        n = len(self.methods)
        out = np.zeros((n, n))
        for i, j in itertools.product(range(n), range(n)):
            if i == j:
                out[i, j] = 0.0 if metric == "jensen_shannon" else 1.0
            else:
                out[i, j] = self.mean(self.methods[i], self.methods[j], metric)
        return out

    def cross_table(self, metric: str, rows: list[str] | None = None, cols: list[str] | None = None) -> str:
        """A markdown table of the averaged ``metric``: rows (default attention methods) against
        columns (default gradient methods)."""
        rows = rows or [m for m in self.methods if self.families.get(m) == "attention"]
        cols = cols or [m for m in self.methods if self.families.get(m) != "attention"]
        lines = [f"| {LABELS.get(metric, metric)} | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for r in rows:
            cells = [f"{self.mean(r, c, metric):.3f}" for c in cols]
            lines.append(f"| {r} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def summary(self, metrics: Any = METRICS) -> str:
        """Every averaged metric as markdown tables (attention methods vs gradient methods)."""
        head = (
            f"{len(self.units)} instances; scores compared by {'magnitude' if self.absolute else 'value'}"
            f"{', special tokens excluded' if self.skip_special else ''}; top-k with k={self.k}"
        )
        return head + "\n\n" + "\n\n".join(self.cross_table(m) for m in metrics)


def agreement(
    table: dict[str, list[Any]],
    *,
    k: int = 3,
    absolute: bool = True,
    skip_special: bool = True,
    families: dict[str, str] | None = None,
) -> Agreement:
    """Agreement of ``{method: [instance]}`` (instances are lists of fields, as in
    :func:`attn_plugins.saliency.collect.as_method_table`)."""
    methods = list(table)
    if families is None:
        from .methods import family_of

        families = {}
        for m in methods:
            try:
                families[m] = family_of(m)
            except KeyError:
                families[m] = "gradient"
    units: list[str] = []
    per_unit = []
    count = len(table[methods[0]]) if methods else 0
    for i in range(count):
        for f, first in enumerate(table[methods[0]][i]):
            keep = list(range(len(first.tokens)))
            if skip_special and first.special is not None:
                keep = [p for p in keep if not first.special[p]] or keep
            vectors = {}
            for m in methods:
                scores = table[m][i][f].scores[keep]
                vectors[m] = np.abs(scores) if absolute else scores
            metrics = {}
            for a, b in itertools.combinations(methods, 2):
                metrics[(a, b)] = pair_metrics(vectors[a], vectors[b], k=k)
            label = f"instance {i + 1}" + (f" ({first.field})" if len(table[methods[0]][i]) > 1 else "")
            units.append(label)
            per_unit.append(metrics)
    return Agreement(
        methods=methods,
        units=units,
        per_unit=per_unit,
        k=k,
        absolute=absolute,
        skip_special=skip_special,
        families=families,
    )
