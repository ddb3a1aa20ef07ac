"""Record directories: ``record.json`` plus one safetensors file per layer, opened memory-mapped.

    run/record-0000/
        record.json                 the record's JSON (as in a single-file record's header),
                                    each layer naming its file
        inputs.safetensors          input ids, attention masks
        layers/self-003.safetensors "weights" (and "queries"/"keys" when kept)

``capture(stream_to=...)`` writes this layout while the model runs; ``record.save(dir, sharded=True)``
writes it from memory. ``AttentionRecord.load`` maps the tensors without reading them, so a record
far larger than memory can be browsed (only the rows and heads looked at are read).

A record directory is untrusted input. Nothing outside it is ever opened: every path is resolved
(symlinks included) and must stay inside the record's own directory, layer files must have the
form ``layers/<name>.safetensors``, and only regular files are read. File names are built only
from validated ``stack``/``kind``/``index`` values, so a save can never write outside its directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from typing import Any

import torch

from ..atomic import write_text
from ..errors import RecordFormatError, ShardError
from . import shards
from .format import (
    KINDS,
    MAX_METADATA_BYTES,
    RecordParts,
    is_valid_stack,
    layer_entry,
    parse_json,
    parse_meta,
    record_meta,
)

RECORD_JSON = "record.json"
INPUTS_FILE = "inputs.safetensors"
LAYER_DIR = "layers"
LAYER_FILE_PATTERN = re.compile(r"layers/[A-Za-z0-9_][A-Za-z0-9_.+\-]{0,400}\.safetensors")


def layer_file(stack: str | None, kind: str, index: int) -> str:
    """The file (relative to the record directory) that holds one layer.

    Raises:
        RecordFormatError: ``stack``, ``kind`` or ``index`` is not of the record format's forms
            (so the name can never leave ``layers/``).
    """
    if (
        not is_valid_stack(stack)
        or kind not in KINDS
        or isinstance(index, bool)
        or not isinstance(index, int)
        or index < 0
    ):
        raise RecordFormatError(
            f"cannot name a layer file for stack={stack!r:.80}, kind={kind!r:.80}, index={index!r:.80}: stacks are "
            f"None or dotted names of letters, digits and _, kinds are {list(KINDS)}, indices are integers >= 0"
        )
    prefix = f"{stack}-" if stack else ""
    return f"{LAYER_DIR}/{prefix}{kind}-{index:03d}.safetensors"


def inside(root: str, relative: str, what: str) -> str:
    """The real path of ``relative`` under the real directory ``root``; refused if it leaves ``root``.

    Args:
        root: a directory's real path (``os.path.realpath``).
        relative: a path relative to it, as named by a record (or by us).
        what: how to name the file in the message.

    Returns:
        The resolved path (links followed), which lies inside ``root``.
    """
    full = os.path.realpath(os.path.join(root, relative))
    if os.path.isabs(relative) or full == root or os.path.commonpath([full, root]) != root:
        raise RecordFormatError(
            f"{what} {relative!r:.200} leads outside the record directory {root!r} (to {full!r:.200}); "
            "a record only reads and writes files inside its own directory"
        )
    return full


def write_json(directory: str, meta: dict[str, Any]) -> None:
    """Write ``record.json`` into ``directory`` (atomically, and only inside it)."""
    root = os.path.realpath(directory)
    write_text(inside(root, RECORD_JSON, "the record file"), json.dumps(meta))


def save_dir(record: Any, directory: str) -> str:
    """Write ``record`` as a record directory (which must not hold a record already).

    On failure everything this call wrote is removed again, so no half-written record is left.
    """
    if os.path.isfile(directory):
        raise FileExistsError(f"{directory!r} is a file; sharded=True writes a directory")
    if os.path.lexists(os.path.join(directory, RECORD_JSON)):
        raise FileExistsError(f"{directory!r} already holds a record; pick another directory")
    entries = [layer_entry(layer) for layer in record.layers]
    record_meta(record, entries)  # validate first: nothing is written for a record that cannot be saved
    made = [d for d in (directory, os.path.join(directory, LAYER_DIR)) if not os.path.exists(d)]
    os.makedirs(os.path.join(directory, LAYER_DIR), exist_ok=True)
    root = os.path.realpath(directory)
    written: list[str] = []
    try:
        used: set[str] = set()
        for layer, entry in zip(record.layers, entries, strict=True):
            name = layer_file(layer.stack, layer.kind, layer.index)
            while name in used:  # the same layer called twice outside generation (rare): keep both
                name = name.replace(".safetensors", "+.safetensors")
            used.add(name)
            tensors = {"weights": layer.weights}
            tensors.update({k: getattr(layer, k) for k in ("queries", "keys") if getattr(layer, k) is not None})
            written.append(shards.save_tensors(inside(root, name, "layer file"), tensors))
            entry["file"] = name
        written.append(shards.save_tensors(inside(root, INPUTS_FILE, "inputs file"), dict(record.inputs)))
        write_json(root, record_meta(record, entries))
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                os.remove(path)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise
    return directory


def _find_record(root: str, given: str) -> str:
    """The record directory at ``root`` (itself, or the one ``record-*`` inside a stream directory)."""
    if os.path.lexists(os.path.join(root, RECORD_JSON)):
        return root
    try:
        names = os.listdir(root)
    except OSError as exc:
        raise RecordFormatError(f"{given!r} cannot be read: {exc.strerror}") from None
    found = sorted(d for d in names if os.path.isfile(os.path.join(root, d, RECORD_JSON)))
    if len(found) == 1:
        return inside(root, found[0], "the record folder")
    if found:
        raise RecordFormatError(
            f"{given!r} holds {len(found)} records ({', '.join(found[:5])}{' ...' if len(found) > 5 else ''}); "
            "load one of them"
        )
    raise RecordFormatError(
        f"{given!r} is a directory but not an attn-plugins record (no {RECORD_JSON}); "
        "a record is a .safetensors file or a directory written by capture(stream_to=...)"
    )


def _read_json(path: str, shown: str) -> Any:
    try:
        with shards.open_regular(path, writable=False) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > MAX_METADATA_BYTES:
                raise RecordFormatError(f"{shown} is {size} bytes, over the limit of {MAX_METADATA_BYTES} bytes")
            raw = handle.read(MAX_METADATA_BYTES + 1)
    except ShardError as exc:
        raise RecordFormatError(f"{shown}: {exc}") from None
    return parse_json(shown, raw)


def _layer_files(meta: dict[str, Any], shown: str) -> list[str]:
    files = [entry.get("file") for entry in meta["layers"]]
    for i, name in enumerate(files):
        if not isinstance(name, str):
            raise RecordFormatError(f"{shown} is damaged: layer {i} has no file")
        if not LAYER_FILE_PATTERN.fullmatch(name):
            raise RecordFormatError(
                f"{shown} names a file outside its directory's layers/ folder for layer {i}: {name!r:.200}"
            )
    if len(set(files)) != len(files):
        raise RecordFormatError(f"{shown} is damaged: two layers name the same file")
    return files


def read_dir(path: str) -> RecordParts:
    """The validated parts of the record directory ``path`` (or of the one record inside a stream directory)."""
    directory = _find_record(os.path.realpath(path), path)
    json_path = inside(directory, RECORD_JSON, "the record file")
    shown = repr(os.path.join(directory, RECORD_JSON))
    meta = parse_meta(shown, _read_json(json_path, shown))
    files = _layer_files(meta, shown)

    def open_file(relative: str) -> dict[str, torch.Tensor]:
        full = inside(directory, relative, f"{shown} names a file that")
        if not os.path.exists(full):
            raise RecordFormatError(f"record {directory!r} is incomplete: {relative!r} is missing")
        try:
            return shards.open_tensors(full)
        except (ShardError, OSError, ValueError) as exc:
            raise RecordFormatError(f"record {directory!r}: {exc}") from None

    opened = [open_file(f) for f in files]
    inputs = open_file(INPUTS_FILE) if meta.get("inputs") else {}

    def layer_tensor(i: int, part: str) -> torch.Tensor:
        if part not in opened[i]:
            raise RecordFormatError(f"record {directory!r} is damaged: {files[i]!r} has no {part!r}")
        return opened[i][part]

    def input_tensor(name: str) -> torch.Tensor:
        if name not in inputs:
            raise RecordFormatError(f"record {directory!r} is damaged: input {name!r} is missing")
        return inputs[name]

    return RecordParts(meta, layer_tensor, input_tensor, shown)
