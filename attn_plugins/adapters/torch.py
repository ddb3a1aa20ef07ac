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

import contextlib
import dataclasses
import inspect
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as _module_impl

from ..collector import CaptureError, Target
from .hooks import remove_hooks
from .declare import AttentionDeclaration, declaration_for

_CROSS_MARKERS = ("cross", "encoder_attn", "enc_attn", "encdec", "enc_dec", "src_attn", "context_attn",
                  "memory_attn", "mem_attn", "source_attn")
_MHA_ARGS = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights",
             "is_causal")
_INPUT_KEYS = ("input_ids", "src", "source", "tokens")
_DECODER_INPUT_KEYS = ("decoder_input_ids", "tgt", "trg", "target", "tgt_in")

# id(module) -> the adapter watching it (one capture per module at a time)
_WATCHED: dict[int, "TorchAdapter"] = {}
_LOCK = threading.RLock()
_SIGNATURES: dict[type, tuple] = {}


def matches(model) -> bool:
    """True for any module that holds an ``nn.MultiheadAttention``, a declared attention module or a
    transformers model (captured through the Hugging Face adapter)."""
    from .huggingface import is_hf_model

    if not isinstance(model, nn.Module):
        return False
    return any(isinstance(m, nn.MultiheadAttention) or declaration_for(m) is not None or is_hf_model(m)
               for m in model.modules())


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
            _forward_of(module)  # a subclass whose forward takes other arguments is refused here, with advice
        kind = declaration.kind_for(module) if declaration is not None else None
        explicit_stack = declaration is not None and declaration.stack is not None
        stack = declaration.stack_for(module) if explicit_stack else None
        target = Target(name=name, stack=stack, kind=kind or _guess_kind(name, module, by_name), owner=model,
                        module=module)
        entries.append(_Entry(target, None if is_mha else declaration,
                              declaration.steps if declaration is not None else "auto", explicit_stack))
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
# exact nn.MultiheadAttention weights
# ---------------------------------------------------------------------------------------------
def _forward_of(module: nn.MultiheadAttention):
    """The module class's forward and its signature; it must take MultiheadAttention's arguments."""
    cls = type(module)
    cached = _SIGNATURES.get(cls)
    if cached is None:
        forward = cls.forward
        try:
            signature = inspect.signature(forward)
        except (TypeError, ValueError):
            signature = None
        if signature is None or not all(name in signature.parameters for name in _MHA_ARGS):
            cached = (None, None)
        else:
            cached = (forward, signature)
        _SIGNATURES[cls] = cached
    if cached[0] is None:
        raise CaptureError(
            f"{cls.__name__} subclasses nn.MultiheadAttention with a forward that does not take its arguments "
            f"({', '.join(_MHA_ARGS)}); declare it instead: register_attention_module({cls.__name__}, weights=...)"
        )
    return cached


def bind_mha_call(module: nn.MultiheadAttention, args: tuple, kwargs: dict) -> dict:
    """The call's arguments by name, defaults filled in."""
    _, signature = _forward_of(module)
    try:
        bound = signature.bind(module, *args, **kwargs)
    except TypeError as exc:
        raise CaptureError(f"cannot read the arguments of a {type(module).__name__} call: {exc}") from None
    bound.apply_defaults()
    return {name: bound.arguments.get(name) for name in _MHA_ARGS}


@contextlib.contextmanager
def _without_dropout(module: nn.MultiheadAttention):
    dropout = module.dropout
    if module.training and dropout:
        module.dropout = 0.0
    try:
        yield
    finally:
        module.dropout = dropout


def _recompute_grad_mode(module: nn.MultiheadAttention, call: dict):
    """Grad mode for the recompute: off, unless turning it off would change the path the call takes.

    ``MultiheadAttention.forward`` picks its fused fast path only when no argument needs grad; in
    eval mode with grad enabled and such an argument, keep grad on so the recompute takes the same
    (slow) path as a ``need_weights=True`` call would.
    """
    if module.training or not torch.is_grad_enabled():
        return torch.no_grad()
    tensors = (call["query"], call["key"], call["value"], module.in_proj_weight, module.in_proj_bias,
               module.out_proj.weight, module.out_proj.bias)
    if any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors):
        return contextlib.nullcontext()
    return torch.no_grad()


def mha_weights(module: nn.MultiheadAttention, call: dict) -> torch.Tensor:
    """``module(**call, need_weights=True, average_attn_weights=False)[1]``, detached, batched."""
    forward, _ = _forward_of(module)
    arguments = dict(call, need_weights=True, average_attn_weights=False)
    with _recompute_grad_mode(module, call), _without_dropout(module):
        _, weights = forward(module, **arguments)
    weights = weights.detach()
    return weights if weights.dim() == 4 else weights.unsqueeze(0)


def _batch_major(module: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 2:
        return x.unsqueeze(0)
    return x if module.batch_first else x.transpose(0, 1)


def mha_queries_keys(module: nn.MultiheadAttention, call: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head queries and keys ``[b, h, len, head_dim]`` after the input projection (keys with the
    ``bias_k`` / zero-attention rows the module appends)."""
    with torch.no_grad():
        query = _batch_major(module, call["query"])
        key = _batch_major(module, call["key"])
        embed = module.embed_dim
        if module._qkv_same_embed_dim:
            w_q, w_k, _ = module.in_proj_weight.chunk(3)
        else:
            w_q, w_k = module.q_proj_weight, module.k_proj_weight
        b_q = b_k = None
        if module.in_proj_bias is not None:
            b_q, b_k, _ = module.in_proj_bias.chunk(3)
        q = F.linear(query, w_q, b_q)
        k = F.linear(key, w_k, b_k)
        batch = q.shape[0]
        if module.bias_k is not None:
            k = torch.cat([k, module.bias_k.reshape(1, 1, embed).expand(batch, 1, embed)], dim=1)
        if module.add_zero_attn:
            k = torch.cat([k, k.new_zeros(batch, 1, embed)], dim=1)
        heads, dim = module.num_heads, module.head_dim
        q = q.reshape(batch, q.shape[1], heads, dim).transpose(1, 2)
        k = k.reshape(batch, k.shape[1], heads, dim).transpose(1, 2)
    return q, k


def _queries_are_keys(module: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor) -> bool:
    """Whether a call attends from a sequence to itself: the same tensor, or the query holds the
    key's last positions (one decoding step over a cache of the same sequence)."""
    if query is key:
        return True
    if query.shape[-1] != key.shape[-1] or query.dim() != key.dim():
        return False
    q, k = _batch_major(module, query), _batch_major(module, key)
    n = q.shape[-2]
    return n <= k.shape[-2] and q.shape[:-2] == k.shape[:-2] and torch.equal(q, k[..., k.shape[-2] - n:, :])


def _seq_len(module: nn.MultiheadAttention, x: torch.Tensor) -> int:
    if x.dim() == 3:
        return x.shape[1] if module.batch_first else x.shape[0]
    return x.shape[0]


# ---------------------------------------------------------------------------------------------
# the adapter
# ---------------------------------------------------------------------------------------------
class TorchAdapter:
    """Attaches a capture session to a plain PyTorch model; :meth:`detach` undoes everything."""

    name = "torch"

    def __init__(self, session) -> None:
        self.session = session
        self.handles: list = []
        self._entries: list[_Entry] = []
        self._watched: list[int] = []
        self._pre: dict[int, list] = {}  # id(module) -> fns(module, args)
        self._post: dict[int, list] = {}  # id(module) -> fns(module, args, kwargs, output)
        self._calls: dict[int, dict] = {}  # id(entry) -> this pass's index/selection/rows
        self._layer_of: dict[int, int] = {}  # id(self_attn) -> id(its TransformerEncoderLayer)
        self._layer_ran_mha: dict[int, bool] = {}
        self._encoder_len: dict[int, int] = {}  # id(encoder layer) -> padded length of the encoder's input
        self._owner = None
        self._nested = None  # transformers models inside, captured through the Hugging Face adapter
        self._in_pass = False
        self._cross_twins: dict[int, Target] = {}  # id(entry) -> its target with kind "cross"

    @staticmethod
    def matches(model) -> bool:
        return matches(model)

    def find(self, model) -> list[Target]:
        from .huggingface import NestedHuggingFace, hf_roots

        roots = hf_roots(model)
        self._nested = NestedHuggingFace(self.session, roots)
        self._entries = find_targets(model, taken=[path for path, _ in roots])
        if not self._entries and self._nested.targets:
            return list(self._nested.targets)
        if not self._entries:
            from ..capture import NoAttentionError

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
                    if id(sub) in _WATCHED and _WATCHED[id(sub)] is not self:
                        raise CaptureError(f"module {entry.target.name!r} is already being captured by another capture")
            for entry in self._entries:
                for sub in entry.target.module.modules():
                    _WATCHED[id(sub)] = self
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
                if _WATCHED.get(key) is self:
                    del _WATCHED[key]
        self._watched.clear()
        for table in (self._pre, self._post, self._calls, self._layer_of, self._layer_ran_mha, self._encoder_len,
                      self._cross_twins):
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
        self.session.collector.begin_pass(module, _owner_inputs(args, kwargs or {}))
        return None

    # ----- counting calls ------------------------------------------------------------------------------
    def _count(self, entry: _Entry, q_len: int, k_len: int, target: Target | None = None) -> tuple[int, bool, int]:
        """Layer index, whether selected, and the first query row that is new in this call
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
                return state["index"], state["selected"], start
        index, selected = self.session.collector.next_call(target or entry.target, q_len, k_len)
        self._calls[id(entry)] = {"index": index, "selected": selected, "first_q": q_len, "rows": q_len}
        return index, selected, 0

    def _add(self, entry: _Entry, index: int, weights: torch.Tensor, start: int, k_len: int,
             queries=None, keys=None, target: Target | None = None) -> None:
        session = self.session
        heads = session.heads
        session.check_heads(weights.shape[1], entry.target)
        if start:
            weights = weights[:, :, start:]
            queries = queries[:, :, start:] if queries is not None else None
        if heads is not None:
            index_t = torch.tensor(heads, device=weights.device)
            weights = weights.index_select(1, index_t)
            queries = queries.index_select(1, index_t) if queries is not None else None
            keys = keys.index_select(1, index_t) if keys is not None else None
        if queries is not None:
            queries, keys = session.store(queries), session.store(keys)
        session.collector.add(target or entry.target, index, session.store(weights), weights.shape[2], k_len,
                              queries, keys)

    # ----- nn.MultiheadAttention -------------------------------------------------------------------------
    def _mha_hook(self, entry: _Entry):
        def hook(module, args, kwargs, output):
            layer = self._layer_of.get(id(module))
            if layer is not None:
                self._layer_ran_mha[layer] = True
            call = bind_mha_call(module, args, kwargs)
            q_len, k_len = _seq_len(module, call["query"]), _seq_len(module, call["key"])
            target = self._target_of_call(entry, call)
            index, selected, start = self._count(entry, q_len, k_len, target)
            if not selected:
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
            self._add(entry, index, weights, start, k_len, queries, keys, target)

        return hook

    def _target_of_call(self, entry: _Entry, call: dict) -> Target:
        """``mha(q, kv, kv)`` with a query that is not the key is cross-attention, whatever the module's
        name suggested: the call decides. ``mha(x, x, x)`` stays self-attention, and so does a decoding
        step over a cache (``mha(x_t, x_<=t, x_<=t)``: the query is the key's last rows)."""
        if entry.target.kind == "cross" or _queries_are_keys(entry.target.module, call["query"], call["key"]):
            return entry.target
        twin = self._cross_twins.get(id(entry))
        if twin is None:
            twin = self._cross_twins[id(entry)] = dataclasses.replace(entry.target, kind="cross")
        return twin

    # ----- nn.TransformerEncoderLayer fast path ----------------------------------------------------------
    def _layer_pre(self, layer, args) -> None:
        self._layer_ran_mha[id(layer)] = False

    def _encoder_pre(self, encoder, args) -> None:
        src = args[0] if args else None
        if isinstance(src, torch.Tensor) and not src.is_nested and src.dim() == 3:
            first = encoder.layers[0]
            length = src.shape[1] if first.self_attn.batch_first else src.shape[0]
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
            try:
                bound = inspect.signature(nn.TransformerEncoderLayer.forward).bind(layer, *args, **kwargs)
            except TypeError:
                return
            bound.apply_defaults()
            src = bound.arguments["src"]
            src_mask = bound.arguments["src_mask"]
            padding = bound.arguments["src_key_padding_mask"]
            keep = None
            if src.is_nested:  # nn.TransformerEncoder dropped the padding: rebuild it from the lengths
                lengths = torch.tensor([part.shape[0] for part in src.unbind()], device=src.device)
                length = max(self._encoder_len.get(id(layer), 0), int(lengths.max()))
                src = src.to_padded_tensor(0.0, (lengths.numel(), length, mha.embed_dim))
                keep = torch.arange(length, device=src.device)[None, :] < lengths[:, None]
                padding = ~keep
            # as TransformerEncoderLayer.forward hands them to self_attn on its slow path
            padding = F._canonical_mask(mask=padding, mask_name="src_key_padding_mask",
                                        other_type=F._none_or_dtype(src_mask), other_name="src_mask",
                                        target_type=src.dtype)
            src_mask = F._canonical_mask(mask=src_mask, mask_name="src_mask", other_type=None, other_name="",
                                         target_type=src.dtype, check_other=False)
            with torch.no_grad():
                x = layer.norm1(src) if layer.norm_first else src
            # the fused kernel applies src_mask and the padding, never the is_causal hint
            call = {"query": x, "key": x, "value": x, "key_padding_mask": padding, "need_weights": True,
                    "attn_mask": src_mask, "average_attn_weights": False, "is_causal": False}
            q_len = _seq_len(mha, x)
            index, selected, start = self._count(entry, q_len, q_len)
            if not selected:
                return
            weights = mha_weights(mha, call)
            if keep is not None:
                weights = weights.masked_fill(~keep[:, None, :, None], 0.0)
            queries = keys = None
            if self.session.keep_queries_keys:
                queries, keys = mha_queries_keys(mha, call)
            self._add(entry, index, weights, start, q_len, queries, keys)

        return hook

    # ----- declared modules --------------------------------------------------------------------------------
    def _declared_hook(self, entry: _Entry):
        def hook(module, args, kwargs, output):
            weights = entry.declaration.extract(module, args, kwargs, output, entry.target.name)
            if weights is None:
                self.session.warn_once(f"declared attention module {entry.target.name!r} returned no weights for "
                                       "some calls; those calls were not captured")
                return
            q_len, k_len = weights.shape[2], weights.shape[3]
            index, selected, start = self._count(entry, q_len, k_len)
            if not selected:
                return
            if self.session.keep_queries_keys:
                self.session.warn_once(f"keep_queries_keys: declared module {entry.target.name!r} exposes no "
                                       "queries and keys; only its weights were kept")
            self._add(entry, index, weights, start, k_len)

        return hook


def _owner_inputs(args: tuple, kwargs: dict) -> dict:
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
