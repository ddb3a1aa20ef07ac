"""Token strings as the analysis reads them: which are markup (``[CLS]``, ``<s>``...), which are
punctuation, how a person reads one (sub-word markers dropped), and masks of chosen tokens.

Statistics (attention to special tokens or punctuation), diagnostics, plots and the report share these.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from typing import Any

import torch

SPECIAL_TOKENS = frozenset(
    {
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "[UNK]",
        "<s>",
        "</s>",
        "<bos>",
        "<eos>",
        "<unk>",
        "<mask>",
        "<cls>",
        "<sep>",
        "<|endoftext|>",
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|startoftext|>",
        "<|im_start|>",
        "<|im_end|>",
        "<start_of_turn>",
        "<end_of_turn>",
        "<|startoftranscript|>",
        "<|transcribe|>",
        "<|notimestamps|>",
    }
)
_MARKUP = re.compile(r"^(<\|[^|]*\|>|\[[A-Z_]+\]|<[a-z_]+>|</[a-z_]+>)$")
_WORD_MARKERS = ("Ġ", "▁", "Ċ", "##", " ")


def readable_token(token: str) -> str:
    """A token as a person reads it: sub-word markers (``Ġ``, ``▁``, ``##``) dropped, newline shown."""
    token = str(token)
    if token == "Ċ" or token == "\n":
        return "\\n"
    for marker in ("Ġ", "▁"):
        if token.startswith(marker) and len(token) > len(marker):
            token = token[len(marker) :]
    token = token.replace("Ċ", "\\n").replace("\n", "\\n")
    return token


def is_punctuation(token: str) -> bool:
    """True for a token made only of punctuation (``.``, ``,``, ``Ġ,``, ``▁!``, ``...``)."""
    core = str(token)
    for marker in _WORD_MARKERS:
        if core.startswith(marker):
            core = core[len(marker) :]
    core = core.strip()
    return bool(core) and all(ch in string.punctuation or unicodedata.category(ch).startswith("P") for ch in core)


def is_special_token(token: str) -> bool:
    """True for markup tokens such as ``[CLS]``, ``[SEP]``, ``<s>``, ``</s>``, ``<|endoftext|>``."""
    return token in SPECIAL_TOKENS or bool(_MARKUP.match(str(token)))


def token_mask(tokens: Sequence[Sequence[str]], select: Any) -> torch.Tensor:
    """``[b, k]`` bool of the tokens picked by ``select`` (a set of strings, or a predicate)."""
    if callable(select):
        pick = select
    else:
        chosen = set(select)
        pick = lambda t: t in chosen  # noqa: E731
    return torch.tensor([[bool(pick(t)) for t in row] for row in tokens], dtype=torch.bool)
