"""The record file format: its name and version, the metadata schema, and the one validator.

A record's metadata is JSON (the header of a single-file record, ``record.json`` of a record
directory). Files are untrusted input: every field is checked here against the schema before any
of it is used, and the same check runs before a record is written, so what we write always loads.

Schema (format version 1)::

    format           "attn-plugins-record"
    format_version   1 .. FORMAT_VERSION
    model_class, model_name                       strings
    attn_implementation                           string or null
    layers           list (at most MAX_LAYERS) of
        name         string (the module path; data only, never part of a file name)
        stack        null, or a dotted name: parts of [A-Za-z0-9_], e.g. "encoder", "decoder",
                     "language_model", "vlm.language_model" (see STACK_PATTERN)
        kind         "self" or "cross"
        index        integer >= 0
        heads        null, or distinct integers >= 0, as many as the tensor's dimension 1
        dtype        optional: the weights' dtype name (must match the tensor)
        queries, keys  optional booleans: whether those tensors are stored
        file         (record directories only) checked by the directory layout
    tokens, decoder_tokens   null or a list of lists of strings
    inputs           list of distinct input names (strings)
    metadata         a JSON object, nested at most MAX_DEPTH deep

Names and strings are data only: the only values that ever become part of a path are ``stack``,
``kind`` and ``index``, and only in the validated forms above.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, NamedTuple, NoReturn

import torch

from ..errors import RecordFormatError

FORMAT_NAME = "attn-plugins-record"
FORMAT_VERSION = 1
META_KEY = "attn_plugins"  # the key of the record's JSON in a safetensors header's metadata
KINDS = ("self", "cross")
STACK_PATTERN = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+){0,31}")
INPUT_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]+")

# bounds on what a file may make us hold (far above any real record)
MAX_LAYERS = 2048  # layer entries in one record (a 100-layer encoder-decoder has 300)
MAX_HEADS = 65536
MAX_STRING = 4096  # characters of a name, stack, model class ...
MAX_DEPTH = 32  # nesting of the free-form ``metadata`` object
# the record's JSON: parsed, JSON grows ~10x in Python objects, so this bounds a load to a few hundred MB
# (a record of 100,000 tokens needs about 1 MB)
MAX_METADATA_BYTES = 32 * 1024 * 1024

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "KINDS",
    "MAX_LAYERS",
    "MAX_METADATA_BYTES",
    "META_KEY",
    "RecordParts",
    "check_layer_tensors",
    "is_valid_stack",
    "layer_entry",
    "parse_json",
    "parse_meta",
    "record_meta",
    "validate_meta",
]


class RecordParts(NamedTuple):
    """What a reader hands to :meth:`AttentionRecord.from_parts`: the validated metadata, two
    getters, ``layer_tensor(i, part)`` (``part``: weights/queries/keys) and ``input_tensor(name)``,
    and how to name the file in messages."""

    meta: dict[str, Any]
    layer_tensor: Callable[[int, str], torch.Tensor]
    input_tensor: Callable[[str], torch.Tensor]
    where: str


def is_valid_stack(stack: Any) -> bool:
    """Whether ``stack`` is a stack name a record may hold (``None`` or a dotted name)."""
    return stack is None or (
        isinstance(stack, str) and len(stack) <= 256 and STACK_PATTERN.fullmatch(stack) is not None
    )


# ----- writing ---------------------------------------------------------------------------------------
def layer_entry(layer: Any) -> dict[str, Any]:
    """A layer's JSON description in a record file (everything but the tensors)."""
    entry: dict[str, Any] = {
        "name": layer.name,
        "stack": layer.stack,
        "kind": layer.kind,
        "index": layer.index,
        "heads": layer.heads,
        "dtype": str(layer.weights.dtype).replace("torch.", ""),
    }
    for extra in ("queries", "keys"):
        if getattr(layer, extra) is not None:
            entry[extra] = True
    return entry


def record_meta(record: Any, layer_entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The record's JSON (without tensors), checked against the schema so that it always loads back."""
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_class": record.model_class,
        "model_name": record.model_name,
        "attn_implementation": record.attn_implementation,
        "layers": layer_entries,
        "tokens": record.tokens,
        "decoder_tokens": record.decoder_tokens,
        "inputs": sorted(record.inputs),
        "metadata": record.metadata,
    }
    validate_meta("the record to save", meta, action="cannot be saved")
    for i, layer in enumerate(record.layers):
        check_layer_tensors("the record to save", i, layer_entries[i], layer.weights, action="cannot be saved")
    return meta


# ----- reading ---------------------------------------------------------------------------------------
def parse_json(
    where: str, raw: str | bytes, error: type[RecordFormatError] = RecordFormatError, limit: int = MAX_METADATA_BYTES
) -> Any:
    """``json.loads`` of untrusted text: longer than ``limit``, unreadable, or nested too deep for
    Python, it gives ``error`` (a :class:`RecordFormatError`) saying so."""
    if len(raw) > limit:
        raise error(f"{where} holds {len(raw)} bytes of JSON, over the limit of {limit} bytes")
    try:
        return json.loads(raw)
    except RecursionError:
        raise error(f"{where} has JSON nested too deeply to read") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, and numbers too long for int()
        raise error(f"{where} is not readable JSON: {exc}") from None


def parse_meta(where: str, raw: Any) -> dict[str, Any]:
    """The record metadata in ``raw`` (JSON text or already parsed), validated against the schema.

    Args:
        where: how to name the file in messages (its quoted path).
        raw: the JSON text, or the value already parsed.

    Returns:
        The metadata, every field checked (see the module's schema).
    """
    meta: dict[str, Any] = parse_json(f"{where} (attn-plugins metadata)", raw) if isinstance(raw, (str, bytes)) else raw
    validate_meta(where, meta)
    return meta


def _fail(where: str, action: str, what: str) -> NoReturn:
    raise RecordFormatError(f"{where} {action}: {what}")


def _check_string(value: Any, label: str, fail: Callable[[str], NoReturn], *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        fail(f"{label} must be a string, not {type(value).__name__}")
    if len(value) > MAX_STRING:
        fail(f"{label} is {len(value)} characters long (limit {MAX_STRING})")


def _check_int(value: Any, label: str, fail: Callable[[str], NoReturn], *, limit: int = 2**31) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
        fail(f"{label} must be an integer in [0, {limit}), not {value!r:.80}")


def _check_tokens(value: Any, label: str, fail: Callable[[str], NoReturn]) -> None:
    if value is None:
        return
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, (list, tuple)) for item in value):
        fail(f"{label} must be a list of token lists")
    for item in value:
        if not all(isinstance(token, str) for token in item):
            fail(f"{label} holds a token that is not a string")


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion (a hostile file may nest deeply)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            todo.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _check_layer(entry: Any, i: int, fail: Callable[[str], NoReturn]) -> None:
    if not isinstance(entry, dict):
        fail(f"layer entry {i} is a {type(entry).__name__}, not an object")
    for key in ("name", "stack", "kind", "index"):
        if key not in entry:
            fail(f"layer entry {i} has no {key!r}")
    _check_string(entry["name"], f"layer {i}'s name", fail)
    if not is_valid_stack(entry["stack"]):
        fail(f"layer {i}'s stack {entry['stack']!r:.80} is not null or a dotted name of letters, digits and _")
    if entry["kind"] not in KINDS:
        fail(f"layer {i}'s kind {entry['kind']!r:.80} is not one of {list(KINDS)}")
    _check_int(entry["index"], f"layer {i}'s index", fail, limit=1_000_000)
    heads = entry.get("heads")
    if heads is not None:
        if not isinstance(heads, (list, tuple)) or len(heads) > MAX_HEADS:
            fail(f"layer {i}'s heads must be null or a list of head indices")
        for head in heads:
            _check_int(head, f"layer {i}'s head index", fail, limit=MAX_HEADS)
        if len(set(heads)) != len(heads):
            fail(f"layer {i}'s heads {heads[:20]} repeat a head")
    if entry.get("dtype") is not None:
        _check_string(entry["dtype"], f"layer {i}'s dtype", fail)
    for extra in ("queries", "keys"):
        if not isinstance(entry.get(extra, False), bool):
            fail(f"layer {i}'s {extra!r} flag must be true or false")


def validate_meta(where: str, meta: Any, *, action: str = "is damaged") -> None:
    """Check every field of a record's metadata against the schema; :class:`RecordFormatError` otherwise.

    Args:
        where: how to name the file in the message (e.g. its quoted path).
        meta: the parsed JSON.
        action: what the message says about the file ("is damaged", "cannot be saved").
    """

    def fail(what: str) -> NoReturn:
        _fail(where, action, what)

    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise RecordFormatError(f"{where} is not an attn-plugins record (unknown format {found!r:.80})")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RecordFormatError(f"{where} has an invalid record format version {version!r:.80}")
    if version > FORMAT_VERSION:
        raise RecordFormatError(
            f"{where} was written in record format {version}, newer than this attn-plugins reads "
            f"({FORMAT_VERSION}); upgrade attn-plugins to open it"
        )
    layers = meta.get("layers")
    if not isinstance(layers, list):
        fail("no layer list")
    if len(layers) > MAX_LAYERS:
        fail(f"{len(layers)} layers, over the limit of {MAX_LAYERS} a record may hold")
    for i, entry in enumerate(layers):
        _check_layer(entry, i, fail)
    for key in ("model_class", "model_name"):
        _check_string(meta.get(key, ""), key, fail)
    _check_string(meta.get("attn_implementation"), "attn_implementation", fail, optional=True)
    _check_tokens(meta.get("tokens"), "tokens", fail)
    _check_tokens(meta.get("decoder_tokens"), "decoder_tokens", fail)
    inputs = meta.get("inputs", [])
    if not isinstance(inputs, list) or not all(isinstance(name, str) for name in inputs):
        fail("inputs must be a list of input names")
    for name in inputs:
        if len(name) > 256 or not INPUT_NAME_PATTERN.fullmatch(name):
            fail(f"input name {name!r:.80} is not letters, digits, '_', '.' and '-'")
    if len(set(inputs)) != len(inputs):
        fail("an input name is listed twice")
    metadata = meta.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        fail("metadata must be an object")
    if _depth(metadata) > MAX_DEPTH:
        fail(f"metadata is nested deeper than {MAX_DEPTH} levels")


def check_layer_tensors(
    where: str,
    i: int,
    entry: dict[str, Any],
    weights: torch.Tensor,
    queries: torch.Tensor | None = None,
    keys: torch.Tensor | None = None,
    *,
    action: str = "is damaged",
) -> None:
    """Check layer ``i``'s tensors against its (validated) entry: ``[batch, heads, query, key]``
    floating weights, ``heads`` as long as dimension 1, the stated dtype, 4-D queries/keys."""

    def fail(what: str) -> NoReturn:
        _fail(where, action, what)

    if not isinstance(weights, torch.Tensor) or weights.dim() != 4:
        fail(
            f"layer {i}'s weights are not a [batch, heads, query, key] tensor "
            f"(shape {list(getattr(weights, 'shape', []))})"
        )
    if not weights.is_floating_point():
        fail(f"layer {i}'s weights are {weights.dtype}, not floating point")
    heads = entry.get("heads")
    if heads is not None and len(heads) != weights.shape[1]:
        fail(f"layer {i} names {len(heads)} heads {heads[:20]} but its tensor holds {weights.shape[1]}")
    stated = entry.get("dtype")
    if stated is not None and stated != str(weights.dtype).replace("torch.", ""):
        fail(f"layer {i} says its weights are {stated!r:.40} but the tensor is {weights.dtype}")
    for label, tensor in (("queries", queries), ("keys", keys)):
        if tensor is not None and (
            not isinstance(tensor, torch.Tensor) or tensor.dim() != 4 or tensor.shape[0] != weights.shape[0]
        ):
            fail(f"layer {i}'s {label} are not a [batch, heads, length, dim] tensor of the weights' batch")
