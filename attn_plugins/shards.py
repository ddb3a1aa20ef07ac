"""Safetensors files written piece by piece and read back memory-mapped.

The format is safetensors' own (an 8-byte little-endian header length, a JSON header naming each
tensor's dtype, shape and byte range, then the raw bytes), so every file here also opens with
``safetensors.safe_open``. Writing it ourselves lets a file be preallocated and filled block by
block (generation steps), and reading it ourselves lets tensors stay on disk until touched.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import torch

from .errors import ShardError

DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}
_BY_CODE = {code: dtype for dtype, code in DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


def _header(specs: dict[str, tuple[torch.dtype, tuple[int, ...]]], metadata: dict[str, str] | None):
    header: dict[str, Any] = {}
    offset = 0
    for name, (dtype, shape) in specs.items():
        if dtype not in DTYPES:
            raise TypeError(f"cannot store {dtype} in a safetensors shard")
        size = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors aligns the data to 8 bytes
    return struct.pack("<Q", len(raw)) + raw, header, offset


def _bytes(tensor: torch.Tensor):
    flat = tensor.detach().contiguous().reshape(-1).cpu()
    return memoryview(flat.view(torch.uint8).numpy()) if flat.numel() else b""


def write(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` to ``path`` (atomically: a temporary name, then a rename)."""
    prefix, _, _ = _header({k: (v.dtype, tuple(v.shape)) for k, v in tensors.items()}, metadata)
    tmp = f"{path}.partial"
    with open(tmp, "wb") as handle:
        handle.write(prefix)
        for tensor in tensors.values():
            handle.write(_bytes(tensor))
    os.replace(tmp, path)


def preallocate(path: str, specs: dict[str, tuple[torch.dtype, tuple[int, ...]]],
                metadata: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Create a zero-filled shard and return writable memory-mapped views of its tensors."""
    prefix, _, total = _header(specs, metadata)
    with open(path, "wb") as handle:
        handle.write(prefix)
        handle.truncate(len(prefix) + total)
    return open_tensors(path, writable=True)


def read_header(path: str) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file and the offset where its data starts."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            first = handle.read(8)
            if len(first) < 8:
                raise ShardError(f"{path!r} is too short to be a safetensors file ({size} bytes)")
            (length,) = struct.unpack("<Q", first)
            if length > min(_MAX_HEADER, size - 8):
                raise ShardError(f"{path!r} is not a safetensors file (header length {length} for a {size}-byte file)")
            header = json.loads(handle.read(length))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ShardError(f"{path!r} has an unreadable safetensors header: {exc}") from None
    if not isinstance(header, dict):
        raise ShardError(f"{path!r} has an unreadable safetensors header")
    start = 8 + length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(v) for v in info["data_offsets"])
            dtype = _BY_CODE[info["dtype"]]
            shape = [int(s) for s in info["shape"]]
        except (KeyError, TypeError, ValueError):
            raise ShardError(f"{path!r}: tensor {name!r} has a damaged header entry") from None
        expected = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        if min(shape, default=0) < 0 or end - begin != expected or begin < 0 or start + end > size:
            raise ShardError(f"{path!r} is truncated or damaged: tensor {name!r} does not fit the file")
    return header, start


def open_tensors(path: str, *, writable: bool = False) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, memory-mapped: nothing is read until it is used.

    Read-only use maps the file copy-on-write, so writing into a loaded tensor never changes the file.
    """
    import numpy as np

    header, start = read_header(path)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _BY_CODE[info["dtype"]]
        begin, end = info["data_offsets"]
        shape = info["shape"]
        if end == begin:
            out[name] = torch.empty(shape, dtype=dtype)
            continue
        array = np.memmap(path, dtype=np.uint8, mode="r+" if writable else "c", offset=start + begin,
                          shape=(end - begin,))
        out[name] = torch.from_numpy(array).view(dtype).reshape(shape)
    return out
