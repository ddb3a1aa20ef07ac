"""What a capture changes on a model, and putting back exactly that on exit.

A capture changes as little as it can: the instance's ``generate`` (a wrapper that guards memory
and marks generation steps) and, for modules attn-plugins cannot mirror, the attention
implementation of their configs. Each change is a :class:`~attn_plugins.adapters.scope.SharedPatch`,
shared by every capture of the same model (in other threads) and undone by the last one to leave,
and only if it is still in place: a ``model.train()``, ``requires_grad_(False)`` or a new
``model.generate`` the user sets inside the block is theirs and stays.
"""

from __future__ import annotations

import torch

from .adapters.scope import SharedPatch, attribute_patch


def attn_configs(model: torch.nn.Module) -> list:
    """Every distinct config (and sub-config) reachable from ``model`` that names an attention implementation."""
    found: dict[int, object] = {}

    def add(config) -> None:
        if config is None or not hasattr(config, "_attn_implementation_internal") or id(config) in found:
            return
        found[id(config)] = config
        for key in getattr(config, "sub_configs", None) or {}:
            add(getattr(config, key, None))

    for module in model.modules():
        add(getattr(module, "config", None))
    return list(found.values())


class ModelState:
    """The changes one capture made (shared patches), released on :meth:`restore`."""

    def __init__(self, session) -> None:
        self.session = session
        self.patches: list[SharedPatch] = []

    def patch(self, obj, name: str, replacement, *, instance: bool = False) -> SharedPatch:
        """Replace ``obj.name`` for the capture (``replacement(original, patch)`` builds the new value
        once for all captures sharing it)."""
        patch = attribute_patch(obj, name, self.session, replacement, instance=instance)
        self.patches.append(patch)
        return patch

    def restore(self) -> None:
        """Put back what this capture changed (the last capture sharing a change undoes it)."""
        while self.patches:
            self.patches.pop().release(self.session)
