"""Inbound adapter for plain PyTorch models: ``nn.MultiheadAttention`` and declared attention modules.

``torch.nn.MultiheadAttention``
    Every call is captured with the weights that calling the module with ``need_weights=True,
    average_attn_weights=False`` gives for the same inputs: the module's own forward is called a
    second time beside the real call, with the call's own ``key_padding_mask``, ``attn_mask``
    (bool or float), ``is_causal``, and the module's ``batch_first``, ``kdim``/``vdim``,
    ``bias_k``/``bias_v`` and ``add_zero_attn`` (their extra key columns are the last ones, as in
    the module's own weights). The real call is not touched, so the model's output is
    bit-identical; a call that already asked for per-head weights is read, not recomputed. In
    training mode the captured weights are the probabilities before dropout (the recompute runs
    with the module's dropout set to 0, so it draws no random numbers and the model's own dropout
    masks are unchanged).

``nn.TransformerEncoderLayer`` fast path
    In eval mode under ``no_grad`` the layer (and ``nn.TransformerEncoder``, which then feeds its
    layers nested tensors) computes attention in one fused kernel without calling
    ``self_attn.forward``. This adapter watches such layers with *global* module hooks, because a
    hook on the layer or its submodules would switch the fast path off and change the output's
    bits. When the layer ran without calling ``self_attn``, the weights are recomputed from the
    layer's input and masks exactly as the layer's slow path would pass them to ``self_attn``. With
    nested tensors the padded positions do not exist: their query rows are zero and their key
    columns are masked.

Declared modules (:mod:`attn_plugins.adapters.declare`)
    A user's own module (a Bahdanau or Luong layer, a home-made multi-head attention) is captured
    by reading the weights its forward returns, where its declaration says.

Layer indices count the calls within one forward of the model given to ``capture`` (the owner),
per stack and kind. Decoder cross-attention (``TransformerDecoderLayer.multihead_attn``, modules
with ``kdim``/``vdim`` other than ``embed_dim``, calls whose query is not their key
(``mha(q, kv, kv)``), modules whose path names cross-attention, and declared ``kind="cross"``) has
kind ``"cross"``. Stacks are ``"encoder"``/``"decoder"`` when the
model has both (``nn.Transformer``, or paths starting ``encoder``/``decoder``), else ``None``.
Repeated calls of one module in one forward are decoding steps (rows of one matrix) when its
first call had a single query (see ``steps`` in the declare module); otherwise each call is a
layer of its own.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules import module as _module_impl

from ..errors import CaptureError, NoAttentionError
from .base import Adapter, Call, Target
from .declare import AttentionDeclaration, declaration_for
from .encoder_fastpath import padded_length, slow_path_call
from .hf_kernel import is_hf_model
from .hf_nested import NestedHuggingFace, hf_roots
from .hooks import remove_hooks
from .mha import bind_mha_call, mha_forward, mha_queries_keys, mha_weights, queries_are_keys, seq_len
from .scope import first_active

_CROSS_MARKERS = (
    "cross",
    "encoder_attn",
    "enc_attn",
    "encdec",
    "enc_dec",
    "src_attn",
    "context_attn",
    "memory_attn",
    "mem_attn",
    "source_attn",
)
_INPUT_KEYS = ("input_ids", "src", "source", "tokens")
_DECODER_INPUT_KEYS = ("decoder_input_ids", "tgt", "trg", "target", "tgt_in")

# id(module) -> the adapters watching it (at most one per thread or task: attn_plugins.adapters.scope)
_WATCHED: dict[int, list] = {}
_LOCK = threading.RLock()


def matches(model) -> bool:
    """True for any module that holds an ``nn.MultiheadAttention``, a declared attention module or a
    transformers model (captured through the Hugging Face adapter)."""
    if not isinstance(model, nn.Module):
        return False
    return any(
        isinstance(m, nn.MultiheadAttention) or declaration_for(m) is not None or is_hf_model(m)
        for m in model.modules()
    )


# ---------------------------------------------------------------------------------------------
# finding the attention modules
# ---------------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Entry:
    target: Target
    declaration: AttentionDeclaration | None  # None: an nn.MultiheadAttention, recomputed exactly
    steps: object = "auto"
    explicit_stack: bool = False


def find_targets(model: nn.Module, taken: list[str] | None = None) -> list[_Entry]:
    """``taken``: module paths already captured by another adapter (nested transformers models)."""
    by_name = dict(model.named_modules())
    entries: list[_Entry] = []
    taken = list(taken or [])
    for name, module in model.named_modules():
        if any(p == "" or name == p or name.startswith(p + ".") for p in taken):
            continue  # inside a captured module: the outer one is captured
        declaration = declaration_for(module)
        is_mha = isinstance(module, nn.MultiheadAttention)
        if declaration is None and not is_mha:
            continue
        taken.append(name)
        if is_mha:
            mha_forward(module)  # a subclass whose forward takes other arguments is refused here, with advice
        kind = declaration.kind_for(module) if declaration is not None else None
        explicit_stack = declaration is not None and declaration.stack is not None
        stack = declaration.stack_for(module) if explicit_stack else None
        target = Target(
            name=name, stack=stack, kind=kind or _guess_kind(name, module, by_name), owner=model, module=module
        )
        entries.append(
            _Entry(
                target,
                None if is_mha else declaration,
                declaration.steps if declaration is not None else "auto",
                explicit_stack,
            )
        )
    _assign_stacks(entries, by_name)
    return entries


def _guess_kind(name: str, module: nn.Module, by_name: dict) -> str:
    parent_name, _, attr = name.rpartition(".")
    parent = by_name.get(parent_name) if name else None
    if isinstance(module, nn.MultiheadAttention):
        if isinstance(parent, nn.TransformerDecoderLayer) and attr == "multihead_attn":
            return "cross"
        if not module._qkv_same_embed_dim:
            return "cross"  # keys and values live in another space: another sequence
    parts = name.lower().split(".") if name else []
    checked = parts[-1:]
    if len(parts) > 1 and ("attn" in parts[-2] or "attention" in parts[-2]):
        checked.append(parts[-2])  # e.g. "crossattention.self", "cross_attn.sdpa"
    if any(marker in part for part in checked for marker in _CROSS_MARKERS):
        return "cross"
    return "self"


def _guess_stack(name: str, by_name: dict) -> str | None:
    parts = name.split(".") if name else []
    for i in range(len(parts) + 1):
        module = by_name.get(".".join(parts[:i]))
        if isinstance(module, (nn.TransformerEncoder, nn.TransformerEncoderLayer)):
            return "encoder"
        if isinstance(module, (nn.TransformerDecoder, nn.TransformerDecoderLayer)):
            return "decoder"
        if i < len(parts):
            part = parts[i].lower()
            if part.startswith("encoder") or part == "enc" or part.startswith("enc_"):
                return "encoder"
            if part.startswith("decoder") or part == "dec" or part.startswith("dec_"):
                return "decoder"
    return None


def _assign_stacks(entries: list[_Entry], by_name: dict) -> None:
    guesses = {id(e): _guess_stack(e.target.name, by_name) for e in entries if not e.explicit_stack}
    both = {"encoder", "decoder"} <= set(guesses.values()) | {e.target.stack for e in entries}
    for e in entries:
        if not e.explicit_stack:
            e.target.stack = guesses[id(e)] if both else None


# ---------------------------------------------------------------------------------------------
# the adapter
# ---------------------------------------------------------------------------------------------
class TorchAdapter(Adapter):
    """Attaches a capture session to a plain PyTorch model; :meth:`detach` undoes everything."""

    name = "torch"
    priority = 90  # the generic adapter: tried last

    def __init__(self, session) -> None:
        super().__init__(session)
        self.handles: list = []
        self._entries: list[_Entry] = []
        self._watched: list[int] = []
        self._pre: dict[int, list] = {}  # id(module) -> fns(module, args)
        self._post: dict[int, list] = {}  # id(module) -> fns(module, args, kwargs, output)
        self._calls: dict[int, dict] = {}  # id(entry) -> this pass's call (None: not selected) and rows
        self._layer_of: dict[int, int] = {}  # id(self_attn) -> id(its TransformerEncoderLayer)
        self._layer_ran_mha: dict[int, bool] = {}
        self._encoder_len: dict[int, int] = {}  # id(encoder layer) -> padded length of the encoder's input
        self._owner = None
        self._nested = None  # transformers models inside, captured through the Hugging Face adapter
        self._in_pass = False
        self._cross_twins: dict[int, Target] = {}  # id(entry) -> its target with kind "cross"

    @classmethod
    def matches(cls, model) -> bool:
        return matches(model)

    def find(self, model) -> list[Target]:
        roots = hf_roots(model)
        self._nested = NestedHuggingFace(self.session, roots)
        self._entries = find_targets(model, taken=[path for path, _ in roots])
        if not self._entries and self._nested.targets:
            return list(self._nested.targets)
        if not self._entries:
            raise NoAttentionError(
                f"{type(model).__name__} has no torch.nn.MultiheadAttention and no declared attention module; "
                "declare your own with attn_plugins.adapters.declare.register_attention_module(YourAttention, "
                "weights=<where forward returns the weights>) or the @attention_output(index=...) decorator"
            )
        return [e.target for e in self._entries] + list(self._nested.targets)

    # ----- attaching --------------------------------------------------------------------------------
    def attach(self, model) -> None:
        self._owner = model
        self._nested.attach()
        if not self._entries:
            return
        with _LOCK:
            for entry in self._entries:
                for sub in entry.target.module.modules():
                    other = first_active([a for a in _WATCHED.get(id(sub), ()) if a is not self])
                    if other is not None:
                        raise CaptureError(f"module {entry.target.name!r} is already being captured by another capture")
            for entry in self._entries:
                for sub in entry.target.module.modules():
                    _WATCHED.setdefault(id(sub), []).append(self)
                    self._watched.append(id(sub))
        by_name = dict(model.named_modules())
        layers = []
        for entry in self._entries:
            module = entry.target.module
            if entry.declaration is None:
                self._on(self._post, module, self._mha_hook(entry))
                parent_name, _, attr = entry.target.name.rpartition(".")
                parent = by_name.get(parent_name) if entry.target.name else None
                if isinstance(parent, nn.TransformerEncoderLayer) and attr == "self_attn":
                    self._layer_of[id(module)] = id(parent)
                    self._on(self._pre, parent, self._layer_pre)
                    self._on(self._post, parent, self._layer_hook(entry))
                    layers.append(parent)
            else:
                self._on(self._post, module, self._declared_hook(entry))
        for encoder in model.modules():
            if isinstance(encoder, nn.TransformerEncoder) and any(layer in layers for layer in encoder.layers):
                self._on(self._pre, encoder, self._encoder_pre)
        if isinstance(model, nn.TransformerEncoderLayer):
            # a hook on the layer itself would switch its fast path off: start passes from the global hook
            self._pre.setdefault(id(model), []).insert(0, lambda module, args: self._begin_pass(module, args, {}))
        else:
            self.handles.append(model.register_forward_pre_hook(self._begin_pass, with_kwargs=True))
        self.handles.append(_module_impl.register_module_forward_pre_hook(self._global_pre))
        self.handles.append(_module_impl.register_module_forward_hook(self._global_post, with_kwargs=True))

    @staticmethod
    def _on(table: dict, module, fn) -> None:
        table.setdefault(id(module), []).append(fn)

    def detach(self) -> None:
        errors = remove_hooks(self.handles)
        with _LOCK:
            for key in self._watched:
                remaining = [a for a in _WATCHED.get(key, ()) if a is not self]
                if remaining:
                    _WATCHED[key] = remaining
                else:
                    _WATCHED.pop(key, None)
        self._watched.clear()
        for table in (
            self._pre,
            self._post,
            self._calls,
            self._layer_of,
            self._layer_ran_mha,
            self._encoder_len,
            self._cross_twins,
        ):
            table.clear()
        if self._nested is not None:
            errors += self._nested.detach()
        if errors:
            raise errors[0]

    # ----- global hooks (no per-module hook may touch a TransformerEncoderLayer) ---------------------
    def _global_pre(self, module, args):
        fns = self._pre.get(id(module))
        if fns:
            for fn in fns:
                fn(module, args)
        return None

    def _global_post(self, module, args, kwargs, output):
        fns = self._post.get(id(module))
        if fns:
            for fn in fns:
                fn(module, args, kwargs, output)
        return None

    def _begin_pass(self, module, args, kwargs):
        self._in_pass = True
        self._calls.clear()
        self.session.begin_pass(module, _token_inputs(args, kwargs or {}))
        return None

    # ----- counting calls ------------------------------------------------------------------------------
    def _count(self, entry: _Entry, q_len: int, k_len: int, target: Target | None = None) -> tuple[Call | None, int]:
        """The call (``None``: not selected) and the first query row that is new in this call
        (``target``: the entry's target, or its cross-attention twin for this call)."""
        if not self._in_pass:  # modules run without the model's forward (model.encoder(...)): one pass
            self._begin_pass(self._owner, (), {})
        state = self._calls.get(id(entry))
        if state is not None:
            steps = state["first_q"] == 1 if entry.steps == "auto" else bool(entry.steps)
            if steps:
                rows = state["rows"]
                start = rows if 1 < q_len and rows < q_len else 0  # a decoder re-run over its prefix
                state["rows"] = rows + q_len - start
                return state["call"], start
        call = self.session.begin_call(target or entry.target, q_len, k_len)
        self._calls[id(entry)] = {"call": call, "first_q": q_len, "rows": q_len}
        return call, 0

    # ----- nn.MultiheadAttention -------------------------------------------------------------------------
    def _mha_hook(self, entry: _Entry):
        def hook(module, args, kwargs, output):
            layer = self._layer_of.get(id(module))
            if layer is not None:
                self._layer_ran_mha[layer] = True
            call = bind_mha_call(module, args, kwargs)
            q_len, k_len = seq_len(module, call["query"]), seq_len(module, call["key"])
            selected, start = self._count(entry, q_len, k_len, self._target_of_call(entry, call))
            if selected is None:
                return
            weights = None
            if call["need_weights"] and not call["average_attn_weights"] and not (module.training and module.dropout):
                given = output[1] if isinstance(output, (tuple, list)) and len(output) > 1 else None
                if isinstance(given, torch.Tensor):
                    weights = given.detach()
                    weights = weights if weights.dim() == 4 else weights.unsqueeze(0)
            if weights is None:
                weights = mha_weights(module, call)
            queries = keys = None
            if self.session.keep_queries_keys:
                queries, keys = mha_queries_keys(module, call)
            self.session.emit(selected, weights, queries=queries, keys=keys, rows_from=start)

        return hook

    def _target_of_call(self, entry: _Entry, call: dict) -> Target:
        """``mha(q, kv, kv)`` with a query that is not the key is cross-attention, whatever the module's
        name suggested: the call decides. ``mha(x, x, x)`` stays self-attention, and so does a decoding
        step over a cache (``mha(x_t, x_<=t, x_<=t)``: the query is the key's last rows)."""
        if entry.target.kind == "cross" or queries_are_keys(entry.target.module, call["query"], call["key"]):
            return entry.target
        twin = self._cross_twins.get(id(entry))
        if twin is None:
            twin = self._cross_twins[id(entry)] = dataclasses.replace(entry.target, kind="cross")
        return twin

    # ----- nn.TransformerEncoderLayer fast path ----------------------------------------------------------
    def _layer_pre(self, layer, args) -> None:
        self._layer_ran_mha[id(layer)] = False

    def _encoder_pre(self, encoder, args) -> None:
        length = padded_length(encoder, args)
        if length is not None:
            for layer in encoder.layers:
                self._encoder_len[id(layer)] = length

    def _layer_hook(self, entry: _Entry):
        mha = entry.target.module

        def hook(layer, args, kwargs, output):
            if self._layer_ran_mha.pop(id(layer), True):
                return  # self_attn ran: its own hook captured it
            if type(layer).forward is not nn.TransformerEncoderLayer.forward:
                self.session.warn_once(
                    f"{type(layer).__name__} did not call its self_attn; the attention of {entry.target.name!r} "
                    "was not captured"
                )
                return
            rebuilt = slow_path_call(layer, args, kwargs, self._encoder_len.get(id(layer), 0))
            if rebuilt is None:
                return
            call, keep = rebuilt
            x = call["query"]
            q_len = seq_len(mha, x)
            selected, start = self._count(entry, q_len, q_len)
            if selected is None:
                return
            weights = mha_weights(mha, call)
            if keep is not None:
                weights = weights.masked_fill(~keep[:, None, :, None], 0.0)
            queries = keys = None
            if self.session.keep_queries_keys:
                queries, keys = mha_queries_keys(mha, call)
            self.session.emit(selected, weights, queries=queries, keys=keys, rows_from=start)

        return hook

    # ----- declared modules --------------------------------------------------------------------------------
    def _declared_hook(self, entry: _Entry):
        def hook(module, args, kwargs, output):
            weights = entry.declaration.extract(module, args, kwargs, output, entry.target.name)
            if weights is None:
                self.session.warn_once(
                    f"declared attention module {entry.target.name!r} returned no weights for "
                    "some calls; those calls were not captured"
                )
                return
            q_len, k_len = weights.shape[2], weights.shape[3]
            selected, start = self._count(entry, q_len, k_len)
            if selected is None:
                return
            if self.session.keep_queries_keys:
                self.session.warn_once(
                    f"keep_queries_keys: declared module {entry.target.name!r} exposes no "
                    "queries and keys; only its weights were kept"
                )
            self.session.emit(selected, weights, rows_from=start)

        return hook


def _token_inputs(args: tuple, kwargs: dict) -> dict:
    """Token ids the model was called with: the first integer tensor is the (source) input, a second one
    the decoder input."""

    def ids(value):
        return isinstance(value, torch.Tensor) and value.dtype in (torch.int64, torch.int32) and value.dim() == 2

    positional = [a for a in args if ids(a)]
    inputs = {}
    source = next((kwargs[k] for k in _INPUT_KEYS if ids(kwargs.get(k))), None)
    target = next((kwargs[k] for k in _DECODER_INPUT_KEYS if ids(kwargs.get(k))), None)
    if source is None and positional:
        source = positional.pop(0)
    if target is None and positional:
        target = positional.pop(0)
    if source is not None:
        inputs["input_ids"] = source.detach()
    if target is not None:
        inputs["decoder_input_ids"] = target.detach()
    return inputs
