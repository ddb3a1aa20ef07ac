"""The memory guard: how many bytes a capture will hold, and refusing before it runs out.

Before each forward (and before a ``generate()`` call, counting every step it may take) the size of
the probabilities to be kept is estimated as layers x heads x batch x queries x keys x bytes. Above
the budget (default: half the free memory of the device the record is kept on) the capture stops
with :class:`MemoryBudgetError`, whose message gives the size and how to cut it. While the model
runs, every stored block is also counted, so models whose lengths cannot be read from their inputs
are stopped as soon as they cross the budget.
"""

from __future__ import annotations

import math
import os
import re
import shutil

import torch

from .errors import MemoryBudgetError

DEFAULT_FRACTION = 0.5
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}


def parse_bytes(value) -> float | None:
    """``None`` (automatic), a number of bytes, ``float('inf')`` (no limit) or a text like ``"2GB"``/``"512 MiB"``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("max_bytes must be a number of bytes or a size such as '2GB', not a bool")
    if isinstance(value, (int, float)):
        if value <= 0 or (isinstance(value, float) and math.isnan(value)):
            raise ValueError(f"max_bytes must be positive, got {value!r}")
        return float(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", value)
        unit = match.group(2).upper() if match else None
        if match is None or unit not in _UNITS:
            raise ValueError(f"cannot read max_bytes={value!r}; write e.g. 500MB, 2GB or 1.5GiB")
        return parse_bytes(float(match.group(1)) * _UNITS[unit])
    raise TypeError(f"max_bytes must be a number of bytes or a size such as '2GB', got {type(value).__name__}")


def format_bytes(n: float) -> str:
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def free_memory(device: torch.device) -> tuple[int, str]:
    """Bytes free on ``device`` now (CUDA: the driver's figure; CPU: MemAvailable) and a label."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"free on {device}"
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available host memory"
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free host memory"
    except (ValueError, OSError, AttributeError):
        return 2**63, "host memory (size unknown)"


class Budget:
    """Counts stored bytes against a limit; ``check`` refuses an estimate before the model runs."""

    def __init__(self, limit: float, source: str, *, disk: str | None = None) -> None:
        self.limit = limit
        self.source = source  # why the limit is what it is, for the message
        self.disk = disk
        self.used = 0

    @classmethod
    def for_capture(cls, max_bytes, device: torch.device, stream_to: str | None) -> Budget:
        limit = parse_bytes(max_bytes)
        if stream_to is not None:
            if limit is not None:
                return cls(limit, f"max_bytes={format_bytes(limit)}", disk=stream_to)
            probe = stream_to
            while not os.path.exists(probe):
                probe = os.path.dirname(os.path.abspath(probe))
            free = shutil.disk_usage(probe).free
            return cls(
                free * 0.95, f"95% of the {format_bytes(free)} free on the disk of {stream_to!r}", disk=stream_to
            )
        if limit is not None:
            return cls(limit, f"max_bytes={format_bytes(limit)}")
        free, label = free_memory(device)
        return cls(free * DEFAULT_FRACTION, f"half of the {format_bytes(free)} {label}; set max_bytes= to change it")

    def _refuse(self, size: float, detail: str, when: str) -> None:
        where = f"write {format_bytes(size)} to disk" if self.disk else f"hold {format_bytes(size)} of attention"
        already = f" on top of {format_bytes(self.used)} already captured" if self.used else ""
        cuts = [
            "select layers (layers=[...])",
            "select heads (heads=[...])",
            "keep a smaller dtype (dtype=torch.bfloat16 halves float32)",
        ]
        if not self.disk:
            cuts.append("stream to disk (stream_to='some/dir')")
        cuts += ["shorten the input or the batch", "or raise the budget (max_bytes='...')"]
        raise MemoryBudgetError(
            f"{when} would {where}{already} ({detail}), over the budget of {format_bytes(self.limit)} "
            f"({self.source}). To cut it: {', '.join(cuts)}"
        )

    def check(self, size: float, detail: str, when: str = "this forward") -> None:
        if self.used + size > self.limit:
            self._refuse(size, detail, when)

    def charge(self, nbytes: int, what: str) -> None:
        if self.used + nbytes > self.limit:
            self._refuse(nbytes, what, "storing the next block")
        self.used += nbytes


def describe(parts: list[tuple[int, int, int, int, int]], itemsize: int, dtype: torch.dtype) -> tuple[int, str]:
    """Total bytes of ``(layers, heads, batch, q, k)`` groups and a readable breakdown."""
    total = sum(n_layers * h * b * q * k for n_layers, h, b, q, k in parts) * itemsize
    name = str(dtype).replace("torch.", "")
    text = " + ".join(f"{n_layers} layers x {h} heads x batch {b} x {q} x {k}" for n_layers, h, b, q, k in parts)
    return total, f"{text} x {itemsize} bytes ({name})"
