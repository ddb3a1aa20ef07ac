"""Plausibility: agreement of a saliency with human rationales (DeYoung et al. 2020, ERASER).

Over the removable (non-special) tokens, with the human rationale as a 0/1 label per token:

* **token F1** and **IOU** of the hard rationale: the method's top-k tokens, ``k`` the number of
  rationale tokens of that instance unless given (ERASER takes k from the average human rationale
  length; per instance is the same idea without a corpus statistic);
* **AUPRC** of the soft scores: the area under the precision-recall curve
  (``sklearn.metrics.precision_recall_curve`` then ``auc``, as ERASER's and ferret's code).

With ``only_positive`` (default) scores <= 0 count as "not in the rationale" (clipped to 0 for AUPRC).
An instance whose rationale is empty is NaN.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..saliency import TokenSaliency


def rationale_mask(saliency: TokenSaliency, rationale: Sequence[Any]) -> np.ndarray:
    """A 0/1 mask over ``saliency.tokens``.

    Args:
        saliency: a token-level result (with ``text`` and ``offsets`` when ``rationale`` holds words).
        rationale: a 0/1 sequence aligned with the tokens, or a list of words: every token whose
            character span lies in a case-insensitive whole-word match of one of them is marked.

    Returns:
        A boolean array, one entry per token.
    """
    if len(rationale) and all(isinstance(v, (bool, int, np.integer)) for v in rationale):
        mask = np.asarray(rationale, dtype=bool)
        if mask.shape[0] != len(saliency.tokens):
            raise InputError(f"rationale has {mask.shape[0]} entries for {len(saliency.tokens)} tokens")
        return mask
    if saliency.text is None or saliency.offsets is None:
        raise InputError("a rationale of words needs a saliency with text and offsets (a fast tokenizer)")
    spans = []
    for word in rationale:
        found = [(m.start(), m.end()) for m in re.finditer(rf"\b{re.escape(str(word))}\b", saliency.text, re.I)]
        if not found:
            raise InputError(f"rationale word {word!r} is not in {saliency.text!r}")
        spans.extend(found)
    special = saliency.special or [False] * len(saliency.tokens)
    return np.array(
        [
            not s and e > b and any(b >= lo and e <= hi for lo, hi in spans)
            for (b, e), s in zip(saliency.offsets, special, strict=True)
        ],
        dtype=bool,
    )


def plausibility(
    saliency: TokenSaliency, mask: Sequence[bool] | np.ndarray, *, k: int | None = None, only_positive: bool = True
) -> dict[str, float]:
    """``token_f1``, ``iou`` and ``auprc`` of one saliency against one rationale mask."""
    from sklearn.metrics import auc, precision_recall_curve

    special = saliency.special or [False] * len(saliency.tokens)
    keep = [i for i, s in enumerate(special) if not s]
    gold = np.asarray(mask, dtype=bool)[keep]
    scores = np.asarray(saliency.scores, dtype=np.float64)[keep]
    if not gold.any():
        return {"token_f1": float("nan"), "iou": float("nan"), "auprc": float("nan")}
    order = [int(i) for i in np.argsort(-scores, kind="stable")]
    if only_positive:
        order = [i for i in order if scores[i] > 0]
        scores = np.clip(scores, 0, None)
    top = set(order[: int(gold.sum()) if k is None else int(k)])
    truth = set(np.flatnonzero(gold).tolist())
    tp = len(top & truth)
    precision = tp / len(top) if top else 0.0
    recall = tp / len(truth)
    f1 = 0.0 if tp == 0 else 2 * precision * recall / (precision + recall)
    iou = tp / len(top | truth)
    precisions, recalls, _ = precision_recall_curve(gold.astype(int), scores)
    return {"token_f1": float(f1), "iou": float(iou), "auprc": float(auc(recalls, precisions))}
