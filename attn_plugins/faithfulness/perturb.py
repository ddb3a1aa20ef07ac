"""Perturbed inputs for the faithfulness metrics, and their class probabilities in batches.

An :class:`Instance` is one explained input as token ids (from a :class:`TokenSaliency`'s tokens),
its target class, which positions may be removed (``candidates``: every non-special token; [CLS],
[SEP], <s>, </s> are never removed) and the saliency ranking of those candidates. Removal is
explicit (``removal=``): ``"delete"`` takes the tokens out of the sequence (DeYoung et al. 2020,
ferret's default), ``"mask"`` replaces them with the tokenizer's mask token, ``"pad"`` with its pad
token (still attended). :class:`Scorer` turns any number of id sequences into the target's
probability with one forward per ``batch_size`` sequences.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..saliency import TokenSaliency

REMOVALS = ("delete", "mask", "pad")


@dataclass
class Instance:
    saliency: TokenSaliency
    ids: list[int]
    target: int
    candidates: list[int]  # positions that may be removed (non-special), in order
    scores: np.ndarray  # the saliency of the candidates

    def ranking(self, only_positive: bool = False) -> list[int]:
        """Candidate indices (into ``candidates``) from the highest score; ties keep the earlier token.
        ``only_positive`` keeps scores > 0 only (a token the method scores against the target, or
        not at all, is no evidence for it)."""
        order = [int(i) for i in np.argsort(-self.scores, kind="stable")]
        return [i for i in order if self.scores[i] > 0] if only_positive else order


def make_instances(
    saliencies: Sequence[TokenSaliency], tokenizer: Any, targets: Sequence[int] | None = None
) -> list[Instance]:
    """Token ids, target and candidates of each saliency (token-level results of a text classifier)."""
    special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    unk = getattr(tokenizer, "unk_token", None)
    out = []
    for n, sal in enumerate(saliencies):
        if not isinstance(sal, TokenSaliency):
            raise InputError(f"item {n} is a {type(sal).__name__}, not a TokenSaliency")
        if sal.field != "tokens":
            raise InputError(
                f"item {n} explains one side ({sal.field!r}) of a sentence pair: faithfulness "
                "metrics perturb single texts (token types of pairs are not rebuilt)"
            )
        ids = [int(i) for i in tokenizer.convert_tokens_to_ids(list(sal.tokens))]
        back = tokenizer.convert_ids_to_tokens(ids)
        if list(back) != list(sal.tokens) and not all(
            t == b or t == unk for t, b in zip(sal.tokens, back, strict=True)
        ):
            raise InputError(
                f"item {n}: its tokens are not the tokenizer's (word-merged results cannot be "
                "perturbed: evaluate token-level saliency, merge_words=False)"
            )
        target = targets[n] if targets is not None else (sal.target if sal.target is not None else sal.prediction)
        if target is None:
            raise InputError(f"item {n} has no target class: pass targets=")
        special = sal.special if sal.special is not None else [i in special_ids for i in ids]
        candidates = [i for i, s in enumerate(special) if not s]
        if not candidates:
            raise InputError(f"item {n} has no token that may be removed (only special tokens)")
        out.append(Instance(sal, ids, int(target), candidates, np.asarray(sal.scores, dtype=np.float64)[candidates]))
    return out


def removal_token(tokenizer: Any, removal: str) -> int | None:
    """The id that replaces removed tokens: None to delete them, else the mask or pad token's id."""
    if removal not in REMOVALS:
        raise InputError(f"removal must be one of {REMOVALS}, got {removal!r}")
    if removal == "delete":
        return None
    token = getattr(tokenizer, f"{removal}_token_id", None)
    if token is None:
        raise InputError(f"removal={removal!r} needs a tokenizer with a {removal} token")
    return int(token)


def perturb(instance: Instance, removed: Sequence[int], replacement: int | None) -> list[int]:
    """``instance.ids`` with the candidates ``removed`` (indices into ``candidates``) taken out or replaced."""
    gone = {instance.candidates[i] for i in removed}
    if replacement is None:
        return [t for p, t in enumerate(instance.ids) if p not in gone]
    return [replacement if p in gone else t for p, t in enumerate(instance.ids)]


def keep_only(instance: Instance, kept: Sequence[int], replacement: int | None) -> list[int]:
    """Special tokens plus the candidates ``kept``: everything else removed."""
    keep = set(kept)
    return perturb(instance, [i for i in range(len(instance.candidates)) if i not in keep], replacement)


class Scorer:
    """Target-class probabilities of token-id sequences, ``batch_size`` sequences per forward.

    The metrics of every method perturb the same inputs, and many perturbed inputs coincide (the
    intact input, a comprehensiveness set is a point of the deletion curve, a sufficiency set one of
    the insertion curve, every leave-one-out input is the same for all methods), so each distinct
    ``(sequence, target)`` is scored once per scorer and remembered. The sequences still to score
    are sorted by length before batching (little padding: the rows of one forward have nearly the
    same length); padding is masked, so a sequence's probability does not depend on its batch
    beyond float rounding."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 32) -> None:
        self.model = model
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad = 0 if pad is None else int(pad)
        self.batch_size = max(1, int(batch_size))
        self.forwards = 0
        self.cache: dict[tuple[tuple[int, ...], int], float] = {}

    def probabilities(self, sequences: Sequence[Sequence[int]], targets: Sequence[int]) -> np.ndarray:
        """The probability of ``targets[i]`` for ``sequences[i]``, one value per sequence."""
        keys = [(tuple(int(t) for t in seq), int(tgt)) for seq, tgt in zip(sequences, targets, strict=True)]
        todo = sorted({k for k in keys if k not in self.cache}, key=lambda k: (len(k[0]), k))
        if todo:
            self._score(todo)
        return np.asarray([self.cache[k] for k in keys], dtype=np.float64)

    def _score(self, keys: list[tuple[tuple[int, ...], int]]) -> None:
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        try:
            for start in range(0, len(keys), self.batch_size):
                chunk = keys[start : start + self.batch_size]
                width = max(len(seq) for seq, _ in chunk)
                ids = torch.full((len(chunk), width), self.pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, (seq, _) in enumerate(chunk):
                    ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
                    mask[row, : len(seq)] = 1
                with torch.no_grad():
                    outputs = self.model(input_ids=ids.to(device), attention_mask=mask.to(device))
                logits = getattr(outputs, "logits", None)
                if logits is None or logits.dim() != 2:
                    raise InputError(
                        "faithfulness metrics need a sequence classifier (outputs.logits [batch, classes])"
                    )
                probs = torch.softmax(logits.double(), dim=-1).cpu().numpy()
                for row, key in enumerate(chunk):
                    self.cache[key] = float(probs[row, key[1]])
                self.forwards += 1
        finally:
            for module, mode in modes:
                module.training = mode
