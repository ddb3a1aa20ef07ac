"""Capture from transformers models that predate ``_can_record_outputs`` (BLOOM, Falcon, GPT-Neo, ...).

These models compute their weights only when asked with ``output_attentions=True``. During the
capture a forward pre-hook on the model asks for them, the forward hook takes them from the
output and hands back an output without them, as the user's call would have returned. A call
that asked for a tuple (``return_dict=False``, or a config with ``return_dict=False``) is run
with ``return_dict=True`` (the fields have names then) and handed back as the tuple
``ModelOutput.to_tuple()`` gives, which is what the modeling file returns for ``return_dict=False``.
"""

from __future__ import annotations

import torch

from .base import Session, Target
from .dropout_probe import Probe, watch_dropout
from .hf_kernel import owner_inputs
from .hooks import remove_hooks

_GROUPS = (  # output field -> (stack, kind) for encoder-decoder models
    ("encoder_attentions", "encoder", "self"),
    ("decoder_attentions", "decoder", "self"),
    ("cross_attentions", "decoder", "cross"),
)


def _layer_count(config, *names) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 0


def legacy_targets(model) -> list[Target]:
    """One target per layer the model's ``output_attentions`` would return."""
    config = getattr(model, "config", None)
    if config is None or not _accepts_output_attentions(model):
        return []
    if getattr(config, "is_encoder_decoder", False):
        n_enc = _layer_count(config, "encoder_layers", "num_layers", "num_hidden_layers")
        n_dec = _layer_count(config, "decoder_layers", "num_decoder_layers", "num_layers", "num_hidden_layers")
        counts = {"encoder_attentions": n_enc, "decoder_attentions": n_dec, "cross_attentions": n_dec}
        return [Target(name=f"{field}[{i}]", stack=stack, kind=kind, owner=model, module=model)
                for field, stack, kind in _GROUPS for i in range(counts[field])]
    n = _layer_count(config, "num_hidden_layers", "n_layer", "num_layers", "n_layers")
    targets = [Target(name=f"attentions[{i}]", stack=None, kind="self", owner=model, module=model) for i in range(n)]
    if getattr(config, "add_cross_attention", False):
        targets += [Target(name=f"cross_attentions[{i}]", stack=None, kind="cross", owner=model, module=model)
                    for i in range(n)]
    return targets


def _accepts_output_attentions(model) -> bool:
    import inspect

    try:
        params = inspect.signature(type(model).forward).parameters
    except (TypeError, ValueError):
        return False
    return "output_attentions" in params


class LegacyOutputs:
    """Hooks on the model itself: request, collect and strip ``output_attentions``."""

    def __init__(self, session: Session, model, targets: list[Target]) -> None:
        self.session = session
        self.model = model
        self.by_field: dict[str, list[Target]] = {}
        for target in targets:
            self.by_field.setdefault(target.name.split("[")[0], []).append(target)
        self.handles: list = []
        self._added_flag = False
        self._wants_tuple = False
        self._probe = Probe(limit=None)  # training mode: each layer's probabilities before dropout
        self._dropout = None

    def attach(self) -> None:
        self.handles.append(self.model.register_forward_pre_hook(self._before, with_kwargs=True))
        self.handles.append(self.model.register_forward_hook(self._after))
        self._dropout = watch_dropout(self.session)

    def detach(self) -> None:
        errors = remove_hooks(self.handles)
        self._probe.__exit__()
        if self._dropout is not None:
            self._dropout.release(self.session)
            self._dropout = None
        if errors:
            raise errors[0]

    def _before(self, module, args, kwargs):
        self.session.begin_pass(self.model, owner_inputs(args, kwargs))
        if self.model.training:
            self._probe.__enter__()
        self._added_flag = not kwargs.get("output_attentions")
        if self._added_flag:
            kwargs = {**kwargs, "output_attentions": True}
        asked = kwargs.get("return_dict")
        config = getattr(self.model, "config", None)
        self._wants_tuple = asked is False or (asked is None and getattr(config, "return_dict", True) is False)
        if self._wants_tuple:
            kwargs = {**kwargs, "return_dict": True}
        return args, kwargs

    def _after(self, module, args, output):
        self._probe.__exit__()
        fields = {}
        for field, targets in self.by_field.items():
            value = _field(output, field)
            if value is None:
                continue
            fields[field] = value
            kept = self._probe.seen
            before_dropout = (module.training and len(self.by_field) == 1 and len(kept) == len(value)
                              and all(k.shape == v.shape for k, v in zip(kept, value)))
            for target, weights in zip(targets, kept if before_dropout else value):
                if not isinstance(weights, torch.Tensor):
                    continue
                call = self.session.begin_call(target, weights.shape[-2], weights.shape[-1])
                if call is not None:
                    self.session.emit(call, weights.detach())
        wants_tuple, self._wants_tuple = self._wants_tuple, False
        if not hasattr(output, "keys"):
            return None
        if self._added_flag and fields:
            # hand back what the user's call would have returned: the same output without attentions
            output = type(output)(**{k: v for k, v in output.items() if k not in fields})
        return output.to_tuple() if wants_tuple else output


def _field(output, field: str):
    if hasattr(output, "keys") and field in output.keys():
        return output[field]
    return None
