"""BertViz from any record: offline head, model and neuron views, and BertViz's own Python API fed.

    ap.export(record, "bertviz", view="head")              # or "model", "neuron", "long"
    ap.export(record, "bertviz", path="attention.html")    # also writes a self-contained page
    bertviz.head_view(**bertviz_inputs(record), html_action="return")   # stock BertViz

Pages use BertViz's own view scripts, read from the installed ``bertviz`` package, with require.js,
d3 and jQuery inlined (vendored in the package: ``integrations/static/vendor/``), so they draw
with no network, in JupyterLab, VS Code or a saved file; each view gets a private module loader, so
several views on one page or notebook do not interfere. Tokens (user text) are passed as JSON with
``<``, ``>`` and ``&`` escaped, so no token can end the script or inject markup; BertViz's scripts
put them into the page as text.

Long inputs (more than ``long_threshold`` tokens, 256 by default) get the canvas view of
:mod:`attn_plugins.integrations.longview` (the ``"long"`` exporter) instead, since BertViz draws one
SVG line per token pair. Both draw the panels of :mod:`attn_plugins.integrations.panels`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from .bertviz_neuron import fit_logit_scale, neuron_view
from .bertviz_page import ArrayWriter, BertVizExport, bertviz_script, build_export, stacked_attn
from .html_page import escape
from .notebook_output import mean_picture
from .panels import FONT, Panel, caption, panels, prettify

if TYPE_CHECKING:
    from ..record import AttentionRecord
    from .longview import LongViewExport

VIEWS = ("head", "model", "neuron", "long")
LONG_THRESHOLD = 256
PAIR_NAMES = [
    "All",
    "Sentence A -> Sentence A",
    "Sentence B -> Sentence B",
    "Sentence A -> Sentence B",
    "Sentence B -> Sentence A",
]


# ---------------------------------------------------------------------------------------------
# stock BertViz's Python API
# ---------------------------------------------------------------------------------------------
def bertviz_inputs(
    record: AttentionRecord,
    *,
    item: int = 0,
    view: str = "head",
    stack: str | None = None,
    include_layers: int | Sequence[int] | None = None,
    include_heads: int | Sequence[int] | None = None,
    trim_padding: bool = True,
    words: bool = False,
    offsets: Any = None,
    text: str | None = None,
    decoder_offsets: Any = None,
    decoder_text: str | None = None,
    sentence_b_start: int | str | None = "auto",
) -> dict[str, Any]:
    """Keyword arguments for stock ``bertviz.head_view`` / ``bertviz.model_view``.

    Gives exactly what BertViz expects: per-layer ``[1, heads, q, k]`` tensors indexed by layer
    number and the tokens; ``encoder_attention``/``decoder_attention``/``cross_attention`` with
    ``encoder_tokens``/``decoder_tokens`` for encoder-decoder records. Layers (and, for the model
    view, heads) left out of the capture are filled with zeros and ``include_layers``
    (``include_heads``) name the captured ones, so BertViz labels them with the model's numbers.

        bertviz.head_view(**bertviz_inputs(record), html_action="return")

    Args:
        record: the record.
        item: the batch item.
        view: ``"head"`` or ``"model"``.
        stack: ``"encoder"``, ``"decoder"`` or ``"cross"`` for encoder-decoder records; for composite
            models the stack to show.
        include_layers: the model's layer numbers to include.
        include_heads: the model's head numbers to include.
        trim_padding: leave out padding positions.
        words: merge word pieces into words.
        offsets: the tokenizer's ``offset_mapping`` (encoder side).
        text: the encoder side's text.
        decoder_offsets: the decoder side's offsets.
        decoder_text: the decoder side's text.
        sentence_b_start: where sentence B starts, ``"auto"`` or ``None``.

    Returns:
        The keyword arguments of ``bertviz.head_view`` / ``bertviz.model_view``.
    """
    if view not in ("head", "model"):
        raise ValueError(f"view must be 'head' or 'model' for stock BertViz, got {view!r}")
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
        sentence_b_start=sentence_b_start,
    )
    layer_sets = {tuple(p.layers) for p in found}
    if len(layer_sets) > 1:
        raise ValueError("the encoder and decoder hold different layers; pick one with stack= or include_layers=")
    layers = list(found[0].layers)

    def as_list(p: Panel) -> tuple[torch.Tensor, ...]:
        attn = stacked_attn(p)
        full_heads = p.heads
        if view == "model" and p.heads != list(range(len(p.heads))):
            full_heads = list(range(max(p.heads) + 1))
        n_layers = max(layers) + 1
        shape = (1, len(full_heads), attn.shape[2], attn.shape[3])
        out = []
        for index in range(n_layers):
            t = torch.zeros(shape)
            if index in p.layers:
                src = attn[p.layers.index(index)]
                for pos, h in enumerate(p.heads):
                    t[0, full_heads.index(h)] = src[pos]
            out.append(t)
        return tuple(out)

    args: dict[str, Any] = {}
    if layers != list(range(len(layers))):
        args["include_layers"] = layers
    if view == "model" and found[0].heads != list(range(len(found[0].heads))):
        args["include_heads"] = list(found[0].heads)
    if record.is_encoder_decoder or [p.kind for p in found] == ["cross"]:
        for p in found:
            key = {"Encoder": "encoder_attention", "Decoder": "decoder_attention", "Cross": "cross_attention"}[
                p.name or ""
            ]
            args[key] = as_list(p)
            if p.name == "Encoder":
                args["encoder_tokens"] = p.left
            elif p.name == "Decoder":
                args["decoder_tokens"] = p.left
            else:
                args["decoder_tokens"] = p.left
                args["encoder_tokens"] = p.right
    else:
        if len(found) > 1:
            raise ValueError(
                "stock BertViz draws one self-attention block; this record also holds cross-attention: "
                "pass stack= to pick one"
            )
        p = found[0]
        args["attention"] = as_list(p)
        args["tokens"] = p.left
        if p.sentence_b_start is not None:
            args["sentence_b_start"] = p.sentence_b_start
    return args


def _select_html(names: list[str | None], element_id: str = "filter") -> str:
    if len(names) <= 1:
        return ""
    options = "".join(f'<option value="{i}">{escape(n)}</option>' for i, n in enumerate(names))
    return f'Attention: <select id="{element_id}">{options}</select>'


def _attn_entries(found: list[Panel], arrays: ArrayWriter) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for p in found:
        attn = stacked_attn(p)
        b = p.sentence_b_start if len(found) == 1 else None
        entries.append({"name": p.name, "attn": arrays.add(attn), "left_text": p.left, "right_text": p.right})
        if b is not None:
            entries[0]["name"] = "All"
            a_, b_ = slice(0, b), slice(b, len(p.left))
            for rows, cols in ((a_, a_), (b_, b_), (a_, b_), (b_, a_)):
                entries.append(
                    {
                        "name": None,
                        "attn": arrays.add(attn[:, :, rows, cols]),
                        "left_text": p.left[rows],
                        "right_text": p.right[cols],
                    }
                )
            for entry, name in zip(entries, PAIR_NAMES, strict=True):
                entry["name"] = name
    return entries


def _head_or_model(
    record: AttentionRecord,
    found: list[Panel],
    view: str,
    item: int,
    layer: int | None,
    heads: int | Sequence[int] | None,
    display_mode: str,
    prettify_tokens: bool,
    decimals: int | None,
    notes: list[str],
) -> BertVizExport:
    layer_sets = {tuple(p.layers) for p in found}
    head_sets = {tuple(p.heads) for p in found}
    if len(layer_sets) > 1 or len(head_sets) > 1:
        raise ValueError(
            "the encoder, decoder and cross attention hold different layers or heads; pick one with "
            "stack= or choose common ones with include_layers=/include_heads="
        )
    layers, head_ids = list(found[0].layers), list(found[0].heads)
    arrays = ArrayWriter(decimals)
    entries = _attn_entries(found, arrays)
    if prettify_tokens:
        for entry in entries:
            entry["left_text"] = prettify(entry["left_text"])
            entry["right_text"] = prettify(entry["right_text"])
    root_id = f"bertviz-{uuid.uuid4().hex}"
    select = _select_html([e["name"] for e in entries])
    if view == "head":
        if layer is not None and layer not in layers:
            raise ValueError(f"layer {layer} is not among the layers shown: {layers}")
        shown: list[int] | None = None
        if heads is not None:
            wanted = [heads] if isinstance(heads, int) else list(heads)
            absent = [h for h in wanted if h not in head_ids]
            if absent:
                raise ValueError(f"heads {absent} are not among the heads shown: {head_ids}")
            shown = [head_ids.index(h) for h in wanted]
        params: dict[str, Any] = {
            "attention": entries,
            "default_filter": "0",
            "root_div_id": root_id,
            "layer": layer,
            "heads": shown,
            "include_layers": layers,
        }
        vis_html = (
            f'<div id="{root_id}" style="{FONT}"><span style="user-select:none">'
            f'Layer: <select id="layer"></select> {select}</span><div id="vis"></div></div>'
        )
    else:
        params = {
            "attention": entries,
            "default_filter": "0",
            "display_mode": display_mode,
            "root_div_id": root_id,
            "include_layers": layers,
            "include_heads": head_ids,
            "total_heads": len(head_ids),
        }
        vis_html = (
            f'<div id="{root_id}" style="{FONT}"><span style="user-select:none">{select}</span>'
            f'<div id="vis"></div></div>'
        )
    what = f"{found[0].name or found[0].kind + '-attention'}, layer {layers[-1]}: the mean of its heads"
    return build_export(
        view,
        params,
        arrays,
        vis_html,
        root_id,
        caption(record, item, [f"{view} view"] + notes),
        f"attn-plugins: BertViz {view} view",
        picture=mean_picture(found[0].attn[-1], what),
    )


def export_bertviz(
    record: AttentionRecord,
    view: str = "head",
    *,
    item: int = 0,
    layer: int | None = None,
    heads: int | Sequence[int] | None = None,
    head: int | None = None,
    include_layers: int | Sequence[int] | None = None,
    include_heads: int | Sequence[int] | None = None,
    display_mode: str = "dark",
    prettify_tokens: bool = True,
    sentence_b_start: int | str | None = "auto",
    stack: str | None = None,
    trim_padding: bool = True,
    words: bool = False,
    offsets: Any = None,
    text: str | None = None,
    decoder_offsets: Any = None,
    decoder_text: str | None = None,
    decimals: int | None = None,
    long: bool | str = "auto",
    long_threshold: int = LONG_THRESHOLD,
    **long_options: Any,
) -> BertVizExport | LongViewExport:
    """The ``"bertviz"`` exporter: an offline BertViz view of ``record``.

    Args:
        record: the record.
        view: ``"head"``, ``"model"``, ``"neuron"`` (needs ``capture(..., keep_queries_keys=True)``)
            or ``"long"`` (the canvas view for long inputs).
        item: which batch item to show.
        layer: initially selected layer (head and neuron views).
        heads: initially selected heads (head view).
        head: initially selected head (neuron view).
        include_layers: the layers to include (model numbering).
        include_heads: the heads to include (model numbering).
        display_mode: ``"dark"`` or ``"light"`` (model and neuron views).
        prettify_tokens: replace ``Ġ``/``▁`` by spaces as BertViz does.
        sentence_b_start: token position where sentence B starts, ``"auto"`` (from ``token_type_ids``) or None.
        stack: for encoder-decoder records ``"encoder"``, ``"decoder"`` or ``"cross"`` (default: all three,
            neuron view: ``"encoder"``); for composite models the stack to show.
        trim_padding: leave out padding positions of the item.
        words: merge word pieces into words (:mod:`attn_plugins.analysis.words`).
        offsets: the tokenizer's ``offset_mapping`` (encoder side), for ``words``.
        text: the encoder side's text, for word labels.
        decoder_offsets: the decoder side's offsets.
        decoder_text: the decoder side's text.
        decimals: round weights to this many decimals (smaller pages); default: exact.
        long: ``"auto"`` switches to the long view above ``long_threshold`` tokens; ``True`` forces it,
            ``False`` never switches.
        long_threshold: the token count above which ``long="auto"`` switches.
        **long_options: options of :func:`attn_plugins.integrations.longview.longview`.

    Returns:
        The page (``save(path)``, notebook display); the long view's export for long inputs.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown BertViz view {view!r}; choose one of {', '.join(VIEWS)}")
    if display_mode not in ("dark", "light"):
        raise ValueError(f"display_mode must be 'dark' or 'light', got {display_mode!r}")
    if long_options and view != "long" and long is False:
        raise TypeError(f"unexpected options {sorted(long_options)}")
    if view == "neuron" and stack is None and record.is_encoder_decoder:
        stack = "encoder"
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
        queries_keys=(view == "neuron" and long is not True),
        sentence_b_start=sentence_b_start,
        stacked=False,
    )
    notes = [n for p in found[:1] for n in p.notes]
    length = max(p.length for p in found)
    if view == "long" or long is True or (long == "auto" and length > long_threshold):
        from .longview import longview_from_panels

        if view != "long":
            notes = notes + [f"{length} tokens: canvas view for long inputs (long=False forces the {view} view)"]
        if head is not None and heads is None:
            heads = [head]
        return longview_from_panels(
            record,
            found,
            item=item,
            layer=layer,
            heads=heads,
            prettify_tokens=prettify_tokens,
            notes=notes,
            **long_options,
        )
    if long_options:
        raise TypeError(f"unexpected options {sorted(long_options)} for the {view} view")
    for p in found:
        p.attn = stacked_attn(p)
    if view == "neuron":
        if heads is not None and head is None:
            head = heads if isinstance(heads, int) else list(heads)[0]
        return neuron_view(record, found, item, layer, head, display_mode, prettify_tokens, decimals, notes)
    return _head_or_model(record, found, view, item, layer, heads, display_mode, prettify_tokens, decimals, notes)


__all__ = ["BertVizExport", "bertviz_inputs", "bertviz_script", "export_bertviz", "fit_logit_scale"]
