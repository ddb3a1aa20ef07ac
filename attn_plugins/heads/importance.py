"""Head importance (Michel, Levy & Neubig 2019, "Are Sixteen Heads Really Better than One?").

A gate ``xi_h`` multiplies each head's output (the same point :func:`ablate` edits: the head's slice
of the output projection's input, so ``xi_h = 0`` is the head removed); at ``xi = 1`` the model is
unchanged. The importance of head ``h`` is ``I_h = E_x |dL(x)/dxi_h|``: here the mean over batches
of ``|dL_batch/dxi_h|``, one backward pass per batch, the model running its own attention kernel.
As in the paper, scores are normalised per layer by their L2 norm unless ``normalize=False``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from .ablation import call_model
from .hooks import head_transforms
from .units import chosen_units

LOSSES = ("model", "predicted")
LossFunction = Callable[[Any, Any], torch.Tensor]  # (outputs, batch) -> scalar


@dataclass
class HeadImportance:
    """``scores[block path]`` is one importance per head; ``order`` lists the block paths in
    :func:`attention_units` order, ``indices`` their unit indices."""

    scores: dict[str, np.ndarray]
    order: list[str]
    indices: list[int]
    normalized: bool
    batches: int
    info: dict[str, Any] = field(default_factory=dict)

    def ranking(self, ascending: bool = True) -> list[tuple[int, int]]:
        """``(unit index, head)`` pairs from least (``ascending``) or most important; ties keep model order."""
        pairs = [
            (i, h, float(v))
            for name, i in zip(self.order, self.indices, strict=True)
            for h, v in enumerate(self.scores[name])
        ]
        ranked = sorted(range(len(pairs)), key=lambda j: pairs[j][2] if ascending else -pairs[j][2])
        return [(pairs[j][0], pairs[j][1]) for j in ranked]

    def matrix(self) -> np.ndarray:
        """``[blocks, max heads]`` (NaN where a block has fewer heads)."""
        width = max(len(v) for v in self.scores.values())
        out = np.full((len(self.order), width), np.nan)
        for row, name in enumerate(self.order):
            out[row, : len(self.scores[name])] = self.scores[name]
        return out

    def to_dict(self) -> dict[str, Any]:
        """The scores as plain lists (JSON)."""
        return {
            "scores": {k: v.tolist() for k, v in self.scores.items()},
            "order": self.order,
            "indices": self.indices,
            "normalized": self.normalized,
            "batches": self.batches,
            "info": self.info,
        }


def _loss_fn(loss: str | LossFunction) -> LossFunction:
    if callable(loss):
        return loss
    if loss == "model":

        def model_loss(outputs: Any, batch: Any) -> torch.Tensor:
            value = getattr(outputs, "loss", None)
            if not isinstance(value, torch.Tensor):
                raise InputError(
                    "the model returned no loss: put labels in the batches, pass loss='predicted' "
                    "(cross-entropy against the model's own prediction) or loss=callable(outputs, batch)"
                )
            return value

        return model_loss
    if loss == "predicted":

        def predicted(outputs: Any, batch: Any) -> torch.Tensor:
            logits = getattr(outputs, "logits", None)
            if logits is None or logits.dim() != 2:
                raise InputError("loss='predicted' needs [batch, classes] logits")
            return torch.nn.functional.cross_entropy(logits, logits.detach().argmax(-1))

        return predicted
    raise InputError(f"loss must be one of {LOSSES} or a callable(outputs, batch) -> scalar, got {loss!r}")


def head_importance(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    loss: str | LossFunction = "model",
    normalize: bool = True,
    layers: Iterable[int | str] | None = None,
) -> HeadImportance:
    """Michel et al.'s head importance, ``mean over batches of |dL/dgate|``.

    Args:
        model: the model; it runs its own kernel, in eval mode (dropout off, mode restored after).
        batches: an iterable of model inputs (dicts, tuples or tensors).
        loss: ``"model"`` (the model's ``outputs.loss``: put labels in the batches), ``"predicted"``
            (cross-entropy against the model's own prediction) or ``callable(outputs, batch) -> scalar``.
        normalize: divide each block's scores by their L2 norm (the paper's per-layer normalisation).
        layers: the blocks to score (indices or paths); default all.

    Returns:
        A :class:`HeadImportance`.
    """
    units, chosen = chosen_units(model, layers)
    loss_of = _loss_fn(loss)
    gates = {
        u.index: torch.ones(u.num_heads, dtype=u.weight.dtype, device=u.weight.device, requires_grad=True)
        for u in chosen
    }
    totals = {i: torch.zeros(g.shape[0], dtype=torch.float64) for i, g in gates.items()}
    count = 0
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with head_transforms(units, {i: (g, None) for i, g in gates.items()}), torch.enable_grad():
            for batch in batches:
                value = loss_of(call_model(model, batch), batch)
                grads = torch.autograd.grad(value, list(gates.values()), allow_unused=True)
                for i, grad in zip(gates, grads, strict=True):
                    if grad is not None:
                        totals[i] += grad.detach().abs().double().cpu()
                count += 1
    finally:
        for module, mode in modes:
            module.training = mode
    if not count:
        raise InputError("head_importance got no batches")
    scores = {}
    for unit in chosen:
        values = (totals[unit.index] / count).numpy()
        if normalize:
            values = values / (np.linalg.norm(values) + 1e-20)
        scores[unit.name] = values
    return HeadImportance(
        scores=scores,
        order=[u.name for u in chosen],
        indices=[u.index for u in chosen],
        normalized=normalize,
        batches=count,
        info={"loss": loss if isinstance(loss, str) else "custom"},
    )
