"""Word pieces grouped into words (the one place of the package that does it), and word-level attention.

Groups come from a tokenizer's character offsets (:func:`word_groups`), its ``word_ids``
(:func:`groups_from_word_ids`) or the token strings' markers alone (:func:`groups_from_markers`);
the BertViz views and the saliency results (``TokenSaliency.to_words``) group here.

Following Clark et al. (2019), "What Does BERT Look At?": attention *to* a split-up word is the
sum of the attention to its pieces, and attention *from* a split-up word is the mean of the
attention from its pieces. Rows therefore still sum to what they summed to before.

    enc = tokenizer(text, return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0]
    with attn_plugins.capture(model, tokenizer) as cap:
        model(**enc)
    groups = word_groups(offsets, text)            # [[0], [1], [2, 3], ...]
    words = word_labels(groups, offsets, text)      # ["[CLS]", "the", "tokenizer", ...]
    merged = merge_attention(cap.record.layers[0].weights, groups)

Works for any tokenizer that reports offsets (WordPiece ``##`` pieces, byte-level BPE ``Ġ``,
SentencePiece ``▁``): a new word starts where a token's span begins after a gap in the text, or
begins with white space. Tokens with an empty span (special tokens, padding) are words of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "WORD_START",
    "groups_from_markers",
    "groups_from_word_ids",
    "merge_attention",
    "tokenizer_word_ids",
    "word_groups",
    "word_labels",
]

WORD_START = ("\u0120", "\u2581")  # GPT-2/RoBERTa byte-level BPE "Ġ", SentencePiece "▁": a word starts here


def _pairs(offsets: Any) -> list[tuple[int, int]]:
    if isinstance(offsets, torch.Tensor):
        offsets = offsets.tolist()
    elif hasattr(offsets, "tolist"):
        offsets = offsets.tolist()
    pairs = []
    for entry in offsets:
        if entry is None:
            pairs.append((0, 0))
            continue
        start, end = entry
        pairs.append((int(start), int(end)))
    return pairs


def word_groups(
    offsets: Any,
    text: str | None = None,
    special: Sequence[bool] | None = None,
    tokens: Sequence[str] | None = None,
    split_punctuation: bool = True,
) -> list[list[int]]:
    """Group token positions into words.

    Args:
        offsets: ``[(start, end), ...]`` character spans, one per token (a tokenizer's
            ``offset_mapping`` for one sequence: list, tensor or array of shape ``[n, 2]``).
        text: the text the offsets point into. Without it, only gaps between spans separate words
            (byte-level BPE tokenizers such as GPT-2's include the leading space in the span, so
            pass ``text`` for them).
        special: optional per-token flags; flagged tokens are always words of their own.
        tokens: optional token strings; a token starting with ``Ġ`` or ``▁`` (a word-initial piece of
            byte-level BPE or SentencePiece) starts a word, one starting with ``##`` (a WordPiece
            continuation) never does. This separates words without ``text`` too.
        split_punctuation: punctuation is a word of its own, as BERT's pre-tokenizer (and so Clark
            et al.) has it: ``tokenization.`` is two words, ``don't`` three.

    Returns:
        a list of groups, each a list of consecutive token positions, covering every position once.
    """
    pairs = _pairs(offsets)
    groups: list[list[int]] = []
    prev_end = None
    prev_single = True
    prev_punct = False
    for pos, (start, end) in enumerate(pairs):
        is_special = bool(special[pos]) if special is not None else False
        empty = end <= start
        single = is_special or empty
        punct = False
        if split_punctuation and not single:
            piece = (
                text[start:end]
                if text is not None
                else (_clean_piece(str(tokens[pos]), False) if tokens is not None and pos < len(tokens) else "")
            )
            piece = piece.strip()
            punct = bool(piece) and all(_is_punctuation(ch) for ch in piece)
        if single or prev_single or not groups or punct or prev_punct:
            new_word = True
        else:
            new_word = prev_end is None or start > prev_end
            if not new_word and text is not None and start < len(text) and text[start].isspace():
                new_word = True
            if tokens is not None and pos < len(tokens):
                token = str(tokens[pos])
                if token.startswith(WORD_START):
                    new_word = True
                elif token.startswith("##"):
                    new_word = False
        if new_word:
            groups.append([pos])
        else:
            groups[-1].append(pos)
        prev_end = end
        prev_single = single
        prev_punct = punct
    return groups


def _is_punctuation(ch: str) -> bool:
    """BERT's rule: ASCII non-alphanumeric printable characters and Unicode punctuation."""
    import unicodedata

    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def groups_from_word_ids(word_ids: Sequence[int | None], special: Sequence[bool] | None = None) -> list[list[int]]:
    """Groups from a fast tokenizer's ``encoding.word_ids()`` (``None`` marks special tokens).

    ``special``: optional per-token flags; flagged tokens are words of their own too.
    """
    groups: list[list[int]] = []
    last = object()
    for pos, wid in enumerate(word_ids):
        own = wid is None or (special is not None and bool(special[pos]))
        if own or wid != last or not groups:
            groups.append([pos])
        else:
            groups[-1].append(pos)
        last = object() if own else wid
    return groups


def groups_from_markers(tokens: Sequence[str], special: Sequence[bool] | None = None) -> list[list[int]]:
    """Groups from the token strings alone, when neither offsets nor word ids are known: a WordPiece
    ``##`` piece continues a word; when the vocabulary marks word starts (byte-level BPE ``Ġ``,
    SentencePiece ``▁``), a token without the mark continues one. ``special`` tokens are words of their own."""
    uses_start_marker = any(str(t).startswith(WORD_START) for t in tokens)
    groups: list[list[int]] = []
    for i, token in enumerate(tokens):
        token = str(token)
        is_special = special is not None and special[i]
        previous_special = bool(groups) and special is not None and special[groups[-1][-1]]
        if is_special or not groups or previous_special:
            groups.append([i])
        elif token.startswith("##"):
            groups[-1].append(i)
        elif uses_start_marker and not token.startswith(WORD_START):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def tokenizer_word_ids(tokenizer: Any, ids: torch.Tensor, tokens: Sequence[Sequence[str]]) -> list[list[int | None]]:
    """Per batch row, the word index of each token (``None`` for special tokens), as a fast
    tokenizer's ``encoding.word_ids()`` gives them, worked out from what a capture has: the ids and
    their token strings (:func:`groups_from_markers`; ``tokenizer.all_special_ids`` mark special tokens).

    A capture stores these in ``record.metadata["word_ids"]`` so ``words=True`` works on the record
    later without the tokenizer or its offsets.

    Args:
        tokenizer: the capture's tokenizer (anything with ``convert_ids_to_tokens``).
        ids: ``[batch, n]`` input ids.
        tokens: the token strings of each row.

    Returns:
        One list per row, the same length as the row.
    """
    special_ids = set(int(i) for i in (getattr(tokenizer, "all_special_ids", None) or []))
    rows = ids.tolist() if hasattr(ids, "tolist") else [list(r) for r in ids]
    out: list[list[int | None]] = []
    for row, toks in zip(rows, tokens, strict=True):
        special = [int(i) in special_ids for i in row]
        word_ids: list[int | None] = [None] * len(row)
        word = 0
        for group in groups_from_markers([str(t) for t in toks], special):
            if special[group[0]]:
                continue
            for p in group:
                word_ids[p] = word
            word += 1
        out.append(word_ids)
    return out


def _clean_piece(token: str, first: bool) -> str:
    if not first and token.startswith("##"):
        return token[2:]
    return token.replace("Ġ", " ").replace("▁", " ").replace("Ċ", "\n")


def word_labels(
    groups: list[list[int]], offsets: Any = None, text: str | None = None, tokens: Sequence[str] | None = None
) -> list[str]:
    """A label per word: the text it spans when ``text`` and ``offsets`` are given, else its pieces
    joined (``##`` continuation marks removed)."""
    pairs = _pairs(offsets) if offsets is not None else None
    labels = []
    for group in groups:
        label = None
        if text is not None and pairs is not None:
            spans = [pairs[p] for p in group if pairs[p][1] > pairs[p][0]]
            if spans:
                label = text[min(s for s, _ in spans) : max(e for _, e in spans)].strip()
        if not label:
            if tokens is not None:
                label = "".join(_clean_piece(tokens[p], i == 0) for i, p in enumerate(group)).strip()
                if not label:
                    label = tokens[group[0]]
            else:
                label = str(group[0])
        labels.append(label)
    return labels


def _membership(groups: list[list[int]], n: int, dtype: Any, device: Any) -> torch.Tensor:
    """``[words, n]`` 0/1 matrix: which positions make up each word."""
    m = torch.zeros(len(groups), n, dtype=dtype, device=device)
    for w, group in enumerate(groups):
        for p in group:
            if not 0 <= p < n:
                raise IndexError(f"word {w} names token position {p}, but the attention has {n} positions")
            m[w, p] = 1
    return m


def merge_attention(
    weights: torch.Tensor, query_groups: list[list[int]], key_groups: list[list[int]] | None = None
) -> torch.Tensor:
    """Word-level attention from token-level attention ``[..., q, k]``.

    Rows (the attending, *source* words) are averaged over each word's pieces; columns (the
    attended-to, *target* words) are summed over each word's pieces. ``key_groups`` defaults to
    ``query_groups`` (self-attention); pass the other side's groups for cross-attention. Positions
    left out of every group (e.g. padding) are dropped.
    """
    if key_groups is None:
        key_groups = query_groups
    q, k = weights.shape[-2], weights.shape[-1]
    compute = torch.float64 if weights.dtype == torch.float64 else torch.float32
    w = weights.to(compute)
    rows = _membership(query_groups, q, compute, w.device)
    rows = rows / rows.sum(dim=1, keepdim=True).clamp_min(1)
    cols = _membership(key_groups, k, compute, w.device)
    merged = rows @ w @ cols.transpose(0, 1)
    return merged.to(weights.dtype)


def label_tokens(tokenizer: Any, record: Any) -> None:
    """Give ``record`` its token strings (``tokens``/``decoder_tokens``) and each token's word index
    (optional metadata ``word_ids``/``decoder_word_ids``, so ``words=True`` views work on the record
    without the tokenizer's offsets), from the ids in ``record.inputs``."""
    for attr, key, name in (
        ("tokens", "word_ids", "input_ids"),
        ("decoder_tokens", "decoder_word_ids", "decoder_input_ids"),
    ):
        ids = record.inputs.get(name)
        if ids is None:
            setattr(record, attr, None)
            continue
        tokens = [tokenizer.convert_ids_to_tokens(row.tolist()) for row in ids]
        setattr(record, attr, tokens)
        if isinstance(ids, torch.Tensor) and ids.dim() == 2:
            record.metadata[key] = tokenizer_word_ids(tokenizer, ids, tokens)
