"""The independent reference of the head tests: an eager attention written here, from the formula.

``softmax(q k^T * scaling + position_bias + mask) @ v`` per head (key/value heads repeated for
grouped-query attention), installed in place of a transformers modeling file's
``eager_attention_forward`` for a model loaded with ``attn_implementation="eager"``. It edits the
probabilities themselves (zero a head, gate a head, mask query->key edges) or replaces a head's
``probs @ v`` by a given vector: the definitions the head tools must equal, computed where they are
defined rather than where the tools act (the output projection's input, or the kernel's mask).
"""

from __future__ import annotations

import contextlib
import sys

import torch


class Edits:
    """Per attention module (the one transformers passes to the kernel): what to do to its heads."""

    def __init__(self) -> None:
        self.zero: dict[int, list[int]] = {}  # id(module) -> heads whose probabilities are zeroed
        self.gate: dict[int, torch.Tensor] = {}  # id(module) -> [H] factors on the probabilities
        self.mean: dict[int, dict[int, torch.Tensor]] = {}  # id(module) -> {head: vector replacing probs@v}
        self.block: dict[int, list[tuple[int, int]]] = {}  # id(module) -> (query, key) edges masked out


def reference_attention(edits: Edits):
    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, position_bias=None, **kwargs):
        groups = query.shape[1] // key.shape[1]
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
        scale = query.size(-1) ** -0.5 if scaling is None else scaling
        scores = torch.matmul(query, key.transpose(-1, -2)) * scale
        if position_bias is not None:
            scores = scores + position_bias
        if attention_mask is not None:
            scores = scores + attention_mask[..., : key.shape[-2]]
        for q, k in edits.block.get(id(module), []):
            scores[:, :, q, k] = float("-inf")
        probs = torch.softmax(scores if scores.dtype == torch.float64 else scores.float(), dim=-1).to(query.dtype)
        factors = torch.ones(probs.shape[1], dtype=probs.dtype)
        if id(module) in edits.gate:
            factors = edits.gate[id(module)].to(probs.dtype)
        for h in edits.zero.get(id(module), []):
            factors = factors.clone()
            factors[h] = 0
        probs = probs * factors.view(1, -1, 1, 1)
        out = torch.matmul(probs, value)
        for h, vector in edits.mean.get(id(module), {}).items():
            out = out.clone()
            out[:, h] = vector.to(out.dtype)
        return out.transpose(1, 2).contiguous(), probs

    return attention


@contextlib.contextmanager
def eager_reference(model, edits: Edits):
    """Every modeling file of ``model``'s attention modules runs :func:`reference_attention`."""
    modules = {
        sys.modules[type(m).__module__]
        for m in model.modules()
        if hasattr(sys.modules[type(m).__module__], "eager_attention_forward")
    }
    saved = {mod: mod.eager_attention_forward for mod in modules}
    try:
        for mod in modules:
            mod.eager_attention_forward = reference_attention(edits)
        yield
    finally:
        for mod, fn in saved.items():
            mod.eager_attention_forward = fn


def output_of(out, batch=None) -> torch.Tensor:
    """The model's main output at real (non-padding) positions: padding rows differ between kernels
    (a fully masked query row is undefined) and are no one's prediction."""
    value = next((getattr(out, n) for n in ("logits", "last_hidden_state") if getattr(out, n, None) is not None), None)
    value = out[0] if value is None else value
    for name in ("decoder_attention_mask", "attention_mask"):
        mask = (batch or {}).get(name)
        if mask is not None and value.dim() == 3 and tuple(mask.shape) == tuple(value.shape[:2]):
            return value[mask.bool()]
    return value
