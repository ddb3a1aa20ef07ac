"""``capture()``: the context manager that owns every hook and restores every setting.

    with attn_plugins.capture(model, tokenizer) as cap:
        model(**enc)              # or model.generate(**enc)
    record = cap.record

On exit, also when the body raises, every hook is removed and what the capture changed (the
instance's ``generate``, an attention implementation it had to switch) is put back; what the body
itself changed (``model.train()``, ``requires_grad_``) stays.

A capture records only the calls made in the thread or asyncio task that opened it (see
:mod:`attn_plugins.adapters.scope`): other threads may run the same model at the same time,
unrecorded and unguarded, and each thread may hold its own capture of it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import torch

from .adapters import ADAPTERS, adapter_for
from .adapters.base import Call, Target
from .adapters.scope import activate, active_sessions, deactivate, gate_new_hooks, hook_snapshot, runs_here
from .analysis.words import label_tokens
from .collector import Collector
from .errors import CaptureError, NoAttentionError
from .estimate import layer_calls
from .generation_guard import generate_new_tokens, generate_wrapper
from .limits import check_indices
from .model_state import ModelState
from .record import AttentionRecord

if TYPE_CHECKING:
    from .budget import Budget
    from .offload import HostCopier
    from .record.stream import StreamSink

_FAST_PATH_MODULES = (torch.nn.TransformerEncoderLayer, torch.nn.TransformerEncoder)


class capture:  # noqa: N801 - used as a function-like context manager
    """Capture the attention of ``model`` while the body runs.

    Args:
        model: a transformers model (or any model an adapter is registered for).
        tokenizer: turns input ids into ``record.tokens`` when given.
        layers: layer indices (per stack and kind; negative counts from the end) or module paths.
            Unselected layers cost nothing.
        heads: head indices to keep; only these heads are recomputed.
        device: where the weights are kept (default: the model's device).
        dtype: the dtype the weights are kept in (default: float32).
        adapter: an adapter name from ``attn_plugins.adapters.ADAPTERS`` (default: the first that matches).
        keep_queries_keys: also keep each captured layer's queries and keys (for neuron views).
        max_bytes: the memory guard's budget for the kept attention, in bytes or as text ("2GB");
            default: half the free memory of the device the record is kept on (streaming: the free
            disk space); ``float("inf")`` turns it off. Above it the capture refuses before the
            model runs (:class:`~attn_plugins.budget.MemoryBudgetError`) and says how to cut it.
        stream_to: a new directory: each layer is written there as it is produced and the records
            are opened memory-mapped from it (``record-0000/``, ... one per forward or generate()).
        compute_dtype: the dtype recomputed probabilities are computed in (default float32, float64
            for float64 models: exact softmax from half-precision queries and keys). The record's
            ``metadata["precision"]`` says what was used.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any = None,
        layers: Any = None,
        heads: Any = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        adapter: str | None = None,
        keep_queries_keys: bool = False,
        max_bytes: int | float | str | None = None,
        stream_to: str | os.PathLike[str] | None = None,
        compute_dtype: torch.dtype | None = None,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"capture() needs a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.tokenizer = tokenizer
        self.layers = check_indices("layers", layers)
        heads = check_indices("heads", heads)
        if heads is not None:
            if any(h < 0 for h in heads):
                raise ValueError(f"head indices must be >= 0, got {heads}")
            heads = sorted(set(heads))
        self.heads = heads
        self.device = torch.device(device) if device is not None else None
        if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
            raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        self.dtype = dtype or torch.float32
        self.adapter_name = adapter
        self.keep_queries_keys = keep_queries_keys
        from .budget import parse_bytes

        parse_bytes(max_bytes)  # bad values fail here, before anything is touched
        self.max_bytes = max_bytes
        if compute_dtype is not None and (
            not isinstance(compute_dtype, torch.dtype) or not compute_dtype.is_floating_point
        ):
            raise TypeError(f"compute_dtype must be a floating torch.dtype, got {compute_dtype!r}")
        self.compute_dtype = compute_dtype
        self._precisions: dict[tuple[torch.dtype, torch.dtype], str] = {}
        self.stream_to = os.fspath(stream_to) if stream_to is not None else None
        self._sink: StreamSink | None = None
        self._budget: Budget | None = None
        self._targets: list[Target] = []
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        self._copier: HostCopier | None = None
        self._in_generate = False
        self._adapter: Any = None
        self._state: ModelState | None = None
        self._records: list[AttentionRecord] | None = None
        self._warned: set[str] = set()
        self._entered = False
        self._token: Any = None
        self._failure: BaseException | None = None
        self._position_limit: int | None = None
        self._training = False  # a captured module ran in training mode
        self.collector: Collector | None = None

    # ----- the session adapters receive (attn_plugins.adapters.base.Session) -------------------------------
    def begin_pass(self, owner: Any, inputs: dict[str, Any]) -> None:
        """``owner``'s forward starts: its layer counters restart; ``inputs`` become the record's inputs."""
        assert self.collector is not None, "begin_pass() is called by adapters inside the with-block"
        if runs_here(self):  # (hooks are gated already; this also covers an adapter's own global patches)
            self.collector.begin_pass(owner, inputs)

    def begin_call(self, target: Target, q_len: int, k_len: int, *, num_heads: int | None = None) -> Call | None:
        """Count one call of ``target``; ``None`` when its layer is not selected (or the call was made in
        another thread or task than the capture's, or is a forward recomputed during backward)."""
        if not runs_here(self):
            return None
        assert self.collector is not None, "begin_call() is called by adapters inside the with-block"
        index, selected = self.collector.next_call(target, q_len, k_len)
        if not selected:
            return None
        if num_heads is not None:
            self._check_heads(num_heads, target)
        return Call(target, index, q_len, k_len, self.heads)

    def emit(
        self,
        call: Call,
        weights: torch.Tensor,
        *,
        queries: torch.Tensor | None = None,
        keys: torch.Tensor | None = None,
        heads_selected: bool = False,
        rows_from: int = 0,
    ) -> None:
        """Store a selected call's probabilities (and queries/keys): the one place that slices heads and
        rows, repeats grouped key heads and moves blocks to the storage dtype and device."""
        if not heads_selected:
            self._check_heads(weights.shape[1], call.target)
        if rows_from:
            weights = weights[:, :, rows_from:]
            queries = queries[:, :, rows_from:] if queries is not None else None
        index = None
        if self.heads is not None:
            index = torch.tensor(self.heads, device=weights.device)
            if not heads_selected:
                weights = weights.index_select(1, index)
        if queries is not None:
            if keys is not None and keys.shape[1] != queries.shape[1]:  # grouped-query attention: repeat kv heads
                n_rep = queries.shape[1] // keys.shape[1]
                kv = [h // n_rep for h in (self.heads if self.heads is not None else range(queries.shape[1]))]
                keys = keys.index_select(1, torch.tensor(kv, device=keys.device))
            elif keys is not None and index is not None:
                keys = keys.index_select(1, index.to(keys.device))
            if index is not None:
                queries = queries.index_select(1, index.to(queries.device))
            queries = self._store(queries)
            keys = self._store(keys) if keys is not None else None
        if getattr(call.target.module, "training", False):
            self._training = True
        assert self.collector is not None, "emit() is called by adapters inside the with-block"
        self.collector.add(
            call.target, call.index, self._store(weights.detach()), weights.shape[2], weights.shape[-1], queries, keys
        )

    def current_segment(self, owner: Any) -> Any:
        """An opaque handle of the record ``owner``'s current pass writes into (``None`` before any call)."""
        assert self.collector is not None, "current_segment() is called by adapters inside the with-block"
        return self.collector.current_segment(owner)

    def add_finisher(self, finish: Callable[[Any, AttentionRecord], None]) -> None:
        """``finish(segment, record)`` runs on every assembled record."""
        assert self.collector is not None, "add_finisher() is called by adapters inside the with-block"
        self.collector.add_finisher(finish)

    def _store(self, tensor: torch.Tensor) -> torch.Tensor:
        if self._sink is not None:  # streaming: the writer copies to the host itself, off the compute stream
            return tensor.to(dtype=self.dtype)
        device = self.device or tensor.device
        if device.type == "cpu" and tensor.device.type == "cuda":
            if self._copier is None:
                from .offload import HostCopier

                self._copier = HostCopier()
            copied: torch.Tensor = self._copier.to_host(tensor, self.dtype)[0]
            return copied  # overlaps compute; waited for on exit
        return tensor.to(device=device, dtype=self.dtype)

    def compute_dtype_for(self, input_dtype: torch.dtype) -> torch.dtype:
        """The dtype to recompute probabilities in for queries/keys of ``input_dtype`` (and note it)."""
        dtype = self.compute_dtype or (torch.float64 if input_dtype == torch.float64 else torch.float32)
        self.note_precision(input_dtype, dtype, "recomputed beside the model's kernel")
        return dtype

    def note_precision(self, input_dtype: torch.dtype, compute_dtype: torch.dtype, how: str) -> None:
        self._precisions.setdefault((input_dtype, compute_dtype), how)

    def warn_once(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(message, stacklevel=3)

    def _check_heads(self, num_heads: int, target: Target) -> None:
        if self.heads and self.heads[-1] >= num_heads:
            raise ValueError(
                f"head {self.heads[-1]} does not exist: {target.name!r} has {num_heads} heads "
                f"(valid: 0..{num_heads - 1})"
            )

    # ----- selection -------------------------------------------------------------------------------
    def _layer_filter(self, targets: list[Target]) -> Callable[[Target, int], bool]:
        if self.layers is None:
            return lambda target, index: True
        counts = {key: len(calls) for key, calls in layer_calls(self.model, targets).items()}
        ints = [v for v in self.layers if isinstance(v, int)]
        paths = [v for v in self.layers if isinstance(v, str)]
        largest = max(counts.values())
        for v in ints:
            if not -largest <= v < largest:
                raise ValueError(
                    f"layer {v} does not exist: the model has {largest} layers (valid: 0..{largest - 1}"
                    f" or negative from the end)"
                )
        chosen_paths: set[str] = set()
        for p in paths:
            hits = [t.name for t in targets if t.name == p or t.name.startswith(p + ".") or p.startswith(t.name + ".")]
            if not hits:
                sample = ", ".join(repr(t.name) for t in targets[:4])
                raise ValueError(f"no attention module at {p!r}; attention modules are e.g. {sample}")
            chosen_paths.update(hits)
        wanted = {key: {v % n for v in ints if -n <= v < n} for key, n in counts.items()}

        def selected(target: Target, index: int) -> bool:
            return index in wanted.get((target.stack, target.kind), ()) or target.name in chosen_paths

        return selected

    # ----- context manager ----------------------------------------------------------------------------
    def __enter__(self) -> capture:
        if self._entered:
            raise CaptureError("a capture object can be entered once; create a new capture()")
        self._entered = True
        if any(getattr(other, "model", None) is self.model for other in active_sessions()):
            raise CaptureError(
                f"{type(self.model).__name__} is already being captured: nested capture() on the same model is "
                "not supported (one capture records everything the inner one would)"
            )
        self._token = activate(self)
        try:
            self._state = ModelState(self)
            before = hook_snapshot(self.model)
            factory = adapter_for(self.model, self.adapter_name)
            if factory is None:
                raise NoAttentionError(
                    f"no adapter handles {type(self.model).__name__}; available adapters: {', '.join(ADAPTERS.names())}"
                    " (pass adapter=... or register one)"
                )
            self._adapter = factory(self)
            targets = self._adapter.find(self.model)
            if not targets:
                raise NoAttentionError(f"{type(self.model).__name__} has no attention module to capture")
            from .budget import Budget

            self._targets = targets
            layer_filter = self._filter = self._layer_filter(targets)
            self._budget = Budget.for_capture(self.max_bytes, self._storage_device(), self.stream_to)
            if self.stream_to is not None:
                from .record.stream import StreamSink

                self._sink = StreamSink(self.stream_to)
            self.collector = Collector(layer_filter, self.heads, budget=self._budget, sink=self._sink)
            from .limits import absolute_position_limit

            self._position_limit = absolute_position_limit(self.model)
            if not any(isinstance(m, _FAST_PATH_MODULES) for m in self.model.modules()):
                # (a hook on a module that contains torch's fused encoder layers would switch their fast path
                # off; such models are guarded block by block as they run)
                self._hooks.append(self.model.register_forward_pre_hook(self._guard_forward, with_kwargs=True))
            self._adapter.attach(self.model)
            gate_new_hooks(self, self.model, before)  # every hook: this thread/task only, never in backward
            self._wrap_generate()
        except BaseException as exc:
            self._failure = exc
            self._cleanup()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Literal[False]:
        try:
            self._cleanup()
            if self._copier is not None:
                self._copier.synchronize()
            if exc_type is None:
                self._records = self._build_records()
            else:
                self._failure = exc
        except BaseException as failure:
            self._failure = failure
            if self._sink is not None:
                self._sink.abort()
            raise
        finally:
            if self._sink is not None:
                if exc_type is not None:
                    self._sink.abort()
                self._sink.close()
        return False

    def _cleanup(self) -> None:
        try:
            from .adapters.hooks import remove_hooks

            errors = remove_hooks(self._hooks)
            if self._adapter is not None:
                self._adapter.detach()
            if errors:
                raise errors[0]
        finally:
            try:
                if self._state is not None:
                    self._state.restore()
            finally:
                token, self._token = self._token, None
                deactivate(self, token)

    def _wrap_generate(self) -> None:
        if getattr(self.model, "generate", None) is not None and self._state is not None:  # shared by its captures
            self._state.patch(self.model, "generate", generate_wrapper(self.model), instance=True)

    def run_generate(self, original: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A ``generate()`` call made in this capture's thread or task: checked (group and constrained beam
        search refused), the memory guard counting every step and beam, then marked as one record (with
        beams, each returned sequence followed through ``beam_indices``)."""
        from . import beams as beam_search

        decoding = beam_search.describe_decoding(self.model, kwargs)
        num_beams = decoding.get("num_beams", 1)
        self._check_budget(args, kwargs, generate_new_tokens(self.model, kwargs), "this generate() call", num_beams)
        assert self.collector is not None
        since = len(self.collector.segments)
        self._in_generate = True
        try:
            output = original(*args, **(beam_search.beam_kwargs(kwargs) if num_beams > 1 else kwargs))
        finally:
            self._in_generate = False
        paths = None
        if num_beams > 1:  # beam_indices say which live beam each returned sequence came through
            encoder_decoder = bool(getattr(self.model.config, "is_encoder_decoder", False))
            paths = beam_search.BeamPaths.from_output(output, decoding, encoder_decoder)
            output = beam_search.caller_output(output, decoding)
        self.collector.mark_generation(
            since, {k: v for k, v in decoding.items() if k != "return_dict_in_generate"}, paths
        )
        return output

    # ----- memory guard ------------------------------------------------------------------------------
    def _storage_device(self) -> torch.device:
        if self.device is not None:
            return self.device
        for parameter in self.model.parameters():
            return parameter.device
        return torch.device("cpu")

    def _guard_forward(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Before the model's forward: refuse inputs longer than the model's positions, then the memory guard."""
        from .limits import check_forward_inputs

        check_forward_inputs(self.model, self._position_limit, args, kwargs)
        if not self._in_generate:
            self._check_budget(args, kwargs, 0, "this forward")

    def _check_budget(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], new_tokens: int, when: str, beams: int = 1
    ) -> None:
        from .budget import describe
        from .estimate import planned_shapes

        parts = planned_shapes(self.model, self._targets, self._filter, self.heads, args, kwargs, new_tokens, beams)
        if not parts:
            return  # lengths not readable from the inputs: every stored block is still counted
        itemsize = torch.empty((), dtype=self.dtype).element_size()
        size, detail = describe(parts, itemsize, self.dtype)
        assert self._budget is not None
        self._budget.check(size, detail, when)

    # ----- results --------------------------------------------------------------------------------------
    def _build_records(self) -> list[AttentionRecord]:
        records = self.collector.records() if self.collector else []
        config = getattr(self.model, "config", None)
        for record in records:
            record.model_class = type(self.model).__name__
            record.model_name = str(getattr(config, "_name_or_path", "") or "")
            record.attn_implementation = getattr(config, "_attn_implementation", None)
            stored = _dtype_name(self.dtype)
            if self._precisions:
                notes = [
                    f"softmax(QK^T) computed in {_dtype_name(c)} from {_dtype_name(i)} queries and keys ({how})"
                    for (i, c), how in self._precisions.items()
                ]
                record.metadata.setdefault("precision", "; ".join(notes) + f"; stored as {stored}")
                record.metadata.setdefault("compute_dtype", sorted({_dtype_name(c) for _, c in self._precisions}))
                record.metadata.setdefault("input_dtype", sorted({_dtype_name(i) for i, _ in self._precisions}))
            else:
                record.metadata.setdefault("precision", f"the model's own attention weights; stored as {stored}")
            record.metadata["stored_dtype"] = stored
            record.metadata["training"] = self._training
            if self._training:
                record.metadata["dropout"] = _DROPOUT_NOTE
            if self.tokenizer is not None:
                label_tokens(self.tokenizer, record)
        if self._sink is not None and self.collector is not None:
            records = [AttentionRecord.load(self.collector.write_streamed(r)) for r in records]
        return records

    @property
    def records(self) -> list[AttentionRecord]:
        """One record per independent forward (a generate() call is one)."""
        if self._records is None:
            if self._failure is not None:
                failure = self._failure
                raise CaptureError(f"the capture failed ({type(failure).__name__}: {failure}); nothing was recorded")
            raise CaptureError("the capture has not finished: read .record after the with-block")
        return self._records

    @property
    def record(self) -> AttentionRecord:
        """The record of the last forward (or generate() call) in the block."""
        records = self.records
        if not records:
            raise CaptureError("nothing was captured: the model did not run inside the with-block")
        return records[-1]

    def __repr__(self) -> str:
        state = (
            "finished"
            if self._records is not None
            else ("failed" if self._failure is not None else ("active" if self._entered else "ready"))
        )
        return f"capture({type(self.model).__name__}, {state})"


_DROPOUT_NOTE = (
    "training mode: the weights are the attention probabilities before dropout (recomputed "
    "beside the kernel, or read at the input of the module's attention dropout); the model's "
    "output used dropped-out weights. Declared modules: what their forward returned"
)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
