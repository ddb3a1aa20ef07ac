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

import importlib.util
import json
import math
import os
import re
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from . import assets
from .html_page import HtmlExport, escape, safe_json, script_text
from .notebook_output import carries_scripts, fallback_html, mean_picture, view_script
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
_NEURON_PAIR_KEYS = {"aa": ("a", "a"), "bb": ("b", "b"), "ab": ("a", "b"), "ba": ("b", "a")}


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
        attn = _stacked(p)
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


# ---------------------------------------------------------------------------------------------
# offline pages
# ---------------------------------------------------------------------------------------------
def _bertviz_dir() -> str:
    spec = importlib.util.find_spec("bertviz")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the BertViz views need the bertviz package: pip install 'attn-plugins[bertviz]'")
    return list(spec.submodule_search_locations)[0]


def _stacked(p: Panel) -> torch.Tensor:
    """``p.attn`` as one ``[layers, heads, q, k]`` tensor (a list of layers is stacked)."""
    return p.attn if isinstance(p.attn, torch.Tensor) else torch.stack(p.attn)


def bertviz_script(view: str) -> str:
    """BertViz's own view script for ``view`` from the installed package, made to run offline:
    its ``require.config`` (CDN paths) removed and its parameters read from a local variable.

    Args:
        view: ``"head"``, ``"model"`` or ``"neuron"``.

    Returns:
        The script's text.
    """
    path = os.path.join(_bertviz_dir(), f"{view}_view.js")
    if not os.path.isfile(path):
        raise ImportError(f"the installed bertviz package has no {view}_view.js")
    with open(path, encoding="utf-8") as handle:
        js = handle.read()
    js = re.sub(r"require\.config\(\{.*?\}\);", "", js, count=1, flags=re.S)
    if view == "neuron":
        js = js.replace("window.bertviz_params", "__attnPluginsParams")
        # label the layer and head menus with the model's numbers (BertViz shows positions)
        js = js.replace(
            'layerSelect.append($("<option />").val(i).text(i));',
            'layerSelect.append($("<option />").val(i).text(params.layer_labels ? params.layer_labels[i] : i));',
        )
        js = js.replace(
            'headSelect.append($("<option />").val(i).text(i));',
            'headSelect.append($("<option />").val(i).text(params.head_labels ? params.head_labels[i] : i));',
        )
        # BertViz selects the first #vis of the page here; scope it to this view
        js = js.replace('var svg = d3.select("#vis");', "var svg = d3.select(`#${config.rootDivId} #vis`);")
    else:
        js = js.replace("PYTHON_PARAMS", "__attnPluginsParams")
    return js


class _Arrays:
    """Numeric arrays written into the page's JSON as text: every float32 value with 9 significant
    digits (it reads back as exactly the recorded float32), or rounded to ``decimals``.

    ``add`` returns a placeholder carrying a random nonce (no token text can forge it) that
    :meth:`dumps` replaces by the array text.
    """

    def __init__(self, decimals: int | None = None) -> None:
        self.decimals = decimals
        self.nonce = uuid.uuid4().hex
        self.texts: list[str] = []

    def add(self, t: torch.Tensor) -> str:
        self.texts.append(_array_text(t, self.decimals))
        return f"@@array-{self.nonce}-{len(self.texts) - 1}@@"

    def dumps(self, params: dict[str, Any]) -> str:
        text = safe_json(params)
        return re.sub(f'"@@array-{self.nonce}-(\\d+)@@"', lambda m: self.texts[int(m.group(1))], text)


def _array_text(t: torch.Tensor, decimals: int | None) -> str:
    a = t.detach().to("cpu", torch.float32)
    if a.numel() == 0 or a.dim() == 0:
        return json.dumps(a.tolist())
    if decimals is None:
        words = [f"{v:.9g}" for v in a.double().reshape(-1).tolist()]
    else:
        fmt = "%." + str(int(decimals)) + "f"
        words = [
            (fmt % v).rstrip("0").rstrip(".") or "0"
            for v in torch.round(a.double(), decimals=decimals).reshape(-1).tolist()
        ]
    if not bool(torch.isfinite(a).all()):
        special = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
        words = [special.get(w, w) for w in words]
    shape = list(a.shape)
    last = shape[-1]
    rows = ["[" + ",".join(words[i : i + last]) + "]" for i in range(0, len(words), last)]
    for size in reversed(shape[:-1]):
        rows = ["[" + ",".join(rows[i : i + size]) + "]" for i in range(0, len(rows), size)]
    return rows[0]


class BertVizExport(HtmlExport):
    """An offline BertViz page: ``save(path)``, notebook display (``_repr_html_``), the view name,
    the id of its root element and the parameters it hands BertViz's script (numeric arrays appear
    there as placeholders; the page holds their values)."""

    def __init__(
        self, body: str, title: str, view: str, params: dict[str, Any], root_id: str, light_body: str | None = None
    ) -> None:
        super().__init__(body, title=title)
        self.view = view
        self.params = params
        self.root_id = root_id
        self.light_body = light_body  # the same view without the shared scripts (a notebook's later views)

    def _repr_html_(self) -> str:
        """In a notebook, the shared scripts go out once (see :mod:`.notebook_output`)."""
        if self.light_body is None or carries_scripts():
            return self.head + self.body
        return self.head + self.light_body

    def __repr__(self) -> str:
        return f"BertVizExport({self.view} view, {len(self.body)} characters)"


# The model view draws one thumbnail per head in a row, wider than a notebook's output area for 12
# heads: once drawn (and whenever it redraws or the window resizes) its SVG is scaled down to the
# width of its root element (a viewBox keeps d3's pointer coordinates right).
FIT_WIDTH_JS = """(function () {
  var root = document.getElementById(%s);
  if (!root) { return; }
  function fit() {
    var svg = root.querySelector('#vis > svg');
    if (!svg) { return; }
    var w = parseFloat(svg.getAttribute('width')), h = parseFloat(svg.getAttribute('height'));
    if (String(w) !== svg.getAttribute('data-ap-set')) {  // drawn by BertViz: its own size
      svg.setAttribute('data-ap-width', w); svg.setAttribute('data-ap-height', h);
      svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    }
    var fullW = parseFloat(svg.getAttribute('data-ap-width')), fullH = parseFloat(svg.getAttribute('data-ap-height'));
    var avail = root.clientWidth, scale = avail > 0 && fullW > avail ? avail / fullW : 1;
    var newW = fullW * scale;
    svg.setAttribute('data-ap-set', String(newW));
    svg.setAttribute('width', newW); svg.setAttribute('height', fullH * scale);
  }
  new MutationObserver(fit).observe(root, {childList: true, subtree: true});
  window.addEventListener('resize', fit);
  fit();
})();
"""


def _page(
    view: str, run: str, vis_html: str, root_id: str, caption: str, shared: bool = True, picture: str = ""
) -> str:
    """The view's HTML: the untrusted-notebook note (with ``picture``), the view and its script ``run``
    (with require.js, jQuery and d3 inlined when ``shared``, else using those an earlier output defined)."""
    fallback_id = f"{root_id}-fallback"
    script = view_script(run, assets.amd_prelude() if shared else None, fallback_id, root_id)
    if view == "model":
        script += FIT_WIDTH_JS % safe_json(root_id)
    return (
        fallback_html(fallback_id, f"BertViz {view} view", picture)
        + f'<div class="attn-plugins-bertviz" data-view="{view}" data-root="{root_id}">\n{caption}{vis_html}\n'
        f'</div>\n<script type="text/javascript">\n(function () {{\n{script_text(script)}\n}})();\n</script>\n'
    )


def _export(
    view: str,
    params: dict[str, Any],
    arrays: _Arrays,
    vis_html: str,
    root_id: str,
    caption: str,
    title: str,
    picture: str = "",
) -> BertVizExport:
    """The export: the page with the scripts inlined, and the notebook's lighter twin."""
    run = "var __attnPluginsParams = " + arrays.dumps(params) + ";\n" + bertviz_script(view)
    body = _page(view, run, vis_html, root_id, caption, picture=picture)
    light = _page(view, run, vis_html, root_id, caption, shared=False, picture=picture)
    return BertVizExport(body, title, view, params, root_id, light_body=light)


def _select_html(names: list[str | None], element_id: str = "filter") -> str:
    if len(names) <= 1:
        return ""
    options = "".join(f'<option value="{i}">{escape(n)}</option>' for i, n in enumerate(names))
    return f'Attention: <select id="{element_id}">{options}</select>'


def _attn_entries(found: list[Panel], arrays: _Arrays) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for p in found:
        attn = _stacked(p)
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
    arrays = _Arrays(decimals)
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
    return _export(
        view,
        params,
        arrays,
        vis_html,
        root_id,
        caption(record, item, [f"{view} view"] + notes),
        f"attn-plugins: BertViz {view} view",
        picture=mean_picture(found[0].attn[-1], what),
    )


def fit_logit_scale(queries: torch.Tensor, keys: torch.Tensor, attn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per head, the factor ``s`` with ``attn = softmax(s * q.k + c_row)``, and the largest error of
    that fit in log-probability (small when the scores are plain scaled dot products; large when a
    position bias, ALiBi or soft-capping enters the scores).

    Args:
        queries: ``[H, q, d]``.
        keys: ``[H, k, d]``.
        attn: ``[H, q, k]`` weights.

    Returns:
        ``(scale [H], largest log-probability error [H])``.
    """
    q, k, a = queries.double(), keys.double(), attn.double()
    dots = q @ k.transpose(-1, -2)
    valid = (a > 1e-30) & torch.isfinite(a)
    loga = torch.where(valid, a.clamp_min(1e-300).log(), torch.zeros_like(a))
    count = valid.sum(-1, keepdim=True).clamp_min(1)
    dc = torch.where(valid, dots - (dots * valid).sum(-1, keepdim=True) / count, torch.zeros_like(dots))
    lc = torch.where(valid, loga - (loga * valid).sum(-1, keepdim=True) / count, torch.zeros_like(loga))
    num = (dc * lc).sum(dim=(-1, -2))
    den = (dc * dc).sum(dim=(-1, -2))
    scale = torch.where(den > 0, num / den.clamp_min(1e-300), torch.ones_like(den))
    resid = torch.where(valid, lc - scale[:, None, None] * dc, torch.zeros_like(lc)).abs().amax(dim=(-1, -2))
    return scale, resid


def _neuron(
    record: AttentionRecord,
    found: list[Panel],
    item: int,
    layer: int | None,
    head: int | None,
    display_mode: str,
    prettify_tokens: bool,
    decimals: int | None,
    notes: list[str],
) -> BertVizExport:
    if len(found) != 1:
        raise ValueError("the neuron view draws one attention block: pass stack='encoder', 'decoder' or 'cross'")
    p = found[0]
    attn = _stacked(p)
    if p.queries is None or p.keys is None:
        raise ValueError("the neuron view needs the panel's queries and keys (panels(..., queries_keys=True))")
    p_queries, p_keys = p.queries, p.keys
    layers, head_ids = p.layers, p.heads
    layer_pos = 0 if layer is None else _position(layer, layers, "layer")
    head_pos = 0 if head is None else _position(head, head_ids, "head")
    d = p_queries.shape[-1]
    queries = p_queries.clone()
    inexact = []
    for li in range(len(layers)):
        scale, resid = fit_logit_scale(p_queries[li], p_keys[li], attn[li])
        for hi in range(len(head_ids)):
            if resid[hi] < 1e-2:
                # BertViz divides q.k by sqrt(d); scale q so its dot products are the model's scores
                queries[li, hi] = (p_queries[li, hi].double() * float(scale[hi]) * math.sqrt(d)).float()
            else:
                inexact.append(f"{layers[li]}/{head_ids[hi]}")
    if inexact:
        notes = notes + [
            f"layer/head {', '.join(inexact[:6])}{' ...' if len(inexact) > 6 else ''}: the model adds "
            "position terms to q·k, so the q·k column is the plain scaled dot product; softmax "
            "column and lines are the recorded weights"
        ]
    left, right = (prettify(p.left), prettify(p.right)) if prettify_tokens else (p.left, p.right)
    causal = p.kind == "self" and bool(torch.all(torch.triu(attn, diagonal=1 + attn.shape[-1] - attn.shape[-2]) == 0))
    arrays = _Arrays(decimals)
    attention = {
        "all": {
            "attn": arrays.add(attn),
            "left_text": left,
            "right_text": right,
            "queries": arrays.add(queries),
            "keys": arrays.add(p_keys),
        }
    }
    b = p.sentence_b_start
    if b is not None:
        parts = {"a": slice(0, b), "b": slice(b, len(p.left))}
        for key, (rows, cols) in _NEURON_PAIR_KEYS.items():
            r, c = parts[rows], parts[cols]
            attention[key] = {
                "attn": arrays.add(attn[:, :, r, c]),
                "left_text": left[r],
                "right_text": right[c],
                "queries": arrays.add(queries[:, :, r]),
                "keys": arrays.add(p_keys[:, :, c]),
            }
    root_id = f"bertviz-{uuid.uuid4().hex}"
    params = {
        "attention": attention,
        "default_filter": "all",
        "root_div_id": root_id,
        "bidirectional": not causal,
        "display_mode": display_mode,
        "layer": layer_pos,
        "head": head_pos,
        "layer_labels": layers,
        "head_labels": head_ids,
    }
    dropdown = ""
    if b is not None:
        dropdown = (
            '<span class="dropdown-label">Attention: </span><select id="filter">'
            '<option value="all">All</option><option value="aa">Sentence A -&gt; Sentence A</option>'
            '<option value="ab">Sentence A -&gt; Sentence B</option>'
            '<option value="ba">Sentence B -&gt; Sentence A</option>'
            '<option value="bb">Sentence B -&gt; Sentence B</option></select>'
        )
    vis_html = (
        f'<div id="{root_id}" style="padding:8px;{FONT}"><span style="user-select:none">'
        '<span class="dropdown-label">Layer: </span><select id="layer"></select> '
        '<span class="dropdown-label">Head: </span> <select id="att_head"></select> '
        f'{dropdown}</span><div id="vis"></div></div>'
    )
    label = {"Encoder": "encoder", "Decoder": "decoder", "Cross": "cross"}.get(p.name or "", "")
    return _export(
        "neuron",
        params,
        arrays,
        vis_html,
        root_id,
        caption(record, item, [f"neuron view {label}".strip()] + notes),
        "attn-plugins: BertViz neuron view",
    )


def _position(value: int, labels: list[int], what: str) -> int:
    if value not in labels:
        raise ValueError(f"{what} {value} is not among the {what}s shown: {labels}")
    return labels.index(value)


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
        p.attn = _stacked(p)
    if view == "neuron":
        if heads is not None and head is None:
            head = heads if isinstance(heads, int) else list(heads)[0]
        return _neuron(record, found, item, layer, head, display_mode, prettify_tokens, decimals, notes)
    return _head_or_model(record, found, view, item, layer, heads, display_mode, prettify_tokens, decimals, notes)
