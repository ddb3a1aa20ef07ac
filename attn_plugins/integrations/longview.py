"""A canvas view of attention for long inputs (1,000 to several thousand tokens).

BertViz draws one SVG line per token pair and per head, and stops loading near 512 tokens. This
view draws a heat map on a ``<canvas>`` (query rows, key columns) with no third-party library:

* layer selection, head selection (click toggles a head, double-click shows only that head; head
  colours as in BertViz), and, for encoder-decoder records, encoder / decoder / cross attention;
* zoom into a token window (mouse wheel, drag to pan, +/- buttons, or type the query and key
  windows); token labels appear once the window is small enough to read them;
* hover values: the query and key tokens and each selected head's weight.

Compact encoding: only the selected layers and heads are stored, and of those only the weights
that matter to the picture: every weight at or above a threshold (``min_weight``, 1e-4 by default,
raised as far as needed to keep the stored weights within ``budget_mb``) and each row's largest
weight. Weights are quantised to 16 bits on a square-root scale (relative error below 0.01 % above
1e-3), split into byte planes and deflate-compressed, and decoded in the browser by its built-in
``DecompressionStream``. The page states the threshold and how much of each row's attention the
stored weights hold; a weight that was not stored shows as "< threshold" when hovered (it is drawn
at most ``sqrt(threshold)`` opaque, so the picture loses little).

``ap.export(record, "long")`` builds it (as does ``ap.export(record, "bertviz", view="long")``); the
BertViz head and model views switch to it by themselves for inputs longer than 256 tokens. It draws
the panels of :mod:`attn_plugins.integrations.panels`, as the BertViz views do.
"""

from __future__ import annotations

import base64
import functools
import math
import os
import uuid
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .html_page import HtmlExport, safe_json
from .notebook_output import fallback_html, hide_fallback_js, mean_picture
from .panels import Panel, caption, panels, prettify

if TYPE_CHECKING:
    from ..record import AttentionRecord

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
QUANT_LEVELS = 65535
MAX_TOKENS = 65535
# deflate level: 1 is several times faster than 6 on these planes for a page a little larger
COMPRESS_LEVEL = 1


@functools.cache
def _static(name: str, mtime: float) -> str:
    with open(os.path.join(STATIC, name), encoding="utf-8") as handle:
        return handle.read()


def static_file(name: str) -> str:
    """A file of the package's ``static/`` folder (read once per modification time).

    Args:
        name: the file name, e.g. ``"longview.js"``.

    Returns:
        The file's text.
    """
    path = os.path.join(STATIC, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"attn-plugins is missing its package data file {path!r}; reinstall attn-plugins")
    return _static(name, os.path.getmtime(path))


class LongViewExport(HtmlExport):
    """A long-input page: ``save(path)``, notebook display, and what was stored (``stats``)."""

    view = "long"

    def __init__(self, body: str, title: str, root_id: str, stats: dict[str, Any]) -> None:
        super().__init__(body, title=title)
        self.root_id = root_id
        self.stats = stats

    def __repr__(self) -> str:
        return (
            f"LongViewExport({self.stats['tokens']} tokens, {self.stats['entries']} stored weights, "
            f"{len(self.body)} characters)"
        )


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
) -> tuple[bytes, list[dict[str, int]], dict[str, Any]]:
    """:func:`encode_array` with the fields as bytes (little-endian 16-bit)."""
    out, offsets, stats = encode_array(attn_blocks, budget_bytes=budget_bytes, min_weight=min_weight, seed=seed)
    return out.tobytes(), offsets, stats


def encode_array(
    attn_blocks: list[torch.Tensor], *, budget_bytes: int = 8_000_000, min_weight: float = 1e-4, seed: int = 0
) -> tuple[np.ndarray, list[dict[str, int]], dict[str, Any]]:
    """Encode ``[q, k]`` weight blocks sparsely (see the module docstring).

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


def longview_from_panels(
    record: AttentionRecord,
    found: list[Panel],
    *,
    item: int = 0,
    layer: int | None = None,
    heads: int | Sequence[int] | None = None,
    prettify_tokens: bool = True,
    notes: list[str] | None = None,
    budget_mb: float = 8.0,
    min_weight: float = 1e-4,
    compress: bool = True,
    size: int = 720,
    title: str = "attn-plugins: long-input attention view",
) -> LongViewExport:
    """The long view of panels made by :func:`attn_plugins.integrations.panels.panels`.

    Args:
        record: the record the panels come from (for the caption).
        found: the panels (``stacked=False`` avoids a copy of long inputs' weights).
        item: the batch item shown (for the caption).
        layer: the initially selected layer (model numbering).
        heads: the initially selected heads (default: all).
        prettify_tokens: replace ``Ġ``/``▁`` by spaces.
        notes: extra notes for the caption.
        budget_mb: size of the stored weights before compression, in MB.
        min_weight: the smallest weight worth storing.
        compress: deflate the stored weights.
        size: the canvas side in CSS pixels.
        title: the page title.

    Returns:
        The page.
    """
    # one stack per panel and layer: its heads are encoded in one pass
    blocks = [p.attn[li] for p in found for li in range(len(p.layers))]
    fields, offsets, stats = encode_array(blocks, budget_bytes=int(budget_mb * 1_000_000), min_weight=min_weight)
    raw_size = fields.nbytes
    # every field is 16-bit: store all low bytes, then all high bytes (deflate packs the mostly
    # empty high bytes of column steps and counts into almost nothing); one copy, straight from the array
    data: Any = np.ascontiguousarray(fields.view(np.uint8).reshape(-1, 2).T).reshape(-1).data
    if compress:
        data = deflate(data, COMPRESS_LEVEL)
    meta_panels: list[dict[str, Any]] = []
    cursor = 0
    for p in found:
        per_layer = []
        for _ in p.layers:
            per_layer.append(offsets[cursor : cursor + len(p.heads)])
            cursor += len(p.heads)
        left, right = (prettify(p.left), prettify(p.right)) if prettify_tokens else (p.left, p.right)
        meta_panels.append(
            {
                "name": p.name or "",
                "layers": p.layers,
                "heads": p.heads,
                "q": len(p.left),
                "k": len(p.right),
                "left": left,
                "right": right,
                "blocks": per_layer,
            }
        )
    first = found[0]
    layer_pos = 0
    if layer is not None:
        if layer not in first.layers:
            raise ValueError(f"layer {layer} is not among the layers shown: {first.layers}")
        layer_pos = first.layers.index(layer)
    if heads is None:
        head_pos = list(range(len(first.heads)))
    else:
        wanted = [heads] if isinstance(heads, int) else list(heads)
        absent = [h for h in wanted if h not in first.heads]
        if absent:
            raise ValueError(f"heads {absent} are not among the heads shown: {first.heads}")
        head_pos = [first.heads.index(h) for h in wanted]
    tokens = max(p.length for p in found)
    stats.update({"tokens": tokens, "bytes_raw": raw_size, "bytes_stored": len(data), "compressed": compress})
    meta = {
        "version": 1,
        "panels": meta_panels,
        "initial": {"panel": 0, "layer": layer_pos, "heads": head_pos},
        "quant": QUANT_LEVELS,
        "compressed": compress,
        "size": int(size),
        "coverage": {"min": stats["coverage_min"], "mean": stats["coverage_mean"]},
        "threshold": stats["threshold"],
    }
    root_id = f"attn-longview-{uuid.uuid4().hex}"
    caption_html = caption(record, item, ["long-input view"] + list(notes or []))
    payload = base64.b64encode(data).decode("ascii")
    fallback_id = f"{root_id}-fallback"
    body = (
        fallback_html(
            fallback_id,
            "long-input attention view",
            mean_picture(
                first.attn[-1], f"{first.name or 'attention'}, layer {first.layers[-1]}: the mean of its heads"
            ),
        )
        + f"<style>{static_file('longview.css')}</style>\n"
        f'<div class="apl-root" id="{root_id}">\n{caption_html}'
        f'<script type="application/json" class="apl-meta">{safe_json(meta)}</script>\n'
        f'<script type="application/octet-stream" class="apl-data">{payload}</script>\n'
        "</div>\n"
        f'<script type="text/javascript">\n(function () {{\n{hide_fallback_js(fallback_id)}'
        f"{static_file('longview.js')}\n"
        f"attnPluginsLongView(document.getElementById({safe_json(root_id)}));\n}})();\n</script>\n"
    )
    return LongViewExport(body, title, root_id, stats)


def longview(
    record: AttentionRecord,
    *,
    item: int = 0,
    stack: str | None = None,
    include_layers: int | Sequence[int] | None = None,
    include_heads: int | Sequence[int] | None = None,
    layer: int | None = None,
    heads: int | Sequence[int] | None = None,
    trim_padding: bool = True,
    words: bool = False,
    offsets: Any = None,
    text: str | None = None,
    decoder_offsets: Any = None,
    decoder_text: str | None = None,
    prettify_tokens: bool = True,
    **options: Any,
) -> LongViewExport:
    """The long-input canvas view of ``record``.

    Args:
        record: the record.
        item: the batch item.
        stack: as for the ``"bertviz"`` exporter.
        include_layers: the layers to include (model numbering).
        include_heads: the heads to include (model numbering).
        layer: the initially selected layer.
        heads: the initially selected heads.
        trim_padding: leave out padding positions.
        words: merge word pieces into words.
        offsets: the tokenizer's ``offset_mapping`` (encoder side).
        text: the encoder side's text.
        decoder_offsets: the decoder side's offsets.
        decoder_text: the decoder side's text.
        prettify_tokens: replace ``Ġ``/``▁`` by spaces.
        **options: ``budget_mb`` (size of the stored weights before compression, default 8),
            ``min_weight`` (smallest weight worth storing, default 1e-4), ``compress`` and ``size``
            (canvas side in CSS pixels, default 720), as :func:`longview_from_panels`.

    Returns:
        The page.
    """
    found = panels(
        record,
        item=item,
        stack=stack,
        include_layers=include_layers,
        include_heads=include_heads,
        trim_padding=trim_padding,
        words=words,
        offsets=offsets,
        text=text,
        decoder_offsets=decoder_offsets,
        decoder_text=decoder_text,
        sentence_b_start=None,
        stacked=False,
    )
    notes = [n for p in found[:1] for n in p.notes]
    return longview_from_panels(
        record, found, item=item, layer=layer, heads=heads, prettify_tokens=prettify_tokens, notes=notes, **options
    )
