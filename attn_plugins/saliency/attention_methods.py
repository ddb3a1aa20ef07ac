"""The registered attention-based saliency methods: raw attention, rollout, flow and
gradient-weighted attention, read from a captured :class:`~attn_plugins.record.AttentionRecord`.

They follow :mod:`attn_plugins.saliency.methods`' convention (``method(problem, **options) ->
(scores, extras)``) and register in the same :data:`~attn_plugins.saliency.methods.METHODS` when
:mod:`attn_plugins.saliency` is imported.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import torch

from .methods import MethodResult, method, no_extras
from .problem import Problem

if TYPE_CHECKING:
    from ..record import AttentionRecord, LayerAttention


def _real(mask_row: torch.Tensor) -> list[int]:
    real: list[int] = torch.nonzero(mask_row).flatten().tolist()
    return real


def _row(matrix: torch.Tensor, query: int | None, real: list[int]) -> torch.Tensor:
    """Row ``query`` of one item's ``[n, n]`` matrix; ``None``: the mean of the real rows (what a
    mean-pooled sentence embedding reads)."""
    if query is None:
        return matrix[real].mean(dim=0)
    return matrix[query]


def _self_layers(record: AttentionRecord) -> list[LayerAttention]:
    from ..analysis.rollout import self_layers as select

    return select(record, ...)


@method("attention", "attention", "raw attention of the query row (one layer or the mean of layers; heads averaged)")
def attention(problem: Problem, *, layer: Any = -1, head: Any = None) -> MethodResult:
    """Raw attention of the query row (``None`` query: the mean of the real rows).

    Args:
        problem: the batch to explain (built by an explainer).
        layer: a layer, ``"mean"`` or a list of layers (as :func:`~attn_plugins.analysis.rollout.raw_attention`).
        head: a head, or None for the mean of the heads.

    Returns:
        ``([batch, n] scores, extras)``; extras name the layer and head.
    """
    from ..analysis.rollout import raw_attention

    record = problem.record()
    out = torch.zeros(problem.input_ids.shape, dtype=torch.float64)
    for b, q in enumerate(problem.queries):
        item = _item_record(record, b)
        real = _real(problem.attention_mask[b])
        rows = [q] if q is not None else real
        values = [raw_attention(item, query=real.index(r), layer=layer, head=head)[0] for r in rows]
        out[b] = torch.stack(values).mean(dim=0)[: out.shape[1]].cpu()
    return out, [{"layer": layer, "head": head} for _ in range(problem.batch_size)]


@method("rollout", "attention", "attention rollout (Abnar & Zuidema 2020): row of the query token")
def rollout(
    problem: Problem, *, head_fusion: str = "mean", add_residual: bool = True, start_layer: int = 0
) -> MethodResult:
    """Attention rollout (Abnar & Zuidema 2020): the query token's row of the rolled-out matrix.

    Args:
        problem: the batch to explain (built by an explainer).
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.
        add_residual: add the identity for the residual connection (and renormalise).
        start_layer: the first layer rolled out.

    Returns:
        ``([batch, n] scores, extras)``; extras are empty dicts.
    """
    from ..analysis.rollout import rollout as roll

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        matrix = roll(problem.record(), head_fusion=head_fusion, add_residual=add_residual, start_layer=start_layer)
    out = torch.zeros(problem.input_ids.shape, dtype=torch.float64)
    for b, q in enumerate(problem.queries):
        out[b] = _row(matrix[b], q, _real(problem.attention_mask[b])).cpu()
    return out, no_extras(problem)


@method("flow", "attention", "attention flow (Abnar & Zuidema 2020): max flow from the query token to each input")
def flow(
    problem: Problem,
    *,
    head_fusion: str = "mean",
    add_residual: bool = True,
    normalize: bool = True,
    backend: str = "scipy",
    scale: int | None = None,
) -> MethodResult:
    """Attention flow (Abnar & Zuidema 2020): max flow from the query token to each input.

    Args:
        problem: the batch to explain (built by an explainer).
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.
        add_residual: add the identity for the residual connection.
        normalize: scale each row's flows to sum 1.
        backend: the max-flow solver (``"scipy"`` or ``"networkx"``).
        scale: integer capacity scale for SciPy's solver (default: the analysis module's).

    Returns:
        ``([batch, n] scores, extras)``; extras are empty dicts.
    """
    from ..analysis.flow import DEFAULT_SCALE, flow_matrices

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layers = _self_layers(problem.record())
    out = torch.zeros(problem.input_ids.shape, dtype=torch.float64)
    for b, q in enumerate(problem.queries):
        real = _real(problem.attention_mask[b])
        index = torch.tensor(real)
        weights = [
            layer.weights[b : b + 1]
            .index_select(-1, index.to(layer.weights.device))
            .index_select(-2, index.to(layer.weights.device))
            for layer in layers
        ]
        full = flow_matrices(
            weights,
            query=real.index(q) if q is not None else None,
            head_fusion=head_fusion,
            add_residual=add_residual,
            normalize=normalize,
            backend=backend,
            scale=scale or DEFAULT_SCALE,
        )[0]
        out[b, index] = full if q is not None else full.mean(dim=0)
    return out, no_extras(problem)


@method(
    "grad_attention",
    "attention",
    "gradient-weighted attention: attention x d target / d attention, positive part, heads averaged",
)
def grad_attention(
    problem: Problem, *, aggregate: str = "mean", positive: bool = True, layer: int = -1
) -> MethodResult:
    """``aggregate``: ``"rollout"`` (Chefer et al. 2021: ``R = I``, ``R += Abar @ R`` layer by layer),
    ``"mean"`` (mean over layers of ``Abar``) or ``"layer"`` (``Abar`` of ``layer``); then the query row.
    ``Abar = mean_heads(A * dA)``, clamped at 0 when ``positive``.

    Args:
        problem: the batch to explain (built by an explainer).
        aggregate: ``"rollout"``, ``"mean"`` or ``"layer"``.
        positive: clamp ``A * dA`` at 0.
        layer: the layer for ``aggregate="layer"``.

    Returns:
        ``([batch, n] scores, extras)``; extras are empty dicts.
    """
    if problem.attention_function is None:
        raise ValueError("grad_attention needs a model: use an Explainer")
    pairs = problem.attention_function()  # [(A, dA)] per layer, each [b, h, n, n]
    weighted = []
    for attn, grad in pairs:
        value = attn.detach().double() * grad.detach().double()
        if positive:
            value = value.clamp(min=0)
        weighted.append(value.mean(dim=1))
    if aggregate == "rollout":
        n = weighted[0].shape[-1]
        relevance = torch.eye(n, dtype=torch.float64, device=weighted[0].device).expand_as(weighted[0]).clone()
        for value in weighted:
            relevance = relevance + torch.matmul(value, relevance)
        matrix = relevance
    elif aggregate == "mean":
        matrix = torch.stack(weighted).mean(dim=0)
    elif aggregate == "layer":
        matrix = weighted[layer]
    else:
        raise ValueError(f"aggregate must be 'rollout', 'mean' or 'layer', got {aggregate!r}")
    out = torch.zeros(problem.input_ids.shape, dtype=torch.float64)
    for b, q in enumerate(problem.queries):
        out[b] = _row(matrix[b], q, _real(problem.attention_mask[b])).cpu()
    return out, no_extras(problem)


def _item_record(record: AttentionRecord, b: int) -> AttentionRecord:
    """A view of one batch item of a record (weights and inputs sliced; nothing copied)."""
    from dataclasses import replace

    from ..record import LayerAttention

    layers = [
        LayerAttention(
            name=layer.name,
            stack=layer.stack,
            kind=layer.kind,
            index=layer.index,
            weights=layer.weights[b : b + 1],
            heads=layer.heads,
        )
        for layer in record.layers
    ]
    inputs = {k: v[b : b + 1] for k, v in record.inputs.items() if isinstance(v, torch.Tensor) and v.dim() >= 1}
    return replace(record, layers=layers, inputs=inputs, tokens=record.tokens[b : b + 1] if record.tokens else None)
