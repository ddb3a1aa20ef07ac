"""TokenSaliency: the one result type of every saliency method, and its word pieces merged into words
(grouped by :mod:`attn_plugins.analysis.words`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from dataclasses import field as _field
from typing import Any

import numpy as np

from ..analysis.words import WORD_START, groups_from_markers, groups_from_word_ids


@dataclass
class TokenSaliency:
    """One score per token of one input, for one method and one target.

    ``scores`` keep the method's own sign and scale (gradient methods: signed attribution summed
    over the embedding dimension; attention methods: non-negative weights). Views normalise with
    :meth:`normalized`. ``target`` is the class (or vocabulary id) explained, ``position`` the
    token position whose output was explained (token classification, language models), ``query``
    the attention row read by attention methods. ``word_ids``/``offsets``/``special`` come from the
    tokenizer and drive :meth:`to_words`. ``field`` names the input field (one text: ``"tokens"``;
    a pair explained per side: ``"sentence_a"``/``"sentence_b"``). ``info`` holds the method's
    options and extras (e.g. ``delta``, Captum's convergence delta).
    """

    tokens: list[str]
    scores: np.ndarray
    method: str
    target: int | None = None
    target_label: str | None = None
    position: int | None = None
    query: int | None = None
    prediction: int | None = None
    prediction_label: str | None = None
    probability: float | None = None
    target_probability: float | None = None
    true_label: Any = None
    text: str | None = None
    field: str = "tokens"
    word_ids: list[int | None] | None = None
    offsets: list[tuple[int, int]] | None = None
    special: list[bool] | None = None
    info: dict[str, Any] = _field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tokens = [str(t) for t in self.tokens]
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if scores.shape[0] != len(self.tokens):
            raise ValueError(f"{len(self.tokens)} tokens but {scores.shape[0]} scores")
        self.scores = scores
        for name in ("word_ids", "offsets", "special"):
            value = getattr(self, name)
            if value is not None and len(value) != len(self.tokens):
                raise ValueError(f"{name} has {len(value)} entries for {len(self.tokens)} tokens")

    def __len__(self) -> int:
        return len(self.tokens)

    def normalized(self, how: str = "l1", absolute: bool = True) -> np.ndarray:
        """Scores made absolute (by default) and scaled: ``"l1"`` (sum 1, AllenNLP), ``"max"``
        (largest magnitude 1, keeps the sign when ``absolute=False``) or ``"none"``.

        All-zero scores stay zero (never divided into ones).

        Args:
            how: ``"l1"``, ``"max"`` or ``"none"``.
            absolute: take magnitudes first.

        Returns:
            The scaled scores (a new array).
        """
        values = np.abs(self.scores) if absolute else self.scores.copy()
        if how == "none":
            return values
        if how == "l1":
            norm = np.abs(values).sum()
        elif how == "max":
            norm = np.abs(values).max() if len(values) else 0.0
        else:
            raise ValueError(f"how must be 'l1', 'max' or 'none', got {how!r}")
        if not np.isfinite(norm) or norm == 0:
            return np.zeros_like(values)
        normalized: np.ndarray = values / norm
        return normalized

    def top_k(self, k: int, absolute: bool = True, skip_special: bool = False) -> list[int]:
        """Positions of the ``k`` highest scores, best first.

        Args:
            k: how many positions.
            absolute: rank by magnitude (else by signed value).
            skip_special: leave special tokens out.

        Returns:
            Token positions.
        """
        values = np.abs(self.scores) if absolute else self.scores
        order = [int(i) for i in np.argsort(-values, kind="stable")]
        if skip_special and self.special is not None:
            order = [i for i in order if not self.special[i]]
        return order[: max(0, int(k))]

    def to_words(self, how: str = "sum", keep_special: bool = True) -> TokenSaliency:
        """Word pieces merged into words (see :func:`merge_words`).

        Args:
            how: how a word's piece scores combine (``"sum"``, ``"mean"``, ``"max"``, ...).
            keep_special: keep special tokens as words of their own.

        Returns:
            A new result, one score per word.
        """
        return merge_words(self, how=how, keep_special=keep_special)

    def without_special(self) -> TokenSaliency:
        """The same result without special tokens ([CLS], [SEP], <s>, ...).

        Returns:
            A new result (or this one when no token is marked special).
        """
        if self.special is None:
            return self
        keep = [i for i, s in enumerate(self.special) if not s]
        return self.subset(keep)

    def subset(self, positions: list[int]) -> TokenSaliency:
        """The result restricted to some token positions.

        Args:
            positions: the positions kept, in the order given.

        Returns:
            A new result (tokens, scores and per-token fields picked; ``info`` copied).
        """

        def pick(seq: list[Any] | None) -> list[Any] | None:
            return None if seq is None else [seq[i] for i in positions]

        return replace(
            self,
            tokens=[self.tokens[i] for i in positions],
            scores=self.scores[positions],
            word_ids=pick(self.word_ids),
            offsets=pick(self.offsets),
            special=pick(self.special),
            info=dict(self.info),
        )

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-ready dict.

        Returns:
            Every field, scores as a list of floats and ``info`` made JSON-safe.
        """
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["scores"] = [float(v) for v in self.scores]
        if self.offsets is not None:
            out["offsets"] = [list(o) for o in self.offsets]
        out["info"] = _jsonable(self.info)
        out["true_label"] = _jsonable(self.true_label)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenSaliency:
        """A result from :meth:`to_dict`'s output (unknown keys ignored).

        Args:
            data: the dict.

        Returns:
            The result.
        """
        data = dict(data)
        if data.get("offsets") is not None:
            data["offsets"] = [tuple(o) for o in data["offsets"]]
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def __repr__(self) -> str:
        top = ", ".join(f"{self.tokens[i]}={self.scores[i]:.3g}" for i in self.top_k(3))
        target = f", target={self.target_label or self.target}" if self.target is not None else ""
        return f"TokenSaliency({self.method}, {len(self)} tokens{target}; top: {top})"


MERGES = ("sum", "mean", "max", "absmax", "first")


def _word_groups(sal: TokenSaliency) -> list[list[int]]:
    """Token positions of each word, in order (special tokens are words of their own)."""
    if sal.word_ids is not None:
        return groups_from_word_ids(sal.word_ids, sal.special)
    return groups_from_markers(sal.tokens, sal.special)


def _word_text(sal: TokenSaliency, group: list[int]) -> str:
    if sal.offsets is not None and sal.text is not None and not (sal.special and sal.special[group[0]]):
        start, end = sal.offsets[group[0]][0], sal.offsets[group[-1]][1]
        if 0 <= start < end <= len(sal.text):
            return sal.text[start:end]
    pieces = []
    for k, i in enumerate(group):
        token = sal.tokens[i]
        if k and token.startswith("##"):
            token = token[2:]
        pieces.append(token)
    word = "".join(pieces)
    for marker in WORD_START:
        if word.startswith(marker):
            word = word[len(marker) :]
    return word


def merge_words(sal: TokenSaliency, how: str = "sum", keep_special: bool = True) -> TokenSaliency:
    """One score per word: pieces combined by ``how`` (``"sum"``, ``"mean"``, ``"max"``,
    ``"absmax"``: the piece of largest magnitude, with its sign, or ``"first"``).

    Word boundaries come from the fast tokenizer's ``word_ids`` when the result has them, otherwise
    from ``##``/``Ġ``/``▁`` markers. Word text is cut from the original text by the offsets when
    known. Attention and L1-normalised scores stay comparable under ``"sum"``.

    Args:
        sal: a token-level result.
        how: ``"sum"``, ``"mean"``, ``"max"``, ``"absmax"`` or ``"first"``.
        keep_special: keep special tokens as words of their own (else drop them).

    Returns:
        A new result, one score per word.
    """
    if how not in MERGES:
        raise ValueError(f"how must be one of {MERGES}, got {how!r}")
    groups = _word_groups(sal)
    if not keep_special and sal.special is not None:
        groups = [g for g in groups if not sal.special[g[0]]]
    words, scores, offsets, special = [], [], [], []
    for group in groups:
        values = sal.scores[group]
        if how == "sum":
            score = values.sum()
        elif how == "mean":
            score = values.mean()
        elif how == "max":
            score = values.max()
        elif how == "absmax":
            score = values[int(np.argmax(np.abs(values)))]
        else:
            score = values[0]
        words.append(_word_text(sal, group))
        scores.append(float(score))
        if sal.offsets is not None:
            offsets.append((sal.offsets[group[0]][0], sal.offsets[group[-1]][1]))
        special.append(bool(sal.special[group[0]]) if sal.special is not None else False)

    def new_index(position: Any) -> int | None:
        if position is None:
            return None
        for k, group in enumerate(groups):
            if position in group:
                return k
        return None

    info = dict(sal.info)
    info["merged_words"] = how
    info["word_pieces"] = [[sal.tokens[i] for i in group] for group in groups]
    return replace(
        sal,
        tokens=words,
        scores=np.asarray(scores),
        word_ids=list(range(len(words))),
        offsets=offsets if sal.offsets is not None else None,
        special=special if sal.special is not None else None,
        position=new_index(sal.position),
        query=new_index(sal.query),
        info=info,
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
