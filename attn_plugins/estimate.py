"""How much attention a forward or a ``generate()`` call will produce, from its inputs' shapes.

Gives ``(layers, heads, batch, queries, keys)`` groups for the selected layers whose lengths can be
read from the inputs (token ids, masks, embeddings; decoder ids for encoder-decoder models). Layers
whose lengths cannot be known in advance (image patches, audio frames, composite models) are left
out; the collector still counts their blocks as they arrive.
"""

from __future__ import annotations

import torch

_HEAD_ATTRS = ("num_heads", "num_attention_heads", "n_heads", "n_head", "heads")
_CONFIG_HEADS = ("num_attention_heads", "n_head", "num_heads", "encoder_attention_heads")


def _heads_of(target, model, selected: list[int] | None) -> int | None:
    if selected is not None:
        return len(selected)
    module = target.module
    for attr in _HEAD_ATTRS:
        value = getattr(module, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    stack_attr = {"decoder": "decoder_attention_heads", "encoder": "encoder_attention_heads"}.get(target.stack)
    for config in (getattr(module, "config", None), getattr(model, "config", None)):
        if config is None:
            continue
        for attr in ((stack_attr,) if stack_attr else ()) + _CONFIG_HEADS:
            value = getattr(config, attr, None)
            if isinstance(value, int) and value > 0:
                return value
    return None


def _lengths(args, kwargs) -> dict[str, int]:
    out: dict[str, int] = {}

    def shape_of(value, embeds: bool = False):
        if isinstance(value, torch.Tensor) and value.dim() >= (3 if embeds else 2):
            return value.shape[0], value.shape[1]
        return None

    source = None
    for name, embeds in (("input_ids", False), ("inputs_embeds", True), ("attention_mask", False)):
        source = source or shape_of(kwargs.get(name), embeds)
    if source is None and args and isinstance(args[0], torch.Tensor) and not args[0].is_floating_point():
        source = shape_of(args[0])
    if source is not None:
        out["batch"], out["source"] = source
    target = None
    for name, embeds in (("decoder_input_ids", False), ("decoder_inputs_embeds", True), ("labels", False)):
        target = target or shape_of(kwargs.get(name), embeds)
    if target is not None:
        out.setdefault("batch", target[0])
        out["target"] = target[1]
    return out


def _config_layer_count(model) -> int:
    config = getattr(model, "config", None)
    for attr in ("num_hidden_layers", "num_layers", "n_layer"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            return value
    return 0


def layer_calls(model, targets) -> dict[tuple, list]:
    """Per ``(stack, kind)``, the module that runs as each layer index, in order (ALBERT's one
    shared module repeated as many times as the config has layers)."""
    groups: dict[tuple, list] = {}
    for target in targets:
        groups.setdefault((target.stack, target.kind), []).append(target)
    num_config = _config_layer_count(model)
    for members in groups.values():
        if num_config and len(members) < num_config and len({id(t.module) for t in members}) == 1:
            members.extend([members[0]] * (num_config - len(members)))
    return groups


def planned_shapes(
    model, targets, layer_filter, heads, args, kwargs, new_tokens: int = 0, beams: int = 1
) -> list[tuple]:
    """``[(layers, heads, batch, q, k), ...]`` for the selected layers whose lengths are known.

    With beam search (``beams`` > 1) every decoder step runs on ``batch * beams`` rows, all of which
    are kept until the returned sequences are known; the encoder runs once per input."""
    lengths = _lengths(args, kwargs)
    if "batch" not in lengths:
        return []
    batch = lengths["batch"]
    encoder_decoder = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
    src = lengths.get("source")
    if encoder_decoder:
        tgt = (new_tokens + 1) if new_tokens else lengths.get("target")
    else:
        src = None if src is None else src + new_tokens
        tgt = None
    counts: dict[tuple, int] = {}
    for (stack, kind), calls in layer_calls(model, targets).items():
        for index, target in enumerate(calls):
            if not layer_filter(target, index):
                continue
            if stack in (None, "encoder") and kind == "self":
                q = k = src
            elif stack == "decoder" and kind == "self":
                q = k = tgt
            elif stack == "decoder" and kind == "cross":
                q, k = tgt, src
            else:
                continue  # a vision tower, an unknown stack: counted as it runs
            h = _heads_of(target, model, heads)
            if q is None or k is None or h is None:
                continue
            rows = batch if stack == "encoder" else batch * beams
            counts[(h, rows, q, k)] = counts.get((h, rows, q, k), 0) + 1
    return [(layers, h, b, q, k) for (h, b, q, k), layers in counts.items()]
