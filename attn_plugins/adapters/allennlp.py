"""Inbound adapter for AllenNLP models (allennlp 2.10.1, run through :mod:`attn_plugins.compat`).

What is captured, and how:

* ``allennlp.modules.attention.Attention`` (additive/Bahdanau, dot product, bilinear, cosine, linear,
  scaled dot product): one call attends from one query vector to the rows of a matrix. Every call
  within a phase of the model's forward is one row; the rows of a phase are assembled into one
  ``[batch, 1, steps, source]`` layer, so a seq2seq decoder gives its whole alignment matrix over
  time (``kind="cross"``, ``stack="decoder"``). A phase is the model's forward, split where a
  ``BeamSearch`` runs: in eval mode with targets, ``SimpleSeq2Seq`` gives two records, the
  teacher-forced loop and the greedy decoding. Beam search with ``beam_size > 1`` reorders and
  prunes hypotheses at every step; those steps are not captured (a warning says so). Weights are
  exactly what the module returned; with ``normalize=False`` they are scores and the record's
  metadata says so.
* ``allennlp.modules.matrix_attention.MatrixAttention``: unnormalised similarity scores (the module
  receives no mask), captured as ``[batch, 1, rows, columns]`` and listed in
  ``record.metadata["unnormalised_layers"]``.
* ``allennlp.modules.transformer`` attention modules (``SelfAttention``, ``T5Attention``): the
  module is asked for its own probabilities (``output_attentions=True``) and the field is emptied
  again when the caller did not ask for it, so the output the model sees is unchanged.
* Hugging Face models inside the AllenNLP model (``PretrainedTransformerEmbedder`` and the like)
  are captured by :class:`attn_plugins.adapters.huggingface.HuggingFaceAdapter`.

All parts of one forward land in one record. Tokens come from the model's vocabulary (the source
text field and, for decoders, the target namespace); the predictor add-on puts the instance's own
tokens in.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect

import torch

from ..errors import CaptureError
from .base import Adapter, Target
from .hf_kernel import is_hf_model
from .hooks import remove_hooks

__all__ = ["AllenNLPAdapter", "matches"]


def matches(model) -> bool:
    return any(cls.__name__ == "Model" and cls.__module__ == "allennlp.models.model" for cls in type(model).__mro__)


def _stack_from_path(path: str) -> str | None:
    parts = path.lower().split(".")
    if any("decoder" in p for p in parts):
        return "decoder"
    if any("encoder" in p for p in parts):
        return "encoder"
    return None


def _text_field_tensors(value) -> bool:
    return (
        isinstance(value, dict)
        and value
        and all(isinstance(v, dict) and all(isinstance(t, torch.Tensor) for t in v.values()) for v in value.values())
    )


class _StepTarget:
    """An ``Attention`` module: per-call rows, assembled per phase."""

    def __init__(self, target: Target, normalized: bool) -> None:
        self.target = target
        self.normalized = normalized
        self.rows: list[torch.Tensor] = []


class AllenNLPAdapter(Adapter):
    """Attaches a capture session to an AllenNLP ``Model``; :meth:`detach` undoes everything."""

    name = "allennlp"
    priority = 20

    def __init__(self, session) -> None:
        super().__init__(session)
        self.handles: list = []
        self.hf_adapters: list = []
        self.nested = None
        self.step_targets: list[_StepTarget] = []
        self.restore: list = []
        self.phase = "forward"
        self.phase_info: dict = {}
        self.segment_info: dict[int, dict] = {}
        self.unnormalised: set[str] = set()
        self.in_forward = 0

    @classmethod
    def matches(cls, model) -> bool:
        return matches(model)

    # ----- finding -----------------------------------------------------------------------------------
    def find(self, model) -> list[Target]:
        from ..compat import install_allennlp_compat

        install_allennlp_compat()
        from allennlp.modules.attention import Attention
        from allennlp.modules.matrix_attention import MatrixAttention
        from allennlp.modules.transformer.attention_module import AttentionModule
        from allennlp.nn.beam_search import BeamSearch

        self.model = model
        self._found: list[tuple[str, Target, object]] = []
        self.beam_searches = []
        seen_beams: set[int] = set()
        for module in model.modules():
            for value in vars(module).values():
                if isinstance(value, BeamSearch) and id(value) not in seen_beams:
                    seen_beams.add(id(value))
                    self.beam_searches.append(value)
        has_decoder = bool(self.beam_searches)
        targets: list[Target] = []
        hf_roots: list[tuple[str, torch.nn.Module]] = []

        def visit(module, path: str) -> None:
            for child_name, child in module.named_children():
                child_path = f"{path}.{child_name}" if path else child_name
                if is_hf_model(child):
                    hf_roots.append((child_path, child))
                    continue
                if isinstance(child, Attention):
                    stack = "decoder" if has_decoder or _stack_from_path(child_path) == "decoder" else None
                    target = Target(name=child_path, stack=stack, kind="cross", owner=model, module=child)
                    self._found.append(("attention", target, child))
                    targets.append(target)
                elif isinstance(child, MatrixAttention):
                    target = Target(name=child_path, stack=None, kind="cross", owner=model, module=child)
                    self._found.append(("matrix", target, child))
                    targets.append(target)
                elif isinstance(child, AttentionModule):
                    target = Target(
                        name=child_path, stack=_stack_from_path(child_path), kind="self", owner=model, module=child
                    )
                    self._found.append(("transformer", target, child))
                    targets.append(target)
                    continue  # its scoring function is a MatrixAttention over [batch, heads, q, k]: not a layer
                visit(child, child_path)

        if is_hf_model(model):  # pragma: no cover - an allennlp Model is never a PreTrainedModel
            hf_roots.append(("", model))
        else:
            visit(model, "")
        from .hf_nested import NestedHuggingFace  # imported when used: no transformers-side import cost

        self.nested = NestedHuggingFace(self.session, hf_roots)
        self.hf_adapters = self.nested.adapters
        targets.extend(self.nested.targets)
        return targets

    # ----- attaching ---------------------------------------------------------------------------------
    def attach(self, model) -> None:
        session = self.session
        self._wrap_records()
        self.handles.append(model.register_forward_pre_hook(self._model_before, with_kwargs=True))
        self.handles.append(model.register_forward_hook(self._model_after, always_call=True))
        for beam in self.beam_searches:
            self._wrap_search(beam)
        for kind, target, module in self._found:
            if kind == "attention":
                step = _StepTarget(target, bool(getattr(module, "_normalize", True)))
                self.step_targets.append(step)
                self.handles.append(module.register_forward_hook(functools.partial(self._attention_after, step)))
            elif kind == "matrix":
                variants = {"cross": target, "self": dataclasses.replace(target, kind="self")}
                self.handles.append(
                    module.register_forward_hook(functools.partial(self._matrix_after, variants), with_kwargs=True)
                )
            else:
                variants = {"self": target, "cross": dataclasses.replace(target, kind="cross")}
                signature = inspect.signature(module.forward)
                state: dict = {}
                self.handles.append(
                    module.register_forward_pre_hook(
                        functools.partial(self._transformer_before, signature, state), with_kwargs=True
                    )
                )
                self.handles.append(
                    module.register_forward_hook(
                        functools.partial(self._transformer_after, variants, state), always_call=True
                    )
                )
        self.nested.attach()
        del session

    def _wrap_records(self) -> None:
        self.session.add_finisher(
            lambda segment, record: self._finish_record(record, self.segment_info.get(id(segment), {}))
        )

    def _wrap_search(self, beam) -> None:
        original = beam.search
        adapter = self

        @functools.wraps(original)
        def search(*args, **kwargs):
            adapter._flush()
            beam_size = getattr(beam, "beam_size", 1)
            previous = adapter.phase
            adapter.phase = "greedy_decoding" if beam_size == 1 else "beam_search"
            adapter.session.begin_pass(adapter.model, {})
            if beam_size != 1:
                adapter.session.warn_once(
                    f"{type(adapter.model).__name__}: beam search with beam_size={beam_size} reorders and prunes "
                    "hypotheses at every step, so its attention steps are not captured; use beam_size=1 (greedy) "
                    "or capture a teacher-forced forward over the chosen output (AttentionPredictor does this)"
                )
            try:
                result = original(*args, **kwargs)
            except BaseException:
                adapter.phase = previous
                raise
            predictions = result[0] if isinstance(result, tuple) else None
            if isinstance(predictions, torch.Tensor) and predictions.dim() == 3:
                adapter.phase_info["decoder_ids"] = predictions[:, 0].detach()
            adapter._flush()
            adapter.phase = previous
            return result

        beam.search = search
        self.restore.append(lambda: vars(beam).pop("search", None))

    # ----- hooks -------------------------------------------------------------------------------------
    def _model_before(self, module, args, kwargs) -> None:
        self.in_forward += 1
        if self.in_forward > 1:
            return
        self.phase = "forward"
        self.phase_info = {}
        fields = [v for v in list(args) + list(kwargs.values()) if _text_field_tensors(v)]
        names = [k for k, v in kwargs.items() if _text_field_tensors(v)]
        source = fields[0] if fields else None
        target = None
        if len(fields) > 1 and getattr(module, "_target_namespace", None) is not None:
            target = kwargs.get("target_tokens", fields[1])
        self.base_info = {"source": source, "target": target, "field_names": names}
        self.session.begin_pass(self.model, {})

    def _model_after(self, module, args, output) -> None:
        self.in_forward -= 1
        if self.in_forward > 0:
            return
        self._flush()

    def _attention_after(self, step: _StepTarget, module, args, output) -> None:
        if self.phase == "beam_search" or not isinstance(output, torch.Tensor):
            return
        step.rows.append(output.detach())

    def _matrix_after(self, variants, module, args, kwargs, output) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() != 3:
            return
        inputs = list(args) + list(kwargs.values())
        kind = "self" if len(inputs) >= 2 and inputs[0] is inputs[1] else "cross"
        target = variants[kind]
        self._add(target, output.detach().unsqueeze(1))
        self.unnormalised.add(target.name)

    def _transformer_before(self, signature, state, module, args, kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return None
        arguments = dict(bound.arguments)
        extra = arguments.pop("kwargs", None) if "kwargs" in signature.parameters else None
        state["asked"] = bool(arguments.get("output_attentions", False))
        source = arguments.get("source_states", arguments.get("key_value_states"))
        state["kind"] = "cross" if source is not None else "self"
        arguments["output_attentions"] = True
        if extra:
            arguments.update(extra)
        return (), arguments

    def _transformer_after(self, variants, state, module, args, output):
        asked = state.pop("asked", True)
        kind = state.pop("kind", "self")
        probs = getattr(output, "attention_probs", None)
        if isinstance(probs, torch.Tensor) and probs.dim() == 4:
            self._add(variants[kind], probs.detach())
        if not asked and dataclasses.is_dataclass(output) and probs is not None:
            return dataclasses.replace(output, attention_probs=None)
        return None

    # ----- collecting --------------------------------------------------------------------------------
    def _add(self, target: Target, weights: torch.Tensor) -> None:
        call = self.session.begin_call(target, weights.shape[2], weights.shape[3])
        self._note_segment()
        if call is not None:
            self.session.emit(call, weights)

    def _note_segment(self) -> None:
        segment = self.session.current_segment(self.model)
        if segment is None:
            return
        info = self.segment_info.setdefault(id(segment), {"segment": segment})
        base = getattr(self, "base_info", {})
        info.setdefault("source", base.get("source"))
        info.setdefault("phase", self.phase)
        if self.phase == "forward" and base.get("target") is not None:
            info.setdefault("target", base.get("target"))

    def _flush(self) -> None:
        pending = [s for s in self.step_targets if s.rows]
        for step in pending:
            rows, step.rows = step.rows, []
            batch = rows[0].shape[0]
            if any(r.shape[0] != batch or r.shape[1:] != rows[0].shape[1:] for r in rows):
                raise CaptureError(
                    f"{step.target.name!r} was called with changing batch or source sizes within one pass "
                    "(beam search with several beams?); capture with beam_size=1 or a teacher-forced forward"
                )
            weights = torch.stack(rows, dim=1).unsqueeze(1)  # [batch, 1, steps, source]
            self._add(step.target, weights)
            if not step.normalized:
                self.unnormalised.add(step.target.name)
        if pending:
            segment = self.session.current_segment(self.model)
            if segment is not None and "decoder_ids" in self.phase_info:
                self.segment_info[id(segment)].setdefault("decoder_ids", self.phase_info.pop("decoder_ids"))

    # ----- records -----------------------------------------------------------------------------------
    def _finish_record(self, record, info: dict) -> None:
        model = self.model
        vocab = getattr(model, "vocab", None)
        record.metadata["framework"] = "allennlp"
        if info.get("phase"):
            record.metadata["phase"] = info["phase"]
        names = sorted(n for n in self.unnormalised if any(layer.name == n for layer in record.layers))
        if names:
            record.metadata["unnormalised_layers"] = names
            record.metadata["unnormalised_note"] = (
                "these layers hold similarity scores, not probabilities: AllenNLP's MatrixAttention (and Attention "
                "with normalize=False) returns unnormalised scores and never sees a mask"
            )
        if any(layer.stack is None and layer.kind == "self" for layer in record.layers) or self.hf_adapters:
            record.metadata.setdefault(
                "precision", "the modules' own weights (Hugging Face parts: as the HF adapter reports)"
            )
        else:
            record.metadata.setdefault("precision", "the modules' own weights")
        source = info.get("source")
        if "input_ids" in record.inputs and self.hf_adapters and record.tokens is None:
            record.tokens = _hf_tokens(model, record.inputs["input_ids"])
        if source is not None and "input_ids" not in record.inputs:
            ids, mask, namespace = _ids_and_mask(model, source)
            if ids is not None:
                record.inputs["input_ids"] = ids.detach()
                record.inputs["attention_mask"] = mask.detach().long()
                if vocab is not None and namespace is not None:
                    record.tokens = _tokens(vocab, ids, namespace)
        target_namespace = getattr(model, "_target_namespace", None)
        decoder_ids = info.get("decoder_ids")
        if decoder_ids is None and info.get("target") is not None:
            ids, _, _ = _ids_and_mask(model, info["target"])
            if ids is not None:
                decoder_ids = ids[:, 1:]  # row t of the alignment produced target token t + 1
        if decoder_ids is not None and any(layer.stack == "decoder" for layer in record.layers):
            steps = max(layer.weights.shape[2] for layer in record.layers if layer.stack == "decoder")
            decoder_ids = decoder_ids[:, :steps]
            record.inputs["decoder_input_ids"] = decoder_ids.detach()
            record.metadata["decoder_tokens"] = "the token each decoder step produced"
            if vocab is not None and target_namespace is not None:
                record.decoder_tokens = _tokens(vocab, decoder_ids, target_namespace)

    # ----- detaching ---------------------------------------------------------------------------------
    def detach(self) -> None:
        errors = []
        try:
            self._flush()
        except Exception as exc:  # noqa: BLE001 - still remove every hook
            errors.append(exc)
        for step in self.step_targets:
            step.rows = []
        errors += remove_hooks(self.handles)
        for undo in self.restore:
            try:
                undo()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
        self.restore.clear()
        if self.nested is not None:
            errors += self.nested.detach()
        self.in_forward = 0
        if errors:
            raise errors[0]


def _ids_and_mask(model, field):
    """Token ids, mask and vocabulary namespace of a ``TextFieldTensors`` argument."""
    from allennlp.nn import util

    try:
        mask = util.get_text_field_mask(field)
    except Exception:  # noqa: BLE001
        return None, None, None
    for key, tensors in field.items():
        for name in ("tokens", "token_ids"):
            ids = tensors.get(name)
            if isinstance(ids, torch.Tensor) and ids.dim() == 2:
                return ids, mask, _namespace_for(model, key, name)
    return None, mask, None


def _namespace_for(model, key: str, tensor_name: str) -> str | None:
    from allennlp.modules.text_field_embedders import BasicTextFieldEmbedder

    for module in model.modules():
        if isinstance(module, BasicTextFieldEmbedder):
            embedder = getattr(module, "_token_embedders", {}).get(key)
            namespace = getattr(embedder, "_vocab_namespace", None)
            if namespace:
                return namespace
    if tensor_name == "token_ids":
        return "tags" if "tags" in getattr(model.vocab, "_token_to_index", {}) else None
    return "tokens"


def _tokens(vocab, ids: torch.Tensor, namespace: str) -> list[list[str]] | None:
    table = getattr(vocab, "_index_to_token", {}).get(namespace)
    if not table or len(table) <= 2:  # only padding/OOV: the ids are not from this vocabulary
        return None
    return [[str(table.get(int(i), int(i))) for i in row.tolist()] for row in ids]


def _hf_tokens(model, ids: torch.Tensor) -> list[list[str]] | None:
    """Word pieces of a Hugging Face encoder inside the model (PretrainedTransformerEmbedder)."""
    for module in model.modules():
        inner = getattr(module, "transformer_model", None)
        name = getattr(getattr(inner, "config", None), "_name_or_path", None)
        if inner is None or not name:
            continue
        try:
            from allennlp.common import cached_transformers

            tokenizer = cached_transformers.get_tokenizer(name)
            return [tokenizer.convert_ids_to_tokens(row.tolist()) for row in ids]
        except Exception:  # noqa: BLE001 - tokens are a convenience
            return None
    return None
