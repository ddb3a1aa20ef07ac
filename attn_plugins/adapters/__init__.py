"""Inbound plugins: adapters that find a model's attention modules and feed a capture.

An adapter is a class written against :mod:`attn_plugins.adapters.base` (the contract): it is
created with the capture session and has ``matches(model)``, ``priority`` (lower is tried first;
the generic plain-PyTorch adapter comes last), ``find``, ``attach`` and ``detach``. Third parties
add adapters through the entry point group ``attn_plugins.adapters``. Built-in adapters are
registered as lazy references, so importing ``attn_plugins`` imports none of their modules.
"""

from __future__ import annotations

from ..registry import Registry

ADAPTERS = Registry("adapter", "attn_plugins.adapters")

ADAPTERS.register("huggingface", "attn_plugins.adapters.huggingface:HuggingFaceAdapter")
ADAPTERS.register("allennlp", "attn_plugins.adapters.allennlp:AllenNLPAdapter")
ADAPTERS.register("torch", "attn_plugins.adapters.torch:TorchAdapter")


def adapter_for(model, name: str | None = None):
    """The adapter class for ``model``: the one named, or the matching one with the lowest ``priority``.

    Args:
        model: the model to capture.
        name: an adapter name from :data:`ADAPTERS`; ``None`` picks by ``matches(model)``.

    Returns:
        The adapter class (called with the session to make the adapter), or ``None`` when none matches.
    """
    if name is not None:
        return ADAPTERS.get(name)
    adapters = [ADAPTERS.get(candidate) for candidate in ADAPTERS.names()]
    adapters.sort(key=lambda a: getattr(a, "priority", 50))
    for adapter in adapters:
        test = getattr(adapter, "matches", None)
        if test is not None and test(model):
            return adapter
    return None
