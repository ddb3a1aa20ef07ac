"""Alignment evaluation: the word alignments an attribution induces, scored against gold alignments
with alignment error rate, precision and recall (Och & Ney 2003).

Gold alignments come in the Pharaoh format: ``"i-j"`` pairs (source position ``i``, target position
``j``, 0-based) separated by spaces; ``"i?j"`` marks a possible (not sure) link. Induced alignments:
``"argmax"`` (each target token's highest-scoring source token) or a float threshold (every source
token whose row-normalised |score| is at least the threshold).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from .result import SequenceAttribution

_PAIR = re.compile(r"^(\d+)([-?])(\d+)$")

Links = set[tuple[int, int]]
Gold = str | tuple[Links, Links]


def parse_pharaoh(text: str, n_source: int | None = None, n_target: int | None = None) -> tuple[Links, Links]:
    """``(sure, possible)`` sets of ``(source, target)`` pairs from a Pharaoh line; ``possible`` holds
    the sure links too. Positions beyond ``n_source``/``n_target`` (when given) are refused.

    Args:
        text: e.g. ``"0-0 1-2 2?1"``.
        n_source, n_target: sentence lengths to validate against.

    Returns:
        ``(sure, possible)``.
    """
    if not isinstance(text, str):
        raise InputError(f"a Pharaoh alignment is a string of 'i-j' pairs, got {type(text).__name__}")
    sure: Links = set()
    possible: Links = set()
    for item in text.split():
        match = _PAIR.match(item)
        if match is None:
            raise InputError(f"{item!r} is not a Pharaoh pair ('i-j' sure or 'i?j' possible, 0-based)")
        i, kind, j = int(match.group(1)), match.group(2), int(match.group(3))
        if n_source is not None and i >= n_source:
            raise InputError(f"{item!r}: source position {i} is beyond the {n_source} source tokens")
        if n_target is not None and j >= n_target:
            raise InputError(f"{item!r}: target position {j} is beyond the {n_target} target tokens")
        (sure if kind == "-" else possible).add((i, j))
    return sure, possible | sure


def to_pharaoh(links: Links) -> str:
    """``"i-j ..."`` for a set of ``(source, target)`` pairs, sorted by target then source."""
    return " ".join(f"{i}-{j}" for i, j in sorted(links, key=lambda p: (p[1], p[0])))


def induced_alignment(
    matrix: Any,
    how: str | float = "argmax",
    *,
    source_mask: Sequence[bool] | None = None,
    target_mask: Sequence[bool] | None = None,
) -> Links:
    """The links a ``[target, source]`` score matrix induces.

    Args:
        matrix: target x source scores (signs ignored: |scores|).
        how: ``"argmax"`` or a threshold in (0, 1] on each row's |scores| normalised to sum 1.
        source_mask, target_mask: booleans; ``False`` positions take part in no link (special tokens).

    Returns:
        A set of ``(source, target)`` pairs.
    """
    values = np.abs(np.asarray(matrix, dtype=np.float64))
    if source_mask is not None:
        values = values * np.asarray(source_mask, dtype=bool)[None, :]
    rows = range(values.shape[0]) if target_mask is None else [j for j, keep in enumerate(target_mask) if keep]
    links: Links = set()
    if how == "argmax":
        for j in rows:
            if values[j].max() > 0:
                links.add((int(np.argmax(values[j])), j))
        return links
    if isinstance(how, bool) or not isinstance(how, (int, float)) or not 0 < how <= 1:
        raise InputError(f"how must be 'argmax' or a threshold in (0, 1], got {how!r}")
    for j in rows:
        total = values[j].sum()
        if total > 0:
            links |= {(int(i), j) for i in np.nonzero(values[j] / total >= how)[0]}
    return links


def alignment_scores(predicted: set[Any], sure: set[Any], possible: set[Any] | None = None) -> dict[str, float]:
    """``{"aer", "precision", "recall"}`` of ``predicted`` links against gold ``sure``/``possible`` links
    (``possible`` defaults to ``sure``): precision ``|A & P| / |A|``, recall ``|A & S| / |S|``,
    AER ``1 - (|A & S| + |A & P|) / (|A| + |S|)``."""
    predicted, sure = set(predicted), set(sure)
    possible = set(possible) | sure if possible is not None else sure
    if not sure:
        raise InputError("the gold alignment has no sure links")
    a_s, a_p = len(predicted & sure), len(predicted & possible)
    return {
        "aer": 1.0 - (a_s + a_p) / (len(predicted) + len(sure)),
        "precision": a_p / len(predicted) if predicted else 0.0,
        "recall": a_s / len(sure),
    }


def evaluate(
    results: SequenceAttribution | Sequence[SequenceAttribution],
    gold: Gold | Sequence[Gold],
    methods: Sequence[str] | None = None,
    how: str | float = "argmax",
    *,
    source_mask: Any = None,
    target_mask: Any = None,
) -> dict[str, dict[str, float]]:
    """Corpus-level AER, precision and recall of each method's induced alignments (links pooled over sentences).

    Args:
        results: one :class:`~.result.SequenceAttribution` or a list of them.
        gold: a Pharaoh string per result (or ``(sure, possible)`` sets).
        methods: the methods to score (default: all of the first result's).
        how: ``"argmax"`` or a threshold (see :func:`induced_alignment`).
        source_mask, target_mask: per result (for one result: its own), positions that may be linked
            (e.g. no EOS), or ``None``.

    Returns:
        ``{method: {"aer", "precision", "recall"}}``.
    """
    if not isinstance(results, (list, tuple)):  # one sentence: its gold and masks are not lists of them
        items: list[SequenceAttribution] = [results]  # type: ignore[list-item]
        golds: list[Gold] = [gold]  # type: ignore[list-item]
        source_mask = None if source_mask is None else [source_mask]
        target_mask = None if target_mask is None else [target_mask]
    else:
        items, golds = list(results), list(gold)  # type: ignore[arg-type]
    if len(items) != len(golds):
        raise InputError(f"{len(items)} results but {len(golds)} gold alignments")
    methods = methods or items[0].methods
    out: dict[str, dict[str, float]] = {}
    for method in methods:
        predicted: set[tuple[int, int, int]] = set()
        sure: set[tuple[int, int, int]] = set()
        possible: set[tuple[int, int, int]] = set()
        for k, (result, g) in enumerate(zip(items, golds, strict=True)):
            pair = parse_pharaoh(g, len(result.source_tokens), len(result.target_tokens)) if isinstance(g, str) else g
            s, p = pair
            sm = source_mask[k] if source_mask is not None else None
            tm = target_mask[k] if target_mask is not None else None
            predicted |= {
                (k, i, j) for i, j in induced_alignment(result.source[method], how, source_mask=sm, target_mask=tm)
            }
            sure |= {(k, i, j) for i, j in s}
            possible |= {(k, i, j) for i, j in p}
        out[method] = alignment_scores(predicted, sure, possible)
    return out
