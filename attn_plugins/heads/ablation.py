"""Head ablation under the model's own attention kernel.

    with ap.ablate(model, heads={0: [1, 3], "bert.encoder.layer.1.attention": "all"}):
        logits = model(**batch).logits

``mode="zero"`` removes the heads: their slice of the output projection's input is zero, exactly
what zeroing their attention probabilities gives (``probs_h @ V_h = 0``), so the result equals an
eager model with those heads' probabilities zeroed (as transformers' old ``head_mask`` did).

``mode="mean"`` replaces each chosen head's output (``probs_h @ V_h``, the head's slice before the
output projection) at every position by its mean over data: the per-head mean vector of
:func:`head_means` (mean over every non-padding token of the batches given), the "mean ablation" of
the interpretability literature. It keeps the head's average contribution (and so the scale of the
residual stream) while removing what it says about this input.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .hooks import head_transforms
from .units import HeadUnit, as_tensor_like, attention_units, chosen_units, select_heads

MODES = ("zero", "mean")


def call_model(model: nn.Module, batch: Any) -> Any:
    """``model(**batch)`` for a mapping, ``model(*batch)`` for a tuple or list, else ``model(batch)``."""
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def _token_weights(batch: Any, x: torch.Tensor) -> torch.Tensor | None:
    """Weights of the positions of ``x`` [b, n, width]: the batch's attention mask when it matches."""
    if not isinstance(batch, Mapping) or x.dim() != 3:
        return None
    for name in ("attention_mask", "decoder_attention_mask"):
        mask = batch.get(name)
        if isinstance(mask, torch.Tensor) and mask.dim() == 2 and tuple(mask.shape) == tuple(x.shape[:2]):
            return mask.to(x.dtype)
    return None


def head_means(
    model: nn.Module, batches: Iterable[Any], *, layers: Iterable[int | str] | None = None
) -> dict[str, torch.Tensor]:
    """The mean output of every head over ``batches`` (for ``ablate(..., mode="mean")``).

    Args:
        model: the model (run under ``torch.no_grad``, its own kernel).
        batches: an iterable of model inputs (dicts of tensors, tuples or tensors). Positions where
            the batch's ``attention_mask`` (or ``decoder_attention_mask``) of matching shape is 0 are
            left out of the mean.
        layers: the blocks to collect (indices or paths); default all.

    Returns:
        ``{block path: tensor [num_heads, head_dim]}``.
    """
    _, chosen = chosen_units(
        model,
        layers,
        unfused_reason="head_means cannot observe the fused projection of "
        "an nn.MultiheadAttention: pass means={path: tensor [num_heads, head_dim]} to ablate",
    )
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    current: dict[str, Any] = {}

    def make(unit: HeadUnit) -> Callable[[nn.Module, tuple[Any, ...]], None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0].detach()
            weights = _token_weights(current.get("batch"), x)
            flat = x.reshape(-1, x.shape[-1]).double()
            w = (
                weights.reshape(-1).double()
                if weights is not None
                else torch.ones(flat.shape[0], dtype=torch.float64, device=flat.device)
            )
            sums[unit.name] = sums.get(unit.name, 0) + (flat * w[:, None]).sum(0)
            counts[unit.name] = counts.get(unit.name, 0) + w.sum()

        return hook

    handles = []
    try:
        for unit in chosen:
            handles.append(unit.proj.register_forward_pre_hook(make(unit)))
        with torch.no_grad():
            for batch in batches:
                current["batch"] = batch
                call_model(model, batch)
    finally:
        current.clear()
        for handle in handles:
            handle.remove()
    if not sums:
        raise InputError("head_means got no batches (or the model never ran its attention)")
    return {
        u.name: (sums[u.name] / counts[u.name]).reshape(u.num_heads, u.head_dim).float()
        for u in chosen
        if u.name in sums
    }


def _mean_of(unit: HeadUnit, means: Mapping[Any, Any] | None) -> torch.Tensor:
    if not isinstance(means, Mapping):
        raise InputError("mode='mean' needs means={block: tensor [num_heads, head_dim]} (see head_means)")
    for key in (unit.name, unit.index):
        if key in means:
            value = as_tensor_like(means[key], unit.proj)
            if tuple(value.shape) != (unit.num_heads, unit.head_dim):
                raise InputError(
                    f"means[{key!r}] has shape {tuple(value.shape)}, expected ({unit.num_heads}, {unit.head_dim})"
                )
            return value
    raise InputError(f"means has no entry for block {unit.index} ({unit.name!r})")


@contextlib.contextmanager
def ablate(
    model: nn.Module, heads: Mapping[Any, Any], mode: str = "zero", *, means: Mapping[Any, Any] | None = None
) -> Iterator[dict[str, list[int]]]:
    """Remove (``"zero"``) or mean-replace (``"mean"``) chosen heads while inside the ``with`` block.

    The model keeps its own attention kernel (eager, sdpa, flex, flash); only the input of each
    block's output projection is edited (see :mod:`attn_plugins.heads.hooks`). Hooks and
    parametrizations are removed on exit, also when the block raises.

    Args:
        model: a transformers model or any module holding ``nn.MultiheadAttention``.
        heads: ``{layer: [h, ...]}``; a layer is the block's index in
            :func:`attn_plugins.heads.attention_units` order or its module path; heads are a list,
            an int, or ``"all"``.
        mode: ``"zero"`` or ``"mean"``.
        means: for ``"mean"``: ``{block path or index: [num_heads, head_dim]}``, e.g. from
            :func:`head_means` on reference data.

    Returns:
        A context manager yielding ``{block path: [heads removed]}``.

    Raises:
        InputError: unknown layer, head out of range, unknown mode, missing means.
    """
    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}")
    units = attention_units(model)
    chosen = select_heads(units, heads)
    transforms: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for index, hs in chosen.items():
        unit = units[index]
        scale = torch.ones(unit.num_heads, dtype=unit.weight.dtype, device=unit.weight.device)
        scale[hs] = 0
        shift = None
        if mode == "mean":
            mean = _mean_of(unit, means)
            shift = torch.zeros_like(mean)
            shift[hs] = mean[hs]
        transforms[index] = (scale, shift)
    with head_transforms(units, transforms):
        yield {units[i].name: hs for i, hs in chosen.items()}
