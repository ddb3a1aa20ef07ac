"""What the Hugging Face adapter, the sdpa interception and the legacy path share.

:class:`TargetHandler` turns one call of a transformers attention module into a captured block:
from the weights the module returned (eager), or recomputed from the query, key and mask the
kernel received (sdpa, flex, flash), falling back to the modeling file's own eager function for
calls the recompute cannot mirror. :func:`owner_inputs` reads a pass's token ids and mask.
"""

from __future__ import annotations

import sys

import torch

from ..errors import CaptureError
from .base import Session, Target
from .dropout_probe import Probe
from .hf_outputs import is_probability
from .recompute import NEUTRAL_KWARGS, UnsupportedAttentionCallError, attention_probs, own_precision
from .source import forward_mentions

_INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def is_hf_model(module) -> bool:
    """Whether ``module`` is a transformers ``PreTrainedModel`` (checked without importing transformers)."""
    return any(
        cls.__module__.startswith("transformers.") and cls.__name__ == "PreTrainedModel" for cls in type(module).__mro__
    )


def owner_inputs(args, kwargs) -> dict:
    """The token ids, attention mask and token types a transformers model's forward was called with."""
    inputs = {name: kwargs[name] for name in _INPUT_NAMES if isinstance(kwargs.get(name), torch.Tensor)}
    if "input_ids" not in inputs and args and isinstance(args[0], torch.Tensor) and not args[0].is_floating_point():
        inputs["input_ids"] = args[0]
    return {k: v.detach() for k, v in inputs.items()}


def head_count(module) -> int | None:
    """The head count an attention module declares (``num_attention_heads``, ``num_heads``, ...)."""
    for name in ("num_attention_heads", "num_heads", "n_heads", "n_head"):
        value = getattr(module, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class TargetHandler:
    """One watched attention module: its hooks and the kernel calls made inside it.

    Args:
        session: the capture session.
        target: the module.
        output_index: where the module's output tuple holds its weights (eager models).
    """

    def __init__(self, session: Session, target: Target, output_index: int, layout=None) -> None:
        self.session = session
        self.target = target
        self.output_index = output_index
        self.layout = layout  # hf_outputs.OutputLayout: notes where the model puts each block
        self.seen_kernel_call = False
        self.call = None
        self.pending: list[tuple] = []
        self.probe = Probe()  # training mode: the probabilities before the module's dropout

    # forward pre-hook of the target module
    def before(self, module, args) -> None:
        self.seen_kernel_call = False
        self.call = None
        self.pending = []
        if module.training:
            self.probe.__enter__()

    def release(self) -> None:
        """Forget a probe left open by a forward that raised (its forward hook never ran)."""
        self.probe.__exit__()
        self.call = None
        self.pending = []

    # forward hook of the target module: emits the block the module returns (a container module
    # that runs several attention blocks returns the last one's weights), or reads eager weights
    def after(self, module, args, output) -> None:
        self.probe.__exit__()
        returned = None
        if isinstance(output, (tuple, list)) and len(output) > abs(self.output_index):
            returned = output[self.output_index]
        if self.seen_kernel_call:
            if self.call is None or not self.pending:
                return
            chosen = next((p for p in self.pending if p[0] is returned), self.pending[-1])
            probs, query, key = chosen
            kept = self.session.keep_queries_keys
            self.session.emit(
                self.call, probs, queries=query if kept else None, keys=key if kept else None, heads_selected=True
            )
            if self.layout is not None:
                self.layout.note(probs, self.call)
            self.pending = []
            return
        placed = returned  # the tensor the model's output holds (after dropout in training mode)
        if isinstance(returned, torch.Tensor) and module.training:
            returned = self.probe.first(returned)  # the same thing the recompute paths store
        merged = None
        if isinstance(returned, torch.Tensor) and returned.dim() == 3:
            heads = head_count(module)  # SAM-style eager attention returns [batch*heads, q, k]
            if heads and returned.shape[0] % heads == 0:
                merged, returned = list(returned.shape), returned.unflatten(0, (-1, heads))
        if not isinstance(returned, torch.Tensor) or returned.dim() != 4 or not is_probability(returned):
            self.session.warn_once(self._not_captured(returned))
            return
        call = self.session.begin_call(self.target, returned.shape[2], returned.shape[3])
        if call is not None:
            self.session.emit(call, returned.detach())
            if self.layout is not None:
                self.layout.note(placed, call, shape=merged)

    def _not_captured(self, returned) -> str:
        name = f"attention module {self.target.name!r} ({type(self.target.module).__name__})"
        if isinstance(returned, torch.Tensor) and returned.dim() == 3 and is_probability(returned):
            what = (
                "additive (tanh-scored, single-head) attention"
                if forward_mentions(type(self.target.module).forward, ("tanh(",))
                else "attention without a head axis"
            )
            return (
                f"{name} computes {what}: its weights {list(returned.shape)} are not [batch, heads, query, "
                "key] and it makes no call through transformers' AttentionInterface, so it is not captured as "
                "a layer; where the model returns them in its output, the capture keeps that field in the "
                "model's own shape (as_hf_outputs())"
            )
        return (
            f"{name} returned no attention probabilities and made no call through transformers' "
            "AttentionInterface; this layer was not captured"
        )

    def on_kernel_call(self, module, query, key, value, attention_mask, kwargs, kernel):
        """A call of the attention function (``kernel``: "sdpa", "flex", "flash" or "unknown").

        Returns the recomputed probabilities when the model is being asked for its attentions by
        the capture (they are handed back to the module as its weights), else ``None``.
        """
        if not self.seen_kernel_call:  # the first kernel call of this module call counts the layer
            self.seen_kernel_call = True
            self.call = self.session.begin_call(self.target, query.shape[2], key.shape[2], num_heads=query.shape[1])
        if self.call is None:
            return None
        with own_precision():
            probs = self._probs(module, query, key, value, attention_mask, kwargs, kernel, self.call.heads)
        self.pending.append((probs, query.detach(), key.detach()))
        # handed back only with every head: a module may reshape its weights by its head count
        handing_back = self.layout is not None and self.layout.asking and self.call.heads is None
        return probs if handing_back else None

    def _probs(self, module, query, key, value, attention_mask, kwargs, kernel, heads):
        unknown = {k for k, v in kwargs.items() if k not in NEUTRAL_KWARGS and v is not None}
        if not unknown:
            is_causal = kwargs.get("is_causal")
            if is_causal is None:
                is_causal = getattr(module, "is_causal", kernel == "sdpa")
            try:
                return attention_probs(
                    query,
                    key,
                    attention_mask,
                    kernel=kernel,
                    scaling=kwargs.get("scaling"),
                    is_causal=bool(is_causal),
                    position_bias=kwargs.get("position_bias"),
                    softcap=kwargs.get("softcap"),
                    sinks=kwargs.get("s_aux", kwargs.get("sinks")),
                    sliding_window=kwargs.get("sliding_window"),
                    heads=heads,
                    compute_dtype=self.session.compute_dtype_for(query.dtype),
                    out_dtype=self.session.dtype,
                )
            except UnsupportedAttentionCallError as exc:
                reason = str(exc)
        else:
            reason = f"unrecognised arguments {sorted(unknown)}"
        return self._eager_fallback(module, query, key, value, attention_mask, kwargs, kernel, heads, reason)

    def _eager_fallback(self, module, query, key, value, attention_mask, kwargs, kernel, heads, reason):
        """The modeling file's own eager function: exact by construction (sdpa-style masks only)."""
        eager = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
        if eager is None or kernel != "sdpa":
            raise CaptureError(
                f"cannot reproduce the attention of {self.target.name!r} exactly ({reason}); "
                "load the model with attn_implementation='eager' to capture it"
            )
        mask = attention_mask
        if mask is not None and mask.dtype == torch.bool:
            mask = torch.zeros(mask.shape, dtype=query.dtype, device=mask.device).masked_fill(
                ~mask, torch.finfo(query.dtype).min
            )
        elif mask is None and kwargs.get("is_causal", getattr(module, "is_causal", False)) and query.shape[2] > 1:
            q_len, k_len = query.shape[2], key.shape[2]
            keep = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril()
            mask = torch.zeros(1, 1, q_len, k_len, dtype=query.dtype, device=query.device).masked_fill(
                ~keep, torch.finfo(query.dtype).min
            )
        extra = {k: v for k, v in kwargs.items() if k not in ("dropout", "is_causal", "attention_mask")}
        _, weights = eager(module, query, key, value, mask, **{**extra, "dropout": 0.0})
        self.session.note_precision(query.dtype, weights.dtype, "the modeling file's eager function")
        self.session.warn_once(f"{self.target.name}: {reason}; used the model's own eager attention for the weights")
        return weights if heads is None else weights[:, heads]
