"""``nn.TransformerEncoderLayer``'s fast path: rebuild the ``self_attn`` call its slow path would make.

In eval mode under ``no_grad`` the layer (and ``nn.TransformerEncoder``, which then feeds its
layers nested tensors) computes attention in one fused kernel without calling
``self_attn.forward``. From the layer's input and masks, :func:`slow_path_call` gives the
arguments its slow path would hand to ``self_attn``, so the exact weights can be recomputed; with
nested tensors the padded positions do not exist, so their query rows are zeroed (``keep``) and
their key columns masked.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn
from torch.nn import functional


def slow_path_call(
    layer: nn.TransformerEncoderLayer, args: tuple, kwargs: dict, padded_length: int = 0
) -> tuple[dict, torch.Tensor | None] | None:
    """The ``self_attn`` call of ``layer(*args, **kwargs)`` on its slow path.

    Args:
        layer: the encoder layer (its class's own forward).
        args, kwargs: the layer's call.
        padded_length: the padded length of the encoder's input, when known (nested tensors drop it).

    Returns:
        ``(call, keep)``: ``self_attn``'s arguments by name and, for nested inputs, the ``[batch, len]``
        positions that exist; ``None`` when the call's arguments cannot be read.
    """
    try:
        bound = inspect.signature(nn.TransformerEncoderLayer.forward).bind(layer, *args, **kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    src = bound.arguments["src"]
    src_mask = bound.arguments["src_mask"]
    padding = bound.arguments["src_key_padding_mask"]
    keep = None
    if src.is_nested:  # nn.TransformerEncoder dropped the padding: rebuild it from the lengths
        lengths = torch.tensor([part.shape[0] for part in src.unbind()], device=src.device)
        length = max(padded_length, int(lengths.max()))
        src = src.to_padded_tensor(0.0, (lengths.numel(), length, layer.self_attn.embed_dim))
        keep = torch.arange(length, device=src.device)[None, :] < lengths[:, None]
        padding = ~keep
    # as TransformerEncoderLayer.forward hands them to self_attn on its slow path
    padding = functional._canonical_mask(
        mask=padding,
        mask_name="src_key_padding_mask",
        other_type=functional._none_or_dtype(src_mask),
        other_name="src_mask",
        target_type=src.dtype,
    )
    src_mask = functional._canonical_mask(
        mask=src_mask, mask_name="src_mask", other_type=None, other_name="", target_type=src.dtype, check_other=False
    )
    with torch.no_grad():
        x = layer.norm1(src) if layer.norm_first else src
    # the fused kernel applies src_mask and the padding, never the is_causal hint
    call = {
        "query": x,
        "key": x,
        "value": x,
        "key_padding_mask": padding,
        "need_weights": True,
        "attn_mask": src_mask,
        "average_attn_weights": False,
        "is_causal": False,
    }
    return call, keep


def padded_length(encoder: nn.TransformerEncoder, args: tuple) -> int | None:
    """The padded length of an ``nn.TransformerEncoder``'s input (before it turns it into nested tensors)."""
    src = args[0] if args else None
    if isinstance(src, torch.Tensor) and not src.is_nested and src.dim() == 3:
        first = encoder.layers[0]
        return src.shape[1] if first.self_attn.batch_first else src.shape[0]
    return None
