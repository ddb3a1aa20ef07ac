"""Inbound plugins: adapters that find a model's attention modules and feed a capture.

An adapter factory takes the capture session and returns an object with ``matches(model)``,
``find(model) -> list[Target]``, ``attach(model)`` and ``detach()``. Third parties add adapters
through the entry point group ``attn_plugins.adapters``.
"""

from __future__ import annotations

from ..registry import Registry

ADAPTERS = Registry("adapter", "attn_plugins.adapters")


def _huggingface(session):
    from .huggingface import HuggingFaceAdapter

    return HuggingFaceAdapter(session)


def _huggingface_matches(model) -> bool:
    from .huggingface import matches

    return matches(model)


_huggingface.matches = _huggingface_matches
_huggingface.priority = 10
ADAPTERS.register("huggingface", _huggingface)


def _torch(session):
    from .torch import TorchAdapter

    return TorchAdapter(session)


def _torch_matches(model) -> bool:
    from .torch import matches

    return matches(model)


_torch.matches = _torch_matches
_torch.priority = 90
ADAPTERS.register("torch", _torch)


def adapter_for(model, name: str | None = None):
    """The adapter factory for ``model``: the one named, or the matching one with the lowest ``priority``.

    Factories carry ``matches(model) -> bool`` and ``priority`` (lower is tried first; the generic
    plain-PyTorch adapter comes last) as attributes.
    """
    if name is not None:
        return ADAPTERS.get(name)
    factories = [ADAPTERS.get(candidate) for candidate in ADAPTERS.names()]
    factories.sort(key=lambda f: getattr(f, "priority", 50))
    for factory in factories:
        test = getattr(factory, "matches", None)
        if test is not None and test(model):
            return factory
    return None
