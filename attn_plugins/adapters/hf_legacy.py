"""Capture from transformers models that predate ``_can_record_outputs`` (BLOOM, Falcon, GPT-Neo, ...).

These models compute their weights only when asked with ``output_attentions=True``. During the
capture the model is asked for them (see :mod:`.hf_outputs`): every attention field of its output,
nested outputs included, becomes record layers in the model's own order and layout, and the user
gets the output without them, as their call would have returned it. How many layers there are is
read from the output, not guessed from config attribute names (Canine, Funnel, PVT, GLPN, FLAVA
keep their depth elsewhere or return more entries than ``num_hidden_layers``). A call that asked
for a tuple (``return_dict=False``) is run with ``return_dict=True`` and handed back as
``ModelOutput.to_tuple()``; in training mode the probabilities before dropout are stored.
"""

from __future__ import annotations

from .base import Session, Target
from .dropout_probe import watch_dropout
from .hf_kernel import owner_inputs
from .hf_outputs import OutputLayout, asks_output_attentions
from .hooks import remove_hooks


def _attention_modules(model) -> int:
    return sum(1 for m in model.modules() if type(m).__name__.endswith(("Attention", "SelfAttention")))


def legacy_targets(model) -> list[Target]:
    """Provisional targets (one per attention module) for a model asked for ``output_attentions``;
    the real ones come from its output, one per returned matrix."""
    if getattr(model, "config", None) is None or not asks_output_attentions(model):
        return []
    count = _attention_modules(model)
    return [Target(name=f"attentions[{i}]", stack=None, kind="self", owner=model, module=model) for i in range(count)]


class LegacyOutputs:
    """Hooks on the model itself: ask for ``output_attentions``, store every returned matrix."""

    def __init__(self, session: Session, model, targets: list[Target]) -> None:
        self.session = session
        self.model = model
        self.layout = OutputLayout(session, model)
        self.handles: list = []
        self._dropout = None

    def attach(self) -> None:
        self.handles.append(self.model.register_forward_pre_hook(self._begin, with_kwargs=True))
        self._dropout = watch_dropout(self.session)  # training mode: each layer's probabilities before dropout
        self.layout.attach()

    def detach(self) -> None:
        errors = remove_hooks(self.handles)
        try:
            self.layout.detach()
        except Exception as exc:  # noqa: BLE001 - the dropout wrapper is released all the same
            errors.append(exc)
        if self._dropout is not None:
            self._dropout.release(self.session)
            self._dropout = None
        if errors:
            raise errors[0]

    def _begin(self, module, args, kwargs) -> None:
        self.session.begin_pass(self.model, owner_inputs(args, kwargs))
