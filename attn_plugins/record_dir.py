"""Record directories: ``record.json`` plus one safetensors file per layer, opened memory-mapped.

    run/record-0000/
        record.json                 the record's JSON (as in a single-file record's header),
                                    each layer naming its file
        inputs.safetensors          input ids, attention masks
        layers/self-003.safetensors "weights" (and "queries"/"keys" when kept)

``capture(stream_to=...)`` writes this layout while the model runs; ``record.save(dir, sharded=True)``
writes it from memory. ``AttentionRecord.load`` maps the tensors without reading them, so a record
far larger than memory can be browsed (only the rows and heads looked at are read).
"""

from __future__ import annotations

import json
import os
import re

from . import shards
from .record import _META_KEY, RecordFormatError, _parse_meta, layer_entry

RECORD_JSON = "record.json"
INPUTS_FILE = "inputs.safetensors"
LAYER_DIR = "layers"


def layer_file(stack: str | None, kind: str, index: int) -> str:
    """The file (relative to the record directory) that holds one layer."""
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", stack) + "-" if stack else ""
    return f"{LAYER_DIR}/{prefix}{kind}-{index:03d}.safetensors"


def write_json(directory: str, meta: dict) -> None:
    tmp = os.path.join(directory, RECORD_JSON + ".partial")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(meta, handle)
    os.replace(tmp, os.path.join(directory, RECORD_JSON))


def save_dir(record, directory: str) -> str:
    """Write ``record`` as a record directory (which must not hold a record already)."""
    if os.path.exists(os.path.join(directory, RECORD_JSON)):
        raise FileExistsError(f"{directory!r} already holds a record; pick another directory")
    if os.path.isfile(directory):
        raise FileExistsError(f"{directory!r} is a file; sharded=True writes a directory")
    os.makedirs(os.path.join(directory, LAYER_DIR), exist_ok=True)
    entries, used = [], set()
    for layer in record.layers:
        name = layer_file(layer.stack, layer.kind, layer.index)
        while name in used:  # the same layer called twice outside generation (rare): keep both
            name = name.replace(".safetensors", "+.safetensors")
        used.add(name)
        tensors = {"weights": layer.weights}
        tensors.update({k: getattr(layer, k) for k in ("queries", "keys") if getattr(layer, k) is not None})
        shards.write(os.path.join(directory, name), tensors)
        entries.append({**layer_entry(layer), "file": name})
    shards.write(os.path.join(directory, INPUTS_FILE), dict(record.inputs))
    write_json(directory, record._meta(entries))
    return directory


def _record_subdirs(directory: str) -> list[str]:
    return sorted(d for d in os.listdir(directory)
                  if os.path.isfile(os.path.join(directory, d, RECORD_JSON)))


def load_dir(cls, directory: str):
    """Open a record directory memory-mapped (or the one record inside a stream directory)."""
    if not os.path.isfile(os.path.join(directory, RECORD_JSON)):
        found = _record_subdirs(directory)
        if len(found) == 1:
            directory = os.path.join(directory, found[0])
        elif found:
            raise RecordFormatError(
                f"{directory!r} holds {len(found)} records ({', '.join(found[:5])}{' ...' if len(found) > 5 else ''}); "
                "load one of them"
            )
        else:
            raise RecordFormatError(
                f"{directory!r} is a directory but not an attn-plugins record (no {RECORD_JSON}); "
                "a record is a .safetensors file or a directory written by capture(stream_to=...)"
            )
    json_path = os.path.join(directory, RECORD_JSON)
    try:
        with open(json_path, encoding="utf-8") as handle:
            meta = _parse_meta(json_path, json.load(handle))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordFormatError(f"{json_path!r} is not readable JSON: {exc}") from None

    def open_file(relative: str) -> dict:
        full = os.path.normpath(os.path.join(directory, relative))
        if os.path.isabs(relative) or not full.startswith(os.path.normpath(directory) + os.sep):
            raise RecordFormatError(f"{json_path!r} names a file outside its directory: {relative!r}")
        if not os.path.isfile(full):
            raise RecordFormatError(f"record {directory!r} is incomplete: {relative!r} is missing")
        try:
            return shards.open_tensors(full)
        except (shards.ShardError, OSError, ValueError) as exc:
            raise RecordFormatError(f"record {directory!r}: {exc}") from None

    files = [entry.get("file") for entry in meta["layers"]]
    if any(not isinstance(f, str) for f in files):
        raise RecordFormatError(f"{json_path!r} has damaged metadata: a layer without its file")
    opened = [open_file(f) for f in files]
    inputs = open_file(INPUTS_FILE) if meta.get("inputs") else {}

    def layer_tensor(i: int, part: str):
        if part not in opened[i]:
            raise RecordFormatError(f"record {directory!r} is damaged: {files[i]!r} has no {part!r}")
        return opened[i][part]

    def input_tensor(name: str):
        if name not in inputs:
            raise RecordFormatError(f"record {directory!r} is damaged: input {name!r} is missing")
        return inputs[name]

    return cls._from_meta(meta, layer_tensor, input_tensor)


def load_file_lazy(cls, path: str):
    """A single-file record with its tensors memory-mapped instead of read."""
    try:
        header, _ = shards.read_header(path)
        raw = (header.get("__metadata__") or {}).get(_META_KEY)
        if raw is None:
            raise RecordFormatError(
                f"{path!r} is a safetensors file but not an attn-plugins record (no attn-plugins metadata)")
        meta = _parse_meta(path, raw)
        tensors = shards.open_tensors(path)
    except shards.ShardError as exc:
        raise RecordFormatError(f"{path!r} is not a readable attn-plugins record: {exc}") from None

    def get(name: str):
        if name not in tensors:
            raise RecordFormatError(f"{path!r} is damaged: tensor {name!r} is missing")
        return tensors[name]

    return cls._from_meta(meta, lambda i, part: get(f"layers.{i}.{part}"), lambda name: get(f"inputs.{name}"))
