"""The long view's stored weights: the sparse, 16-bit encoding of attention blocks and its
compression (the page, :mod:`attn_plugins.integrations.longview`, decodes them in the browser).

Every weight at or above one threshold is kept (``min_weight``, raised as far as needed to keep the
stored weights within a byte budget) and each row's largest weight; values are quantised to 16 bits
on a square-root scale. The fields are deflated with Huffman coding on threads.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

QUANT_LEVELS = 65535
MAX_TOKENS = 65535

__all__ = ["MAX_TOKENS", "QUANT_LEVELS", "deflate", "encode"]


def _groups(attn_blocks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The blocks as float32 CPU stacks ``[n, q, k]`` (a 2-D block is a stack of one)."""
    groups = []
    for w in attn_blocks:
        w = w.detach()
        if w.dim() == 2:
            w = w.unsqueeze(0)
        if w.dim() != 3:
            raise ValueError(f"attention blocks are [query, key] or [blocks, query, key], got {tuple(w.shape)}")
        if w.shape[2] > MAX_TOKENS or w.shape[1] > MAX_TOKENS:
            raise ValueError(f"the long view handles at most {MAX_TOKENS} positions, got {tuple(w.shape[1:])}")
        groups.append(w.to("cpu", torch.float32).contiguous())
    return groups


def _row_sums(groups: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each group's row sums ``[n * q]`` (float64); a group holding NaN or infinities is cleaned
    in place first (NaN and -inf read as 0, +inf as 1). One pass over the weights when clean."""
    sums = []
    for i, w in enumerate(groups):
        row_sum = w.sum(dim=2).reshape(-1)  # float32: a row of probabilities sums to about 1
        if not math.isfinite(float(row_sum.sum())):
            groups[i] = w = torch.nan_to_num(w, nan=0.0, posinf=1.0, neginf=0.0)
            row_sum = w.sum(dim=2).reshape(-1)
        sums.append(row_sum.double())
    return sums


def deflate(data: bytes, level: int = 1, chunk: int = 1 << 21, strategy: int = zlib.Z_HUFFMAN_ONLY) -> bytes:
    """``zlib.compress(data, level)`` in parallel: chunks deflated on threads (zlib lets go of the
    GIL), each ended by a sync flush so their concatenation is one valid deflate stream, wrapped in
    the zlib header and Adler-32 trailer the page's ``DecompressionStream("deflate")`` reads.

    The default strategy is Huffman coding alone: the sparse weights hold almost no repeated runs
    for the string matcher to find (on a 512-token MiniLM record it made the data 2 % smaller and
    took 60 % longer).

    Args:
        data: the bytes to compress.
        level: the zlib level.
        chunk: bytes per thread's piece (data up to this size is compressed in one call).
        strategy: the zlib strategy (``zlib.Z_DEFAULT_STRATEGY`` for full LZ77 matching).

    Returns:
        A zlib stream (what ``zlib.decompress`` reads).
    """
    from concurrent.futures import ThreadPoolExecutor

    view = memoryview(data)
    pieces = [view[i : i + chunk] for i in range(0, len(data), chunk)] or [view]

    def one(index: int) -> bytes:
        packer = zlib.compressobj(level, zlib.DEFLATED, -15, 8, strategy)
        last = index == len(pieces) - 1
        return packer.compress(pieces[index]) + packer.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)

    if len(pieces) == 1:
        return b"\x78\x01" + one(0) + zlib.adler32(data).to_bytes(4, "big")

    with ThreadPoolExecutor(max_workers=min(len(pieces), os.cpu_count() or 1)) as pool:
        body = b"".join(pool.map(one, range(len(pieces))))
    return b"\x78\x01" + body + zlib.adler32(data).to_bytes(4, "big")


def _threshold(
    groups: list[torch.Tensor], room: int, floor: float, generator: torch.Generator, samples: int = 1 << 16
) -> float:
    """A weight threshold that about ``room`` weights of ``groups`` reach, estimated from about
    ``samples`` weights drawn uniformly (each standing for ``numel / drawn`` weights of its group)."""
    total = sum(w.numel() for w in groups)
    picked, scales, sizes = [], [], []
    for w in groups:
        n = w.numel()
        take = min(n, max(1024, samples * n // max(1, total)))
        flat = w.reshape(-1)
        picked.append(flat if take == n else flat[torch.randint(0, n, (take,), generator=generator)])
        scales.append(n / take)
        sizes.append(take)
    values = torch.cat(picked)
    weight = torch.repeat_interleave(torch.tensor(scales, dtype=torch.float64), torch.tensor(sizes))
    keep = values >= floor
    values, weight = values[keep], weight[keep]
    if float(weight.sum()) <= room:
        return floor
    values, order = torch.sort(values, descending=True)
    cum = torch.cumsum(weight[order], 0)
    position = int(torch.searchsorted(cum, torch.tensor(float(room), dtype=torch.float64)))
    position = min(max(position, 0), len(order) - 1)
    return max(floor, float(values[position]))


def _sparse(w: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For a stack ``[n, q, k]``: the row (``block * q + query``), column and value of every weight
    >= ``tau`` and of each row's largest weight, in row-major order. One pass over the whole stack
    (no per-block loop); a row's largest weight is looked up only where no weight of the row reaches
    ``tau`` (elsewhere it is among those kept already). The mask is scanned with numpy, whose
    ``any`` and ``flatnonzero`` over booleans are several times faster than torch's here."""
    n, q, k = w.shape
    weights = w.numpy()  # the groups are contiguous float32 on the CPU (_groups)
    mask = weights >= tau
    empty = np.flatnonzero(~mask.any(axis=2))
    if empty.size:
        rows = mask.reshape(n * q, k)
        rows[empty, weights.reshape(n * q, k)[empty].argmax(axis=1)] = True
    flat = torch.from_numpy(np.flatnonzero(mask))
    vals = w.view(-1).index_select(0, flat)
    return torch.div(flat, k, rounding_mode="floor"), flat % k, vals


def encode(
    attn_blocks: list[torch.Tensor], *, budget_bytes: int = 8_000_000, min_weight: float = 1e-4, seed: int = 0
) -> tuple[np.ndarray, list[dict[str, int]], dict[str, Any]]:
    """Encode ``[q, k]`` weight blocks sparsely (see the module docstring of :mod:`.longview`).

    Every weight at or above one threshold is kept (the threshold is ``min_weight``, raised so
    that the blocks take about ``budget_bytes``), and each row's largest weight is always kept.
    A ``[n, q, k]`` tensor in ``attn_blocks`` stands for its ``n`` blocks and is encoded in one
    pass (the fast way: pass each layer's heads as one stack).

    Args:
        attn_blocks: ``[q, k]`` blocks or ``[n, q, k]`` stacks of blocks.
        budget_bytes: about how many bytes the stored weights may take.
        min_weight: the lowest threshold.
        seed: seeds the sample the threshold is estimated from.

    Returns:
        The 16-bit fields (a ``<u2`` array, uncompressed), one ``{"counts", "cols", "vals",
        "entries"}`` dict of byte offsets per block, and statistics (entries kept, the threshold,
        the share of each row's attention the stored entries hold).
    """
    groups = _groups(attn_blocks)
    row_sums = _row_sums(groups)
    rows_total = sum(w.shape[0] * w.shape[1] for w in groups)
    room = max(0, budget_bytes // 4 - rows_total)  # 4 bytes a weight, 2 a row
    generator = torch.Generator().manual_seed(seed)
    tau = _threshold(groups, room, max(min_weight, 1e-30), generator)
    sparse = [_sparse(w, tau) for w in groups]
    total = sum(int(v.numel()) for _, _, v in sparse)
    if total > 1.15 * (room + rows_total) and total > 0:
        # the sampled threshold was too low: raise it to the exact value among the kept weights
        kept = torch.cat([v for _, _, v in sparse])
        excess = total - (room + rows_total)
        tau = float(torch.kthvalue(kept, min(kept.numel(), excess + 1)).values)
        trimmed = []
        for w, (r, c, v) in zip(groups, sparse, strict=True):
            top = w.argmax(dim=2).reshape(-1)  # each row's largest weight stays
            keep = (v >= tau) | (c == top[r])
            trimmed.append((r[keep], c[keep], v[keep]))
        sparse = trimmed
    sizes = [w.shape[0] * w.shape[1] + 2 * int(v.numel()) for w, (_, _, v) in zip(groups, sparse, strict=True)]
    out = np.empty(sum(sizes), dtype="<u2")
    offsets: list[dict[str, int]] = []
    position = 0
    share_min, share_sum, share_rows = 1.0, 0.0, 0
    for w, row_sum, (r, c, v) in zip(groups, row_sums, sparse, strict=True):
        n, q, _ = w.shape
        counts = torch.bincount(r, minlength=n * q)
        same = torch.zeros_like(r, dtype=torch.bool)
        same[1:] = r[1:] == r[:-1]
        previous = torch.zeros_like(c)
        previous[1:] = c[:-1]
        delta = (c - torch.where(same, previous, torch.zeros_like(c))).numpy()
        quant = torch.round(torch.sqrt(v.double()) * QUANT_LEVELS).clamp(1, QUANT_LEVELS).numpy()
        per_block = counts.view(n, q).sum(dim=1).tolist()
        counts_np = counts.numpy()
        start = 0
        for b in range(n):
            e = per_block[b]
            at = position
            out[at : at + q] = counts_np[b * q : (b + 1) * q]
            out[at + q : at + q + e] = delta[start : start + e]
            out[at + q + e : at + q + 2 * e] = quant[start : start + e]
            offsets.append({"counts": 2 * at, "cols": 2 * (at + q), "vals": 2 * (at + q + e), "entries": e})
            position += q + 2 * e
            start += e
        held = torch.bincount(r, weights=v.double(), minlength=n * q)
        real = row_sum > 1e-6
        if bool(real.any()):
            share = (held[real] / row_sum[real]).clamp(max=1.0)
            share_min = min(share_min, float(share.min()))
            share_sum += float(share.sum())
            share_rows += int(real.sum())
    stats = {
        "entries": sum(o["entries"] for o in offsets),
        "threshold": tau,
        "coverage_min": share_min,
        "coverage_mean": share_sum / max(1, share_rows),
    }
    return out, offsets, stats
