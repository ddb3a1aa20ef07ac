"""How alike heads (and layers) attend: Jensen-Shannon distances and hierarchical clustering.

Clark et al. (2019, section 6) measure the distance between two heads as the Jensen-Shannon
divergence between their attention distributions, summed over the tokens of the data:
``Dist(H_i, H_j) = sum_token JS(H_i(token), H_j(token))``. :func:`head_distances` computes this
over the real query rows of a record (padding excluded) with:

* ``measure="distance"`` (default): the Jensen-Shannon *distance* ``sqrt(JS)`` of each row, so the
  result is a true metric (a mean of metrics), as hierarchical clustering expects;
* ``measure="divergence"``: the divergence itself, as in the paper;
* ``reduce="mean"`` (default, comparable across inputs of any length) or ``"sum"`` (the paper's).

Logarithms are base 2 by default, so the divergence and the distance lie in ``[0, 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .blocks import ANY, views
from .divergence import js_divergence_rows


@dataclass
class PairwiseMatrix:
    """A labelled square matrix (``values[i, j]`` between ``labels[i]`` and ``labels[j]``)."""

    values: torch.Tensor
    labels: list[str]
    measure: str
    heads: list[tuple[str, int]] | None = None  # (layer label, head index) per row, for head matrices

    def cluster(self, method: str = "average", n_clusters: int | None = None) -> HeadClusters:
        """Hierarchical clustering of this matrix (a distance; a similarity is turned into ``1 - s``)."""
        distances = self.values if "similarity" not in self.measure else 1.0 - self.values
        return cluster(distances, self.labels, method=method, n_clusters=n_clusters)

    def __str__(self) -> str:
        n = len(self.labels)
        width = max(6, *(len(label) for label in self.labels)) if self.labels else 6
        lines = [f"{self.measure} ({n} x {n})"]
        show = min(n, 12)
        lines.append(" " * (width + 1) + " ".join(f"{label[:6]:>6}" for label in self.labels[:show]))
        for i in range(show):
            cells = " ".join(f"{self.values[i, j].item():6.3f}" for j in range(show))
            lines.append(f"{self.labels[i]:<{width}} " + cells)
        if show < n:
            lines.append(f"... ({n - show} more)")
        return "\n".join(lines)


@dataclass
class HeadClusters:
    """Result of :func:`cluster`: scipy's linkage matrix, the dendrogram leaf order and, with
    ``n_clusters``, a cluster id per label."""

    linkage: object  # numpy [n - 1, 4]
    order: list[int]
    labels: list[str]
    assignments: list[int] | None = None
    method: str = "average"

    def groups(self) -> dict[int, list[str]]:
        """Labels by cluster id (needs ``n_clusters``)."""
        if self.assignments is None:
            raise ValueError("call cluster(..., n_clusters=N) to assign clusters")
        out: dict[int, list[str]] = {}
        for label, cid in zip(self.labels, self.assignments, strict=True):
            out.setdefault(int(cid), []).append(label)
        return out


def _pairwise(dists: torch.Tensor, measure: str, reduce: str, base: float) -> torch.Tensor:
    """``[n, n]`` from ``dists`` ``[n, rows, k]``: per-row JS, then mean/sum over rows."""
    if measure not in ("distance", "divergence"):
        raise ValueError(f"measure must be 'distance' or 'divergence', got {measure!r}")
    if reduce not in ("mean", "sum"):
        raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")
    n, rows, k = dists.shape
    out = torch.zeros(n, n, dtype=torch.float64)
    if rows == 0:
        return torch.full((n, n), float("nan"), dtype=torch.float64)
    chunk = max(1, int(2e7 // max(1, n * k)))
    for i in range(n):
        total = torch.zeros(n, dtype=torch.float64)
        for start in range(0, rows, chunk):
            a = dists[i : i + 1, start : start + chunk]
            b = dists[:, start : start + chunk]
            js = js_divergence_rows(a, b, base)
            if measure == "distance":
                js = torch.sqrt(js)
            total += js.sum(dim=1)
        out[i] = total / rows if reduce == "mean" else total
    out = (out + out.T) / 2
    out.fill_diagonal_(0.0)
    return out


def _stack_rows(vs: Any) -> tuple[torch.Tensor, list[str], list[tuple[str, int]]]:
    """All heads of the views as ``[n_heads, rows, k]`` over the real rows (padded keys zeroed)."""
    ref = vs[0]
    for v in vs[1:]:
        if v.weights.shape[0] != ref.weights.shape[0] or v.weights.shape[2:] != ref.weights.shape[2:]:
            raise ValueError(
                f"layers {ref.label!r} {tuple(ref.weights.shape)} and {v.label!r} {tuple(v.weights.shape)} attend over "
                "different shapes; compare layers of one stack and kind (pass stack=/kind=)"
            )
    rows = ref.query_mask.reshape(-1)
    chunks, labels, heads = [], [], []
    for v in vs:
        w = torch.where(v.key_mask[:, None, None, :], v.weights, torch.zeros((), dtype=torch.float64))
        b, h, q, k = w.shape
        flat = w.permute(1, 0, 2, 3).reshape(h, b * q, k)[:, rows]
        chunks.append(flat)
        for head in v.heads:
            labels.append(f"{v.label}H{head}" if v.label else f"H{head}")
            heads.append((v.label, head))
    return torch.cat(chunks, dim=0), labels, heads


def head_distances(
    attn: Any,
    *,
    measure: str = "distance",
    reduce: str = "mean",
    base: float = 2.0,
    item: int | None = None,
    attention_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
    layers: Any = None,
    stack: Any = ANY,
    kind: str = "self",
) -> PairwiseMatrix:
    """Distance between every pair of heads of the selected layers (Clark et al. 2019).

    Returns a :class:`PairwiseMatrix` over all (layer, head) pairs, labelled ``"L3H7"``, with
    ``values[i, j]`` the mean (or sum) over real query tokens of the Jensen-Shannon distance (or
    divergence) between the two heads' attention rows.
    """
    vs, _ = views(
        attn, attention_mask=attention_mask, query_mask=query_mask, layers=layers, stack=stack, kind=kind, item=item
    )
    dists, labels, heads = _stack_rows(vs)
    values = _pairwise(dists, measure, reduce, base)
    what = f"{reduce} Jensen-Shannon {measure} (base {base:g}) between heads"
    return PairwiseMatrix(values=values, labels=labels, measure=what, heads=heads)


def layer_similarity(
    attn: Any,
    *,
    method: str = "js",
    base: float = 2.0,
    item: int | None = None,
    attention_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
    layers: Any = None,
    stack: Any = ANY,
    kind: str = "self",
) -> PairwiseMatrix:
    """Layer-to-layer similarity of the head-averaged attention maps.

    ``method="js"``: ``1 -`` the mean (over real query rows) Jensen-Shannon distance between the
    two layers' head-averaged rows (1 identical, 0 disjoint). ``method="cosine"``: cosine
    similarity of the two head-averaged maps flattened over the real rows and keys.
    """
    vs, _ = views(
        attn, attention_mask=attention_mask, query_mask=query_mask, layers=layers, stack=stack, kind=kind, item=item
    )
    means = []
    for v in vs:
        w = torch.where(v.key_mask[:, None, None, :], v.weights, torch.zeros((), dtype=torch.float64))
        means.append(w.mean(dim=1, keepdim=True))
    pooled = [type(v)(**{**v.__dict__, "weights": m, "heads": [0]}) for v, m in zip(vs, means, strict=True)]
    dists, _, _ = _stack_rows(pooled)
    labels = [v.label or f"layer {i}" for i, v in enumerate(vs)]
    if method == "js":
        values = 1.0 - _pairwise(dists, "distance", "mean", base)
        values.fill_diagonal_(1.0)
        what = f"layer similarity: 1 - mean Jensen-Shannon distance (base {base:g}) of head-averaged attention"
    elif method == "cosine":
        flat = dists.reshape(dists.shape[0], -1)
        norm = flat.norm(dim=1, keepdim=True).clamp_min(1e-300)
        unit = flat / norm
        values = unit @ unit.T
        what = "layer similarity: cosine of head-averaged attention maps"
    else:
        raise ValueError(f"method must be 'js' or 'cosine', got {method!r}")
    return PairwiseMatrix(values=values, labels=labels, measure=what)


def cluster(
    distances: Any, labels: list[str] | None = None, *, method: str = "average", n_clusters: int | None = None
) -> HeadClusters:
    """Hierarchical (agglomerative) clustering of a symmetric distance matrix with scipy.

    ``method`` is scipy's linkage method (``average``, ``complete``, ``single``, ``ward``...).
    ``n_clusters`` also cuts the tree into that many flat clusters.
    """
    try:
        from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
        from scipy.spatial.distance import squareform
    except ImportError as exc:  # pragma: no cover - scipy is in the plots extra
        raise ImportError("head clustering needs scipy: pip install 'attn-plugins[plots]'") from exc
    import numpy as np

    if isinstance(distances, PairwiseMatrix):
        labels = labels or distances.labels
        distances = distances.values if "similarity" not in distances.measure else 1.0 - distances.values
    d = np.asarray(torch.as_tensor(distances, dtype=torch.float64).numpy(), dtype=float)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"distances must be a square matrix, got shape {d.shape}")
    n = d.shape[0]
    labels = list(labels) if labels is not None else [str(i) for i in range(n)]
    if not np.isfinite(d).all():
        raise ValueError("distances hold NaN or Inf (run attn_plugins.analysis.diagnostics.diagnose on the record)")
    if n < 2:
        return HeadClusters(
            linkage=np.zeros((0, 4)),
            order=list(range(n)),
            labels=labels,
            assignments=[1] * n if n_clusters else None,
            method=method,
        )
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0.0)
    z = linkage(squareform(np.clip(d, 0, None), checks=False), method=method)
    assignments = fcluster(z, t=n_clusters, criterion="maxclust").tolist() if n_clusters else None
    return HeadClusters(
        linkage=z, order=[int(i) for i in leaves_list(z)], labels=labels, assignments=assignments, method=method
    )


__all__ = ["HeadClusters", "PairwiseMatrix", "cluster", "head_distances", "layer_similarity"]
