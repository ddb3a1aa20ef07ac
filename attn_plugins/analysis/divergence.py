"""The Jensen-Shannon divergence of the package: head distances, layer similarity, the evolution of
attention over generation steps and checkpoints, and the agreement of saliency methods all use it.

``JS(p, q) = H((p + q) / 2) - (H(p) + H(q)) / 2``, with ``0 log 0 = 0`` so distributions with
disjoint support are fine; in base 2 it lies in ``[0, 1]``.
"""

from __future__ import annotations

import math

import torch


def js_divergence_rows(p: torch.Tensor, q: torch.Tensor, base: float = 2.0) -> torch.Tensor:
    """Jensen-Shannon divergence between distributions along the last dimension (broadcasting).

    Args:
        p, q: distributions (each row sums to 1) of broadcastable shapes; computed in float64.
        base: the logarithm's base (2: the divergence lies in ``[0, 1]``).

    Returns:
        float64 tensor of the broadcast shape without the last dimension.
    """
    p = p.to(torch.float64)
    q = q.to(torch.float64)
    m = (p + q) / 2

    def h(x: torch.Tensor) -> torch.Tensor:
        safe = torch.where(x > 0, x, torch.ones((), dtype=x.dtype))
        return -(torch.where(x > 0, x * torch.log(safe), torch.zeros((), dtype=x.dtype))).sum(dim=-1)

    js = h(m) - (h(p) + h(q)) / 2
    return torch.clamp(js, min=0.0) / math.log(base)
