"""Where a transformers model puts each attention matrix in its own output, read from the model itself.

Composite models nest their outputs in ways no stack name predicts: a VLM returns the language
model's weights as ``attentions`` and the vision tower's under ``image_outputs.attentions``; CLIP
nests ``text_model_output`` and ``vision_model_output``; a transducer returns only ``attentions``
from an encoder. So during the capture the model is asked for ``output_attentions`` as the user
would ask for it, the kernel wrapper hands each captured probability block back to the module as
its weights, and the model's own recording (``_can_record_outputs``, its output classes, its
nesting) places them. :class:`OutputLayout` reads the placement from the output (by tensor
identity), records it in ``record.metadata["hf_outputs"]`` for ``as_hf_outputs()``, and hands the
user the output they asked for: the same object without the attention fields it added, or, for a
call that asked for a tuple (``return_dict=False``), ``ModelOutput.to_tuple()`` of it (the call runs
with ``return_dict=True`` so that the fields have names). In training mode, weights the model returns
after its dropout are replaced by the probabilities before it (:mod:`.dropout_probe`; the caller
installs the dropout wrapper).
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap

import torch

from .base import Target
from .dropout_probe import Probe
from .hooks import remove_hooks

LAYOUT_KEY = "hf_outputs"
SHAPES_KEY = "hf_output_shapes"
NESTING_KEY = "hf_output_nesting"
REFUSED_KEY = "hf_outputs_refused"
MERGED_HEADS_KEY = "hf_merged_heads"  # layers the model returns as [batch*heads, q, k] (SAM's sdpa twin)
_INSTALLED_FLAG = "_output_capturing_hooks_installed"  # transformers.utils.output_capturing
_RECORDING_HOOK = "output_capturing_hook"
_SUFFIX = "attentions"


def attention_fields(output, prefix: str = "") -> dict[str, list]:
    """``{"attentions": [...], "image_outputs.attentions": [...]}``: every attention field of a
    model output (nested outputs included), each flattened to its tensors in order."""
    found: dict[str, list] = {}
    if not hasattr(output, "keys"):
        return found
    for key in list(output.keys()):
        value = output[key]
        path = f"{prefix}{key}"
        if hasattr(value, "keys"):
            found.update(attention_fields(value, path + "."))
        elif str(key).endswith(_SUFFIX) and isinstance(value, (tuple, list)):
            found[path] = _flatten(value)
    return found


def _field(output, path: str):
    for part in path.split("."):
        output = output[part]
    return output


def _flatten(value) -> list:
    if isinstance(value, torch.Tensor) or value is None:
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _flatten(v)]
    return []


def nesting(value):
    """The tuple structure of an attention field: ``None`` for a flat tuple of tensors, else the
    length of each inner tuple (Grounding DINO's ``(fused_vision, fused_text, text, deformable)``
    per layer, BridgeTower's ``(text, image)`` pairs; 0 for a bare tensor), as deep as the model nests them."""
    if not isinstance(value, (tuple, list)) or all(not isinstance(v, (tuple, list)) for v in value):
        return None
    return [(nesting(v) or len(v)) if isinstance(v, (tuple, list)) else 0 for v in value]


def without_attentions(output):
    """The output as the user's call returns it: every attention field (nested too) left unset,
    the other fields in their order."""
    if not hasattr(output, "keys") or not hasattr(output, "to_tuple"):
        return output
    kept = {}
    for key in list(output.keys()):
        value = output[key]
        if str(key).endswith(_SUFFIX) and isinstance(value, (tuple, list)):
            continue
        kept[key] = without_attentions(value) if hasattr(value, "to_tuple") else value
    rebuilt = type(output)(**kept)
    if list(rebuilt.keys()) != list(kept) and hasattr(rebuilt, "move_to_end"):
        for key in kept:  # fields the model set after construction keep their place
            rebuilt.move_to_end(key)
    return rebuilt


_FIELD_STACKS = {"attentions": None, "encoder_attentions": "encoder", "decoder_attentions": "decoder"}


def field_stack(path: str, encoder_decoder: bool) -> tuple[str | None, str]:
    """The stack and kind of the layers an output field holds (``text_outputs.attentions`` ->
    stack ``text_outputs``; ``cross_attentions`` -> the decoder's cross-attention)."""
    parent, _, leaf = path.rpartition(".")
    kind = "cross" if "cross" in leaf else "self"
    if leaf == "cross_attentions":
        stack = "decoder" if encoder_decoder else None
    elif leaf in _FIELD_STACKS:
        stack = _FIELD_STACKS[leaf]
    else:
        stack = re.sub(r"_?attentions$", "", leaf) or None
    if parent:
        stack = f"{parent}.{stack}" if stack else parent
    return stack, kind


def is_probability(weights: torch.Tensor) -> bool:
    """Whether a tensor a module returned as its weights holds probabilities (not scores, not a
    linear-attention mixer's state): floating point, every value in [0, 1]."""
    if not weights.is_floating_point():
        return False
    return not weights.numel() or bool(weights.min() >= 0 and weights.max() <= 1)


def tensor_key(tensor: torch.Tensor) -> tuple:
    """Identity of a weights tensor that survives ``detach()`` and views of the same memory."""
    return (tensor.data_ptr(), tuple(tensor.shape), tuple(tensor.stride()), tensor.device.type)


def asks_output_attentions(model) -> bool:
    """Whether ``model.forward`` takes ``output_attentions`` (by name or through ``**kwargs``)."""
    return _takes(model, "output_attentions")


def acts_on_output_attentions(model) -> bool:
    """Whether ``model.forward`` can act on ``output_attentions``: it takes it by name, or through
    ``**kwargs`` that its body (or a decorator around it) reads. A forward that drops its
    ``**kwargs`` unread (BridgeTower) returns its attention fields whether asked or not: the capture
    must not ask it, or it would hand the output back without fields the model returns anyway."""
    try:
        params = inspect.signature(type(model).forward).parameters
    except (TypeError, ValueError):
        return False
    if "output_attentions" in params:
        return True
    var_kw = next((p.name for p in params.values() if p.kind is p.VAR_KEYWORD), None)
    return var_kw is not None and _reads_kwargs(type(model).forward, var_kw)


def _reads_kwargs(forward, name: str) -> bool:
    """Whether ``forward`` (or a wrapper around it) uses its ``**name`` (True when unsure)."""
    function = forward
    while hasattr(function, "__wrapped__"):  # decorators: capture_outputs reads output_attentions itself
        if _code_mentions(getattr(function, "__code__", None), "output_attentions"):
            return True
        function = function.__wrapped__
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return True
    body = tree.body[0]
    if not isinstance(body, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return True
    return any(isinstance(node, ast.Name) and node.id == name for stmt in body.body for node in ast.walk(stmt))


def _code_mentions(code, word: str) -> bool:
    if code is None:
        return False
    try:
        return word in inspect.getsource(code)
    except (OSError, TypeError):
        return True


def _takes(model, name: str) -> bool:
    try:
        params = inspect.signature(type(model).forward).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


class OutputLayout:
    """Hooks on the outermost model: ask for its attentions, note where each captured block lands.

    Weights in the output that no hook captured (modules outside the specs, models that predate
    them, which compute their weights themselves when asked) are stored as layers named after
    their field (``attentions[3]``).

    Args:
        session: the capture session (its records get the layout).
        model: the outermost transformers model.
        adopted_stack: a stack name prefix for adopted layers, so that they never share a layer
            index with hooked ones (``None``: the field's own stack, for models with no hooks).
    """

    def __init__(self, session, model, adopted_stack: str | None = None) -> None:
        self.session = session
        self.model = model
        self.adopted_stack = adopted_stack
        self.encoder_decoder = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
        self.by_field: dict[tuple, Target] = {}
        self.handles: list = []
        self.asking = False  # this pass was asked for attentions by us (the kernel hands weights back)
        self._calls: list[tuple[bool, bool]] = []  # (attentions added, tuple wanted) per open model call
        self._probe = Probe(limit=None)  # training mode: the dropout inputs outside the hooked modules
        self._attached = False
        self._takes_return_dict = _takes(model, "return_dict")
        self._may_ask = acts_on_output_attentions(model)
        self._known: dict[tuple, tuple] = {}
        self._owner = None  # the owner of a block hooked in the current call
        self.layout: dict[str, list[tuple]] = {}
        self.shapes: dict[tuple, list[int]] = {}  # layer key -> the shape the model returned (3-D, 5-D fields)
        self.nesting: dict[str, list] = {}  # field -> its tuple structure, when not flat
        self.refused: dict[str, str] = {}  # field -> why an entry of it could not be captured
        self._refusing: dict[str, str] = {}

    def attach(self) -> None:
        # transformers installs its recording hooks the first time attentions are asked for and
        # keeps them; note what is there now, so that detach leaves the model as it was
        self.session.add_finisher(self._finish)
        self._hooks_before = {id(m): set(m._forward_hooks) for m in self.model.modules()}
        self._flags_before = {id(m): m.__dict__.get(_INSTALLED_FLAG) for m in self.model.modules()}
        self.handles.append(self.model.register_forward_pre_hook(self._before, with_kwargs=True))
        self.handles.append(self.model.register_forward_hook(self._after))
        self._attached = True

    def detach(self) -> None:
        errors = remove_hooks(self.handles)
        self._probe.__exit__()
        self._calls.clear()
        self.asking = False
        if not self._attached:
            return
        self._attached = False
        for module in self.model.modules():
            before = self._hooks_before.get(id(module), set())
            for key in [k for k in module._forward_hooks if k not in before]:
                if getattr(module._forward_hooks[key], "__name__", "") == _RECORDING_HOOK:
                    for table in (
                        module._forward_hooks,
                        module._forward_hooks_with_kwargs,
                        module._forward_hooks_always_called,
                    ):
                        table.pop(key, None)
            if _INSTALLED_FLAG in module.__dict__ and self._flags_before.get(id(module)) is None:
                del module.__dict__[_INSTALLED_FLAG]
        if errors:
            raise errors[0]

    def note(self, tensor, call, shape: list[int] | None = None) -> None:
        """A captured block (the tensor the module returned or was handed) and its layer; ``shape``:
        the model's shape of it when the layer holds it otherwise (``[batch*heads, q, k]``)."""
        if isinstance(tensor, torch.Tensor):
            key = (call.target.stack, call.target.kind, call.index)
            self._known[tensor_key(tensor)] = key
            self._owner = call.target.owner  # adopted entries of this call join its record
            if shape:
                self.shapes[key] = list(shape)

    def _before(self, module, args, kwargs):
        config = getattr(self.model, "config", None)
        asked = kwargs.get("return_dict")
        wants_tuple = self._takes_return_dict and (
            asked is False or (asked is None and getattr(config, "return_dict", True) is False)
        )
        add = self._may_ask and not kwargs.get("output_attentions")
        if not self._calls and self.model.training:
            self._probe.__enter__()
        self._calls.append((add, wants_tuple))
        self.asking = self.asking or add
        changes = {}
        if add:
            changes["output_attentions"] = True
        if wants_tuple:
            changes["return_dict"] = True
        return (args, {**kwargs, **changes}) if changes else None

    def _after(self, module, args, output):
        added, wants_tuple = self._calls.pop() if self._calls else (False, False)
        before_dropout: list = []
        if not self._calls:
            self.asking = False
            self._probe.__exit__()
            before_dropout, self._probe.seen = self._probe.seen, []
        fields = attention_fields(output)
        layout: dict[str, list[tuple]] = {}
        self._refusing = {}
        for path, tensors in fields.items():
            kept = before_dropout if module.training and len(fields) == 1 else []
            if len(kept) != len(tensors) or not all(
                isinstance(t, torch.Tensor) and k.shape == t.shape for k, t in zip(kept, tensors, strict=True)
            ):
                kept = []
            keys = []
            for position, tensor in enumerate(tensors):
                if not isinstance(tensor, torch.Tensor):
                    continue
                key = self._known.get(tensor_key(tensor))
                if key is None:
                    key = self._adopt(path, position, kept[position] if kept else tensor)
                if key is not None:
                    keys.append(key)
            if keys:
                layout[path] = keys
            shape = nesting(_field(output, path))
            if shape is not None and len(keys) == len(tensors):
                self.nesting[path] = shape
        if layout or self._refusing:
            self.layout, self.refused = layout, self._refusing
        self._known.clear()
        self._owner = None
        if not (added or wants_tuple):
            return None
        result = without_attentions(output) if added else output
        return result.to_tuple() if wants_tuple and hasattr(result, "to_tuple") else result

    def _finish(self, segment, record) -> None:
        if self.refused:
            record.metadata[REFUSED_KEY] = dict(self.refused)
        if not self.layout:
            return
        where = {(layer.stack, layer.kind, layer.index): i for i, layer in enumerate(record.layers)}
        record.metadata[LAYOUT_KEY] = {
            path: [where[k] for k in keys if k in where] for path, keys in self.layout.items()
        }
        shapes = {path: [self.shapes.get(k) for k in keys if k in where] for path, keys in self.layout.items()}
        shapes = {path: axes for path, axes in shapes.items() if any(axes)}
        if shapes:
            record.metadata[SHAPES_KEY] = shapes
        kept = {
            path: shape
            for path, shape in self.nesting.items()
            if len(record.metadata[LAYOUT_KEY].get(path, ())) == len(self.layout[path])
        }
        if kept:
            record.metadata[NESTING_KEY] = kept

    def _adopt(self, path: str, position: int, weights: torch.Tensor):
        if not is_probability(weights) or weights.dim() < 2:
            # not attention weights (scores, a linear mixer's state, a vision tower's attention output):
            # said, and left out of as_hf_outputs() (nothing there to mirror)
            self.session.warn_once(
                f"{type(self.model).__name__} returns {path}[{position}] as {list(weights.shape)} values that are not "
                "attention probabilities (outside [0, 1]: scores, another mixer's state or an attention output); "
                "they were not captured"
            )
            return None
        axes = None
        if weights.dim() in (3, 5):
            # [batch, a, b, query, key] (Hiera: heads x mask units; ProphetNet: n-gram x heads) is kept as
            # [batch, a*b, query, key]; [n, query, key] (GroupViT's grouping [batch, groups, patches],
            # Grounding DINO's fusion [batch*heads, image, text], SLANet's additive [batch, 1, positions])
            # as [n, 1, query, key]: as_hf_outputs() restores the model's shape
            axes = list(weights.shape)
            weights = weights.flatten(1, 2) if weights.dim() == 5 else weights.unsqueeze(1)
        elif weights.dim() != 4:
            return self._refuse(
                path,
                position,
                f"{weights.dim()}-D probabilities (shape {list(weights.shape)}), "
                "which the record cannot hold as [batch, heads, query, key]",
            )
        owner = self._owner if self._owner is not None else self.model
        target = self.by_field.get((path, position, id(owner)))
        if target is None:
            stack, kind = field_stack(path, self.encoder_decoder)
            if self.adopted_stack:
                stack = f"{self.adopted_stack}.{stack}" if stack else self.adopted_stack
            target = Target(name=f"{path}[{position}]", stack=stack, kind=kind, owner=owner, module=self.model)
            self.by_field[(path, position, id(owner))] = target
        call = self.session.begin_call(target, weights.shape[-2], weights.shape[-1])
        if call is None:
            return None
        self.session.emit(call, weights.detach())
        key = (target.stack, target.kind, call.index)
        if axes:
            self.shapes[key] = axes
        return key

    def _refuse(self, path: str, position: int, why: str) -> None:
        """An entry the record cannot hold: said now, and ``as_hf_outputs()`` refuses the field."""
        reason = f"{type(self.model).__name__} returns {path}[{position}] as {why}; it was not captured"
        self.session.warn_once(reason)
        self._refusing.setdefault(path, reason)
        return None
