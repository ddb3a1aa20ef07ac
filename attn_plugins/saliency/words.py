"""Word-piece scores merged into word scores."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .result import TokenSaliency

MERGES = ("sum", "mean", "max", "absmax", "first")
_WORD_START = ("\u0120", "\u2581")  # GPT-2/RoBERTa byte BPE "Ġ", SentencePiece "▁"


def _groups_from_word_ids(word_ids, special) -> list[list[int]]:
    groups: list[list[int]] = []
    last = object()
    for i, wid in enumerate(word_ids):
        if wid is None or (special is not None and special[i]):
            groups.append([i])
            last = object()
        elif wid == last:
            groups[-1].append(i)
        else:
            groups.append([i])
            last = wid
    return groups


def _groups_from_markers(tokens, special) -> list[list[int]]:
    """WordPiece ``##`` continuations, or ``Ġ``/``▁`` word starts when the vocabulary uses them."""
    uses_start_marker = any(t.startswith(_WORD_START) for t in tokens)
    groups: list[list[int]] = []
    for i, token in enumerate(tokens):
        is_special = special is not None and special[i]
        previous_special = bool(groups) and special is not None and special[groups[-1][-1]]
        if is_special or not groups or previous_special:
            groups.append([i])
        elif token.startswith("##"):
            groups[-1].append(i)
        elif uses_start_marker and not token.startswith(_WORD_START):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def word_groups(sal: TokenSaliency) -> list[list[int]]:
    """Token positions of each word, in order (special tokens are words of their own)."""
    if sal.word_ids is not None:
        return _groups_from_word_ids(sal.word_ids, sal.special)
    return _groups_from_markers(sal.tokens, sal.special)


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
    for marker in _WORD_START:
        if word.startswith(marker):
            word = word[len(marker):]
    return word


def merge_words(sal: TokenSaliency, how: str = "sum", keep_special: bool = True) -> TokenSaliency:
    """One score per word: pieces combined by ``how`` (``"sum"``, ``"mean"``, ``"max"``,
    ``"absmax"``: the piece of largest magnitude, with its sign, or ``"first"``).

    Word boundaries come from the fast tokenizer's ``word_ids`` when the result has them, otherwise
    from ``##``/``Ġ``/``▁`` markers. Word text is cut from the original text by the offsets when
    known. Attention and L1-normalised scores stay comparable under ``"sum"``.
    """
    if how not in MERGES:
        raise ValueError(f"how must be one of {MERGES}, got {how!r}")
    groups = word_groups(sal)
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

    def new_index(position):
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
        sal, tokens=words, scores=np.asarray(scores), word_ids=list(range(len(words))),
        offsets=offsets if sal.offsets is not None else None,
        special=special if sal.special is not None else None,
        position=new_index(sal.position), query=new_index(sal.query), info=info,
    )
