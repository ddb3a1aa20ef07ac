"""Capture from attention modules that call ``torch.nn.functional.scaled_dot_product_attention`` directly.

Some transformers modeling files (Falcon, Data2Vec-Vision, BEiT-style Sdpa classes) neither route
through ``AttentionInterface`` nor return weights. While a capture watches such modules, the
torch function is wrapped: the original still computes every output, and for calls made inside a
watched module the probabilities are recomputed from the same query, key, mask, ``is_causal`` and
``scale``. Calls from anywhere else pass straight through.
"""

from __future__ import annotations

import threading

import torch

from .base import Session, Target
from .hf_kernel import TargetHandler, owner_inputs
from .hf_outputs import MERGED_HEADS_KEY
from .hooks import remove_hooks
from .scope import attribute_patch
from .source import forward_mentions

_CURRENT = threading.local()  # the watched module running in this thread (a stack, for nesting)


def calls_sdpa_directly(module: torch.nn.Module) -> bool:
    return _calls_sdpa(type(module).forward)


def _calls_sdpa(forward) -> bool:
    return forward_mentions(forward, ("scaled_dot_product_attention(",))


def direct_sdpa_targets(model, stack_of) -> list[Target]:
    """Innermost modules whose forward calls sdpa itself, in registration order."""
    found = []
    for name, module in model.named_modules():
        if not name or not calls_sdpa_directly(module):
            continue
        if any(calls_sdpa_directly(child) for child in module.modules() if child is not module):
            continue
        kind = "cross" if any(part in name for part in ("cross", "encoder_attn")) else "self"
        found.append(Target(name=name, stack=stack_of(module), kind=kind, owner=model, module=module))
    return found


def merges_batch_and_heads(module: torch.nn.Module) -> bool:
    """Whether the module's eager twin (the base class whose forward computes the weights itself)
    returns them as ``[batch*heads, q, k]``, as SAM's windowed vision attention does: read from its
    own code, which folds the heads into the batch before the matmul."""
    for cls in type(module).__mro__[1:]:
        forward = cls.__dict__.get("forward")
        if forward is None:
            continue
        if _calls_sdpa(forward):
            continue
        return forward_mentions(forward, _MERGED_MARKERS)
    return False


_MERGED_MARKERS = ("batch_size * self.num_attention_heads", "batch_size * self.num_heads")


def _make_wrapper(original, _patch):
    """The torch function wrapper: closes over ``original``, so a call that fetched it just before the
    last capture uninstalled it still works."""

    def scaled_dot_product_attention(
        query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False, **kwargs
    ):
        output = original(
            query,
            key,
            value,
            attn_mask=attn_mask,
            dropout_p=dropout_p,
            is_causal=is_causal,
            scale=scale,
            enable_gqa=enable_gqa,
            **kwargs,
        )
        stack = getattr(_CURRENT, "stack", None)  # only hooks of a capture active in this thread push here
        if stack:
            stack[-1].on_sdpa(query, key, attn_mask, is_causal, scale)
        return output

    scaled_dot_product_attention.__wrapped__ = original
    return scaled_dot_product_attention


class _Handler:
    """Marks the watched module as running; its sdpa calls go to the HF adapter's kernel-call handler."""

    def __init__(self, session: Session, target: Target, layout=None) -> None:
        self.target = target
        self.session = session
        self.layout = layout  # hf_outputs.OutputLayout of the outer model, when it is asked for attentions
        self.core = TargetHandler(session, target, output_index=1, layout=layout)
        self.merged = merges_batch_and_heads(target.module)

    def before(self, module, args) -> None:
        self.core.before(module, args)
        if not hasattr(_CURRENT, "stack"):
            _CURRENT.stack = []
        _CURRENT.stack.append(self)

    def after(self, module, args, output) -> None:
        if getattr(_CURRENT, "stack", None) and _CURRENT.stack[-1] is self:
            _CURRENT.stack.pop()
        if self.core.seen_kernel_call:
            call, pending = self.core.call, list(self.core.pending)
            self.core.after(module, args, output)
            return self._hand_back(output, call, pending)
        else:
            self.core.release()
            self.session.warn_once(
                f"attention module {self.target.name!r} ran without calling "
                "scaled_dot_product_attention; this call was not captured"
            )

    def _hand_back(self, output, call, pending):
        """While the capture asks the model for its attentions, the module's ``None`` weights become
        the captured block in its eager twin's shape (``[batch*heads, q, k]`` for SAM's vision
        attention), so that the model's own recording places it under its own field
        (``vision_attentions``) and ``as_hf_outputs()`` mirrors it."""
        if (
            self.layout is None
            or not self.layout.asking
            or call is None
            or call.heads is not None
            or not pending
            or not isinstance(output, tuple)
            or len(output) < 2
            or output[1] is not None
        ):
            return None
        weights = pending[-1][0]
        if self.merged:
            weights = weights.flatten(0, 1)
            self.layout.note(weights, call, shape=list(weights.shape))
        return (output[0], weights, *output[2:])

    def on_sdpa(self, query, key, attn_mask, is_causal, scale) -> None:
        self.core.on_kernel_call(
            self.target.module,
            query.detach(),
            key.detach(),
            None,
            attn_mask,
            {"scaling": scale, "is_causal": bool(is_causal)},
            "sdpa",
        )


def _note_merged(record, names: list[str]) -> None:
    """Layers whose eager twin returns ``[batch*heads, q, k]``: ``as_hf_outputs()`` gives that shape."""
    held = [layer.name for layer in record.layers if layer.name in names]
    if held:
        record.metadata[MERGED_HEADS_KEY] = held


class SdpaInterception:
    """Hooks on the watched modules plus the (reference-counted) torch function wrapper."""

    def __init__(self, session: Session, model, targets: list[Target]) -> None:
        self.session = session
        self.layout = None  # set by the HF adapter before attach(): blocks are handed back to the model
        self.targets = targets
        self.handles: list = []
        self.handlers: list[_Handler] = []
        self.patch = None

    def attach(self) -> None:
        session = self.session
        owners = []
        for target in self.targets:
            if all(target.owner is not o for o in owners):
                owners.append(target.owner)
        for owner in owners:
            self.handles.append(
                owner.register_forward_pre_hook(
                    lambda module, args, kwargs, owner=owner: session.begin_pass(owner, owner_inputs(args, kwargs)),
                    with_kwargs=True,
                )
            )
        for target in self.targets:
            handler = _Handler(self.session, target, self.layout)
            self.handlers.append(handler)
            self.handles.append(target.module.register_forward_pre_hook(handler.before))
            # first: transformers' recording hook (installed before, if the model was asked already) sees the block
            self.handles.append(target.module.register_forward_hook(handler.after, prepend=True))
        self.patch = attribute_patch(torch.nn.functional, "scaled_dot_product_attention", session, _make_wrapper)
        merged = [h.target.name for h in self.handlers if h.merged]
        if merged:
            session.add_finisher(lambda segment, record: _note_merged(record, merged))

    def detach(self) -> None:
        errors = remove_hooks(self.handles)
        if self.patch is not None:
            self.patch.release(self.session)
            self.patch = None
        stack = getattr(_CURRENT, "stack", None)
        if stack:  # a forward interrupted by an exception: drop this capture's entries (this thread's only)
            stack[:] = [h for h in stack if h not in self.handlers]
        for handler in self.handlers:
            handler.core.release()
        self.handlers.clear()
        if errors:
            raise errors[0]
