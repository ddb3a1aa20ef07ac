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

import torch

from .html_page import HtmlExport, safe_json
from .panels import Panel, caption, panels, prettify

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
QUANT_LEVELS = 65535
MAX_TOKENS = 65535


@functools.lru_cache(maxsize=None)
def _static(name: str, mtime: float) -> str:
    with open(os.path.join(STATIC, name), encoding="utf-8") as handle:
        return handle.read()


def static_file(name: str) -> str:
    path = os.path.join(STATIC, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"attn-plugins is missing its package data file {path!r}; reinstall attn-plugins")
    return _static(name, os.path.getmtime(path))


class LongViewExport(HtmlExport):
    """A long-input page: ``save(path)``, notebook display, and what was stored (``stats``)."""

    view = "long"

    def __init__(self, body: str, title: str, root_id: str, stats: dict) -> None:
        super().__init__(body, title=title)
        self.root_id = root_id
        self.stats = stats

    def __repr__(self) -> str:
        return (f"LongViewExport({self.stats['tokens']} tokens, {self.stats['entries']} stored weights, "
                f"{len(self.body)} characters)")


def _threshold(blocks: list[torch.Tensor], room: int, floor: float, generator: torch.Generator) -> float:
    """A weight threshold that about ``room`` weights of ``blocks`` reach (estimated from samples)."""
    samples, scales, sizes = [], [], []
    for w in blocks:
        n = w.numel()
        take = min(n, 16384)
        flat = w.reshape(-1)
        picked = flat if take == n else flat[torch.randint(0, n, (take,), generator=generator)]
        samples.append(picked)
        scales.append(n / take)
        sizes.append(take)
    values = torch.cat(samples)
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


def _sparse(w: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows, columns and values of the weights >= ``tau``, plus each row's largest weight."""
    mask = w >= tau
    top = w.argmax(dim=1, keepdim=True)
    mask.scatter_(1, top, True)
    rows, cols = mask.nonzero(as_tuple=True)
    vals = w[mask]  # row-major, the order of nonzero()
    return rows, cols, vals, top.squeeze(1)


def encode(attn_blocks: list[torch.Tensor], *, budget_bytes: int = 8_000_000, min_weight: float = 1e-4,
           seed: int = 0) -> tuple[bytes, list[dict], dict]:
    """Encode ``[q, k]`` weight blocks sparsely (see the module docstring).

    Every weight at or above one threshold is kept (the threshold is ``min_weight``, raised so
    that the blocks take about ``budget_bytes``), and each row's largest weight is always kept.
    Returns the bytes (uncompressed), one ``{"counts", "cols", "vals", "entries"}`` dict of byte
    offsets per block, and statistics (entries kept, the threshold, the share of each row's
    attention the stored entries hold).
    """
    blocks = []
    for w in attn_blocks:
        if w.shape[1] > MAX_TOKENS or w.shape[0] > MAX_TOKENS:
            raise ValueError(f"the long view handles at most {MAX_TOKENS} positions, got {tuple(w.shape)}")
        w = w.detach().to("cpu", torch.float32)
        if not math.isfinite(float(w.sum())):
            w = torch.nan_to_num(w, nan=0.0, posinf=1.0, neginf=0.0)
        blocks.append(w)
    rows_total = sum(w.shape[0] for w in blocks)
    room = max(0, budget_bytes // 4 - rows_total)  # 4 bytes a weight, 2 a row
    generator = torch.Generator().manual_seed(seed)
    tau = _threshold(blocks, room, max(min_weight, 1e-30), generator)
    sparse = [_sparse(w, tau) for w in blocks]
    total = sum(int(v.numel()) for _, _, v, _ in sparse)
    if total > 1.15 * (room + rows_total) and total > 0:
        # the sampled threshold was too low: raise it to the exact value among the kept weights
        kept = torch.cat([v for _, _, v, _ in sparse])
        excess = total - (room + rows_total)
        tau = float(torch.kthvalue(kept, min(kept.numel(), excess + 1)).values)
        trimmed = []
        for (r, c, v, top), w in zip(sparse, blocks):
            keep = (v >= tau) | (c == top[r])
            trimmed.append((r[keep], c[keep], v[keep], top))
        sparse = trimmed
    parts: list[bytes] = []
    offsets: list[dict] = []
    position = 0
    share_min, share_sum, share_rows = 1.0, 0.0, 0
    for w, (r, c, v, _) in zip(blocks, sparse):
        q = w.shape[0]
        counts = torch.bincount(r, minlength=q)
        delta = c.clone()
        same = r[1:] == r[:-1]
        delta[1:][same] = c[1:][same] - c[:-1][same]
        quant = torch.round(torch.sqrt(v.double()) * QUANT_LEVELS).clamp(1, QUANT_LEVELS)
        counts_bytes = counts.numpy().astype("<u2").tobytes()
        cols_bytes = delta.numpy().astype("<u2").tobytes()
        vals_bytes = quant.numpy().astype("<u2").tobytes()
        offsets.append({"counts": position, "cols": position + len(counts_bytes),
                        "vals": position + len(counts_bytes) + len(cols_bytes), "entries": int(v.numel())})
        parts += [counts_bytes, cols_bytes, vals_bytes]
        position += len(counts_bytes) + len(cols_bytes) + len(vals_bytes)
        row_sum = w.sum(dim=1, dtype=torch.float64)
        held = torch.bincount(r, weights=v.double(), minlength=q)
        real = row_sum > 1e-6
        if bool(real.any()):
            share = (held[real] / row_sum[real]).clamp(max=1.0)
            share_min = min(share_min, float(share.min()))
            share_sum += float(share.sum())
            share_rows += int(real.sum())
    stats = {"entries": sum(o["entries"] for o in offsets), "threshold": tau, "coverage_min": share_min,
             "coverage_mean": share_sum / max(1, share_rows)}
    return b"".join(parts), offsets, stats


def longview_from_panels(record, found: list[Panel], *, item: int = 0, layer: int | None = None, heads=None,
                         prettify_tokens: bool = True, notes: list[str] | None = None, budget_mb: float = 8.0,
                         min_weight: float = 1e-4, compress: bool = True,
                         size: int = 720, title: str = "attn-plugins: long-input attention view") -> LongViewExport:
    """The long view of panels made by :func:`attn_plugins.integrations.panels.panels`."""
    blocks: list[torch.Tensor] = []
    for p in found:
        for li in range(len(p.layers)):
            for hi in range(len(p.heads)):
                blocks.append(p.attn[li][hi])
    data, offsets, stats = encode(blocks, budget_bytes=int(budget_mb * 1_000_000), min_weight=min_weight)
    raw_size = len(data)
    # every field is 16-bit: store all low bytes, then all high bytes (deflate packs the mostly
    # empty high bytes of column steps and counts into almost nothing)
    pairs = memoryview(data).cast("B")
    data = bytes(pairs[0::2]) + bytes(pairs[1::2])
    if compress:
        data = zlib.compress(data, 6)
    meta_panels = []
    cursor = 0
    for p in found:
        per_layer = []
        for _ in p.layers:
            per_layer.append(offsets[cursor: cursor + len(p.heads)])
            cursor += len(p.heads)
        left, right = (prettify(p.left), prettify(p.right)) if prettify_tokens else (p.left, p.right)
        meta_panels.append({"name": p.name or "", "layers": p.layers, "heads": p.heads, "q": len(p.left),
                            "k": len(p.right), "left": left, "right": right, "blocks": per_layer})
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
    meta = {"version": 1, "panels": meta_panels, "initial": {"panel": 0, "layer": layer_pos, "heads": head_pos},
            "quant": QUANT_LEVELS, "compressed": compress, "size": int(size),
            "coverage": {"min": stats["coverage_min"], "mean": stats["coverage_mean"]},
            "threshold": stats["threshold"]}
    root_id = f"attn-longview-{uuid.uuid4().hex}"
    caption_html = caption(record, item, ["long-input view"] + list(notes or []))
    payload = base64.b64encode(data).decode("ascii")
    body = (
        f'<style>{static_file("longview.css")}</style>\n'
        f'<div class="apl-root" id="{root_id}">\n{caption_html}'
        f'<script type="application/json" class="apl-meta">{safe_json(meta)}</script>\n'
        f'<script type="application/octet-stream" class="apl-data">{payload}</script>\n'
        "</div>\n"
        f'<script type="text/javascript">\n(function () {{\n{static_file("longview.js")}\n'
        f"attnPluginsLongView(document.getElementById({safe_json(root_id)}));\n}})();\n</script>\n"
    )
    return LongViewExport(body, title, root_id, stats)


def longview(record, *, item: int = 0, stack: str | None = None, include_layers=None, include_heads=None,
             layer: int | None = None, heads=None, trim_padding: bool = True, words: bool = False, offsets=None,
             text: str | None = None, decoder_offsets=None, decoder_text: str | None = None,
             prettify_tokens: bool = True, **options) -> LongViewExport:
    """The long-input canvas view of ``record`` (options as for the ``"bertviz"`` exporter, plus
    ``budget_mb`` (size of the stored weights before compression, default 8), ``min_weight``
    (smallest weight worth storing, default 1e-4), ``compress`` and ``size`` (canvas side in CSS
    pixels, default 720)."""
    found = panels(record, item=item, stack=stack, include_layers=include_layers, include_heads=include_heads,
                   trim_padding=trim_padding, words=words, offsets=offsets, text=text,
                   decoder_offsets=decoder_offsets, decoder_text=decoder_text, sentence_b_start=None, stacked=False)
    notes = [n for p in found[:1] for n in p.notes]
    return longview_from_panels(record, found, item=item, layer=layer, heads=heads,
                                prettify_tokens=prettify_tokens, notes=notes, **options)
