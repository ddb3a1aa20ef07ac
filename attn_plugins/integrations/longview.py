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
import os
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .html_page import HtmlExport, safe_json
from .notebook_output import fallback_html, hide_fallback_js, mean_picture
from .panels import Panel, caption, panels, prettify
from .sparse_weights import QUANT_LEVELS, deflate, encode

if TYPE_CHECKING:
    from ..record import AttentionRecord

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
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
    fields, offsets, stats = encode(blocks, budget_bytes=int(budget_mb * 1_000_000), min_weight=min_weight)
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
