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
    candidates: list[int]          # positions that may be removed (non-special), in order
    scores: np.ndarray             # the saliency of the candidates

    def ranking(self, only_positive: bool = False) -> list[int]:
        """Candidate indices (into ``candidates``) from the highest score; ties keep the earlier token.
        ``only_positive`` keeps scores > 0 only (a token the method scores against the target, or
        not at all, is no evidence for it)."""
        order = [int(i) for i in np.argsort(-self.scores, kind="stable")]
        return [i for i in order if self.scores[i] > 0] if only_positive else order


def make_instances(saliencies: Sequence[TokenSaliency], tokenizer, targets=None) -> list[Instance]:
    """Token ids, target and candidates of each saliency (token-level results of a text classifier)."""
    special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    unk = getattr(tokenizer, "unk_token", None)
    out = []
    for n, sal in enumerate(saliencies):
        if not isinstance(sal, TokenSaliency):
            raise InputError(f"item {n} is a {type(sal).__name__}, not a TokenSaliency")
        if sal.field != "tokens":
            raise InputError(f"item {n} explains one side ({sal.field!r}) of a sentence pair: faithfulness "
                             "metrics perturb single texts (token types of pairs are not rebuilt)")
        ids = [int(i) for i in tokenizer.convert_tokens_to_ids(list(sal.tokens))]
        back = tokenizer.convert_ids_to_tokens(ids)
        if list(back) != list(sal.tokens) and not all(t == b or t == unk
                                                      for t, b in zip(sal.tokens, back, strict=True)):
            raise InputError(f"item {n}: its tokens are not the tokenizer's (word-merged results cannot be "
                             "perturbed: evaluate token-level saliency, merge_words=False)")
        target = targets[n] if targets is not None else (sal.target if sal.target is not None else sal.prediction)
        if target is None:
            raise InputError(f"item {n} has no target class: pass targets=")
        special = sal.special if sal.special is not None else [i in special_ids for i in ids]
        candidates = [i for i, s in enumerate(special) if not s]
        if not candidates:
            raise InputError(f"item {n} has no token that may be removed (only special tokens)")
        out.append(Instance(sal, ids, int(target), candidates, np.asarray(sal.scores, dtype=np.float64)[candidates]))
    return out


def removal_token(tokenizer, removal: str) -> int | None:
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
    """Target-class probabilities of token-id sequences, ``batch_size`` sequences per forward."""

    def __init__(self, model, tokenizer, batch_size: int = 32) -> None:
        self.model = model
        self.pad = getattr(tokenizer, "pad_token_id", None)
        self.pad = 0 if self.pad is None else int(self.pad)
        self.batch_size = max(1, int(batch_size))
        self.forwards = 0

    def probabilities(self, sequences: Sequence[Sequence[int]], targets: Sequence[int]) -> np.ndarray:
        out = np.empty(len(sequences))
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        try:
            for start in range(0, len(sequences), self.batch_size):
                chunk = sequences[start : start + self.batch_size]
                width = max(len(s) for s in chunk)
                ids = torch.full((len(chunk), width), self.pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, seq in enumerate(chunk):
                    ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
                    mask[row, : len(seq)] = 1
                with torch.no_grad():
                    logits = getattr(self.model(input_ids=ids.to(device), attention_mask=mask.to(device)),
                                     "logits", None)
                if logits is None or logits.dim() != 2:
                    raise InputError("faithfulness metrics need a sequence classifier "
                                     "(outputs.logits [batch, classes])")
                probs = torch.softmax(logits.double(), dim=-1).cpu().numpy()
                tgt = np.asarray(targets[start : start + self.batch_size])
                out[start : start + len(chunk)] = probs[np.arange(len(chunk)), tgt]
                self.forwards += 1
        finally:
            for module, mode in modes:
                module.training = mode
        return out
