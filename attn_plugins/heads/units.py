"""Where each attention block's heads meet: the output projection that mixes the concatenated heads.

Every multi-head attention ends in ``out = concat(head_1, ..., head_H) @ W_o + b``. Head ``h`` owns
the slice ``[h * d, (h + 1) * d)`` of that projection's input, and its output there is
``probs_h @ V_h``: zeroing head ``h``'s probabilities makes that slice exactly zero. So the input of
the output projection is the one place where a head can be removed, replaced or gated whatever
kernel (eager, sdpa, flex, flash) computed it, without re-implementing attention.

A *unit* is one attention block: the module whose children hold the query projection (``q_proj``,
``query``, ``c_attn``...; directly or in a child named ``self``, as BERT) and the output projection
(``o_proj``, ``out_proj``, ``c_proj``, ``o``, ``dense``, or BERT's ``output.dense``), or a plain
``torch.nn.MultiheadAttention``. Units are numbered in module registration order (an encoder-decoder:
encoder self-attention, then per decoder layer its self- and cross-attention).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InputError, NoAttentionError

QUERY_NAMES = ("q_proj", "query", "q", "c_attn", "q_attn", "qkv_proj", "qkv", "Wqkv", "query_key_value", "q_lin")
OUTPUT_NAMES = ("o_proj", "out_proj", "c_proj", "o", "dense", "out_lin", "proj")
HEAD_COUNT_NAMES = ("num_heads", "num_attention_heads", "n_heads", "n_head")


@dataclass(frozen=True)
class HeadUnit:
    """One attention block: ``name`` (module path), ``module`` (the block), ``core`` (the module that
    calls the attention kernel), ``proj`` (the output projection), ``num_heads`` and ``head_dim``
    (the width of one head's slice of ``proj``'s input)."""

    index: int
    name: str
    module: nn.Module
    core: nn.Module
    proj: nn.Module
    num_heads: int
    head_dim: int

    @property
    def weight(self) -> torch.Tensor:
        """The output projection's weight (the gates and shifts take its dtype and device)."""
        weight = getattr(self.proj, "weight", None)
        if not isinstance(weight, torch.Tensor):
            raise NoAttentionError(f"{self.name}: the output projection {type(self.proj).__name__} has no weight")
        return weight

    @property
    def fused(self) -> bool:
        """``nn.MultiheadAttention``: its projection runs inside one fused call (no module call to hook)."""
        return isinstance(self.module, nn.MultiheadAttention)


def _has_query(module: nn.Module) -> bool:
    children = dict(module.named_children())
    return any(name in children for name in QUERY_NAMES)


def _core_of(module: nn.Module) -> nn.Module | None:
    if _has_query(module):
        return module
    inner = getattr(module, "self", None)
    if isinstance(inner, nn.Module) and _has_query(inner):
        return inner
    return None


def _proj_of(module: nn.Module) -> nn.Module | None:
    children = dict(module.named_children())
    for name in OUTPUT_NAMES:
        if isinstance(children.get(name), nn.Module):
            return children[name]
    output = children.get("output")
    dense = getattr(output, "dense", None) if isinstance(output, nn.Module) else None
    return dense if isinstance(dense, nn.Module) else None


def proj_width(proj: nn.Module) -> int:
    """The input width of an output projection (``nn.Linear`` or GPT-2's transposed ``Conv1D``)."""
    if isinstance(proj, nn.Linear):
        return proj.in_features
    weight = getattr(proj, "weight", None)
    if type(proj).__name__ == "Conv1D" and weight is not None:
        return int(weight.shape[0])
    if weight is not None and weight.dim() == 2:
        return int(weight.shape[1])
    raise NoAttentionError(f"cannot tell the input width of the output projection {type(proj).__name__}")


def _head_count(module: nn.Module, core: nn.Module) -> int | None:
    for obj in (core, module):
        for name in HEAD_COUNT_NAMES:
            value = getattr(obj, name, None)
            if isinstance(value, int) and value > 0:
                return value
    for obj in (core, module):
        config = getattr(obj, "config", None)
        value = getattr(config, "num_attention_heads", None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def attention_units(model: nn.Module) -> list[HeadUnit]:
    """Every attention block of ``model`` in registration order (see the module docstring).

    Raises:
        NoAttentionError: no block with a findable output projection and head count.
    """
    units: list[HeadUnit] = []
    taken: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(t + ".") for t in taken):
            continue
        if isinstance(module, nn.MultiheadAttention):
            units.append(
                HeadUnit(
                    len(units),
                    name,
                    module,
                    module,
                    module.out_proj,
                    module.num_heads,
                    module.embed_dim // module.num_heads,
                )
            )
            taken.append(name)
            continue
        core = _core_of(module)
        proj = _proj_of(module) if core is not None else None
        if core is None or proj is None:
            continue
        heads = _head_count(module, core)
        width = proj_width(proj)
        if heads is None or width % heads:
            continue
        units.append(HeadUnit(len(units), name, module, core, proj, heads, width // heads))
        taken.append(name)
    if not units:
        raise NoAttentionError(
            f"{type(model).__name__} has no attention block with a recognisable output "
            f"projection ({', '.join(OUTPUT_NAMES)}) and query projection"
        )
    return units


def find_unit(units: list[HeadUnit], key: int | str) -> HeadUnit:
    """The unit named by ``key``: its index, its module path, or the path of a module inside it
    (e.g. the ``...attention.self`` path a capture record names)."""
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise InputError(f"a layer is an int index or a module path, got {key!r}")
    if isinstance(key, int):
        if not -len(units) <= key < len(units):
            raise InputError(f"layer {key} is out of range: the model has {len(units)} attention blocks")
        return units[key]
    for unit in units:
        if key == unit.name or key.startswith(unit.name + "."):
            return unit
    raise InputError(f"no attention block named {key!r}; blocks: {[u.name for u in units]}")


def chosen_units(
    model: nn.Module, layers: Iterable[int | str] | None, *, unfused_reason: str | None = None
) -> tuple[list[HeadUnit], list[HeadUnit]]:
    """``(all units, the units named by layers or all)``; with ``unfused_reason``, fused
    ``nn.MultiheadAttention`` units are refused with that explanation."""
    units = attention_units(model)
    chosen = units if layers is None else [find_unit(units, key) for key in layers]
    fused = [u.name for u in chosen if u.fused]
    if fused and unfused_reason:
        raise InputError(f"{unfused_reason} (nn.MultiheadAttention blocks {fused})")
    return units, chosen


def select_heads(units: list[HeadUnit], heads: Mapping[Any, Any]) -> dict[int, list[int]]:
    """``{layer: [h, ...]}`` (layer: index or path; heads: an int, a list, or ``"all"``) checked and
    resolved to ``{unit index: sorted heads}``."""
    if not isinstance(heads, Mapping) or not heads:
        raise InputError("heads must be a non-empty dict {layer: [head, ...]}")
    out: dict[int, set[int]] = {}
    for key, chosen in heads.items():
        unit = find_unit(units, key)
        if isinstance(chosen, str) and chosen == "all":
            chosen = range(unit.num_heads)
        elif isinstance(chosen, int):
            chosen = [chosen]
        elif not isinstance(chosen, Iterable):
            raise InputError(f"heads of layer {key!r} must be a list of ints or 'all', got {chosen!r}")
        for h in chosen:
            if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h < unit.num_heads:
                raise InputError(f"head {h!r} of layer {key!r} is not in 0..{unit.num_heads - 1}")
            out.setdefault(unit.index, set()).add(int(h))
    return {k: sorted(v) for k, v in sorted(out.items())}


def all_heads(units: list[HeadUnit]) -> list[tuple[int, int]]:
    """Every ``(unit index, head)`` pair."""
    return [(u.index, h) for u in units for h in range(u.num_heads)]


def as_tensor_like(values: Any, proj: nn.Module) -> torch.Tensor:
    """``values`` as a tensor of the projection weight's dtype and device."""
    weight = getattr(proj, "weight", None)
    if not isinstance(weight, torch.Tensor):
        return torch.as_tensor(values)
    return torch.as_tensor(values, dtype=weight.dtype, device=weight.device)
