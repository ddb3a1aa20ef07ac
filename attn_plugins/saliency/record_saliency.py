"""Attention-based saliency straight from a record: no model, no gradients.

    results = attention_saliency(record, "rollout", query="cls")

The record-only methods (``"attention"``, ``"rollout"``, ``"flow"``) read the captured weights;
methods that need the model (gradients, ``grad_attention``) go through an
:class:`~attn_plugins.saliency.explainer.Explainer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .methods import METHODS
from .problem import Problem
from .result import TokenSaliency

if TYPE_CHECKING:
    from ..record import AttentionRecord


def attention_saliency(
    record: AttentionRecord, method: str = "rollout", *, query: Any = 0, **options: Any
) -> list[TokenSaliency]:
    """Attention-based saliency straight from a record (no model needed).

    Args:
        record: a captured record.
        method: ``"attention"``, ``"rollout"`` or ``"flow"``.
        query: the row read: an int among the real tokens, ``"cls"`` or ``"last"`` (or a list per item).
        **options: passed to the method (e.g. ``head_fusion=``).

    Returns:
        One result per batch item.
    """
    from ..analysis.rollout import resolve_query

    fn = METHODS.get(method)
    if getattr(fn, "family", None) != "attention" or method == "grad_attention":
        raise ValueError(f"{method!r} needs a model: use an Explainer (record-only methods: attention, rollout, flow)")
    if not record.layers:
        raise ValueError("the record holds no attention")
    n = record.layers[0].weights.shape[-1]
    batch = record.batch_size
    ids = record.inputs.get("input_ids")
    mask = record.attention_mask
    if mask is None or mask.dim() != 2:
        mask = torch.ones(batch, n, dtype=torch.long)
    mask = mask[:, :n].cpu()
    specs = query if isinstance(query, (list, tuple)) else [query] * batch
    queries = [resolve_query(q, n, mask[b]) for b, q in enumerate(specs)]
    problem = Problem(
        model=None,
        embedding_layer=None,
        input_ids=ids[:, :n].cpu() if ids is not None else torch.zeros(batch, n, dtype=torch.long),
        attention_mask=mask,
        embeds=None,
        args=(),
        embed_forward=None,
        ids_forward=None,
        targets=None,
        queries=queries,
        _record=record,
    )
    scores, extras = fn(problem, **options)
    out = []
    for b in range(batch):
        real = torch.nonzero(mask[b]).flatten().tolist()
        tokens = [record.tokens[b][i] for i in real] if record.tokens else [str(i) for i in real]
        out.append(
            TokenSaliency(
                tokens=tokens,
                scores=scores[b, real].numpy(),
                method=method,
                query=real.index(queries[b]),
                info={**options, **(extras[b] if extras else {})},
            )
        )
    return out
