"""Inbound plugins: adapters that find a model's attention modules and feed a capture.

An adapter factory takes the capture session and returns an object with ``find(model) ->
list[Target]``, ``attach(model)`` and ``detach()``. The factory carries ``matches(model) -> bool``
and ``priority`` (lower is tried first; the generic plain-PyTorch adapter comes last). Third
parties add adapters through the entry point group ``attn_plugins.adapters``.
"""

from __future__ import annotations

from importlib import import_module

from ..registry import Registry

ADAPTERS = Registry("adapter", "attn_plugins.adapters")


def _lazy_adapter(module: str, cls: str, priority: int):
    """A factory that imports its adapter module (and its framework) only when used."""

    def factory(session):
        return getattr(import_module(module, __name__), cls)(session)

    def matches(model) -> bool:
        return import_module(module, __name__).matches(model)

    factory.matches = matches
    factory.priority = priority
    return factory


ADAPTERS.register("huggingface", _lazy_adapter(".huggingface", "HuggingFaceAdapter", 10))
ADAPTERS.register("allennlp", _lazy_adapter(".allennlp", "AllenNLPAdapter", 20))
ADAPTERS.register("torch", _lazy_adapter(".torch", "TorchAdapter", 90))


def adapter_for(model, name: str | None = None):
    """The adapter factory for ``model``: the one named, or the matching one with the lowest ``priority``."""
    if name is not None:
        return ADAPTERS.get(name)
    factories = [ADAPTERS.get(candidate) for candidate in ADAPTERS.names()]
    factories.sort(key=lambda f: getattr(f, "priority", 50))
    for factory in factories:
        test = getattr(factory, "matches", None)
        if test is not None and test(model):
            return factory
    return None
