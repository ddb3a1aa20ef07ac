"""One path from user text to model inputs and a record: the CLI, the report, the notebook
one-liners and the corpus job all go through here, so a fix to encoding or the token limit
happens once.

    enc = model_inputs(model, tokenizer, ["The cat sat.", "A dog"])     # checked, on the model's device
    record = capture_texts(model, tokenizer, ["The cat sat."], layers=[0, 1])
    check_length(model, 600)                                            # InputError: over 512 positions

The token limit is the smaller of ``max_tokens`` (default :data:`MAX_TOKENS_DEFAULT`) and the
number of positions the model has (``max_position_embeddings`` or its equivalent), where the
model says; a longer input gets an :class:`~attn_plugins.errors.InputError` that names its length
and the limit, instead of an index error deep inside the model's position embedding.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .limits import MAX_TOKENS_DEFAULT, POSITION_ATTRIBUTES, check_length, position_limit, token_limit  # noqa: F401

if TYPE_CHECKING:
    from .record import AttentionRecord


# ---------------------------------------------------------------------------------------------
# texts
# ---------------------------------------------------------------------------------------------
def check_texts(texts: Any) -> list[str]:
    """``texts`` (a string or a list of strings) as a list, refusing an empty list, a non-string
    or a blank text with an :class:`InputError` that says which.

    Args:
        texts: a text or a sequence of texts.

    Returns:
        The texts as a new list.
    """
    if isinstance(texts, str):
        texts = [texts]
    try:
        texts = list(texts)
    except TypeError:
        raise InputError(f"texts must be a string or a list of strings, got {type(texts).__name__}") from None
    if not texts:
        raise InputError("no texts given: pass at least one text")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"texts must be strings, got {type(text).__name__} (text {i + 1})")
        if not text.strip():
            raise InputError(f"a text is empty (text {i + 1} of {len(texts)}); texts must not be empty or only spaces")
    checked: list[str] = texts
    return checked


def read_text_file(path: str | os.PathLike[str]) -> list[str]:
    """The non-empty lines of a UTF-8 text file, one text each (stripped).

    Args:
        path: the file.

    Returns:
        The texts, in file order; an :class:`InputError` when the file cannot be read, is not
        UTF-8 or holds no text.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            texts = [line.strip() for line in handle if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise InputError(f"cannot read text file {path!r}: {reason}") from None
    if not texts:
        raise InputError(f"text file {path!r} holds no text (one text per line)")
    return texts


# ---------------------------------------------------------------------------------------------
# the tokenizer
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def borrowed_pad_token(tokenizer: Any) -> Iterator[Any]:
    """A batch needs a pad token: a GPT-style tokenizer without one pads with its end-of-text
    token for the duration, and is left as it was (the user's tokenizer is not changed)."""
    borrow = getattr(tokenizer, "pad_token", None) is None and getattr(tokenizer, "eos_token", None) is not None
    if borrow:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        yield tokenizer
    finally:
        if borrow:
            tokenizer.pad_token = None


def ensure_pad_token(tokenizer: Any) -> Any:
    """Give a tokenizer the caller owns (loaded for a job, not the user's) a pad token for good:
    its end-of-text token when it has none. Returns the tokenizer."""
    if getattr(tokenizer, "pad_token", None) is None:
        if getattr(tokenizer, "eos_token", None) is None:
            raise InputError(
                "the tokenizer has neither a pad nor an end-of-text token, so texts cannot be batched: "
                "set tokenizer.pad_token"
            )
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _is_pair(text: Any) -> bool:
    return isinstance(text, tuple) and len(text) == 2 and all(isinstance(t, str) for t in text)


def encode(tokenizer: Any, texts: Any) -> Any:
    """The tokenizer's PyTorch tensors for a text, a list of texts (padded into one batch, a pad
    token borrowed when the tokenizer has none) or a pair ``(text_a, text_b)`` (one input).

    Args:
        tokenizer: a transformers tokenizer.
        texts: a text, a list of texts or a pair of texts.

    Returns:
        The ``BatchEncoding`` (``input_ids``, ``attention_mask``...).
    """
    if _is_pair(texts):
        check_texts(list(texts))
        return tokenizer(texts[0], texts[1], return_tensors="pt")
    texts = check_texts(texts)
    if (
        len(texts) > 1
        and getattr(tokenizer, "pad_token", None) is None
        and getattr(tokenizer, "eos_token", None) is None
    ):
        raise InputError("the tokenizer has no pad token to batch several texts: set tokenizer.pad_token")
    with borrowed_pad_token(tokenizer):
        return tokenizer(texts, return_tensors="pt", padding=len(texts) > 1)  # one text: no pad token needed


# ---------------------------------------------------------------------------------------------
# model inputs and the record
# ---------------------------------------------------------------------------------------------
def forward_inputs(model: Any, encoding: Any) -> dict[str, Any]:
    """The tokenizer's outputs that ``model.forward`` takes by name (a BERT tokenizer's
    ``token_type_ids`` are dropped for a model that has no such argument)."""
    enc = dict(encoding)
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return enc
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if "input_ids" not in named:
        return enc
    return {k: v for k, v in enc.items() if k in named}


def model_inputs(model: Any, tokenizer: Any, texts: Any, max_tokens: int | None = MAX_TOKENS_DEFAULT) -> dict[str, Any]:
    """Forward inputs for ``texts``: encoded (:func:`encode`), checked against the token limit
    (:func:`check_length`), on the model's device, and only the arguments ``model.forward`` takes.

    Args:
        model: the model.
        tokenizer: its tokenizer.
        texts: a text, a list of texts or a pair ``(text_a, text_b)``.
        max_tokens: the caller's limit (``None``: only the model's).

    Returns:
        Keyword arguments for ``model(**inputs)``.
    """
    enc = encode(tokenizer, texts)
    check_length(model, enc, max_tokens)
    device = getattr(model, "device", None)
    if device is not None:
        enc = enc.to(device)
    return forward_inputs(model, enc)


def capture_texts(
    model: Any, tokenizer: Any, texts: Any, max_tokens: int | None = MAX_TOKENS_DEFAULT, **capture_options: Any
) -> AttentionRecord:
    """Run ``texts`` through ``model`` (no gradients) inside :class:`attn_plugins.capture`
    and return the record.

    Args:
        model: the model.
        tokenizer: its tokenizer (also turns ids into ``record.tokens``).
        texts: a text, a list of texts or a pair ``(text_a, text_b)``.
        max_tokens: the caller's limit (``None``: only the model's).
        **capture_options: ``layers=``, ``heads=``, ``max_bytes=``, ``stream_to=``, ...

    Returns:
        The :class:`~attn_plugins.record.AttentionRecord` of the forward.
    """
    import torch

    from .capturing import capture

    inputs = model_inputs(model, tokenizer, texts, max_tokens)
    with torch.no_grad(), capture(model, tokenizer=tokenizer, **capture_options) as cap:
        model(**inputs)
    return cap.record


__all__ = [
    "MAX_TOKENS_DEFAULT",
    "borrowed_pad_token",
    "capture_texts",
    "check_length",
    "check_texts",
    "encode",
    "ensure_pad_token",
    "forward_inputs",
    "model_inputs",
    "position_limit",
    "read_text_file",
    "token_limit",
]
