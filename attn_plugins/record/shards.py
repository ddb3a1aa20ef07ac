"""Safetensors files: plain writes through safetensors, plus what safetensors cannot do.

Plain writes use ``safetensors.torch.save_file`` (through :func:`attn_plugins.atomic.atomic_path`,
so a file is complete or absent). Two things are ours, in safetensors' own format (an 8-byte
little-endian header length, a JSON header naming each tensor's dtype, shape and byte range, then
the raw bytes), so every file here also opens with ``safetensors.safe_open``:

* :func:`preallocate`: a file created at its full size and filled block by block through a memory
  map (a streamed layer's generation steps are merged this way, one block in memory at a time);
* :func:`open_tensors`: every tensor memory-mapped, read from disk only where it is touched.

Files are untrusted input: the header is bounded in size, every entry is checked, every tensor must
lie inside the file, and only regular files are opened (never a device, a pipe or a final symlink).
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import struct
from typing import Any

import torch

from ..atomic import atomic_path
from ..errors import ShardError
from .format import MAX_METADATA_BYTES, parse_json

DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
BY_CODE = {code: dtype for dtype, code in DTYPES.items()}
MAX_HEADER = MAX_METADATA_BYTES + 8 * 1024 * 1024  # the record's JSON plus its tensors' entries
MAX_DIMS = 8


def own_storage(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU tensors each with storage of its own (safetensors refuses tensors that share memory)."""
    seen: set[tuple[int, int]] = set()
    out = {}
    for name, tensor in tensors.items():
        plain = tensor.detach().contiguous().cpu()
        storage = plain.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key in seen or storage.nbytes() != plain.numel() * plain.element_size():
            plain = plain.clone()
            key = (plain.untyped_storage().data_ptr(), plain.untyped_storage().nbytes())
        seen.add(key)
        out[name] = plain
    return out


def save_tensors(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """Write ``tensors`` (and string ``metadata``) to the safetensors file ``path``, atomically.

    Args:
        path: the file to write (replaced only once the new one is complete).
        tensors: name -> tensor (any device; views and shared storage are fine).
        metadata: the header's ``__metadata__`` (strings only).

    Returns:
        ``path``.
    """
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    plain = own_storage(tensors)
    with atomic_path(path) as tmp:
        try:
            save_file(plain, tmp, metadata=metadata)
        except SafetensorError as exc:  # a full disk, a quota: report it as the OSError it is
            code = re.search(r"os error (\d+)", str(exc))
            raise OSError(int(code.group(1)) if code else errno.EIO, f"cannot write {path!r}: {exc}") from None
    return path


def _header(specs: dict[str, tuple[torch.dtype, tuple[int, ...]]]) -> tuple[bytes, int]:
    header: dict[str, Any] = {}
    offset = 0
    for name, (dtype, shape) in specs.items():
        if dtype not in DTYPES:
            raise TypeError(f"cannot store {dtype} in a safetensors shard")
        size = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors aligns the data to 8 bytes
    return struct.pack("<Q", len(raw)) + raw, offset


def preallocate(path: str, specs: dict[str, tuple[torch.dtype, tuple[int, ...]]]) -> dict[str, torch.Tensor]:
    """Create a shard at its full size and return writable memory-mapped views of its tensors.

    The space is reserved on disk up front (``posix_fallocate``), so a full disk is an ``OSError``
    here rather than a crash (SIGBUS) while the views are filled. Call it on a temporary path from
    :func:`~attn_plugins.atomic.atomic_path`.
    """
    prefix, total = _header(specs)
    with open(path, "wb") as handle:
        handle.write(prefix)
        handle.flush()
        if total and hasattr(os, "posix_fallocate"):
            os.posix_fallocate(handle.fileno(), len(prefix), total)
        else:
            handle.truncate(len(prefix) + total)
    return open_tensors(path, writable=True)


def open_regular(path: str, writable: bool) -> Any:
    """Open ``path`` only if it is a regular file (not a symlink, pipe or device): a file object."""
    flags = (os.O_RDWR if writable else os.O_RDONLY) | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ShardError(f"{path!r} cannot be opened as a regular file: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ShardError(f"{path!r} is not a regular file")
    return os.fdopen(fd, "r+b" if writable else "rb")


def _entry(path: str, name: str, info: Any, start: int, size: int) -> tuple[torch.dtype, list[int], int, int]:
    try:
        begin, end = info["data_offsets"]
        dtype = BY_CODE[info["dtype"]]
        shape = list(info["shape"])
    except (KeyError, TypeError, ValueError):
        raise ShardError(f"{path!r}: tensor {name!r:.80} has a damaged header entry") from None
    numbers = [begin, end, *shape]
    if len(shape) > MAX_DIMS or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in numbers):
        raise ShardError(f"{path!r}: tensor {name!r:.80} has a damaged header entry")
    expected = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if end - begin != expected or start + end > size:
        raise ShardError(f"{path!r} is truncated or damaged: tensor {name!r:.80} does not fit the file")
    return dtype, shape, begin, end


def _read_header(path: str, handle: Any) -> tuple[dict[str, tuple[Any, ...]], dict[str, str], int]:
    size = os.fstat(handle.fileno()).st_size
    first = handle.read(8)
    if len(first) < 8:
        raise ShardError(f"{path!r} is too short to be a safetensors file ({size} bytes)")
    (length,) = struct.unpack("<Q", first)
    if length > MAX_HEADER:
        raise ShardError(f"{path!r} has a {length}-byte safetensors header, over the limit of {MAX_HEADER} bytes")
    if length > size - 8:
        raise ShardError(f"{path!r} is not a safetensors file (header length {length} for a {size}-byte file)")
    header = parse_json(f"{path!r} (safetensors header)", handle.read(length), ShardError, MAX_HEADER)
    if not isinstance(header, dict):
        raise ShardError(f"{path!r} has an unreadable safetensors header")
    start = 8 + length
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ShardError(f"{path!r} has damaged safetensors metadata (not an object of strings)")
    entries = {name: _entry(path, name, info, start, size) for name, info in header.items()}
    return entries, metadata, start


def read_header(path: str) -> tuple[dict[str, str], dict[str, tuple[Any, ...]]]:
    """A safetensors file's ``__metadata__`` and its checked tensor entries (dtype, shape, byte range).

    Raises:
        ShardError: the file is not a regular file, too short, or its header is damaged or too big.
    """
    with open_regular(path, writable=False) as handle:
        entries, metadata, _ = _read_header(path, handle)
    return metadata, entries


def open_tensors(path: str, *, writable: bool = False) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, memory-mapped: nothing is read until it is used.

    Read-only use maps the file copy-on-write, so writing into a loaded tensor never changes the file.

    Raises:
        ShardError: as :func:`read_header`.
    """
    import numpy as np

    with open_regular(path, writable) as handle:
        entries, _, start = _read_header(path, handle)
        out = {}
        for name, (dtype, shape, begin, end) in entries.items():
            if end == begin:
                out[name] = torch.empty(shape, dtype=dtype)
                continue
            array = np.memmap(
                handle, dtype=np.uint8, mode="r+" if writable else "c", offset=start + begin, shape=(end - begin,)
            )
            out[name] = torch.from_numpy(array).view(dtype).reshape(shape)
    return out
