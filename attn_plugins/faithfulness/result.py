"""FaithfulnessResult: per-instance faithfulness and plausibility of each method, aggregated with
bootstrap confidence intervals over instances, saved as JSON."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

# name -> (column title, True when higher is more faithful / plausible)
METRICS = {
    "comprehensiveness": ("comp", True),
    "sufficiency": ("suff", False),
    "deletion_auc": ("del AUC", False),
    "insertion_auc": ("ins AUC", True),
    "loo_tau": ("LOO tau", True),
    "token_f1": ("tok F1", True),
    "iou": ("IOU", True),
    "auprc": ("AUPRC", True),
}
FORMAT_VERSION = 1


def bootstrap_ci(
    values: Iterable[float | None], *, confidence: float = 0.95, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Mean of the finite ``values`` with a percentile bootstrap interval over them (resampling
    instances with replacement, ``n_boot`` times, seeded)."""
    data = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if data.size == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_boot, data.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return {
        "mean": float(data.mean()),
        "low": float(np.quantile(means, alpha)),
        "high": float(np.quantile(means, 1 - alpha)),
        "n": int(data.size),
    }


@dataclass
class FaithfulnessResult:
    """``instances[method]`` is one dict per explained input (its metrics, curves, text, target);
    ``randomization[method]`` (when run) holds the cascading-randomization steps and, per step, the
    rank correlation of each instance's saliency with the original's; ``settings`` records how the
    metrics were computed (removal, bins, ...)."""

    instances: dict[str, list[dict[str, Any]]]
    settings: dict[str, Any] = field(default_factory=dict)
    randomization: dict[str, dict[str, Any]] | None = None
    confidence: float = 0.95
    n_boot: int = 1000
    seed: int = 0

    @property
    def methods(self) -> list[str]:
        return list(self.instances)

    def values(self, method: str, metric: str) -> list[float]:
        return [row.get(metric, float("nan")) for row in self.instances[method]]

    def summary(self) -> dict[str, dict[str, dict[str, Any]]]:
        """``{method: {metric: {"mean", "low", "high", "n"}}}`` for the metrics that were computed,
        plus ``randomization_rho`` (the mean rank correlation once every layer is randomized)."""
        out = {}
        for method, rows in self.instances.items():
            stats = {}
            for metric in METRICS:
                if any(metric in row for row in rows):
                    stats[metric] = bootstrap_ci(
                        self.values(method, metric), confidence=self.confidence, n_boot=self.n_boot, seed=self.seed
                    )
            if self.randomization and method in self.randomization:
                last = self.randomization[method]["correlation"][-1]
                stats["randomization_rho"] = bootstrap_ci(
                    last, confidence=self.confidence, n_boot=self.n_boot, seed=self.seed
                )
            out[method] = stats
        return out

    def mean_curve(self, method: str, curve: str = "deletion", points: int = 11) -> tuple[np.ndarray, np.ndarray]:
        """A deletion or insertion curve averaged over instances on a common grid of removed fractions."""
        grid = np.linspace(0, 1, points)
        curves = [
            np.interp(grid, np.linspace(0, 1, len(row[curve])), row[curve])
            for row in self.instances[method]
            if curve in row
        ]
        if not curves:
            raise InputError(f"no {curve} curves were computed for {method!r}")
        return grid, np.mean(curves, axis=0)

    def columns(self) -> list[tuple[str, str, bool | None]]:
        """The computed metrics as ``(name, column title, higher is better)`` in table order
        (``randomization_rho`` has no better direction: a faithful method's rho falls)."""
        summary = self.summary()
        titles = {**{k: v[0] for k, v in METRICS.items()}, "randomization_rho": "rand rho"}
        return [
            (m, titles[m], METRICS[m][1] if m in METRICS else None)
            for m in [*METRICS, "randomization_rho"]
            if any(m in s for s in summary.values())
        ]

    def table(self, digits: int = 3, *, markdown: bool = False) -> str:
        """A plain-text (or Markdown) table: one row per method, ``mean [low, high]`` per metric."""
        summary, columns = self.summary(), self.columns()

        def cell(s: dict[str, Any] | None) -> str:
            if s is None or s["n"] == 0:
                return "-"
            return f"{s['mean']:.{digits}f} [{s['low']:.{digits}f}, {s['high']:.{digits}f}]"

        rows = [["method"] + [c[1] for c in columns]]
        rows += [[method] + [cell(summary[method].get(c[0])) for c in columns] for method in summary]
        arrows = ", ".join(f"{title} {'higher' if up else 'lower'}" for _, title, up in columns if up is not None)
        note = f"(better: {arrows}; {self.confidence:.0%} bootstrap intervals over instances)"
        if markdown:
            lines = ["| " + " | ".join(r) + " |" for r in rows]
            return "\n".join(lines[:1] + ["|" + "---|" * len(rows[0])] + lines[1:] + ["", note])
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        return "\n".join(lines + [note])

    def save_csv(self, path: str | os.PathLike[str]) -> Path:
        """The summary as CSV: one row per (method, metric) with ``mean, low, high, n``."""
        import csv

        from ..atomic import atomic_path

        out = Path(path)
        with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["method", "metric", "mean", "low", "high", "n"])
            for method, stats in self.summary().items():
                for metric, s in stats.items():
                    writer.writerow([method, metric, s["mean"], s["low"], s["high"], s["n"]])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "instances": _clean(self.instances),
            "settings": _clean(self.settings),
            "randomization": _clean(self.randomization),
            "summary": _clean(self.summary()),
            "confidence": self.confidence,
            "n_boot": self.n_boot,
            "seed": self.seed,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the result (and its summary) as JSON; NaN is written as null."""
        from ..atomic import write_text

        out = Path(path)
        write_text(out, json.dumps(self.to_dict(), indent=1, allow_nan=False))
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FaithfulnessResult:
        data = json.loads(Path(path).read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise InputError(f"{path}: not a faithfulness result of format {FORMAT_VERSION}")

        def restore(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{k: (float("nan") if v is None and k in METRICS else v) for k, v in r.items()} for r in rows]

        return cls(
            instances={m: restore(rows) for m, rows in data["instances"].items()},
            settings=data["settings"],
            randomization=data.get("randomization"),
            confidence=data["confidence"],
            n_boot=data["n_boot"],
            seed=data["seed"],
        )


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
