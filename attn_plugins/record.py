"""AttentionRecord: the one result type every part of attn-plugins reads and writes.

A record is a list of :class:`LayerAttention` (one attention matrix per captured module call,
``[batch, heads, query, key]``), the tokens, the model inputs that give the matrices meaning
(attention masks, input ids) and a little metadata. It saves to a single safetensors file whose
header carries the JSON metadata; loading never executes code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import RecordFormatError

FORMAT_NAME = "attn-plugins-record"
FORMAT_VERSION = 1
_META_KEY = "attn_plugins"
STACKS = ("encoder", "decoder", None)
KINDS = ("self", "cross")


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
        """The captured weights with the keys, order and layout of ``output_attentions=True``.

        Only captured layers (and heads) are present: with a layer or head selection the tuples are
        shorter than eager's.
        """
        if self.is_encoder_decoder:
            return {
                "encoder_attentions": tuple(l.weights for l in self.select("encoder", "self")),
                "decoder_attentions": tuple(l.weights for l in self.select("decoder", "self")),
                "cross_attentions": tuple(l.weights for l in self.select("decoder", "cross")),
            }
        out = {"attentions": tuple(l.weights for l in self.select(None, "self"))}
        cross = self.select(None, "cross")
        if cross:
            out["cross_attentions"] = tuple(l.weights for l in cross)
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
                    f"  {label}-attention: layers {[l.index for l in group]}, {head_text}, "
                    f"query x key {shapes}, {first.weights.dtype}".replace("torch.", "")
                )
        for label, toks in (("tokens", self.tokens), ("decoder tokens", self.decoder_tokens)):
            if toks:
                preview = " ".join(toks[0][:24]) + (" ..." if len(toks[0]) > 24 else "")
                lines.append(f"  {label} (item 0, {len(toks[0])}): {preview}")
        for key in ("generated", "precision"):
            if key in self.metadata:
                lines.append(f"  {key}: {self.metadata[key]}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"AttentionRecord({self.model_class or 'model'}, {len(self.layers)} layers, "
            f"batch {self.batch_size})"
        )

    # ----- files -------------------------------------------------------------------------------
    def _meta(self, layer_meta: list[dict]) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "model_class": self.model_class,
            "model_name": self.model_name,
            "attn_implementation": self.attn_implementation,
            "layers": layer_meta,
            "tokens": self.tokens,
            "decoder_tokens": self.decoder_tokens,
            "inputs": sorted(self.inputs),
            "metadata": self.metadata,
        }

    def save(self, path: str | os.PathLike, *, sharded: bool = False) -> str:
        """Write the record to one safetensors file (tensors) with JSON metadata in its header.

        ``sharded=True`` writes a directory instead: ``record.json`` plus one safetensors file per
        layer (what ``capture(stream_to=...)`` writes), which :meth:`load` opens memory-mapped.
        """
        if sharded:
            from .record_dir import save_dir

            return save_dir(self, os.fspath(path))
        from safetensors.torch import save_file

        path = os.fspath(path)
        if os.path.isdir(path):
            raise IsADirectoryError(f"{path!r} is a directory; give a file name (or pass sharded=True)")
        tensors: dict[str, torch.Tensor] = {}
        seen: set[tuple[int, int]] = set()

        def plain(tensor: torch.Tensor) -> torch.Tensor:
            """A CPU tensor with storage of its own (safetensors refuses tensors that share memory)."""
            out = tensor.detach().contiguous().cpu()
            key = (out.untyped_storage().data_ptr(), out.untyped_storage().nbytes())
            if key in seen or out.untyped_storage().nbytes() != out.numel() * out.element_size():
                out = out.clone()
                key = (out.untyped_storage().data_ptr(), out.untyped_storage().nbytes())
            seen.add(key)
            return out

        layer_meta = []
        for i, layer in enumerate(self.layers):
            tensors[f"layers.{i}.weights"] = plain(layer.weights)
            entry = layer_entry(layer)
            for extra in ("queries", "keys"):
                value = getattr(layer, extra)
                if value is not None:
                    tensors[f"layers.{i}.{extra}"] = plain(value)
            layer_meta.append(entry)
        for name, value in self.inputs.items():
            tensors[f"inputs.{name}"] = plain(value)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        save_file(tensors, path, metadata={_META_KEY: json.dumps(self._meta(layer_meta))})
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, *, lazy: bool | None = None) -> AttentionRecord:
        """Read a record written by :meth:`save` or by ``capture(stream_to=...)``. Never executes code.

        A record directory (``sharded=True`` or streamed) is opened memory-mapped: tensors are read
        from disk only where they are used, so records larger than memory can be browsed.
        ``lazy=True`` maps a single-file record the same way (default: read it whole).
        """
        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no record file at {path!r}")
        if os.path.isdir(path):
            from .record_dir import load_dir

            if lazy is False:
                raise ValueError("a record directory is always opened memory-mapped; drop lazy=False")
            return load_dir(cls, path)
        if lazy:
            from .record_dir import load_file_lazy

            return load_file_lazy(cls, path)
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(path, framework="pt") as handle:
                header = handle.metadata() or {}
                raw = header.get(_META_KEY)
                if raw is None:
                    raise RecordFormatError(
                        f"{path!r} is a safetensors file but not an attn-plugins record "
                        "(no attn-plugins metadata; is it a model checkpoint?)"
                    )
                meta = _parse_meta(path, raw)
                names = set(handle.keys())

                def tensor(name: str) -> torch.Tensor:
                    if name not in names:
                        raise RecordFormatError(f"{path!r} is damaged: tensor {name!r} is missing")
                    return handle.get_tensor(name)

                record = cls._from_meta(meta, lambda i, part: tensor(f"layers.{i}.{part}"),
                                        lambda name: tensor(f"inputs.{name}"))
        except RecordFormatError:
            raise
        except (SafetensorError, OSError, ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise RecordFormatError(
                f"{path!r} is not a readable attn-plugins record (corrupt, truncated or not safetensors): {exc}"
            ) from None
        return record

    @classmethod
    def _from_meta(cls, meta: dict[str, Any], layer_tensor, input_tensor) -> AttentionRecord:
        layers = []
        for i, entry in enumerate(meta["layers"]):
            layers.append(
                LayerAttention(
                    name=entry["name"], stack=entry["stack"], kind=entry["kind"], index=int(entry["index"]),
                    weights=layer_tensor(i, "weights"), heads=entry.get("heads"),
                    queries=layer_tensor(i, "queries") if entry.get("queries") else None,
                    keys=layer_tensor(i, "keys") if entry.get("keys") else None,
                )
            )
        inputs = {name: input_tensor(name) for name in meta.get("inputs", [])}
        return cls(
            layers=layers, tokens=meta.get("tokens"), decoder_tokens=meta.get("decoder_tokens"), inputs=inputs,
            model_class=meta.get("model_class", ""), model_name=meta.get("model_name", ""),
            attn_implementation=meta.get("attn_implementation"), metadata=meta.get("metadata") or {},
        )


def layer_entry(layer: LayerAttention) -> dict[str, Any]:
    """A layer's JSON description in a record file (everything but the tensors)."""
    entry = {"name": layer.name, "stack": layer.stack, "kind": layer.kind, "index": layer.index,
             "heads": layer.heads, "dtype": str(layer.weights.dtype).replace("torch.", "")}
    for extra in ("queries", "keys"):
        if getattr(layer, extra) is not None:
            entry[extra] = True
    return entry


def _parse_meta(path: str, raw: str | dict) -> dict[str, Any]:
    try:
        meta = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as exc:
        raise RecordFormatError(f"{path!r} has unreadable attn-plugins metadata: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise RecordFormatError(f"{path!r} is not an attn-plugins record (unknown format {meta.get('format')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise RecordFormatError(f"{path!r} has an invalid record format version {version!r}")
    if version > FORMAT_VERSION:
        raise RecordFormatError(
            f"{path!r} was written in record format {version}, newer than this attn-plugins reads "
            f"({FORMAT_VERSION}); upgrade attn-plugins to open it"
        )
    if not isinstance(meta.get("layers"), list):
        raise RecordFormatError(f"{path!r} has damaged metadata: no layer list")
    return meta
