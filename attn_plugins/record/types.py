"""AttentionRecord and LayerAttention: the one result type every part of attn-plugins reads and writes.

A record is a list of :class:`LayerAttention` (one attention matrix per captured module call,
``[batch, heads, query, key]``), the tokens, the model inputs that give the matrices meaning
(attention masks, input ids) and a little metadata. It saves to a single safetensors file whose
header carries the JSON metadata (:mod:`.file`) or to a record directory (:mod:`.directory`); the
format and its validation live in :mod:`.format`. Loading never executes code.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from .format import FORMAT_VERSION, KINDS, RecordParts, check_layer_tensors


@dataclass
class LayerAttention:
    """Attention probabilities of one attention module call.

    ``weights`` is ``[batch, heads, query, key]``. ``heads`` lists the model's head indices held
    along dimension 1 (``None``: all heads, in order). ``index`` is the layer's position in
    transformers' own order within its ``stack`` and ``kind`` (what ``output_attentions`` would
    give). ``queries``/``keys`` are kept only when capture was asked for them.
    """

    name: str
    stack: str | None
    kind: str
    index: int
    weights: torch.Tensor
    heads: list[int] | None = None
    queries: torch.Tensor | None = None
    keys: torch.Tensor | None = None

    @property
    def head_indices(self) -> list[int]:
        return list(self.heads) if self.heads is not None else list(range(self.weights.shape[1]))

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.weights.shape)
        where = f"{self.stack}/" if self.stack else ""
        return f"LayerAttention({where}{self.kind} #{self.index} {self.name!r}, {shape}, {self.weights.dtype})"


@dataclass
class AttentionRecord:
    """Everything captured from one forward pass (or one whole ``generate()`` call)."""

    layers: list[LayerAttention] = field(default_factory=list)
    tokens: list[list[str]] | None = None
    decoder_tokens: list[list[str]] | None = None
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    model_class: str = ""
    model_name: str = ""
    attn_implementation: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    # ----- reading ---------------------------------------------------------------------------
    @property
    def attention_mask(self) -> torch.Tensor | None:
        return self.inputs.get("attention_mask")

    @property
    def stacks(self) -> list[str | None]:
        seen: list[str | None] = []
        for layer in self.layers:
            if layer.stack not in seen:
                seen.append(layer.stack)
        return seen

    @property
    def is_encoder_decoder(self) -> bool:
        return any(layer.stack in ("encoder", "decoder") for layer in self.layers)

    def select(self, stack: str | None | object = ..., kind: str | None = None) -> list[LayerAttention]:
        """The layers of one stack and/or kind, in layer order (``...`` means any stack)."""
        out = [
            layer
            for layer in self.layers
            if (stack is ... or layer.stack == stack) and (kind is None or layer.kind == kind)
        ]
        return sorted(out, key=lambda layer: layer.index)

    def layer(self, index: int, *, stack: str | None | object = ..., kind: str = "self") -> LayerAttention:
        """One layer by its index; a clear error names the captured indices otherwise."""
        candidates = self.select(stack, kind)
        if stack is ... and len({layer.stack for layer in candidates}) > 1:
            raise ValueError(
                f"layer {index} is ambiguous in an encoder-decoder record: pass stack='encoder' or stack='decoder'"
            )
        for layer in candidates:
            if layer.index == index:
                return layer
        have = sorted({layer.index for layer in candidates})
        raise IndexError(f"no captured {kind}-attention layer {index}; captured layers: {have}")

    def as_hf_outputs(self) -> dict[str, tuple[torch.Tensor, ...]]:
        """The captured weights with the keys, order, nesting and layout of ``output_attentions=True``.

        A transformers capture records where the model itself puts each matrix
        (``metadata["hf_outputs"]``): composite models come back nested as the model nests them
        (``{"attentions": ..., "image_outputs": {"attentions": ...}}``, CLIP's
        ``text_model_output``/``vision_model_output``), with the keys of the model's output class.
        Other records use the stacks (``attentions``, ``encoder_attentions``, ...). Only captured
        layers (and heads) are present: with a layer or head selection the tuples are shorter than eager's.
        Fields the model returns as 3-D or 5-D tensors come back in its shape, fields it nests as
        tuples of tuples in its nesting.

        Raises:
            CaptureError: the model returned attention entries the capture could not hold (the
                message names them); the captured layers are still in :attr:`layers`.
        """
        refused = self.metadata.get("hf_outputs_refused")
        if refused:
            from ..errors import CaptureError

            raise CaptureError(
                "as_hf_outputs() cannot mirror the model's output: "
                + "; ".join(refused.values())
                + " (the captured layers are in record.layers)"
            )
        classic = self._classic_outputs()
        layout = self.metadata.get("hf_outputs")
        if not (isinstance(layout, dict) and layout):
            merged = set(self.metadata.get("hf_merged_heads") or ())  # SAM's eager [windows*heads, q, k]
            return {
                key: tuple(
                    layer.weights.flatten(0, 1) if layer.name in merged and layer.heads is None else layer.weights
                    for layer in group
                )
                for key, group in classic.items()
            }
        # the model's own output layout, read during the capture (composite models, nested outputs)
        shapes = self.metadata.get("hf_output_shapes") or {}
        flat = {
            path: tuple(
                _shaped(self.layers[i].weights, axes)
                for i, axes in zip(positions, shapes.get(path) or [None] * len(positions), strict=False)
            )
            for path, positions in layout.items()
            if positions
        }
        for path, shape in (self.metadata.get("hf_output_nesting") or {}).items():
            if path in flat:
                flat[path] = _regroup(list(flat[path]), shape)
        placed = {i for positions in layout.values() for i in positions}
        encoder = classic.get("encoder_attentions")  # generate() runs the encoder outside the model's forward
        if (
            encoder
            and "encoder_attentions" not in flat
            and not any(layer is self.layers[i] for layer in encoder for i in placed)
        ):
            flat["encoder_attentions"] = tuple(layer.weights for layer in encoder)
        return _nest(flat)

    def _classic_outputs(self) -> dict[str, list[LayerAttention]]:
        if self.is_encoder_decoder:
            return {
                "encoder_attentions": self.select("encoder", "self"),
                "decoder_attentions": self.select("decoder", "self"),
                "cross_attentions": self.select("decoder", "cross"),
            }
        out = {"attentions": self.select(None, "self")}
        cross = self.select(None, "cross")
        if cross:
            out["cross_attentions"] = cross
        return out

    @property
    def batch_size(self) -> int:
        return self.layers[0].weights.shape[0] if self.layers else 0

    def summary(self) -> str:
        """A readable multi-line description (what ``attn-plugins info`` prints)."""
        lines = [f"attn-plugins record (format {FORMAT_VERSION})"]
        lines.append(f"  model: {self.model_class or '?'} {self.model_name or ''}".rstrip())
        if self.attn_implementation:
            lines.append(f"  attention implementation while captured: {self.attn_implementation}")
        lines.append(f"  batch: {self.batch_size}, layers captured: {len(self.layers)}")
        for stack in self.stacks:
            for kind in KINDS:
                group = self.select(stack, kind)
                if not group:
                    continue
                first = group[0]
                heads = first.head_indices
                head_text = f"{len(heads)} heads" if first.heads is None else f"heads {heads}"
                label = f"{stack} {kind}" if stack else kind
                shapes = "x".join(str(s) for s in first.weights.shape[2:])
                lines.append(
                    f"  {label}-attention: layers {[layer.index for layer in group]}, {head_text}, "
                    f"query x key {shapes}, {first.weights.dtype}".replace("torch.", "")
                )
        for label, toks in (("tokens", self.tokens), ("decoder tokens", self.decoder_tokens)):
            if toks:
                preview = " ".join(toks[0][:24]) + (" ..." if len(toks[0]) > 24 else "")
                lines.append(f"  {label} (item 0, {len(toks[0])}): {preview}")
        for key in ("generated", "precision", "dropout"):
            if key in self.metadata:
                lines.append(f"  {key}: {self.metadata[key]}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"AttentionRecord({self.model_class or 'model'}, {len(self.layers)} layers, batch {self.batch_size})"

    # ----- files -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], *, sharded: bool = False) -> str:
        """Write the record to one safetensors file (tensors) with JSON metadata in its header.

        ``sharded=True`` writes a directory instead: ``record.json`` plus one safetensors file per
        layer (what ``capture(stream_to=...)`` writes), which :meth:`load` opens memory-mapped.
        Either way every file is written atomically (complete or absent), and only inside ``path``.
        """
        if sharded:
            from .directory import save_dir

            return save_dir(self, os.fspath(path))
        from .file import save_file

        return save_file(self, os.fspath(path))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, lazy: bool | None = None) -> AttentionRecord:
        """Read a record written by :meth:`save` or by ``capture(stream_to=...)``. Never executes code.

        A record directory (``sharded=True`` or streamed) is opened memory-mapped: tensors are read
        from disk only where they are used, so records larger than memory can be browsed.
        ``lazy=True`` maps a single-file record the same way (default: read it whole).
        Files are untrusted: anything damaged or hostile raises :class:`~attn_plugins.errors.RecordFormatError`.
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no record file at {path!r}")
        if os.path.isdir(path):
            from .directory import read_dir

            if lazy is False:
                raise ValueError("a record directory is always opened memory-mapped; drop lazy=False")
            return cls.from_parts(read_dir(path))
        from .file import read_file

        return cls.from_parts(read_file(path, lazy=bool(lazy)))

    @classmethod
    def from_parts(cls, parts: RecordParts) -> AttentionRecord:
        """Build a record from what a reader found (validated metadata and tensor getters),
        checking each layer's tensors against its metadata.

        Args:
            parts: the :class:`~attn_plugins.record.format.RecordParts` of a file or directory.

        Returns:
            The record.
        """
        meta, layer_tensor, input_tensor, where = parts
        layers = []
        for i, entry in enumerate(meta["layers"]):
            weights = layer_tensor(i, "weights")
            queries = layer_tensor(i, "queries") if entry.get("queries") else None
            keys = layer_tensor(i, "keys") if entry.get("keys") else None
            check_layer_tensors(where, i, entry, weights, queries, keys)
            heads = entry.get("heads")
            layers.append(
                LayerAttention(
                    name=entry["name"],
                    stack=entry["stack"],
                    kind=entry["kind"],
                    index=entry["index"],
                    weights=weights,
                    heads=list(heads) if heads is not None else None,
                    queries=queries,
                    keys=keys,
                )
            )
        inputs = {name: input_tensor(name) for name in meta.get("inputs", [])}
        return cls(
            layers=layers,
            tokens=meta.get("tokens"),
            decoder_tokens=meta.get("decoder_tokens"),
            inputs=inputs,
            model_class=meta.get("model_class", ""),
            model_name=meta.get("model_name", ""),
            attn_implementation=meta.get("attn_implementation"),
            metadata=meta.get("metadata") or {},
        )


def _shaped(weights: torch.Tensor, axes: Any) -> torch.Tensor:
    """A field entry back in the model's shape: ``axes`` is the shape it returned (a 3-D
    ``[n, q, k]`` kept as ``[n, 1, q, k]``, a 5-D one kept as ``[batch, a*b, q, k]``), or, in
    records written before, the two axes a 5-D entry merged. A head selection keeps the 4-D block."""
    if not axes:
        return weights
    if len(axes) == 2:
        return torch.unflatten(weights, 1, tuple(axes)) if weights.shape[1] == axes[0] * axes[1] else weights
    return weights.reshape(tuple(axes)) if weights.numel() == math.prod(axes) else weights


def _regroup(flat: list[Any], shape: list[Any]) -> tuple[Any, ...]:
    """A flat tuple back in the model's tuple-of-tuples nesting (``shape`` from the capture: a
    tuple's length, 0 for a bare entry, a list for a deeper tuple)."""
    out = []
    for part in shape:
        if isinstance(part, list):
            out.append(_regroup(flat, part))
        else:
            out.append(tuple(flat.pop(0) for _ in range(part)) if part else flat.pop(0))
    return tuple(out)


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.attentions": x}`` -> ``{"a": {"attentions": x}}``: the nesting of the model's outputs."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, leaf = path.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out
