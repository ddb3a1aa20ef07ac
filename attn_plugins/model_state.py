"""Everything a capture may touch on a model, saved on entry and restored on exit."""

from __future__ import annotations

import torch


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
    """Training flags, ``requires_grad``, attention implementations and the instance's ``generate``."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.training = [(m, m.training) for m in model.modules()]
        self.requires_grad = [(p, p.requires_grad) for p in model.parameters()]
        self.configs = [(c, c._attn_implementation_internal) for c in attn_configs(model)]
        self.had_generate = "generate" in vars(model)

    def restore(self, model: torch.nn.Module) -> None:
        for config, impl in self.configs:
            config._attn_implementation_internal = impl
        for module, mode in self.training:
            module.training = mode
        for param, flag in self.requires_grad:
            if param.requires_grad != flag:
                param.requires_grad_(flag)
        if not self.had_generate:
            vars(model).pop("generate", None)
