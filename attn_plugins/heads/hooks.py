"""Per-head scale and shift applied at the input of each block's output projection.

``x_h -> scale_h * x_h + shift_h`` on head ``h``'s slice covers the three uses: removal
(``scale 0``), mean replacement (``scale 0``, ``shift`` the head's mean output) and the importance
gates (``scale`` a tensor that requires grad). For transformers blocks this is a forward pre-hook on
the projection module, so the attention itself runs in whatever kernel the model chose. A
``torch.nn.MultiheadAttention`` applies its projection inside one fused call, with no module call to
hook; there the same map is folded into the projection's parameters through
``torch.nn.utils.parametrize`` (``W diag(scale)`` and ``b + W shift``), which is the identical linear
map. Everything is removed in ``finally``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from .units import HeadUnit


class _ScaleColumns(nn.Module):
    def __init__(self, scale: torch.Tensor) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.scale.to(weight.dtype)


class _ShiftBias(nn.Module):
    def __init__(self, weight: torch.Tensor, shift: torch.Tensor) -> None:
        super().__init__()
        self.weight = weight
        self.shift = shift

    def forward(self, bias: torch.Tensor) -> torch.Tensor:
        return bias + self.weight @ self.shift.to(bias.dtype)


def _pre_hook(
    unit: HeadUnit, scale: torch.Tensor, shift: torch.Tensor | None
) -> Callable[[nn.Module, tuple[Any, ...]], tuple[Any, ...]]:
    heads, dim = unit.num_heads, unit.head_dim

    def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        split = x.reshape(*x.shape[:-1], heads, dim)
        out = split * scale.to(x.dtype).view(heads, 1)
        if shift is not None:
            out = out + shift.to(x.dtype)
        return (out.reshape(x.shape),) + tuple(args[1:])

    return hook


@contextlib.contextmanager
def head_transforms(
    units: list[HeadUnit], transforms: dict[int, tuple[torch.Tensor, torch.Tensor | None]]
) -> Iterator[None]:
    """While inside, unit ``i``'s head outputs become ``scale * x + shift`` for
    ``transforms[i] = (scale [H], shift [H, d] or None)``."""
    handles = []
    parametrized: list[tuple[nn.Module, str]] = []
    try:
        for index, (scale, shift) in transforms.items():
            unit = units[index]
            if not unit.fused:
                handles.append(unit.proj.register_forward_pre_hook(_pre_hook(unit, scale, shift)))
                continue
            proj = unit.proj
            weight = unit.weight
            if shift is not None:
                if proj.bias is None:
                    from ..errors import InputError

                    raise InputError(f"{unit.name}: mean replacement needs an output projection with a bias")
                parametrize.register_parametrization(proj, "bias", _ShiftBias(weight, shift.reshape(-1)))
                parametrized.append((proj, "bias"))
            full = scale.reshape(-1, 1).expand(unit.num_heads, unit.head_dim).reshape(-1)
            parametrize.register_parametrization(proj, "weight", _ScaleColumns(full))
            parametrized.append((proj, "weight"))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for proj, name in reversed(parametrized):
            parametrize.remove_parametrizations(proj, name, leave_parametrized=False)
