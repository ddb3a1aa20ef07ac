"""What a saliency method explains: a model turned into ``f(word embeddings, *args) -> scores``.

A :class:`Problem` is one batch of inputs with everything a method needs: the word-embedding
output (Captum's inputs), the input ids (for layer methods and attention capture), extra forward
arguments as tensors (Captum expands them with the batch), the targets and the attention query.
Explainers build problems; methods only read them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

TASKS = ("sequence-classification", "token-classification", "masked-lm", "causal-lm", "custom")
OUTPUTS = ("logit", "prob", "log_prob", "loss")


def detect_task(model: Any) -> str:
    """The head type from the class name (``...ForSequenceClassification`` and friends)."""
    names = [cls.__name__ for cls in type(model).__mro__]
    for name in names:
        if name.endswith("ForSequenceClassification"):
            return "sequence-classification"
        if name.endswith("ForTokenClassification"):
            return "token-classification"
        if name.endswith("ForMaskedLM"):
            return "masked-lm"
        if name.endswith(("ForCausalLM", "LMHeadModel")):
            return "causal-lm"
    return "custom"


def transform_output(scores: torch.Tensor, output: str) -> torch.Tensor:
    """Logits ``[b, C]`` as the chosen output: raw ``"logit"``, ``"prob"``, ``"log_prob"`` or
    ``"loss"`` (negative log-probability, the quantity AllenNLP's interpreters differentiate)."""
    if output == "logit":
        return scores
    if output == "prob":
        return torch.softmax(scores, dim=-1)
    if output == "log_prob":
        return torch.log_softmax(scores, dim=-1)
    if output == "loss":
        return -torch.log_softmax(scores, dim=-1)
    raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")


def logits_of(outputs: Any) -> torch.Tensor:
    if isinstance(outputs, torch.Tensor):
        return outputs
    logits = getattr(outputs, "logits", None)
    if logits is None and isinstance(outputs, (tuple, list)):
        logits = outputs[0]
    if logits is None and isinstance(outputs, dict):
        logits = outputs.get("logits")
    if logits is None:
        raise TypeError(f"cannot find logits in the model output {type(outputs).__name__}")
    found: torch.Tensor = logits
    return found


class ForwardModule(torch.nn.Module):
    """``model`` seen through the problem's function: ``forward(embeds, *args) -> [b, C]`` (or ``[b]``).

    An ``nn.Module`` so that Captum's DeepLift can hook it.
    """

    def __init__(self, model: torch.nn.Module, function: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self._function = function

    def forward(self, *args: Any) -> Any:
        return self._function(*args)


@dataclass
class Problem:
    """One batch to explain.

    ``embed_forward(embeds, *args)`` and ``ids_forward(input_ids, *args)`` return ``[b, C]``
    scores (Captum picks ``targets``) or ``[b]`` (then ``targets`` is None). ``args`` are tensors
    whose first dimension is the batch. A problem built from a record alone (attention methods) has
    no model: ``model``, ``embedding_layer``, ``embeds`` and the forward functions are None.
    """

    model: torch.nn.Module | None
    embedding_layer: torch.nn.Module | None
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    embeds: torch.Tensor | None
    args: tuple[Any, ...]
    embed_forward: Callable[..., torch.Tensor] | None
    ids_forward: Callable[..., torch.Tensor] | None
    targets: list[int] | None
    queries: list[int]
    special_ids: set[int] = field(default_factory=set)
    pad_id: int = 0
    mask_id: int | None = None
    attention_function: Callable[..., Any] | None = None
    record_function: Callable[[], Any] | None = None
    _record: Any = None

    @property
    def batch_size(self) -> int:
        return int(self.input_ids.shape[0])

    def embeddings(self) -> torch.Tensor:
        """The word-embedding output that gradient methods differentiate.

        Returns:
            ``embeds``; a record-only problem has none and raises ``ValueError``.
        """
        if self.embeds is None:
            raise ValueError("this problem has no model (record only): gradient methods need an Explainer")
        return self.embeds

    def record(self) -> Any:
        """The attention record of this batch (captured once, on first use)."""
        if self._record is None:
            if self.record_function is None:
                raise ValueError("this problem has no attention record and no model to capture one from")
            self._record = self.record_function()
        return self._record

    def baseline_ids(self, kind: str) -> torch.Tensor:
        """Reference input ids: every non-special real token replaced by [PAD] (``"pad"``) or [MASK]."""
        if kind == "mask":
            if self.mask_id is None:
                raise ValueError("the tokenizer has no mask token: use baseline='pad' or 'zeros'")
            fill = self.mask_id
        elif kind == "pad":
            fill = self.pad_id
        else:
            raise ValueError(f"no reference ids for baseline {kind!r}")
        ids = self.input_ids.clone()
        keep = torch.zeros_like(ids, dtype=torch.bool)
        for special in self.special_ids:
            keep |= ids == special
        keep |= self.attention_mask == 0
        return torch.where(keep, ids, torch.full_like(ids, fill))

    def baseline_embeds(self, kind: Any) -> torch.Tensor:
        """Baseline in embedding space: ``"zeros"`` (AllenNLP's and Captum's default), ``"pad"``,
        ``"mask"`` or an explicit tensor/float."""
        embeds = self.embeddings()
        if isinstance(kind, torch.Tensor):
            return kind.to(embeds)
        if isinstance(kind, (int, float)) and not isinstance(kind, bool):
            return torch.full_like(embeds, float(kind))
        if kind in (None, "zeros", "zero"):
            return torch.zeros_like(embeds)
        if self.embedding_layer is None:
            raise ValueError("this problem has no embedding layer to embed baseline ids with")
        with torch.no_grad():
            embedded: torch.Tensor = self.embedding_layer(self.baseline_ids(kind)).detach()
            return embedded
