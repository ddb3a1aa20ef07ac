"""Model and tokenizer plumbing of an :class:`~attn_plugins.saliency.explainer.Explainer`.

What turns texts into model inputs and model outputs into the scores a saliency method
differentiates: tokenizing (pairs, offsets, padding), moving inputs to the model's device,
resolving the explained position, target and attention query per input, and reading the
prediction. Kept apart from the Explainer's public methods so each module stays small; the
Explainer inherits these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .problem import logits_of, transform_output


class ModelIO:
    """Inputs, targets and scores of one model and tokenizer, for a given head type.

    A base of :class:`~attn_plugins.saliency.explainer.Explainer`, which sets the attributes.
    """

    model: torch.nn.Module
    tokenizer: Any
    task: str
    head: Callable[[Any], torch.Tensor] | None
    output: str
    embedding_layer: torch.nn.Module
    max_length: int | None
    labels: dict[int, str]

    def encode(self, texts: list[Any]) -> tuple[Any, bool]:
        """Tokenizes one batch (padded, truncated to ``max_length``, with offsets when the tokenizer is fast).

        Args:
            texts: strings, or ``(text_a, text_b)`` pairs.

        Returns:
            The tokenizer's encoding and whether the inputs are pairs.
        """
        if self.tokenizer is None:
            raise ValueError("an Explainer needs a tokenizer to explain text (or pass encodings)")
        pairs = bool(texts) and isinstance(texts[0], (tuple, list))
        kwargs: dict[str, Any] = dict(
            return_tensors="pt",
            padding=True,
            truncation=self.max_length is not None,
            max_length=self.max_length,
            return_special_tokens_mask=True,
        )
        if getattr(self.tokenizer, "is_fast", False):
            kwargs["return_offsets_mapping"] = True
        if self.task == "causal-lm" and getattr(self.tokenizer, "pad_token", None) is None:
            raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token (e.g. to eos) to batch inputs")
        if pairs:
            enc = self.tokenizer([a for a, _ in texts], [b for _, b in texts], **kwargs)
        else:
            enc = self.tokenizer(list(texts), **kwargs)
        return enc, pairs

    def model_inputs(self, enc: Any) -> dict[str, torch.Tensor]:
        """The model's inputs out of an encoding, on the embedding layer's device.

        Args:
            enc: a tokenizer encoding or a dict with ``input_ids`` (``attention_mask`` and
                ``token_type_ids`` optional; a missing mask means every token is real).

        Returns:
            ``input_ids``, ``attention_mask`` and, when given, ``token_type_ids``.
        """
        weight = getattr(self.embedding_layer, "weight", None)
        device = weight.device if weight is not None else None
        keep: dict[str, torch.Tensor] = {}
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            if name in enc and enc[name] is not None:
                keep[name] = enc[name].to(device) if device is not None else enc[name]
        if "attention_mask" not in keep:
            keep["attention_mask"] = torch.ones_like(keep["input_ids"])
        return keep

    # ----- targets ---------------------------------------------------------------------------------
    def explained_positions(self, inputs: dict[str, torch.Tensor], position: Any) -> list[int] | None:
        """The token whose prediction is explained, per input (first mask token, last real token, ...).

        Args:
            inputs: model inputs, as :meth:`model_inputs` gives them.
            position: an index among the real tokens, ``"last"``, ``"cls"``, a list per input, or None.

        Returns:
            One absolute index per input, or None where the head predicts once per input.
        """
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        batch = ids.shape[0]
        if self.task == "sequence-classification" or (self.task == "custom" and position is None):
            return None
        if position is None:
            if self.task == "masked-lm":
                mask_id = getattr(self.tokenizer, "mask_token_id", None)
                out = []
                for b in range(batch):
                    hits = torch.nonzero(ids[b] == mask_id).flatten().tolist() if mask_id is not None else []
                    if not hits:
                        raise ValueError(f"input {b} has no mask token to explain: add one or pass position=")
                    out.append(hits[0])
                return out
            if self.task == "causal-lm":
                position = "last"
            else:
                raise ValueError(f"{self.task} needs position= (the token whose prediction is explained)")
        from ..analysis.rollout import resolve_query

        specs = position if isinstance(position, (list, tuple)) else [position] * batch
        if len(specs) != batch:
            raise ValueError(f"{len(specs)} positions for {batch} inputs")
        return [resolve_query(p, ids.shape[1], mask[b]) for b, p in enumerate(specs)]

    def head_scores(self, outputs: Any, positions: torch.Tensor | None) -> torch.Tensor:
        """The scores that are explained: the head's logits at ``positions``, transformed by ``output``.

        Args:
            outputs: the model's outputs.
            positions: the explained token per input (needed for per-token heads).

        Returns:
            ``[b, C]`` scores, or ``[b]`` for a scalar head.
        """
        if self.head is not None:
            scores = self.head(outputs)
        else:
            scores = logits_of(outputs)
        if scores.dim() == 3:
            if positions is None:
                raise ValueError("the model returns per-token scores: pass position=")
            scores = scores[torch.arange(scores.shape[0], device=scores.device), positions.to(scores.device)]
        if scores.dim() == 2:
            return transform_output(scores, self.output)
        return scores

    def resolve_targets(self, target: Any, logits: torch.Tensor) -> list[int] | None:
        """The explained class or token per input.

        Args:
            target: an index, a label or token, ``"predicted"``, or a list of these per input.
            logits: the head's ``[b, C]`` (or scalar ``[b]``) scores.

        Returns:
            One index per input, or None for a scalar head.
        """
        if logits.dim() == 1:
            return None
        batch = logits.shape[0]
        specs = target if isinstance(target, (list, tuple)) else [target] * batch
        if len(specs) != batch:
            raise ValueError(f"{len(specs)} targets for {batch} inputs")
        out = []
        for b, spec in enumerate(specs):
            if spec is None or spec == "predicted":
                out.append(int(logits[b].argmax()))
            elif isinstance(spec, str):
                out.append(self.label_id(spec))
            elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
                if not 0 <= int(spec) < logits.shape[-1]:
                    raise ValueError(f"target {spec} is out of range for {logits.shape[-1]} outputs")
                out.append(int(spec))
            else:
                raise TypeError(f"target must be an int, a label, 'predicted' or a list of these, got {spec!r}")
        return out

    def label_id(self, label: str) -> int:
        """The index of a label name (classification) or of a vocabulary token (LMs).

        Args:
            label: the label or token.

        Returns:
            Its index.
        """
        if self.task in ("masked-lm", "causal-lm"):
            ids = self.tokenizer.convert_tokens_to_ids([label])
            unk = getattr(self.tokenizer, "unk_token_id", None)
            if not ids or ids[0] is None or (ids[0] == unk and label != getattr(self.tokenizer, "unk_token", None)):
                raise ValueError(f"{label!r} is not a token of the vocabulary")
            return int(ids[0])
        for k, v in self.labels.items():
            if v == label:
                return k
        raise ValueError(f"unknown label {label!r}; labels: {sorted(self.labels.values())}")

    def label_name(self, target: int | None) -> str | None:
        """The name of a class index (classification) or the token of a vocabulary id (LMs).

        Args:
            target: the index, or None.

        Returns:
            Its name, or None for None.
        """
        if target is None:
            return None
        if self.task in ("masked-lm", "causal-lm") and self.tokenizer is not None:
            return str(self.tokenizer.convert_ids_to_tokens([target])[0])
        return self.labels.get(target, str(target))

    def prediction_scores(self, inputs: dict[str, torch.Tensor], pos_tensor: torch.Tensor | None) -> torch.Tensor:
        """The head's raw logits (``output`` ignored), from which the prediction is read.

        Args:
            inputs: model inputs.
            pos_tensor: the explained token per input, or None.

        Returns:
            ``[b, C]`` logits, or ``[b]`` for a scalar head.
        """
        output, self.output = self.output, "logit"
        try:
            return self.head_scores(self.model(**inputs), pos_tensor)
        finally:
            self.output = output

    def prediction_info(self, logits: torch.Tensor, targets: list[int] | None) -> dict[str, Any]:
        """Prediction, its probability and the target's probability per input.

        Args:
            logits: the head's raw scores, as :meth:`prediction_scores` gives them.
            targets: the explained index per input, or None.

        Returns:
            Lists per input: ``prediction``, ``probability``, ``target_probability`` (and
            ``value`` for a scalar head).
        """
        if logits.dim() == 1:
            return {
                "prediction": [None] * len(logits),
                "probability": [None] * len(logits),
                "target_probability": [None] * len(logits),
                "value": logits.tolist(),
            }
        probs = torch.softmax(logits.double(), dim=-1)
        pred = probs.argmax(dim=-1)
        return {
            "prediction": pred.tolist(),
            "probability": probs.max(dim=-1).values.tolist(),
            "target_probability": [float(probs[b, t]) for b, t in enumerate(targets or [])],
        }

    def query_positions(self, inputs: dict[str, torch.Tensor], positions: list[int] | None, query: Any) -> list[int]:
        """The attention row that attention methods read, per input.

        Args:
            inputs: model inputs.
            positions: the explained token per input, the default query where the head has one.
            query: an index, ``"cls"``, ``"last"``, a list per input, or None.

        Returns:
            One absolute index per input.
        """
        from ..analysis.rollout import resolve_query

        mask = inputs["attention_mask"]
        batch, n = inputs["input_ids"].shape
        if query is None:
            if positions is not None and self.task != "causal-lm":
                return list(positions)
            query = "last" if self.task == "causal-lm" else 0
        specs = query if isinstance(query, (list, tuple)) else [query] * batch
        return [resolve_query(q, n, mask[b]) for b, q in enumerate(specs)]
