"""Faithfulness metrics: does removing what a saliency calls important change the prediction?

* **Comprehensiveness** (DeYoung et al. 2020, ERASER): ``p(x)_y - p(x \\ r_k)_y``, the drop of the
  target probability when the top-k tokens ``r_k`` are removed (higher: more faithful).
* **Sufficiency**: ``p(x)_y - p(r_k)_y``, the drop when only ``r_k`` is kept (lower: more faithful).
  Both are averaged over the removal bins (AOPC; default 1, 5, 10, 20, 50% of the removable tokens),
  ``k = int(fraction * n)`` as in ERASER's and ferret's code; bins with ``k = 0``, or whose top-k set
  repeats the previous bin's, are skipped (ferret does the same); an instance with no bin left is NaN.
  With ``only_positive`` (default, as ferret) the rationale holds only tokens scored > 0.
* **Deletion / insertion curves** (Petsiuk et al. 2018, as used for text): the target probability
  after removing the 0..n most important tokens (deletion, lower area: more faithful), and with only
  the 0..n most important kept (insertion, higher area: more faithful); areas by the trapezoid rule
  over the removed fraction in [0, 1].
* **Leave-one-out tau** (Jain & Wallace 2019): Kendall's tau-b between the saliency of each removable
  token and the drop ``p(x)_y - p(x \\ {i})_y`` when it alone is removed.

Every function batches all perturbed inputs of all instances through one :class:`Scorer`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..analysis.ranks import kendall_tau_b
from .perturb import Instance, Scorer, keep_only, perturb

DEFAULT_BINS = (0.01, 0.05, 0.1, 0.2, 0.5)


def rationale_sets(instance: Instance, bins: Sequence[float], only_positive: bool = True) -> list[list[int]]:
    """The top-k candidate sets of the bins that count (see the module docstring)."""
    ranking = instance.ranking(only_positive)
    n = len(instance.candidates)
    sets, last = [], None
    for fraction in bins:
        k = int(fraction * n)
        if k <= 0 or k > n:
            continue
        top = ranking[:k]
        if not top or (last is not None and set(top) == last):
            continue
        sets.append(top)
        last = set(top)
    return sets


def comprehensiveness_sufficiency(
    instances: Sequence[Instance],
    scorer: Scorer,
    *,
    replacement: int | None,
    bins: Sequence[float] = DEFAULT_BINS,
    only_positive: bool = True,
) -> list[dict[str, Any]]:
    """Per instance: ``comprehensiveness`` and ``sufficiency`` (AOPC over the bins) and the bins' ``k``."""
    sequences: list[list[int]] = []
    targets: list[int] = []
    layout: list[Any] = []
    for inst in instances:
        sets = rationale_sets(inst, bins, only_positive)
        layout.append((len(sequences), sets))
        sequences.append(inst.ids)
        for top in sets:
            sequences.append(perturb(inst, top, replacement))
            sequences.append(keep_only(inst, top, replacement))
        targets.extend([inst.target] * (1 + 2 * len(sets)))
    probs = scorer.probabilities(sequences, targets)
    out = []
    for start, sets in layout:
        base = probs[start]
        comp = [base - probs[start + 1 + 2 * j] for j in range(len(sets))]
        suff = [base - probs[start + 2 + 2 * j] for j in range(len(sets))]
        out.append(
            {
                "comprehensiveness": float(np.mean(comp)) if sets else float("nan"),
                "sufficiency": float(np.mean(suff)) if sets else float("nan"),
                "comprehensiveness_bins": [float(v) for v in comp],
                "sufficiency_bins": [float(v) for v in suff],
                "bin_sizes": [len(s) for s in sets],
                "probability": float(base),
            }
        )
    return out


def deletion_insertion(
    instances: Sequence[Instance], scorer: Scorer, *, replacement: int | None
) -> list[dict[str, Any]]:
    """Per instance: the ``deletion`` and ``insertion`` curves (target probability after 0..n tokens
    removed / kept, most important first) and their areas ``deletion_auc`` / ``insertion_auc``."""
    sequences: list[list[int]] = []
    targets: list[int] = []
    layout: list[Any] = []
    for inst in instances:
        ranking = inst.ranking()
        n = len(ranking)
        layout.append((len(sequences), n))
        sequences.extend(perturb(inst, ranking[:k], replacement) for k in range(n + 1))
        sequences.extend(keep_only(inst, ranking[:k], replacement) for k in range(n + 1))
        targets.extend([inst.target] * (2 * (n + 1)))
    probs = scorer.probabilities(sequences, targets)
    out = []
    for start, n in layout:
        x = np.arange(n + 1) / n
        deletion = probs[start : start + n + 1]
        insertion = probs[start + n + 1 : start + 2 * (n + 1)]
        out.append(
            {
                "deletion": deletion.tolist(),
                "insertion": insertion.tolist(),
                "deletion_auc": float(np.trapezoid(deletion, x)),
                "insertion_auc": float(np.trapezoid(insertion, x)),
            }
        )
    return out


def leave_one_out(instances: Sequence[Instance], scorer: Scorer, *, replacement: int | None) -> list[dict[str, Any]]:
    """Per instance: ``loo`` (the drop when each removable token alone is removed) and ``loo_tau``
    (Kendall's tau-b with the saliency; NaN for fewer than two tokens or constant scores)."""
    sequences: list[list[int]] = []
    targets: list[int] = []
    layout: list[Any] = []
    for inst in instances:
        layout.append((len(sequences), len(inst.candidates)))
        sequences.append(inst.ids)
        sequences.extend(perturb(inst, [i], replacement) for i in range(len(inst.candidates)))
        targets.extend([inst.target] * (1 + len(inst.candidates)))
    probs = scorer.probabilities(sequences, targets)
    out = []
    for inst, (start, n) in zip(instances, layout, strict=True):
        drops = probs[start] - probs[start + 1 : start + 1 + n]
        tau = kendall_tau_b(drops, inst.scores) if n >= 2 else float("nan")
        out.append({"loo": drops.tolist(), "loo_tau": tau})
    return out
