"""Inbound adapter for Hugging Face transformers models.

Attention modules are found from each submodel's own ``_can_record_outputs`` specs (the same
rules transformers uses for ``output_attentions``), which give every module its kind (self or
cross) and its owning submodel (encoder, decoder, ...). While a capture is active the entries of
``ALL_ATTENTION_FUNCTIONS`` that the model uses are wrapped: the original kernel still computes
the output, and for captured modules the probabilities are recomputed beside it. Eager models
already return their weights; those are read from the module's output. The model is asked for
its attentions meanwhile and the recomputed blocks are handed back to the modules as their
weights, so that the model's own recording places them (:mod:`.hf_outputs`): ``as_hf_outputs()``
then has the model's own keys and nesting. Modules that must run eager are switched alone.
"""

from __future__ import annotations

import inspect
import threading

from ..errors import CaptureError
from .base import Adapter, Target
from .dropout_probe import watch_dropout
from .hf_kernel import TargetHandler, is_hf_model, owner_inputs
from .hf_legacy import LegacyOutputs, legacy_targets
from .hf_outputs import OutputLayout, asks_output_attentions
from .hooks import remove_hooks
from .scope import attribute_patch, first_active, item_patch, original_value
from .sdpa_intercept import SdpaInterception, calls_sdpa_directly, direct_sdpa_targets
from .source import forward_mentions

KERNELS = {"sdpa": "sdpa", "flex_attention": "flex"}
_ROUTING_MARKERS = ("ALL_ATTENTION_FUNCTIONS", "attention_interface", "get_interface")

# module (the one an attention function receives) -> handlers of the captures watching it (one per
# capture; each capture is active in its own thread or task, see attn_plugins.adapters.scope)
_HANDLERS: dict[int, list[TargetHandler]] = {}
# implementation name -> the shared wrapper patch of AttentionInterface's entry
_WRAPPED: dict[str, object] = {}
_LOCK = threading.RLock()


def _kernel_for(impl: str | None) -> str | None:
    if impl is None or impl == "eager":
        return None
    if impl in KERNELS:
        return KERNELS[impl]
    if impl.startswith("flash_attention") or impl.endswith("flash_attention_2") or "flash" in impl:
        return "flash"
    return "unknown"


# ---------------------------------------------------------------------------------------------
# finding the attention modules
# ---------------------------------------------------------------------------------------------
def _specs(model):
    from transformers.utils.output_capturing import OutputRecorder

    flags = getattr(type(model), "_can_record_outputs", None) or {}
    tasks = []
    for key, value in flags.items():
        if key not in ("attentions", "cross_attentions"):
            continue
        for spec in value if isinstance(value, list) else [value]:
            if not isinstance(spec, OutputRecorder):
                spec = OutputRecorder(
                    target_class=None if isinstance(spec, str) else spec,
                    index=1,
                    class_name=spec if isinstance(spec, str) else None,
                )
            tasks.append((key, spec))
    return tasks


def find_targets(model) -> list[tuple[Target, int]]:
    """Attention modules as transformers itself would record them, with their output index."""
    from transformers import PreTrainedModel

    found: list[tuple[Target, int]] = []

    def visit(module, name: str, owner, tasks) -> None:
        for child_name, child in module.named_children():
            path = f"{name}.{child_name}" if name else child_name
            if isinstance(child, PreTrainedModel):
                visit(child, path, child, _specs(child))
            else:
                visit(child, path, owner, tasks)
        for key, spec in tasks:
            hit = (spec.target_class is not None and isinstance(module, spec.target_class)) or (
                spec.class_name is not None and name.endswith(spec.class_name)
            )
            if not hit:
                continue
            if spec.layer_name is not None and "." + spec.layer_name.strip(".") + "." not in "." + name + ".":
                continue
            kind = "cross" if key == "cross_attentions" else "self"
            if any(t.module is module for t, _ in found):
                continue  # one module matching two specs (merged self+cross attention): captured once
            found.append((Target(name=name, stack=None, kind=kind, owner=owner, module=module), spec.index))

    visit(model, "", model, _specs(model))
    _assign_stacks(model, found)
    return found


def interface_targets(model) -> list[tuple[Target, int]]:
    """Attention modules of a model that declares no output-capture specs but routes its attention
    through ``ALL_ATTENTION_FUNCTIONS`` and threads ``output_attentions`` down by hand (PatchTST,
    Pix2Struct, LightGlue): the innermost modules whose own forward calls the interface. Under a
    kernel that returns no weights (sdpa) the model's own recording would collect ``None``s; with
    these hooked, the recomputed blocks are handed back as the weights and placed by the model."""
    from transformers import PreTrainedModel

    found: list[tuple[Target, int]] = []

    def visit(module, name: str, owner) -> bool:
        inner = False
        for child_name, child in module.named_children():
            path = f"{name}.{child_name}" if name else child_name
            inner = visit(child, path, child if isinstance(child, PreTrainedModel) else owner) or inner
        if inner or isinstance(module, PreTrainedModel) or not forward_mentions(type(module).forward, _ROUTING_MARKERS):
            return inner
        kind = "cross" if any(w in name.lower() for w in ("cross", "encdec", "encoder_decoder")) else "self"
        found.append((Target(name=name, stack=None, kind=kind, owner=owner, module=module), 1))
        return True

    visit(model, "", model)
    _assign_stacks(model, found)
    return found


def _assign_stacks(model, found) -> None:
    config = getattr(model, "config", None)
    encoder = decoder = None
    if getattr(config, "is_encoder_decoder", False):
        encoder = _call_or_none(model, "get_encoder")
        decoder = _call_or_none(model, "get_decoder")
    owners = []
    for target, _ in found:
        if target.owner not in owners:
            owners.append(target.owner)
    sides = []  # (stack, ids of the modules inside it, how many sub-models own attention there)
    for stack, root in (("encoder", encoder), ("decoder", decoder)):
        if root is not None:
            inside = {id(m) for m in root.modules()}
            sides.append((stack, inside, len({id(t.owner) for t, _ in found if id(t.module) in inside})))
    for target, _ in found:
        side = next(((stack, n) for stack, inside, n in sides if id(target.module) in inside), None)
        if side is not None:
            # a side with several sub-models in it (T5Gemma2's encoder: a text encoder and a vision tower)
            # names each stack by its path, so that their layer indices never collide
            target.stack = side[0] if side[1] == 1 else _path_of(model, target.owner)
        elif len(owners) > 1 and target.owner is not model:
            # a composite model (e.g. a vision tower beside a language model): name the stack by its path
            target.stack = _path_of(model, target.owner)


def _stack_of(model, module) -> str | None:
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        for stack, getter in (("encoder", "get_encoder"), ("decoder", "get_decoder")):
            root = _call_or_none(model, getter)
            if root is not None and _is_within(module, root):
                return stack
    return None


def _call_or_none(model, method: str):
    try:
        return getattr(model, method)()
    except Exception:  # noqa: BLE001 - models without the accessor
        return None


def _is_within(module, root) -> bool:
    return any(m is module for m in root.modules())


def _path_of(model, module) -> str:
    for name, candidate in model.named_modules():
        if candidate is module:
            return name or None
    return None


def _routes_through_interface(module) -> bool:
    return any(forward_mentions(type(sub).forward, _ROUTING_MARKERS) for sub in module.modules())


def _impl_of(target: Target) -> str | None:
    """The module's attention implementation (as the user set it, even while a capture in another
    thread has switched the module to an eager copy of its config)."""
    config = getattr(target.module, "config", None)
    if config is not None:
        config = original_value(target.module, "config", config)
    config = config or getattr(target.owner, "config", None)
    return original_value(config, "_attn_implementation_internal", getattr(config, "_attn_implementation", None))


def _current_impl(target: Target) -> str | None:
    """The implementation the module runs now (its eager copy while :meth:`_switch_only` holds it)."""
    config = getattr(target.module, "config", None) or getattr(target.owner, "config", None)
    return getattr(config, "_attn_implementation", None)


# ---------------------------------------------------------------------------------------------
# the wrapper around ALL_ATTENTION_FUNCTIONS entries
# ---------------------------------------------------------------------------------------------
def _make_wrapper(impl: str, original):
    """The kernel wrapper: closes over ``original``, so it keeps working after it was uninstalled."""
    signature = inspect.signature(original)
    kernel = _kernel_for(impl)

    def attn_plugins_capture_wrapper(module, query, key, value, attention_mask, *args, **kwargs):
        handlers = _HANDLERS.get(id(module))
        handler = first_active(handlers) if handlers else None  # the capture of this thread/task, if any
        if handler is not None and handler.layout is not None and handler.layout.asking:
            kwargs.pop("output_attentions", None)  # asked by the capture, not by the user: no kernel warning
        output = original(module, query, key, value, attention_mask, *args, **kwargs)
        if handler is not None:
            if args:  # rare positional extras: name them with the original's signature
                bound = signature.bind(module, query, key, value, attention_mask, *args, **kwargs)
                kwargs = {
                    k: v
                    for k, v in bound.arguments.items()
                    if k not in ("module", "query", "key", "value", "attention_mask")
                }
                kwargs.update(kwargs.pop("kwargs", {}) or {})
            weights = handler.on_kernel_call(module, query, key, value, attention_mask, kwargs, kernel)
            if weights is not None and isinstance(output, tuple) and len(output) == 2 and output[1] is None:
                output = (output[0], weights)  # the model's own recording places it (hf_outputs)
        return output

    attn_plugins_capture_wrapper.__wrapped__ = original
    return attn_plugins_capture_wrapper


def _install_wrapper(impl: str, session):
    """Share the wrapper of AttentionInterface's ``impl`` entry (installed by the first capture)."""
    from transformers.modeling_utils import AttentionInterface

    mapping = AttentionInterface._global_mapping
    with _LOCK:
        if impl not in mapping:
            raise CaptureError(
                f"attention implementation {impl!r} is not registered in transformers' AttentionInterface"
            )
        patch = item_patch(mapping, impl, session, lambda original, _patch: _make_wrapper(impl, original))
        _WRAPPED[impl] = patch
        return patch


def _remove_wrapper(patch, session) -> None:
    with _LOCK:
        patch.release(session)
        if not patch.users and _WRAPPED.get(patch.key[2]) is patch:
            del _WRAPPED[patch.key[2]]


class HuggingFaceAdapter(Adapter):
    """Attaches a capture session to a transformers model; :meth:`detach` undoes everything."""

    name = "huggingface"
    priority = 10

    def __init__(self, session) -> None:
        super().__init__(session)
        self.handles: list = []
        self.wrapped: list = []  # shared patches of AttentionInterface entries
        self.switched: list = []  # shared patches of configs switched to eager (and of torch's dropout)
        self.handlers: list[tuple[int, TargetHandler]] = []
        self._found: list = []
        self._legacy = None
        self._intercepted = None
        self._layout = None

    @classmethod
    def matches(cls, model) -> bool:
        return is_hf_model(model)

    def find(self, model) -> list[Target]:
        self._found = find_targets(model)
        self._legacy = None
        impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
        if not self._found and _kernel_for(impl) not in (None, "unknown") and asks_output_attentions(model):
            self._found = interface_targets(model)  # no specs, but the interface: recompute beside the kernel
        if not self._found:
            direct = direct_sdpa_targets(model, lambda m: _stack_of(model, m)) if impl == "sdpa" else []
            if direct:  # modules that call torch's sdpa themselves: intercept it, outputs stay identical
                self._legacy = SdpaInterception(self.session, model, direct)
                return direct
            targets = legacy_targets(model)
            if targets:
                self._legacy = LegacyOutputs(self.session, model, targets)
            return targets
        # spec'd modules that neither route through AttentionInterface nor are eager, but call sdpa directly
        direct = [
            t
            for t, _ in self._found
            if _kernel_for(_impl_of(t)) is not None
            and not _routes_through_interface(t.module)
            and any(calls_sdpa_directly(m) for m in t.module.modules())
        ]
        if direct:
            self._intercepted = SdpaInterception(self.session, model, direct)
            self._found = [(t, i) for t, i in self._found if t not in direct]
            return [t for t, _ in self._found] + direct
        return [t for t, _ in self._found]

    def attach(self, model) -> None:
        session = self.session
        if self._legacy is not None:
            impl = getattr(model.config, "_attn_implementation", None)
            if impl not in (None, "eager") and isinstance(self._legacy, LegacyOutputs):  # asks output_attentions
                session.warn_once(
                    f"{type(model).__name__} does not use transformers' AttentionInterface; it is asked for "
                    f"output_attentions=True during the capture, which may run its eager attention instead of {impl!r}"
                )
            self._legacy.attach()
            return
        targets_with_index = self._found
        self.switched.append(watch_dropout(session))  # eager weights in training mode: before dropout
        if asks_output_attentions(model):
            self._layout = OutputLayout(session, model, adopted_stack="outputs")
        if self._intercepted is not None:
            self._intercepted.layout = self._layout
            self._intercepted.attach()
        impls = {}
        for target, _ in targets_with_index:
            impl = _impl_of(target)
            kernel = _kernel_for(impl)
            if kernel is not None and (kernel == "unknown" or not _routes_through_interface(target.module)):
                impls[target.name] = "switch"
            else:
                impls[target.name] = impl
        if "switch" in impls.values():
            names = [n for n, i in impls.items() if i == "switch"]
            session.warn_once(
                f"{type(model).__name__}: {len(names)} attention module(s) (e.g. {names[0]!r}) do not route through "
                "transformers' AttentionInterface or use an implementation attn-plugins cannot mirror; they run with "
                "attn_implementation='eager' for the duration of the capture (restored afterwards)"
            )
            self._switch_only([t for t, _ in targets_with_index if impls[t.name] == "switch"])
            impls = {t.name: _current_impl(t) for t, _ in targets_with_index}
        owners = []
        for target, output_index in targets_with_index:
            handler = TargetHandler(session, target, output_index, self._layout)
            self.handles.append(target.module.register_forward_pre_hook(handler.before))
            self.handles.append(target.module.register_forward_hook(handler.after))
            with _LOCK:
                for sub in target.module.modules():  # another capture of this module in this thread/task
                    if first_active(_HANDLERS.get(id(sub), ())) is not None:
                        raise CaptureError(f"module {target.name!r} is already being captured by another capture")
                for sub in target.module.modules():
                    _HANDLERS.setdefault(id(sub), []).append(handler)
                    self.handlers.append((id(sub), handler))
            if target.owner not in owners:
                owners.append(target.owner)
        for owner in owners:
            self.handles.append(owner.register_forward_pre_hook(self._begin_pass(owner), with_kwargs=True))
        for impl in sorted({i for i in impls.values() if _kernel_for(i) is not None}):
            self.wrapped.append(_install_wrapper(impl, session))
        if self._layout is not None:
            self._layout.attach()

    def _switch_only(self, targets) -> None:
        """Run only ``targets`` with eager attention: the modules inside them that read a config get a
        copy set to eager, so the rest of the model keeps its kernel and its outputs stay identical
        (a module that reads no config has no eager variant to switch to). Each module's ``config``
        goes through a shared patch (:mod:`.scope`): captures in other threads share it, the last one
        puts the module's own config back."""
        import copy

        holders = [m for t in targets for m in t.module.modules() if hasattr(m.__dict__.get("config"), "to_dict")]
        copies: dict[int, object] = {}

        def eager_copy(original, _patch):
            if id(original) not in copies:
                copies[id(original)] = copy.copy(original)
                copies[id(original)]._attn_implementation_internal = "eager"
            return copies[id(original)]

        seen: set[int] = set()
        for module in holders:
            if id(module) not in seen:
                seen.add(id(module))
                self.switched.append(attribute_patch(module, "config", self.session, eager_copy, instance=True))

    def _begin_pass(self, owner):
        session = self.session

        def hook(module, args, kwargs):
            session.begin_pass(owner, owner_inputs(args, kwargs))

        return hook

    def detach(self) -> None:
        errors = []
        for extra in (self._legacy, self._intercepted, self._layout):
            if extra is not None:
                try:
                    extra.detach()
                except Exception as exc:  # noqa: BLE001 - the rest is undone all the same
                    errors.append(exc)
        errors += remove_hooks(self.handles)
        with _LOCK:
            for key, handler in self.handlers:
                handler.release()
                remaining = [h for h in _HANDLERS.get(key, ()) if h is not handler]
                if remaining:
                    _HANDLERS[key] = remaining
                else:
                    _HANDLERS.pop(key, None)
        self.handlers.clear()
        while self.wrapped:
            _remove_wrapper(self.wrapped.pop(), self.session)
        while self.switched:  # the eager config copies and torch's dropout wrapper
            self.switched.pop().release(self.session)
        if errors:
            raise errors[0]
