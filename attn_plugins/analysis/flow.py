"""Attention flow (Abnar & Zuidema 2020) as maximum flow on the layer graph.

The graph has one node per (layer boundary, token): ``L + 1`` rows of ``n`` nodes. Node ``(l, i)``
(the input of layer ``l + 1`` seen from token ``i`` at layer ``l``) has an edge to ``(l - 1, j)``
with capacity ``A_l[i, j]``, the layer's residual-augmented attention (heads fused, identity
added, rows normalised: exactly the matrices of :mod:`attn_plugins.analysis.rollout`). The flow
of output token ``i`` to input token ``j`` is the maximum flow from ``(L, i)`` to ``(0, j)``; with
``normalize=True`` (the reference implementation's choice) each row is divided by its sum.

The reference implementation calls networkx once per node pair in pure Python, which takes
minutes for a short sentence. Here every pair is solved with ``scipy.sparse.csgraph.maximum_flow``
(compiled Dinic). SciPy only accepts integer capacities (held as 32-bit integers, larger values
silently wrap), so capacities are scaled by ``scale`` and rounded to the nearest integer:

* every capacity is off by at most ``0.5 / scale``;
* a max flow equals a min cut, so the flow is off by at most ``0.5 / scale`` times the number of
  edges in the cut: at most ``L * n * n * 0.5 / scale``, and in practice a few ``1e-9``;
* the default ``scale = 2**29`` keeps every capacity and every flow (at most ``1 + n / scale``
  times ``scale``, since the source's out-capacities sum to 1) far below ``2**31``.

``backend="networkx"`` runs the same graph through ``networkx.maximum_flow_value`` with float
capacities (the reference's slow path; useful to check and benchmark).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .rollout import as_batched, residual_attention, self_layers

DEFAULT_SCALE = 2**29


def _optional(module: str, hint: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"attention flow with this backend needs {module.split('.')[0]}: {hint}") from exc


_INT32_MAX = 2**31 - 1


def mixing_matrices(
    attentions: Sequence[torch.Tensor], *, head_fusion: str = "mean", add_residual: bool = True
) -> tuple[np.ndarray, bool]:
    """``[batch, L, n, n]`` float64 residual-augmented attention (and whether input was unbatched)."""
    layers, unbatched = as_batched(attentions)
    mats = [residual_attention(a, head_fusion=head_fusion, add_residual=add_residual) for a in layers]
    return torch.stack(mats, dim=1).cpu().numpy(), unbatched


def _edges(mats: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, capacities) of the layer graph of one item; ``mats`` is ``[L, n, n]``."""
    num_layers, n, _ = mats.shape
    rows, cols, caps = [], [], []
    idx = np.arange(n)
    for layer in range(1, num_layers + 1):
        mat = mats[layer - 1]
        src = (layer * n + idx)[:, None].repeat(n, axis=1)
        dst = ((layer - 1) * n + idx)[None, :].repeat(n, axis=0)
        rows.append(src.ravel())
        cols.append(dst.ravel())
        caps.append(mat.ravel())
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(caps)


def _check_scale(scale: int, n: int) -> int:
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if 2 * (scale + n) > _INT32_MAX:
        raise ValueError(
            f"scale={scale} overflows scipy's 32-bit capacities for {n} tokens; use at most {_INT32_MAX // 2 - n}"
        )
    return scale


class _ScipyGraph:
    def __init__(self, mats: np.ndarray, scale: int) -> None:
        csr_array = _optional("scipy.sparse", 'pip install "attn-plugins[saliency]"').csr_array
        self.num_layers, self.n, _ = mats.shape
        self.scale = _check_scale(scale, self.n)
        rows, cols, caps = _edges(mats)
        ints = np.rint(caps * self.scale).astype(np.int64)
        keep = ints > 0
        size = (self.num_layers + 1) * self.n
        self.graph = csr_array(
            (ints[keep].astype(np.int32), (rows[keep].astype(np.int32), cols[keep].astype(np.int32))),
            shape=(size, size),
        )
        self.graph.sum_duplicates()
        self.graph.sort_indices()

    def value(self, source: int, sink: int, method: str) -> float:
        from scipy.sparse.csgraph import maximum_flow  # scipy is there: __init__ imported it

        return float(maximum_flow(self.graph, source, sink, method=method).flow_value) / self.scale


class _NetworkxGraph:
    def __init__(self, mats: np.ndarray) -> None:
        nx = _optional("networkx", "pip install networkx")

        self.num_layers, self.n, _ = mats.shape
        rows, cols, caps = _edges(mats)
        graph = nx.DiGraph()
        graph.add_nodes_from(range((self.num_layers + 1) * self.n))
        graph.add_weighted_edges_from(
            ((int(r), int(c), float(w)) for r, c, w in zip(rows, cols, caps, strict=True) if w > 0), weight="capacity"
        )
        self.graph = graph

    def value(self, source: int, sink: int, method: str) -> float:
        import networkx as nx
        from networkx.algorithms.flow import edmonds_karp

        return float(nx.maximum_flow_value(self.graph, source, sink, capacity="capacity", flow_func=edmonds_karp))


def flow_from_mixing(
    mats: np.ndarray,
    queries: Sequence[int] | None = None,
    *,
    normalize: bool = True,
    backend: str = "scipy",
    scale: int = DEFAULT_SCALE,
    method: str = "dinic",
    progress: Any = None,
) -> np.ndarray:
    """Max-flow values of one item: ``[len(queries), n]`` from output tokens to input tokens.

    ``mats`` is ``[L, n, n]`` (rows of each layer's mixing matrix sum to 1).
    """
    mats = np.asarray(mats, dtype=np.float64)
    if mats.ndim != 3 or mats.shape[1] != mats.shape[2]:
        raise ValueError(f"mixing matrices must be [layers, n, n], got {mats.shape}")
    num_layers, n, _ = mats.shape
    queries = list(range(n)) if queries is None else [int(q) for q in queries]
    if backend == "scipy":
        graph: _ScipyGraph | _NetworkxGraph = _ScipyGraph(mats, scale)
    elif backend == "networkx":
        graph = _NetworkxGraph(mats)
    else:
        raise ValueError(f"backend must be 'scipy' or 'networkx', got {backend!r}")
    out = np.zeros((len(queries), n), dtype=np.float64)
    pairs = [(qi, q, j) for qi, q in enumerate(queries) for j in range(n)]
    iterator = pairs
    if progress is not None:
        iterator = progress(pairs)
    for qi, q, j in iterator:
        out[qi, j] = graph.value(num_layers * n + q, j, method)
    if normalize:
        sums = out.sum(axis=1, keepdims=True)
        out = np.divide(out, sums, out=np.zeros_like(out), where=sums > 0)
    return out


def _progress(show: Any, total: int, desc: str) -> Callable[[Any], Any] | None:
    if show is False or (show is None and total < 2000):
        return None
    from tqdm.auto import tqdm

    return lambda items: tqdm(items, desc=desc, leave=False)


def flow_matrices(
    attentions: Sequence[torch.Tensor],
    *,
    query: Any = None,
    head_fusion: str = "mean",
    add_residual: bool = True,
    normalize: bool = True,
    backend: str = "scipy",
    scale: int = DEFAULT_SCALE,
    lengths: Sequence[int] | None = None,
    progress: bool | None = None,
) -> torch.Tensor:
    """Attention flow of a list of self-attention matrices (first layer first).

    Returns ``[batch, n, n]`` float64 (``query=None``: every output token) or ``[batch, n]`` (one
    query position); unbatched input drops the batch dimension. ``lengths`` restricts each item to
    its first ``lengths[b]`` tokens (right padding); the padded rest is 0.
    """
    mats, unbatched = mixing_matrices(attentions, head_fusion=head_fusion, add_residual=add_residual)
    batch, num_layers, n, _ = mats.shape
    lengths = [n] * batch if lengths is None else [int(v) for v in lengths]
    work = sum((1 if query is not None else ln) * ln for ln in lengths) * num_layers
    bar = _progress(progress, work // max(num_layers, 1), f"attention flow ({backend})")
    shape = (batch, n) if query is not None else (batch, n, n)
    out = np.zeros(shape, dtype=np.float64)
    for b in range(batch):
        ln = lengths[b]
        sub = mats[b, :, :ln, :ln]
        if ln < n:  # renormalise rows after dropping padded keys (they carry ~0 anyway)
            sums = sub.sum(axis=-1, keepdims=True)
            sub = np.divide(sub, sums, out=np.zeros_like(sub), where=sums > 0)
        if query is not None:
            q = query + ln if query < 0 else query
            if not 0 <= q < ln:
                raise IndexError(f"query {query} is out of range for {ln} tokens")
            out[b, :ln] = flow_from_mixing(sub, [q], normalize=normalize, backend=backend, scale=scale, progress=bar)[0]
        else:
            out[b, :ln, :ln] = flow_from_mixing(
                sub, None, normalize=normalize, backend=backend, scale=scale, progress=bar
            )
    result = torch.from_numpy(out)
    return result[0] if unbatched else result


def attention_flow(
    record: Any,
    *,
    query: Any = None,
    stack: Any = ...,
    head_fusion: str = "mean",
    add_residual: bool = True,
    normalize: bool = True,
    backend: str = "scipy",
    scale: int = DEFAULT_SCALE,
    progress: bool | None = None,
) -> torch.Tensor:
    """Attention flow of a record's self-attention layers.

    ``query=None`` gives ``[batch, n, n]``; an int, ``"cls"`` or ``"last"`` gives ``[batch, n]`` for
    that query row of each item. Padded items are solved on their real tokens only.
    """
    from .rollout import resolve_query, valid_lengths

    layers = self_layers(record, stack)
    weights = [layer.weights for layer in layers]
    n = weights[0].shape[-1]
    mask = record.attention_mask
    lengths = valid_lengths(record)
    if mask is not None and mask.dim() == 2:
        left_padded = any(bool(mask[b, 0] == 0) and lengths[b] > 0 for b in range(mask.shape[0]))
        if left_padded:
            raise ValueError("attention flow of left-padded batches is not supported: pass one item at a time")
    if query is None:
        return flow_matrices(
            weights,
            head_fusion=head_fusion,
            add_residual=add_residual,
            normalize=normalize,
            backend=backend,
            scale=scale,
            lengths=lengths,
            progress=progress,
        )
    rows = []
    for b, ln in enumerate(lengths):
        q = resolve_query(query, n, mask[b] if mask is not None and mask.dim() == 2 else None)
        item = [w[b : b + 1] for w in weights]
        rows.append(
            flow_matrices(
                item,
                query=q,
                head_fusion=head_fusion,
                add_residual=add_residual,
                normalize=normalize,
                backend=backend,
                scale=scale,
                lengths=[ln],
                progress=progress,
            )[0]
        )
    return torch.stack(rows)
