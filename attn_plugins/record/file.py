"""Single-file records: one safetensors file, the record's JSON in its header metadata.

Read whole through ``safetensors.safe_open`` (which parses the header itself and never executes
code) or, with ``lazy=True``, memory-mapped through :mod:`.shards`. Either way the JSON is checked
by :mod:`.format` and any damage surfaces as :class:`~attn_plugins.errors.RecordFormatError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..errors import RecordFormatError, ShardError
from . import shards
from .format import META_KEY, RecordParts, layer_entry, parse_meta, record_meta


def save_file(record: Any, path: str) -> str:
    """Write ``record`` to the single file ``path`` (atomically); returns ``path``."""
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path!r} is a directory; give a file name (or pass sharded=True)")
    tensors: dict[str, torch.Tensor] = {}
    entries = []
    for i, layer in enumerate(record.layers):
        tensors[f"layers.{i}.weights"] = layer.weights
        for extra in ("queries", "keys"):
            value = getattr(layer, extra)
            if value is not None:
                tensors[f"layers.{i}.{extra}"] = value
        entries.append(layer_entry(layer))
    for name, value in record.inputs.items():
        tensors[f"inputs.{name}"] = value
    meta = json.dumps(record_meta(record, entries))
    return shards.save_tensors(path, tensors, metadata={META_KEY: meta})


def _not_a_record(path: str) -> RecordFormatError:
    return RecordFormatError(
        f"{path!r} is a safetensors file but not an attn-plugins record "
        "(no attn-plugins metadata; is it a model checkpoint?)"
    )


def _getter(path: str, tensors: Mapping[str, torch.Tensor]) -> Callable[[str], torch.Tensor]:
    def get(name: str) -> torch.Tensor:
        if name not in tensors:
            raise RecordFormatError(f"{path!r} is damaged: tensor {name!r} is missing")
        return tensors[name]

    return get


def read_file(path: str, *, lazy: bool = False) -> RecordParts:
    """The validated parts of the single-file record ``path`` (tensors memory-mapped when ``lazy``)."""
    if lazy:
        return _read_lazy(path)
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="pt") as handle:
            raw = (handle.metadata() or {}).get(META_KEY)
            if raw is None:
                raise _not_a_record(path)
            meta = parse_meta(repr(path), raw)
            names = set(handle.keys())
            wanted = _wanted(meta)
            tensors = {name: handle.get_tensor(name) for name in wanted if name in names}
    except RecordFormatError:
        raise
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RuntimeError, RecursionError) as exc:
        raise RecordFormatError(
            f"{path!r} is not a readable attn-plugins record (corrupt, truncated or not safetensors): {exc}"
        ) from None
    get = _getter(path, tensors)
    return RecordParts(meta, lambda i, part: get(f"layers.{i}.{part}"), lambda name: get(f"inputs.{name}"), repr(path))


def _wanted(meta: dict[str, Any]) -> list[str]:
    """The tensor names the (validated) metadata refers to, so nothing else is read."""
    names = []
    for i, entry in enumerate(meta["layers"]):
        names.append(f"layers.{i}.weights")
        names += [f"layers.{i}.{extra}" for extra in ("queries", "keys") if entry.get(extra)]
    return names + [f"inputs.{name}" for name in meta.get("inputs", [])]


def _read_lazy(path: str) -> RecordParts:
    real = os.path.realpath(path)  # the user named this file: following their link is theirs to ask
    try:
        metadata, _ = shards.read_header(real)
        raw = metadata.get(META_KEY)
        if raw is None:
            raise _not_a_record(path)
        meta = parse_meta(repr(path), raw)
        tensors = shards.open_tensors(real)
    except ShardError as exc:
        raise RecordFormatError(f"{path!r} is not a readable attn-plugins record: {exc}") from None
    get = _getter(path, tensors)
    return RecordParts(meta, lambda i, part: get(f"layers.{i}.{part}"), lambda name: get(f"inputs.{name}"), repr(path))
