"""BertViz from any record: offline head, model and neuron views, and BertViz's own Python API fed.

    ap.export(record, "bertviz", view="head")              # or "model", "neuron", "long"
    ap.export(record, "bertviz", path="attention.html")    # also writes a self-contained page
    bertviz.head_view(**bertviz_inputs(record), html_action="return")   # stock BertViz

Pages use BertViz's own view scripts, read from the installed ``bertviz`` package, with require.js,
d3 and jQuery inlined (fetched once at set-up time by ``scripts/fetch_js_assets.sh``), so they draw
with no network, in JupyterLab, VS Code or a saved file; each view gets a private module loader, so
several views on one page or notebook do not interfere. Tokens (user text) are passed as JSON with
``<``, ``>`` and ``&`` escaped, so no token can end the script or inject markup; BertViz's scripts
put them into the page as text.

Long inputs (more than ``long_threshold`` tokens, 256 by default) get the canvas view of
:mod:`attn_plugins.integrations.longview` instead, since BertViz draws one SVG line per token pair.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import torch

from . import assets
from .html import HtmlExport

VIEWS = ("head", "model", "neuron", "long")
LONG_THRESHOLD = 256
PAIR_NAMES = ["All", "Sentence A -> Sentence A", "Sentence B -> Sentence B", "Sentence A -> Sentence B",
              "Sentence B -> Sentence A"]
_NEURON_PAIR_KEYS = {"aa": ("a", "a"), "bb": ("b", "b"), "ab": ("a", "b"), "ba": ("b", "a")}
_FONT = "font-family:'Helvetica Neue', Helvetica, Arial, sans-serif;"


# ---------------------------------------------------------------------------------------------
# from a record to BertViz's panels
# ---------------------------------------------------------------------------------------------
@dataclass
class Panel:
    """One attention block as BertViz draws it: ``attn`` is ``[layers, heads, query, key]``.

    ``left`` labels the query (attending) side, ``right`` the key (attended-to) side.
    """

    name: str | None
    stack: str | None
    kind: str
    layers: list[int]
    heads: list[int]
    attn: torch.Tensor
    left: list[str]
    right: list[str]
    queries: torch.Tensor | None = None  # [layers, heads, query, dim]
    keys: torch.Tensor | None = None  # [layers, heads, key, dim]
    sentence_b_start: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def length(self) -> int:
        return max(len(self.left), len(self.right))


def _item_tokens(tokens, item: int, n: int, ids: torch.Tensor | None) -> list[str]:
    if tokens is not None and len(tokens) > item and tokens[item] is not None:
        return [str(t) for t in tokens[item]]
    if ids is not None and ids.dim() == 2 and ids.shape[0] > item:
        return [str(int(i)) for i in ids[item].tolist()]
    return [str(i) for i in range(n)]


def _as_groups(kept: list[int], words: list[list[int]] | None) -> list[list[int]]:
    if words is None:
        return [[p] for p in kept]
    keep = set(kept)
    out = []
    for group in words:
        g = [p for p in group if p in keep]
        if g:
            out.append(g)
    return out


def _labels(groups: list[list[int]], tokens: list[str], offsets, text) -> list[str]:
    if all(len(g) == 1 for g in groups) and offsets is None:
        return [tokens[g[0]] if g[0] < len(tokens) else str(g[0]) for g in groups]
    from ..analysis.words import word_labels

    return word_labels(groups, offsets, text, tokens)


def _merge(x: torch.Tensor, row_groups: list[list[int]], col_groups: list[list[int]]) -> torch.Tensor:
    """``[..., q, k]``: rows averaged over each group, columns summed (plain selection for singletons)."""
    if all(len(g) == 1 for g in row_groups) and all(len(g) == 1 for g in col_groups):
        rows = torch.tensor([g[0] for g in row_groups], dtype=torch.long)
        cols = torch.tensor([g[0] for g in col_groups], dtype=torch.long)
        return x.index_select(-2, rows).index_select(-1, cols)
    from ..analysis.words import merge_attention

    return merge_attention(x, row_groups, col_groups)


def _rows(x: torch.Tensor, groups: list[list[int]]) -> torch.Tensor:
    return x.index_select(-2, torch.tensor([g[0] for g in groups], dtype=torch.long))


def _mask_positions(record, name: str, item: int, n: int) -> list[int] | None:
    mask = record.inputs.get(name)
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[0] <= item or mask.shape[1] != n:
        return None
    return [i for i, v in enumerate(mask[item].tolist()) if v]


def _groups_of(record, stack):
    """The (stack, kind, BertViz name) groups a record holds, in BertViz's order."""
    if record.is_encoder_decoder:
        order = [("encoder", "self", "Encoder"), ("decoder", "self", "Decoder"), ("decoder", "cross", "Cross")]
        if stack is not None:
            choice = {"encoder": 0, "decoder": 1, "cross": 2}
            if stack not in choice:
                raise ValueError(f"stack must be 'encoder', 'decoder' or 'cross' for an encoder-decoder record, "
                                 f"got {stack!r}")
            order = [order[choice[stack]]]
        found = [(s, k, n) for s, k, n in order if record.select(s, k)]
        if not found:
            raise ValueError(f"the record holds no {stack or 'attention'} layers")
        return found
    stacks = record.stacks
    if stack is None:
        if len(stacks) > 1:
            raise ValueError(f"the record holds several attention stacks {stacks}; pick one with stack=")
        stack = stacks[0] if stacks else None
    elif stack not in stacks:
        raise ValueError(f"stack {stack!r} is not in the record; it holds {stacks}")
    found = [(stack, "self", None)]
    if record.select(stack, "cross"):
        found.append((stack, "cross", "Cross"))
        found[0] = (stack, "self", "Self")
    return found


def panels(record, *, item: int = 0, stack: str | None = None, include_layers=None, include_heads=None,
           trim_padding: bool = True, words: bool = False, offsets=None, text: str | None = None,
           decoder_offsets=None, decoder_text: str | None = None, queries_keys: bool = False,
           sentence_b_start: int | str | None = "auto", stacked: bool = True) -> list[Panel]:
    """The record's attention for batch item ``item`` as BertViz panels (see :class:`Panel`).

    ``include_layers``/``include_heads`` are the model's layer and head numbers (they must have
    been captured). Padding positions (``attention_mask`` 0) are left out unless ``trim_padding``
    is false. With ``words=True``, ``offsets`` (the tokenizer's ``offset_mapping`` for this item, or
    the whole batch) and optionally ``text`` merge word pieces into words
    (:mod:`attn_plugins.analysis.words`). ``sentence_b_start``: the token position where sentence B
    starts (``"auto"``: from ``token_type_ids``). ``stacked=False`` leaves ``Panel.attn`` a list of
    per-layer ``[heads, q, k]`` tensors (no copy of long inputs' weights when nothing is trimmed).
    """
    if not record.layers:
        raise ValueError("the record holds no attention layers")
    batch = record.batch_size
    if not isinstance(item, int) or not 0 <= item < batch:
        raise IndexError(f"item {item!r} is out of range: the record holds a batch of {batch}")
    if words and queries_keys:
        raise ValueError("the neuron view shows token-level queries and keys; words=True is not available for it")
    out: list[Panel] = []
    for stack_name, kind, name in _groups_of(record, stack):
        layers = record.select(stack_name, kind)
        if include_layers is not None:
            wanted = [int(i) for i in ([include_layers] if isinstance(include_layers, int) else include_layers)]
            have = [layer.index for layer in layers]
            absent = [i for i in wanted if i not in have]
            if absent:
                raise ValueError(f"layers {absent} were not captured ({stack_name or ''} {kind}); captured: {have}")
            layers = [layer for i in wanted for layer in layers if layer.index == i]
        heads = layers[0].head_indices
        if any(layer.head_indices != heads for layer in layers):
            raise ValueError("the selected layers hold different heads; choose layers with include_layers=")
        if include_heads is not None:
            wanted = [int(h) for h in ([include_heads] if isinstance(include_heads, int) else include_heads)]
            absent = [h for h in wanted if h not in heads]
            if absent:
                raise ValueError(f"heads {absent} were not captured; captured heads: {heads}")
            positions = [heads.index(h) for h in wanted]
            heads = wanted
        else:
            positions = None
        shapes = {tuple(layer.weights.shape[2:]) for layer in layers}
        if len(shapes) != 1:
            raise ValueError(f"the selected layers have different query/key lengths {sorted(shapes)}")
        q_len, k_len = shapes.pop()

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            t = t[item].detach().to("cpu", torch.float32)
            return t if positions is None else t[positions]

        per_layer = [pick(layer.weights) for layer in layers]

        # token sides and the positions kept on each
        enc_side = stack_name != "decoder"
        q_source = "decoder" if stack_name == "decoder" else "encoder"
        k_source = "encoder" if kind == "cross" else q_source
        side = {
            "encoder": (record.tokens, record.inputs.get("input_ids"), "attention_mask", offsets, text),
            "decoder": (record.decoder_tokens, record.inputs.get("decoder_input_ids"), "decoder_attention_mask",
                        decoder_offsets, decoder_text),
        }
        if not record.is_encoder_decoder and enc_side:
            side["decoder"] = side["encoder"]

        def tokens_for(source: str, n: int) -> tuple[list[str], list[int], Any, Any]:
            toks, ids, mask_name, offs, txt = side[source]
            toks = _item_tokens(toks, item, n, ids)
            if offs is not None and hasattr(offs, "keys") and "offset_mapping" in offs:
                offs = offs["offset_mapping"]
            if offs is not None:
                offs_t = offs if isinstance(offs, torch.Tensor) else torch.as_tensor(offs)
                if offs_t.dim() == 3:
                    offs_t = offs_t[item]
                offs = offs_t
            kept = _mask_positions(record, mask_name, item, len(toks)) if trim_padding else None
            return toks, (kept if kept is not None else list(range(len(toks)))), offs, txt

        k_tokens, k_kept, k_offs, k_text = tokens_for(k_source, k_len)
        if len(k_tokens) != k_len:
            if len(k_tokens) > k_len and kind == "self":
                k_tokens, k_kept = k_tokens[:k_len], [p for p in k_kept if p < k_len]
            else:
                raise ValueError(f"{name or 'self'}-attention has {k_len} key positions but item {item} has "
                                 f"{len(k_tokens)} tokens")
        if kind == "self":
            shift = k_len - q_len  # rows of a forward that continued a cache are the last q positions
            if shift < 0:
                raise ValueError(f"attention has more queries ({q_len}) than keys ({k_len})")
            q_tokens = k_tokens[shift:]
            q_kept = [p - shift for p in k_kept if p >= shift]
            q_offs = k_offs[shift:] if k_offs is not None else None
            q_text = k_text
        else:
            q_tokens, q_kept, q_offs, q_text = tokens_for(q_source, q_len)
            if len(q_tokens) > q_len:
                q_tokens, q_kept = q_tokens[:q_len], [p for p in q_kept if p < q_len]
            if len(q_tokens) != q_len:
                raise ValueError(f"cross-attention has {q_len} query positions but item {item} has "
                                 f"{len(q_tokens)} decoder tokens")

        q_words = k_words = None
        if words:
            from ..analysis.words import word_groups

            if k_offs is None or (kind == "cross" and q_offs is None):
                raise ValueError("words=True needs the tokenizer's offsets: pass offsets= (and decoder_offsets= "
                                 "for a decoder), e.g. tokenizer(text, return_offsets_mapping=True)['offset_mapping']")
            if _has_pair(record, item):
                k_text = q_text = None  # offsets of a sentence pair point into two texts
            k_words = word_groups(k_offs, k_text, tokens=k_tokens)
            q_words = word_groups(q_offs, q_text, tokens=q_tokens) if kind == "cross" else \
                [[p - shift for p in g if p >= shift] for g in k_words if any(p >= shift for p in g)]
        q_groups = _as_groups(q_kept, q_words)
        k_groups = _as_groups(k_kept, k_words)
        if not (q_groups == [[i] for i in range(q_len)] and k_groups == [[i] for i in range(k_len)]):
            per_layer = [_merge(t, q_groups, k_groups) for t in per_layer]
        attn = torch.stack(per_layer) if stacked else per_layer
        left = _labels(q_groups, q_tokens, q_offs if words else None, q_text)
        right = _labels(k_groups, k_tokens, k_offs if words else None, k_text)
        panel = Panel(name=name, stack=stack_name, kind=kind, layers=[layer.index for layer in layers],
                      heads=list(heads), attn=attn, left=left, right=right)
        if words:
            panel.notes.append("word pieces merged into words (attention to a word: sum over its pieces; "
                               "from a word: mean over its pieces)")
        if queries_keys:
            missing = [layer.index for layer in layers if layer.queries is None or layer.keys is None]
            if missing:
                raise ValueError(
                    f"the neuron view needs queries and keys, which this record does not hold (layers {missing}); "
                    "capture with attn_plugins.capture(model, tokenizer, keep_queries_keys=True) on a model whose "
                    "attention runs through transformers' attention functions (sdpa, the default)")
            qs = torch.stack([pick(layer.queries) for layer in layers])
            ks = torch.stack([pick(layer.keys) for layer in layers])
            panel.queries = _rows(qs, q_groups)
            panel.keys = _rows(ks, k_groups)
        if kind == "self" and stack_name != "decoder":
            panel.sentence_b_start = _sentence_b(record, item, sentence_b_start, q_groups, q_len == k_len)
        out.append(panel)
    return out


def _has_pair(record, item: int) -> bool:
    types = record.inputs.get("token_type_ids")
    return isinstance(types, torch.Tensor) and types.dim() == 2 and types.shape[0] > item and bool(types[item].any())


def _sentence_b(record, item, value, groups, square) -> int | None:
    if value is None or not square:
        return None
    if value == "auto":
        types = record.inputs.get("token_type_ids")
        if not isinstance(types, torch.Tensor) or types.dim() != 2 or types.shape[0] <= item:
            return None
        row = types[item].tolist()
        starts = [i for i, t in enumerate(row) if t]
        mask = record.inputs.get("attention_mask")
        if mask is not None and mask.shape == types.shape:
            starts = [i for i in starts if mask[item, i]]
        if not starts:
            return None
        value = starts[0]
    if not isinstance(value, int):
        raise TypeError(f"sentence_b_start must be a token position, 'auto' or None, got {value!r}")
    shown = sum(1 for g in groups if g[0] < value)
    if not 0 < shown < len(groups):
        return None
    return shown


# ---------------------------------------------------------------------------------------------
# stock BertViz's Python API
# ---------------------------------------------------------------------------------------------
def bertviz_inputs(record, *, item: int = 0, view: str = "head", stack: str | None = None, include_layers=None,
                   include_heads=None, trim_padding: bool = True, words: bool = False, offsets=None,
                   text: str | None = None, decoder_offsets=None, decoder_text: str | None = None,
                   sentence_b_start: int | str | None = "auto") -> dict:
    """Keyword arguments for stock ``bertviz.head_view`` / ``bertviz.model_view``.

    Gives exactly what BertViz expects: per-layer ``[1, heads, q, k]`` tensors indexed by layer
    number and the tokens; ``encoder_attention``/``decoder_attention``/``cross_attention`` with
    ``encoder_tokens``/``decoder_tokens`` for encoder-decoder records. Layers (and, for the model
    view, heads) left out of the capture are filled with zeros and ``include_layers``
    (``include_heads``) name the captured ones, so BertViz labels them with the model's numbers.

        bertviz.head_view(**bertviz_inputs(record), html_action="return")
    """
    if view not in ("head", "model"):
        raise ValueError(f"view must be 'head' or 'model' for stock BertViz, got {view!r}")
    found = panels(record, item=item, stack=stack, include_layers=include_layers, include_heads=include_heads,
                   trim_padding=trim_padding, words=words, offsets=offsets, text=text,
                   decoder_offsets=decoder_offsets, decoder_text=decoder_text, sentence_b_start=sentence_b_start)
    layer_sets = {tuple(p.layers) for p in found}
    if len(layer_sets) > 1:
        raise ValueError("the encoder and decoder hold different layers; pick one with stack= or include_layers=")
    layers = list(found[0].layers)

    def as_list(p: Panel) -> tuple[torch.Tensor, ...]:
        full_heads = p.heads
        if view == "model" and p.heads != list(range(len(p.heads))):
            full_heads = list(range(max(p.heads) + 1))
        n_layers = max(layers) + 1
        shape = (1, len(full_heads), p.attn.shape[2], p.attn.shape[3])
        out = []
        for index in range(n_layers):
            t = torch.zeros(shape)
            if index in p.layers:
                src = p.attn[p.layers.index(index)]
                for pos, h in enumerate(p.heads):
                    t[0, full_heads.index(h)] = src[pos]
            out.append(t)
        return tuple(out)

    args: dict[str, Any] = {}
    if layers != list(range(len(layers))):
        args["include_layers"] = layers
    if view == "model" and found[0].heads != list(range(len(found[0].heads))):
        args["include_heads"] = list(found[0].heads)
    if record.is_encoder_decoder:
        for p in found:
            key = {"Encoder": "encoder_attention", "Decoder": "decoder_attention", "Cross": "cross_attention"}[p.name]
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
            raise ValueError("stock BertViz draws one self-attention block; this record also holds cross-attention: "
                             "pass stack= to pick one")
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


def bertviz_script(view: str) -> str:
    """BertViz's own view script for ``view`` from the installed package, made to run offline:
    its ``require.config`` (CDN paths) removed and its parameters read from a local variable."""
    path = os.path.join(_bertviz_dir(), f"{view}_view.js")
    if not os.path.isfile(path):
        raise ImportError(f"the installed bertviz package has no {view}_view.js")
    with open(path, encoding="utf-8") as handle:
        js = handle.read()
    js = re.sub(r"require\.config\(\{.*?\}\);", "", js, count=1, flags=re.S)
    if view == "neuron":
        js = js.replace("window.bertviz_params", "__attnPluginsParams")
        # label the layer and head menus with the model's numbers (BertViz shows positions)
        js = js.replace("layerSelect.append($(\"<option />\").val(i).text(i));",
                        "layerSelect.append($(\"<option />\").val(i).text(params.layer_labels ? params.layer_labels[i] : i));")
        js = js.replace("headSelect.append($(\"<option />\").val(i).text(i));",
                        "headSelect.append($(\"<option />\").val(i).text(params.head_labels ? params.head_labels[i] : i));")
        # BertViz selects the first #vis of the page here; scope it to this view
        js = js.replace('var svg = d3.select("#vis");', "var svg = d3.select(`#${config.rootDivId} #vis`);")
    else:
        js = js.replace("PYTHON_PARAMS", "__attnPluginsParams")
    return js


def safe_json(value: Any) -> str:
    """JSON that is safe inside an HTML ``<script>`` element: ``<``, ``>``, ``&`` and the JavaScript
    line separators are written as ``\\u`` escapes, so no string in it can end the script."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _script_text(js: str) -> str:
    # library code holds no "</script" today; keep it that way should a new version bring one
    return re.sub(r"</(script)", r"<\\/\1", js, flags=re.I).replace("<!--", "<\\!--")


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

    def dumps(self, params: dict) -> str:
        text = safe_json(params)
        return re.sub(f'"@@array-{self.nonce}-(\\d+)@@"', lambda m: self.texts[int(m.group(1))], text)


def _array_text(t: torch.Tensor, decimals: int | None) -> str:
    a = t.detach().to("cpu", torch.float32)
    if a.numel() == 0 or a.dim() == 0:
        return json.dumps(a.tolist())
    if decimals is None:
        words = ["%.9g" % v for v in a.double().reshape(-1).tolist()]
    else:
        fmt = "%." + str(int(decimals)) + "f"
        words = [(fmt % v).rstrip("0").rstrip(".") or "0"
                 for v in torch.round(a.double(), decimals=decimals).reshape(-1).tolist()]
    if not bool(torch.isfinite(a).all()):
        special = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
        words = [special.get(w, w) for w in words]
    shape = list(a.shape)
    last = shape[-1]
    rows = ["[" + ",".join(words[i: i + last]) + "]" for i in range(0, len(words), last)]
    for size in reversed(shape[:-1]):
        rows = ["[" + ",".join(rows[i: i + size]) + "]" for i in range(0, len(rows), size)]
    return rows[0]


class BertVizExport(HtmlExport):
    """An offline BertViz page: ``save(path)``, notebook display (``_repr_html_``), the view name,
    the id of its root element and the parameters it hands BertViz's script (numeric arrays appear
    there as placeholders; the page holds their values)."""

    def __init__(self, body: str, title: str, view: str, params: dict, root_id: str) -> None:
        super().__init__(body, title=title)
        self.view = view
        self.params = params
        self.root_id = root_id

    def __repr__(self) -> str:
        return f"BertVizExport({self.view} view, {len(self.body)} characters)"


def _caption(record, item: int, extra: list[str]) -> str:
    import html

    parts = [record.model_class or "model"]
    if record.batch_size > 1:
        parts.append(f"item {item} of {record.batch_size}")
    parts.extend(extra)
    return (f'<div class="attn-plugins-caption" style="{_FONT}font-size:12px;color:#888;margin:2px 0 6px 0">'
            f"{html.escape(' · '.join(parts))}</div>")


def _page(view: str, params: dict, arrays: _Arrays, vis_html: str, root_id: str, caption: str) -> str:
    script = (
        "(function () {\n" + assets.amd_prelude()
        + "var __attnPluginsParams = " + arrays.dumps(params) + ";\n"
        + bertviz_script(view) + "\n})();"
    )
    return (f'<div class="attn-plugins-bertviz" data-view="{view}" data-root="{root_id}">\n{caption}{vis_html}\n'
            f'</div>\n<script type="text/javascript">\n{_script_text(script)}\n</script>\n')


def _select_html(names: list[str | None], element_id: str = "filter") -> str:
    import html

    if len(names) <= 1:
        return ""
    options = "".join(f'<option value="{i}">{html.escape(str(n))}</option>' for i, n in enumerate(names))
    return f'Attention: <select id="{element_id}">{options}</select>'


def _attn_entries(found: list[Panel], arrays: _Arrays) -> list[dict]:
    entries = []
    for p in found:
        b = p.sentence_b_start if len(found) == 1 else None
        entries.append({"name": p.name, "attn": arrays.add(p.attn), "left_text": p.left, "right_text": p.right})
        if b is not None:
            entries[0]["name"] = "All"
            a_, b_ = slice(0, b), slice(b, len(p.left))
            for rows, cols in ((a_, a_), (b_, b_), (a_, b_), (b_, a_)):
                entries.append({"name": None, "attn": arrays.add(p.attn[:, :, rows, cols]),
                                "left_text": p.left[rows], "right_text": p.right[cols]})
            for entry, name in zip(entries, PAIR_NAMES):
                entry["name"] = name
    return entries


def _prettify(tokens: list[str]) -> list[str]:
    return [t.replace("Ġ", " ").replace("▁", " ").replace("</w>", "") for t in tokens]


def _head_or_model(record, found: list[Panel], view: str, item: int, layer, heads, display_mode: str,
                   prettify_tokens: bool, decimals, notes: list[str]) -> BertVizExport:
    layer_sets = {tuple(p.layers) for p in found}
    head_sets = {tuple(p.heads) for p in found}
    if len(layer_sets) > 1 or len(head_sets) > 1:
        raise ValueError("the encoder, decoder and cross attention hold different layers or heads; pick one with "
                         "stack= or choose common ones with include_layers=/include_heads=")
    layers, head_ids = list(found[0].layers), list(found[0].heads)
    arrays = _Arrays(decimals)
    entries = _attn_entries(found, arrays)
    if prettify_tokens:
        for entry in entries:
            entry["left_text"] = _prettify(entry["left_text"])
            entry["right_text"] = _prettify(entry["right_text"])
    root_id = f"bertviz-{uuid.uuid4().hex}"
    select = _select_html([e["name"] for e in entries])
    if view == "head":
        if layer is not None and layer not in layers:
            raise ValueError(f"layer {layer} is not among the layers shown: {layers}")
        if heads is not None:
            heads = [heads] if isinstance(heads, int) else list(heads)
            absent = [h for h in heads if h not in head_ids]
            if absent:
                raise ValueError(f"heads {absent} are not among the heads shown: {head_ids}")
            heads = [head_ids.index(h) for h in heads]
        params = {"attention": entries, "default_filter": "0", "root_div_id": root_id, "layer": layer,
                  "heads": heads, "include_layers": layers}
        vis_html = (f'<div id="{root_id}" style="{_FONT}"><span style="user-select:none">'
                    f'Layer: <select id="layer"></select> {select}</span><div id="vis"></div></div>')
    else:
        params = {"attention": entries, "default_filter": "0", "display_mode": display_mode, "root_div_id": root_id,
                  "include_layers": layers, "include_heads": head_ids, "total_heads": len(head_ids)}
        vis_html = (f'<div id="{root_id}" style="{_FONT}"><span style="user-select:none">{select}</span>'
                    f'<div id="vis"></div></div>')
    body = _page(view, params, arrays, vis_html, root_id, _caption(record, item, [f"{view} view"] + notes))
    return BertVizExport(body, f"attn-plugins: BertViz {view} view", view, params, root_id)


def fit_logit_scale(queries: torch.Tensor, keys: torch.Tensor, attn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per head, the factor ``s`` with ``attn = softmax(s * q.k + c_row)``, and the largest error of
    that fit in log-probability (small when the scores are plain scaled dot products; large when a
    position bias, ALiBi or soft-capping enters the scores). Shapes ``[H, q, d]``, ``[H, k, d]``, ``[H, q, k]``."""
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


def _neuron(record, found: list[Panel], item: int, layer, head, display_mode: str, prettify_tokens: bool,
            decimals, notes: list[str]) -> BertVizExport:
    if len(found) != 1:
        raise ValueError("the neuron view draws one attention block: pass stack='encoder', 'decoder' or 'cross'")
    p = found[0]
    layers, head_ids = p.layers, p.heads
    layer_pos = 0 if layer is None else _position(layer, layers, "layer")
    head_pos = 0 if head is None else _position(head, head_ids, "head")
    d = p.queries.shape[-1]
    queries = p.queries.clone()
    inexact = []
    for li in range(len(layers)):
        scale, resid = fit_logit_scale(p.queries[li], p.keys[li], p.attn[li])
        for hi in range(len(head_ids)):
            if resid[hi] < 1e-2:
                # BertViz divides q.k by sqrt(d); scale q so its dot products are the model's scores
                queries[li, hi] = (p.queries[li, hi].double() * float(scale[hi]) * math.sqrt(d)).float()
            else:
                inexact.append(f"{layers[li]}/{head_ids[hi]}")
    if inexact:
        notes = notes + [f"layer/head {', '.join(inexact[:6])}{' ...' if len(inexact) > 6 else ''}: the model adds "
                         "position terms to q·k, so the q·k column is the plain scaled dot product; softmax "
                         "column and lines are the recorded weights"]
    left, right = (_prettify(p.left), _prettify(p.right)) if prettify_tokens else (p.left, p.right)
    causal = p.kind == "self" and bool(torch.all(torch.triu(p.attn, diagonal=1 + p.attn.shape[-1] - p.attn.shape[-2]) == 0))
    arrays = _Arrays(decimals)
    attention = {"all": {"attn": arrays.add(p.attn), "left_text": left, "right_text": right,
                         "queries": arrays.add(queries), "keys": arrays.add(p.keys)}}
    b = p.sentence_b_start
    if b is not None:
        parts = {"a": slice(0, b), "b": slice(b, len(p.left))}
        for key, (rows, cols) in _NEURON_PAIR_KEYS.items():
            r, c = parts[rows], parts[cols]
            attention[key] = {"attn": arrays.add(p.attn[:, :, r, c]), "left_text": left[r], "right_text": right[c],
                              "queries": arrays.add(queries[:, :, r]), "keys": arrays.add(p.keys[:, :, c])}
    root_id = f"bertviz-{uuid.uuid4().hex}"
    params = {"attention": attention, "default_filter": "all", "root_div_id": root_id, "bidirectional": not causal,
              "display_mode": display_mode, "layer": layer_pos, "head": head_pos,
              "layer_labels": layers, "head_labels": head_ids}
    dropdown = ""
    if b is not None:
        dropdown = ('<span class="dropdown-label">Attention: </span><select id="filter">'
                    '<option value="all">All</option><option value="aa">Sentence A -&gt; Sentence A</option>'
                    '<option value="ab">Sentence A -&gt; Sentence B</option>'
                    '<option value="ba">Sentence B -&gt; Sentence A</option>'
                    '<option value="bb">Sentence B -&gt; Sentence B</option></select>')
    vis_html = (f'<div id="{root_id}" style="padding:8px;{_FONT}"><span style="user-select:none">'
                '<span class="dropdown-label">Layer: </span><select id="layer"></select> '
                '<span class="dropdown-label">Head: </span> <select id="att_head"></select> '
                f'{dropdown}</span><div id="vis"></div></div>')
    label = {"Encoder": "encoder", "Decoder": "decoder", "Cross": "cross"}.get(p.name or "", "")
    body = _page("neuron", params, arrays, vis_html, root_id,
                 _caption(record, item, [f"neuron view {label}".strip()] + notes))
    return BertVizExport(body, "attn-plugins: BertViz neuron view", "neuron", params, root_id)


def _position(value, labels: list[int], what: str) -> int:
    if value not in labels:
        raise ValueError(f"{what} {value} is not among the {what}s shown: {labels}")
    return labels.index(value)


def export_bertviz(record, view: str = "head", *, item: int = 0, layer: int | None = None, heads=None,
                   head: int | None = None, include_layers=None, include_heads=None, display_mode: str = "dark",
                   prettify_tokens: bool = True, sentence_b_start: int | str | None = "auto",
                   stack: str | None = None, trim_padding: bool = True, words: bool = False, offsets=None,
                   text: str | None = None, decoder_offsets=None, decoder_text: str | None = None,
                   decimals: int | None = None, long: bool | str = "auto", long_threshold: int = LONG_THRESHOLD,
                   **long_options):
    """The ``"bertviz"`` exporter: an offline BertViz view of ``record``.

    Args:
        view: ``"head"``, ``"model"``, ``"neuron"`` (needs ``capture(..., keep_queries_keys=True)``)
            or ``"long"`` (the canvas view for long inputs).
        item: which batch item to show.
        layer, heads: initially selected layer and heads (head view); ``layer``/``head`` for the neuron view.
        include_layers, include_heads: the layers and heads to include (model numbering).
        display_mode: ``"dark"`` or ``"light"`` (model and neuron views).
        prettify_tokens: replace ``Ġ``/``▁`` by spaces as BertViz does.
        sentence_b_start: token position where sentence B starts, ``"auto"`` (from ``token_type_ids``) or None.
        stack: for encoder-decoder records ``"encoder"``, ``"decoder"`` or ``"cross"`` (default: all three,
            neuron view: ``"encoder"``); for composite models the stack to show.
        trim_padding: leave out padding positions of the item.
        words, offsets, text, decoder_offsets, decoder_text: merge word pieces into words
            (:mod:`attn_plugins.analysis.words`).
        decimals: round weights to this many decimals (smaller pages); default: exact.
        long: ``"auto"`` switches to the long view above ``long_threshold`` tokens; ``True`` forces it,
            ``False`` never switches.
        long_options: options of :func:`attn_plugins.integrations.longview.longview`.
    """
    if view not in VIEWS:
        raise ValueError(f"unknown BertViz view {view!r}; choose one of {', '.join(VIEWS)}")
    if display_mode not in ("dark", "light"):
        raise ValueError(f"display_mode must be 'dark' or 'light', got {display_mode!r}")
    if long_options and view != "long" and long is False:
        raise TypeError(f"unexpected options {sorted(long_options)}")
    if view == "neuron" and stack is None and record.is_encoder_decoder:
        stack = "encoder"
    found = panels(record, item=item, stack=stack, include_layers=include_layers, include_heads=include_heads,
                   trim_padding=trim_padding, words=words, offsets=offsets, text=text,
                   decoder_offsets=decoder_offsets, decoder_text=decoder_text,
                   queries_keys=(view == "neuron" and long is not True),
                   sentence_b_start=sentence_b_start, stacked=False)
    notes = [n for p in found[:1] for n in p.notes]
    length = max(p.length for p in found)
    if view == "long" or long is True or (long == "auto" and length > long_threshold):
        from .longview import longview_from_panels

        if view != "long":
            notes = notes + [f"{length} tokens: canvas view for long inputs (long=False forces the {view} view)"]
        if head is not None and heads is None:
            heads = [head]
        return longview_from_panels(record, found, item=item, layer=layer, heads=heads,
                                    prettify_tokens=prettify_tokens, notes=notes, **long_options)
    if long_options:
        raise TypeError(f"unexpected options {sorted(long_options)} for the {view} view")
    for p in found:
        p.attn = torch.stack(p.attn)
    if view == "neuron":
        if heads is not None and head is None:
            head = heads if isinstance(heads, int) else list(heads)[0]
        return _neuron(record, found, item, layer, head, display_mode, prettify_tokens, decimals, notes)
    return _head_or_model(record, found, view, item, layer, heads, display_mode, prettify_tokens, decimals, notes)
