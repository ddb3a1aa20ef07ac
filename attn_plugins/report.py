"""The report: one offline HTML page that shows a model's attention from every side attn-plugins has.

    from attn_plugins.report import build_report
    path = build_report()                                   # bundled MiniLM + fixture sentences -> out/report.html
    path = build_report(model, tokenizer, ["some text", "more text"], out_dir="out")
    path = build_report(model_dir="path/to/saved/model", texts=["..."])

or from the shell: ``attn-plugins report [--model DIR] [--text "..."]... [--text-file F] [--out DIR]``.

The page (``report.html``) is self-contained: styles, scripts and images are inline, a
Content-Security-Policy forbids any network access, and every token and text is HTML-escaped.
Beside it, ``plots/`` holds every figure as PNG (300 dpi) and SVG, ``head_stats.csv`` the per-head
statistics and ``record.safetensors`` the captured record (``attn-plugins info`` reads it).

Sections: model and inputs, BertViz views, heatmaps, head statistics, head similarity and
clustering, diagnostics, attention over generation steps (generative models), saliency (with
Captum's own view) and the comparison of saliency methods. A section whose part is not installed
says how to get it; a section that fails is replaced by a short note (the error is logged on the
``attn_plugins.report`` logger) and the rest of the report still renders.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import functools
import html
import importlib.util
import logging
import math
import os
import struct
import sys
import time
import traceback
from dataclasses import dataclass

from .errors import ReportError
from . import loading

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
PLOT_DIR = "plots"
MAX_TOKENS_DEFAULT = 512
NEURON_MAX_TOKENS = 64  # the neuron view draws every query and key vector: keep it small
GENERATION_STEPS = 8
SALIENCY_INSTANCES = 2  # instances explained by every saliency method (they cost a backward pass each)

# The sentences of ``fixtures/report_sentences.txt`` (the default input when no text is given).
# Kept here too so that an installed package (without the repository's fixtures) has them.
DEFAULT_SENTENCES = (
    "The animal didn't cross the street because it was too tired.",
    "The tired animal stayed on this side of the road.",
    "A man is playing a guitar on the stage.",
    "Someone is performing music for a crowd.",
)
FIXTURE_SENTENCES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures",
                                 "report_sentences.txt")

# The order and titles of the sections.
SECTIONS = (
    ("summary", "Model and inputs"),
    ("bertviz", "BertViz views"),
    ("heatmaps", "Heatmaps"),
    ("statistics", "Head statistics"),
    ("clustering", "Head similarity and clustering"),
    ("diagnostics", "Diagnostics"),
    ("generation", "Attention over generation steps"),
    ("saliency", "Saliency"),
    ("comparison", "Saliency methods compared"),
)

CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'")


class SectionUnavailable(Exception):
    """A section whose part is not installed, or that does not apply to this model (not an error)."""


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
def default_texts() -> list[str]:
    """The fixture sentences (``fixtures/report_sentences.txt`` in a checkout, else the same built in)."""
    if os.path.isfile(FIXTURE_SENTENCES):
        try:
            return read_text_file(FIXTURE_SENTENCES)
        except ReportError:
            pass
    return list(DEFAULT_SENTENCES)


def read_text_file(path) -> list[str]:
    """The non-empty lines of a UTF-8 text file, one text each."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            texts = [line.strip() for line in handle if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read text file {path!r}: {exc}") from None
    if not texts:
        raise ReportError(f"text file {path!r} holds no text (one text per line)")
    return texts


def bundled_model_path() -> str:
    try:
        return loading.bundled_model_path()
    except loading.LoadError as exc:
        raise ReportError(str(exc)) from None


def load_model_dir(path) -> tuple:
    """Model and tokenizer from a local ``save_pretrained()`` directory (see :mod:`attn_plugins.loading`)."""
    try:
        return loading.load_model_dir(path)
    except loading.LoadError as exc:
        raise ReportError(str(exc)) from None


def _tokenizer_for(model, model_dir):
    if model_dir is not None:
        return load_model_dir(model_dir)[1]
    try:
        return loading.tokenizer_for(model)
    except loading.LoadError as exc:
        raise ReportError(f"{exc} (the report turns text into tokens)") from None


def _resolve(model, tokenizer, model_dir) -> tuple:
    """(model, tokenizer, where it came from) from a model, an HF pipeline, a directory or nothing."""
    import torch

    if model is not None and not isinstance(model, torch.nn.Module) and hasattr(model, "model"):
        tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
        model = model.model  # a transformers pipeline
    if model is None:
        path = model_dir if model_dir is not None else bundled_model_path()
        loaded, tok = load_model_dir(path)
        return loaded, tokenizer if tokenizer is not None else tok, os.fspath(path)
    if not isinstance(model, torch.nn.Module):
        raise ReportError(f"model must be a torch model, a transformers pipeline or None, got {type(model).__name__}")
    if tokenizer is None:
        tokenizer = _tokenizer_for(model, model_dir)
    source = os.fspath(model_dir) if model_dir is not None else \
        str(getattr(getattr(model, "config", None), "_name_or_path", "") or "(in memory)")
    return model, tokenizer, source


def _clean_texts(texts) -> list[str]:
    if texts is None:
        return default_texts()
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not texts:
        raise ReportError("no texts given: pass at least one text")
    for text in texts:
        if not isinstance(text, str):
            raise ReportError(f"texts must be strings, got {type(text).__name__}")
        if not text.strip():
            raise ReportError("a text is empty: every text needs at least one character that is not a space")
    return texts


def forward_inputs(model, encoding) -> dict:
    """The tokenizer's outputs that ``model.forward`` takes by name (a BERT tokenizer's
    ``token_type_ids`` are dropped for a model that has no such argument)."""
    import inspect

    enc = dict(encoding)
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return enc
    named = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if "input_ids" not in named:
        return enc
    return {k: v for k, v in enc.items() if k in named}


# ---------------------------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------------------------
@dataclass
class Section:
    id: str
    title: str
    body: str = ""
    status: str = "ok"  # "ok", "unavailable" (not installed / does not apply) or "failed"
    note: str = ""
    seconds: float = 0.0


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value, digits: int = 3) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return _esc(value)
    if math.isnan(v):
        return "-"
    return f"{v:.{digits}f}"


def _png_size(data: bytes) -> tuple[int, int]:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    return (0, 0)


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _exporter(name: str) -> bool:
    from .integrations import EXPORTERS

    try:
        return name in EXPORTERS.names()
    except Exception:  # noqa: BLE001 - a broken third-party entry point must not stop the report
        return False


class _Report:
    """Builds the sections of one report; every figure goes to ``plots/`` and inline into the page."""

    def __init__(self, model, tokenizer, texts, out_dir, source, max_tokens) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.texts = texts
        self.out_dir = out_dir
        self.plot_dir = os.path.join(out_dir, PLOT_DIR)
        self.source = source
        self.max_tokens = max_tokens
        self.record = None
        self.files: list[str] = []
        self.capture_seconds = 0.0
        self.load_seconds = 0.0

    # ----- capture ----------------------------------------------------------------------------
    def _encode(self, texts):
        tok = self.tokenizer
        if len(texts) > 1 and getattr(tok, "pad_token", None) is None and getattr(tok, "eos_token", None) is None:
            raise ReportError("the tokenizer has no pad token to batch several texts: set tokenizer.pad_token")
        with _padding(tok):
            return tok(list(texts), return_tensors="pt", padding=True)

    def _limit(self) -> int:
        config = getattr(self.model, "config", None)
        limit = self.max_tokens
        for attr in ("max_position_embeddings", "n_positions"):
            value = getattr(config, attr, None)
            if isinstance(value, int) and value > 0:
                limit = min(limit, value)
                break
        return limit

    def capture(self) -> None:
        import torch

        from .capture import capture
        from .collector import CaptureError

        enc = self._encode(self.texts)
        length = int(enc["input_ids"].shape[1])
        limit = self._limit()
        if length > limit:
            raise ReportError(f"the input is {length} tokens long, over the limit of {limit} for this model: "
                              "shorten the texts (or raise max_tokens up to the model's maximum)")
        device = getattr(self.model, "device", None)
        if device is not None:
            enc = enc.to(device)
        enc = forward_inputs(self.model, enc)
        keep_qk = length <= NEURON_MAX_TOKENS
        start = time.perf_counter()
        try:
            with torch.no_grad(), capture(self.model, tokenizer=self.tokenizer, keep_queries_keys=keep_qk) as cap:
                self.model(**enc)
        except CaptureError as exc:
            raise ReportError(f"cannot capture attention from {type(self.model).__name__}: {exc} (the report needs a "
                              "model with attention layers)") from None
        record = cap.record if cap.records else None
        if record is None or not record.layers:
            raise ReportError(f"{type(self.model).__name__} has no attention layers: nothing was captured "
                              "(the report needs a model with attention)")
        self.record = record
        self.capture_seconds = time.perf_counter() - start

    def save_record(self) -> None:
        try:
            self.files.append(os.path.relpath(self.record.save(os.path.join(self.out_dir, "record.safetensors")),
                                              self.out_dir))
        except Exception as exc:  # noqa: BLE001 - the record file is a bonus
            log.warning("report: could not save the record: %s", exc)

    # ----- shared results ------------------------------------------------------------------------
    @property
    def stack(self):
        return "encoder" if self.record.is_encoder_decoder else ...

    @functools.cached_property
    def self_layers(self):
        from .analysis.blocks import select_layers

        return select_layers(self.record, None, self.stack, "self")

    @functools.cached_property
    def stats(self):
        from .analysis.stats import head_stats

        return head_stats(self.record, stack=self.stack)

    @functools.cached_property
    def distances(self):
        from .analysis.head_similarity import head_distances

        return head_distances(self.record, stack=self.stack)

    @functools.cached_property
    def tokens0(self) -> list[str]:
        toks = self.record.tokens[0] if self.record.tokens else []
        mask = self.record.attention_mask
        if mask is not None and toks:
            toks = [t for t, m in zip(toks, mask[0].tolist()) if m]
        return toks

    def layer_of(self, label: str):
        """The captured self-attention layer with this label ("L3", "encoder L3")."""
        from .analysis.blocks import layer_label

        return next(layer for layer in self.self_layers if layer_label(layer) == label)

    def widest_layer(self) -> int:
        """The layer whose heads differ most from one another (mean Jensen-Shannon distance)."""
        try:
            d = self.distances
            best, best_value = self.self_layers[-1].index, -1.0
            for label in dict.fromkeys(lab for lab, _ in d.heads):
                idx = [i for i, (lab, _) in enumerate(d.heads) if lab == label]
                if len(idx) < 2:
                    continue
                block = d.values[idx][:, idx]
                value = float(block.sum() / (len(idx) * (len(idx) - 1)))
                if value > best_value:
                    best, best_value = self.layer_of(label).index, value
            return best
        except Exception:  # noqa: BLE001 - fall back to the last layer
            return self.self_layers[-1].index

    # ----- figures ----------------------------------------------------------------------------------
    def figure(self, name: str, fig, caption: str, alt: str | None = None) -> str:
        """Save ``fig`` as plots/NAME.png and .svg; the HTML that shows it inline."""
        from .plots import save

        png = save(fig, os.path.join(self.plot_dir, f"{name}.png"))
        svg = save(fig, os.path.join(self.plot_dir, f"{name}.svg"))
        self.files += [os.path.relpath(png, self.out_dir), os.path.relpath(svg, self.out_dir)]
        with open(png, "rb") as handle:
            data = handle.read()
        width, _ = _png_size(data)
        css_width = f' width="{max(1, round(width / 3))}"' if width else ""  # 300 dpi shown at 100 px per inch
        encoded = base64.b64encode(data).decode("ascii")
        return (f'<figure class="ap-fig" data-plot="{_esc(name)}"><img src="data:image/png;base64,{encoded}"'
                f'{css_width} alt="{_esc(alt or caption)}"><figcaption>{_esc(caption)} '
                f'<span class="ap-files">(<a href="{_esc(PLOT_DIR)}/{_esc(name)}.png">PNG</a>, '
                f'<a href="{_esc(PLOT_DIR)}/{_esc(name)}.svg">SVG</a>)</span></figcaption></figure>')

    # ----- the sections --------------------------------------------------------------------------------
    def section_summary(self) -> str:
        import torch

        import attn_plugins

        model, record = self.model, self.record
        config = getattr(model, "config", None)
        params = sum(p.numel() for p in model.parameters())
        rows = [("model class", type(model).__name__), ("loaded from", self.source),
                ("parameters", f"{params:,}")]
        for label, attrs in (("layers", ("num_hidden_layers", "n_layer", "num_layers")),
                             ("attention heads", ("num_attention_heads", "n_head", "num_heads")),
                             ("hidden size", ("hidden_size", "n_embd", "d_model")),
                             ("vocabulary", ("vocab_size",)),
                             ("maximum positions", ("max_position_embeddings", "n_positions"))):
            for attr in attrs:
                value = getattr(config, attr, None)
                if value is not None:
                    rows.append((label, value))
                    break
        rows.append(("attention implementation", record.attn_implementation or "-"))
        rows.append(("weights in the record", record.metadata.get("precision", "-")))
        groups = {}
        for layer in record.layers:
            key = " ".join(x for x in (layer.stack, layer.kind) if x) + "-attention"
            groups.setdefault(key, []).append(layer)
        for key, layers in groups.items():
            first = layers[0]
            rows.append((key, f"{len(layers)} layers x {len(first.head_indices)} heads, query x key "
                              f"{first.weights.shape[2]} x {first.weights.shape[3]}"))
        rows.append(("texts", f"{len(self.texts)} (batch of {record.batch_size}, padded to "
                              f"{record.layers[0].weights.shape[-1]} tokens)"))
        rows.append(("capture time", f"{self.capture_seconds:.2f} s"))
        rows.append(("versions", f"attn-plugins {attn_plugins.__version__}, torch {torch.__version__}, "
                                 f"transformers {_version('transformers')}, Python {sys.version.split()[0]}"))
        table = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
        inputs = []
        mask = record.attention_mask
        for i, text in enumerate(self.texts):
            toks = record.tokens[i] if record.tokens and i < len(record.tokens) else []
            if mask is not None and toks:
                toks = [t for t, m in zip(toks, mask[i].tolist()) if m]
            spans = "".join(f'<span class="ap-tok">{_esc(t)}</span>' for t in toks)
            inputs.append(f'<li><div class="ap-text">{_esc(text)}</div>'
                          f'<div class="ap-toks" title="{len(toks)} tokens">{spans}</div></li>')
        return (f'<table class="ap-kv">{table}</table>'
                f'<h3>Inputs and their tokens</h3><ol class="ap-inputs">{"".join(inputs)}</ol>'
                f'<details><summary>record summary (<code>attn-plugins info record.safetensors</code>)</summary>'
                f'<pre>{_esc(record.summary())}</pre></details>')

    def section_bertviz(self) -> str:
        if not _exporter("bertviz"):
            raise SectionUnavailable("BertViz views appear here once the \"bertviz\" exporter is available "
                                     "(pip install \"attn-plugins[bertviz]\").")
        if not _available("bertviz"):
            raise SectionUnavailable("BertViz is not installed: pip install \"attn-plugins[bertviz]\".")
        from .integrations import export

        record = self.record
        parts = ['<p class="ap-lead">BertViz\'s own views, drawn offline. <b>Head view</b>: pick a layer; each '
                 'colour is a head, lines join a token (left) to the tokens it attends to (right); hover a token. '
                 '<b>Model view</b>: every head of every layer at a glance; click a thumbnail to enlarge it. '
                 '<b>Neuron view</b>: how one head\'s queries and keys produce its weights.</p>']
        notes = []
        views = [("head", i) for i in range(min(record.batch_size, 3))] + [("model", 0)]
        has_qk = any(layer.queries is not None for layer in record.layers)
        if has_qk:
            views.append(("neuron", 0))
        else:
            notes.append(f"neuron view left out: the input is longer than {NEURON_MAX_TOKENS} tokens")
        heads, others = [], []
        for view, item in views:
            title = f"{view} view, input {item + 1}"
            try:
                options = {"item": item, "decimals": 4}
                if view in ("model", "neuron"):
                    options["display_mode"] = "light"
                if view == "neuron":
                    options["layer"] = self.self_layers[0].index
                result = export(record, "bertviz", view=view, **options)
                block = (f'<div class="ap-view" data-view="{_esc(view)}" data-item="{item}">'
                         f"<h3>{_esc(title)}</h3>{result._repr_html_()}</div>")
                (heads if view == "head" else others).append(block)
            except Exception as exc:  # noqa: BLE001 - one view failing leaves the others
                log.warning("report: BertViz %s failed: %s: %s", title, type(exc).__name__, exc)
                notes.append(f"{title}: {type(exc).__name__}: {exc}")
        if heads:
            parts.append(f'<div class="ap-row ap-views">{"".join(heads)}</div>')
        parts.extend(others)
        if len(parts) == 1:
            raise RuntimeError("no BertViz view could be drawn: " + "; ".join(notes))
        if notes:
            parts.append('<p class="ap-note">' + "<br>".join(_esc(n) for n in notes) + "</p>")
        return "".join(parts)

    def section_heatmaps(self) -> str:
        from .plots import head_grid

        parts = ['<p class="ap-lead">Rows are the attending tokens (queries), columns the tokens attended to '
                 '(keys); each row sums to 1. Padding is cropped.</p>']
        parts.append(self.figure("layers_mean", _layers_figure(self.record, 0, self.stack),
                                 "Input 1: the mean of the heads in every layer (one colour scale)."))
        layer = self.widest_layer()
        fig = head_grid(self.record, layer, item=0, stack=self.stack)
        parts.append(self.figure(f"head_grid_L{layer}", fig,
                                 f"Input 1: every head of layer {layer}, the layer whose heads differ most from one "
                                 "another (largest mean Jensen-Shannon distance between its heads)."))
        return "".join(parts)

    def notable_heads(self) -> list[tuple[str, str, str, int, float]]:
        """(role, statistic, layer label, head, value): the most typical head of each behaviour."""
        import torch

        hs = self.stats
        roles = [("attends to the previous token", "previous", max),
                 ("attends to the next token", "next", max),
                 ("attends to [CLS]/[SEP]/punctuation", "special", max),
                 ("attends to itself", "self", max),
                 ("broadest (closest to uniform)", "normalized_entropy", max),
                 ("most focused (lowest entropy)", "entropy", min),
                 ("longest reach (mean distance)", "distance", max)]
        out = []
        for role, name, pick in roles:
            values = hs.get(name)
            flat = torch.nan_to_num(values, nan=-math.inf if pick is max else math.inf)
            index = int(flat.argmax() if pick is max else flat.argmin())
            li, hi = divmod(index, values.shape[1])
            value = float(values[li, hi])
            if math.isnan(value) or hi >= len(hs.heads[li]):
                continue
            out.append((role, name, hs.labels[li], hs.heads[li][hi], value))
        return out

    def section_statistics(self) -> str:
        from .analysis.stats import STAT_TITLES
        from .plots import head_stats_plot, heatmap

        hs = self.stats
        parts = ['<p class="ap-lead">Per-head statistics as in Clark et al. (2019), averaged over the real '
                 'tokens of all inputs (padding excluded): entropy relative to uniform attention, mean distance '
                 'in tokens, and the share of attention on special tokens, the previous and next token, and '
                 'the token itself.</p>']
        parts.append(self.figure("head_stats", head_stats_plot(hs, ("normalized_entropy", "distance", "self"),
                                                                style="matrix"),
                                 "How broad and how far each head attends, by layer (rows) and head (columns)."))
        parts.append(self.figure("head_shares", head_stats_plot(hs, ("special", "previous", "next"), style="matrix"),
                                 "Where each head's attention goes: special tokens, the previous and the next token."))
        parts.append(self.figure("head_stats_by_layer", head_stats_plot(hs, ("entropy", "distance"), style="scatter"),
                                 "Entropy and distance by layer: one dot per head, the layer mean as a line; the "
                                 "dashed line is the entropy of uniform attention."))
        notable = self.notable_heads()
        rows = []
        for role, name, label, head, value in notable:
            rows.append(f"<tr><td>{_esc(role)}</td><td>{_esc(label)} head {head}</td>"
                        f"<td>{_esc(STAT_TITLES.get(name, name))}</td><td>{_fmt(value)}</td></tr>")
        parts.append('<h3>Notable heads</h3><table class="ap-table"><tr><th>behaviour</th><th>head</th>'
                     f'<th>statistic</th><th>value</th></tr>{"".join(rows)}</table>')
        shown = {r[1]: r for r in notable}
        figs = []
        for name in ("previous", "next", "special"):
            if name not in shown:
                continue
            role, _, label, head, value = shown[name]
            layer = self.layer_of(label).index
            fig = heatmap(self.record, layer, head, item=0, stack=self.stack,
                          title=f"{label} head {head}: {role}")
            figs.append(self.figure(f"notable_{name}_{label.replace(' ', '_')}_H{head}", fig,
                                    f"Input 1, {label} head {head}: {role} ({_fmt(value)})."))
        parts.append(f'<div class="ap-row">{"".join(figs)}</div>')
        # per layer and per head tables, and the CSV
        csv_path = os.path.join(self.out_dir, "head_stats.csv")
        table_rows = hs.rows()
        if table_rows:
            with open(csv_path, "w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(table_rows[0]))
                writer.writeheader()
                writer.writerows(table_rows)
            self.files.append(os.path.relpath(csv_path, self.out_dir))
        cols = ["entropy", "normalized_entropy", "distance", "special", "previous", "next", "self"]
        head = "".join(f"<th>{_esc(STAT_TITLES.get(c, c))}</th>" for c in cols)
        per_layer = []
        for li, label in enumerate(hs.labels):
            cells = []
            for c in cols:
                row = hs.get(c)[li]
                row = row[~row.isnan()]
                cells.append(f"<td>{_fmt(row.mean()) if row.numel() else '-'}</td>")
            per_layer.append(f"<tr><th>{_esc(label)}</th>{''.join(cells)}</tr>")
        parts.append(f'<h3>Mean over heads, by layer</h3><table class="ap-table"><tr><th>layer</th>{head}</tr>'
                     f'{"".join(per_layer)}</table>')
        per_head = "".join(
            f"<tr><th>{_esc(r['layer'])}</th><th>{r['head']}</th>" + "".join(f"<td>{_fmt(r[c])}</td>" for c in cols)
            + "</tr>" for r in table_rows)
        parts.append(f'<details><summary>every head ({len(table_rows)} rows; also in '
                     f'<a href="head_stats.csv">head_stats.csv</a>)</summary><table class="ap-table">'
                     f'<tr><th>layer</th><th>head</th>{head}</tr>{per_head}</table></details>')
        return "".join(parts)

    def section_clustering(self) -> str:
        from .analysis.head_similarity import cluster
        from .plots import layer_similarity_plot, similarity_plot

        d = self.distances
        parts = ['<p class="ap-lead">How alike the heads attend: the mean Jensen-Shannon distance between two '
                 'heads\' attention rows over the real tokens of all inputs (Clark et al. 2019), ordered by '
                 'hierarchical clustering (average linkage). Dark blocks on the diagonal are families of heads '
                 'that attend the same way.</p>']
        parts.append(self.figure("head_similarity", similarity_plot(d), "Head-distance matrix with its dendrogram."))
        if len(self.self_layers) > 1:
            parts.append(self.figure("layer_similarity", layer_similarity_plot(self.record, stack=self.stack),
                                     "Layer-to-layer similarity of the head-averaged attention (1 - mean "
                                     "Jensen-Shannon distance)."))
        n = len(d.labels)
        if n >= 2:
            k = min(6, n)
            clusters = cluster(d, n_clusters=k)
            hs = self.stats
            index = {(lab, head): (li, hi) for li, lab in enumerate(hs.labels) for hi, head in enumerate(hs.heads[li])}
            rows = []
            for c in sorted(set(clusters.assignments)):
                members = [i for i, a in enumerate(clusters.assignments) if a == c]
                means = {}
                for name in ("previous", "next", "self", "special", "normalized_entropy", "distance"):
                    values = [float(hs.get(name)[index[d.heads[i]]]) for i in members if d.heads[i] in index]
                    values = [v for v in values if not math.isnan(v)]
                    means[name] = sum(values) / len(values) if values else math.nan
                heads = ", ".join(d.labels[i] for i in members)
                rows.append(f"<tr><td>{c}</td><td>{len(members)}</td><td>{_esc(_describe(means))}</td>"
                            f"<td>{_fmt(means['normalized_entropy'], 2)}</td><td>{_fmt(means['distance'], 2)}</td>"
                            f'<td class="ap-heads">{_esc(heads)}</td></tr>')
            parts.append(f"<h3>{k} clusters</h3><table class=\"ap-table\"><tr><th>cluster</th><th>heads</th>"
                         "<th>what they do (mean shares)</th><th>entropy / uniform</th><th>distance</th>"
                         f"<th>members</th></tr>{''.join(rows)}</table>")
        return "".join(parts)

    def section_diagnostics(self) -> str:
        from .analysis.diagnostics import diagnose

        findings = diagnose(self.record)
        lead = ('<p class="ap-lead">Every head is checked for NaN or infinite weights, rows that do not sum to 1, '
                'attention leaking onto padding, near-uniform heads (entropy at least 98% of uniform) and heads '
                'collapsed onto one token (90% of the attention on a single key).</p>')
        if not findings:
            return lead + '<p class="ap-ok-note">No attention problems found.</p>'
        counts = {}
        for f in findings:
            counts[f.problem] = counts.get(f.problem, 0) + 1
        summary = ", ".join(f"{n} {p}" for p, n in counts.items())
        rows = "".join(f"<tr><td>{_esc(f.layer)}</td><td>{f.head}</td><td>{_esc(f.problem)}</td>"
                       f"<td>{_fmt(f.value)}</td><td>{_esc(f.reason)}</td></tr>" for f in findings)
        return (lead + f'<p class="ap-warn-note">{len(findings)} finding(s): {_esc(summary)}.</p>'
                '<table class="ap-table"><tr><th>layer</th><th>head</th><th>problem</th><th>value</th>'
                f"<th>why</th></tr>{rows}</table>")

    def section_generation(self) -> str:
        import torch

        from .capture import capture
        from .plots import generation_plot

        model = self.model
        can = getattr(model, "can_generate", None)
        if not (callable(can) and can()):
            raise SectionUnavailable(f"{type(model).__name__} does not generate text, so there is no attention over "
                                     "generation steps to show (pass a causal or seq2seq language model).")
        enc = self.tokenizer([self.texts[0]], return_tensors="pt")
        device = getattr(model, "device", None)
        if device is not None:
            enc = enc.to(device)
        enc = forward_inputs(model, enc)
        pad = getattr(self.tokenizer, "pad_token_id", None)
        if pad is None:
            pad = getattr(self.tokenizer, "eos_token_id", None)
        with torch.no_grad(), capture(model, tokenizer=self.tokenizer) as cap:
            model.generate(**enc, max_new_tokens=GENERATION_STEPS, min_new_tokens=GENERATION_STEPS, do_sample=False,
                           num_beams=1, pad_token_id=pad)
        record = cap.record
        kind = "cross" if record.is_encoder_decoder else "self"
        from .analysis.evolution import generation_evolution

        evo = generation_evolution(record, kind=kind)
        parts = [f'<p class="ap-lead">Greedy generation of {GENERATION_STEPS} tokens after input 1. Each panel is '
                 "one step: the attention of the token being processed over the keys seen so far (last layer, "
                 "mean of heads).</p>"]
        parts.append(self.figure("generation", generation_plot(evo), "Attention over generation steps."))
        parts.append(f"<pre>{_esc(str(evo))}</pre>")
        return "".join(parts)

    @functools.cached_property
    def saliency(self) -> tuple[dict, str]:
        """``({method: results}, description)``, computed once for the saliency and comparison sections."""
        with _padding(self.tokenizer):
            return self._saliency()

    def _saliency(self) -> tuple[dict, str]:
        if not (_available("attn_plugins.saliency") and _exporter("saliency")):
            raise SectionUnavailable("Saliency appears here once attn-plugins' saliency part is installed.")
        from .saliency import Explainer, SimilarityExplainer, attention_saliency, method_names
        from .saliency.problem import detect_task

        names = method_names()
        captum = _available("captum")
        wanted = ["attention", "rollout", "grad_attention"] + (["saliency", "integrated_gradients"] if captum else [])
        methods = [m for m in wanted if m in names]
        options = {"integrated_gradients": {"n_steps": 16}}
        texts = self.texts[:SALIENCY_INSTANCES]
        task = detect_task(self.model)
        if task != "custom":
            try:
                ex = Explainer(self.model, self.tokenizer)
                table = {m: ex.explain(texts, m, progress=False, **options.get(m, {})) for m in methods}
                label = table[methods[0]][0].prediction_label if table else None
                what = (f"the model's prediction ({_esc(task)}; for input 1: <b>{_esc(label)}</b>)"
                        if label is not None else f"the model's prediction ({_esc(task)})")
                return table, what
            except Exception as exc:  # noqa: BLE001 - e.g. a masked LM and a text without [MASK]: next way
                log.info("report: the %s explainer is not usable here (%s: %s)", task, type(exc).__name__, exc)
        if len(self.texts) >= 2 and not self.record.is_encoder_decoder:
            pairs = [(self.texts[i], self.texts[i + 1])
                     for i in range(0, min(len(self.texts) - 1, 2 * SALIENCY_INSTANCES), 2)]
            try:
                ex = SimilarityExplainer(self.model, self.tokenizer)
                table = {m: ex.explain(pairs, m, progress=False, **options.get(m, {})) for m in methods}
                sims = [f"{ex.similarity(a, b):.3f}" for a, b in pairs]
                what = ("the cosine similarity of the mean-pooled sentence embeddings of each pair of inputs "
                        f"(inputs 1 and 2{', 3 and 4' if len(pairs) > 1 else ''}; cosine {', '.join(sims)}): "
                        "each side's tokens are scored with the other side held fixed")
                return table, what
            except Exception as exc:  # noqa: BLE001 - fall back to the record alone
                log.info("report: the similarity explainer is not usable here (%s: %s)", type(exc).__name__, exc)
        record_methods = [m for m in ("attention", "rollout", "flow") if m in names]
        table = {m: attention_saliency(self.record, m, query=0) for m in record_methods}
        return table, "the attention that flows to the first token, read from the record alone"

    def section_saliency(self) -> str:
        from .integrations import export

        table, what = self.saliency
        parts = [f'<p class="ap-lead">Which input tokens the output rests on, explaining {what}. Attention-based '
                 "methods (raw attention, rollout, attention x gradient) beside gradient methods from Captum "
                 "(saliency, integrated gradients). Shade: share of the method's total absolute score; outlined: "
                 "top 3; hover a token for its values.</p>"]
        parts.append(f'<div class="ap-view" data-view="saliency">{export(table, "saliency")._repr_html_()}</div>')
        ig = table.get("integrated_gradients")
        if ig and _exporter("captum") and _available("captum"):
            try:
                captum_view = export(ig, "captum")
                parts.append('<h3>Integrated gradients in Captum\'s own view</h3><div class="ap-view" '
                             f'data-view="captum">{captum_view._repr_html_()}</div>')
            except Exception as exc:  # noqa: BLE001
                log.warning("report: Captum view failed: %s: %s", type(exc).__name__, exc)
                parts.append(f'<p class="ap-note">Captum view not shown: {_esc(type(exc).__name__)}: {_esc(exc)}</p>')
        elif not _available("captum"):
            parts.append('<p class="ap-note">Gradient methods and Captum\'s view need Captum: '
                         'pip install "attn-plugins[captum]".</p>')
        return "".join(parts)

    def section_comparison(self) -> str:
        if not _exporter("comparison") or not _available("attn_plugins.integrations.comparison"):
            raise SectionUnavailable("The comparison of saliency methods appears here once its exporter is installed.")
        from .integrations import export

        table, what = self.saliency
        if len(table) < 2:
            raise SectionUnavailable("Only one saliency method is available, so there is nothing to compare.")
        page = export(table, "comparison", title="Do the methods agree?")
        lead = ('<p class="ap-lead">Agreement of every pair of methods on the same inputs (Kendall tau, Spearman '
                'rho, top-3 overlap, Jensen-Shannon divergence), the analysis of "Attention is not Explanation" '
                f'(Jain and Wallace 2019), explaining {what}.</p>')
        return lead + f'<div class="ap-view" data-view="comparison">{page._repr_html_()}</div>'

    # ----- running ---------------------------------------------------------------------------------
    def run_section(self, sid: str, title: str) -> Section:
        start = time.perf_counter()
        section = Section(sid, title)
        try:
            section.body = getattr(self, f"section_{sid}")()
        except SectionUnavailable as exc:
            section.status, section.note = "unavailable", str(exc)
        except ImportError as exc:
            section.status = "unavailable"
            section.note = f"This section needs a package that is not installed: {exc}"
            log.warning("report: section %r unavailable: %s", sid, exc)
        except Exception as exc:  # noqa: BLE001 - the report never breaks: the section becomes a note
            section.status = "failed"
            section.note = f"This section could not be built: {type(exc).__name__}: {exc}"
            section.body = (f"<details><summary>details</summary><pre>{_esc(traceback.format_exc())}</pre>"
                            "</details>")
            log.warning("report: section %r failed: %s: %s", sid, type(exc).__name__, exc)
            log.debug("report: section %r traceback", sid, exc_info=True)
        section.seconds = time.perf_counter() - start
        return section


@contextlib.contextmanager
def _padding(tokenizer):
    """Batches need a pad token: a GPT-style tokenizer without one pads with its end-of-text token
    for the duration (and is left as it was)."""
    borrow = getattr(tokenizer, "pad_token", None) is None and getattr(tokenizer, "eos_token", None) is not None
    if borrow:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        yield tokenizer
    finally:
        if borrow:
            tokenizer.pad_token = None


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def _describe(means: dict) -> str:
    """A few words for what a cluster of heads does, from its mean statistics."""
    shares = {"previous": "previous token", "next": "next token", "self": "itself",
              "special": "[CLS]/[SEP]/punctuation"}
    ranked = sorted(((v, k) for k, v in means.items() if k in shares and not math.isnan(v)), reverse=True)
    if ranked and ranked[0][0] >= 0.5:
        return f"mostly {shares[ranked[0][1]]} ({ranked[0][0]:.2f})"
    entropy = means.get("normalized_entropy", math.nan)
    if not math.isnan(entropy) and entropy >= 0.8:
        return f"broad, close to uniform; {', '.join(f'{shares[k]} {v:.2f}' for v, k in ranked[:2])}"
    return "mixed: " + ", ".join(f"{shares[k]} {v:.2f}" for v, k in ranked[:2])


def _layers_figure(record, item: int, stack):
    """Small multiples: each layer's mean of heads for one input, on one colour scale."""
    from .analysis.blocks import record_view, select_layers
    from .analysis.tokens import readable_token
    from .plots._base import new_figure, style
    from .plots.heatmaps import draw_matrix

    layers = select_layers(record, None, stack, "self")
    mats = []
    for layer in layers:
        v = record_view(record, layer).select_item(item)
        m = v.weights[0].mean(dim=0)
        qm, km = v.query_mask[0], v.key_mask[0]
        m = m[qm][:, km]
        qt = [readable_token(t) for t, keep in zip(v.query_tokens[0], qm) if keep] if v.query_tokens else None
        kt = [readable_token(t) for t, keep in zip(v.key_tokens[0], km) if keep] if v.key_tokens else None
        mats.append((v.label, m, qt, kt))
    n = len(mats)
    ncols = min(n, 6 if n <= 12 else 8)
    nrows = math.ceil(n / ncols)
    size = max(m.shape[0] for _, m, _, _ in mats)
    labelled = size <= 24
    cell = 1.7 if labelled else 1.3
    vmax = max(float(m.nan_to_num(0.0).max()) for _, m, _, _ in mats) or 1.0
    with style():
        fig = new_figure(cell * ncols + 1.0, cell * nrows + 0.7)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        image = None
        for idx, ax in enumerate(axes.flat):
            if idx >= n:
                ax.set_axis_off()
                continue
            label, m, qt, kt = mats[idx]
            image = draw_matrix(ax, m, query_labels=qt if labelled and idx % ncols == 0 else None,
                                key_labels=kt if labelled else None, vmax=vmax, annotate=False, xlabel="", ylabel="",
                                max_labels=24)
            ax.set_title(label, fontsize=7, pad=2)
            ax.tick_params(labelsize=4.5, length=1.2)
            if not labelled:
                ax.set_xticks([])
                ax.set_yticks([])
            elif idx % ncols != 0:
                ax.set_yticks([])
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01, shrink=0.9)
        bar.set_label("attention weight (mean of heads)")
        bar.outline.set_linewidth(0.5)
        fig.suptitle("mean attention of each layer" + (f" (input {item + 1})" if record.batch_size > 1 else ""))
    return fig


# ---------------------------------------------------------------------------------------------
# the page
# ---------------------------------------------------------------------------------------------
CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d8dee4; --accent: #0b5cad; --soft: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; color: var(--ink);
  background: #fff; }
header.ap-header { padding: 22px 32px 12px; border-bottom: 1px solid var(--line); background: var(--soft); }
header.ap-header h1 { margin: 0 0 4px; font-size: 24px; }
header.ap-header p { margin: 2px 0; color: var(--muted); }
nav.ap-nav { padding: 8px 32px; border-bottom: 1px solid var(--line); position: sticky; top: 0; background: #fff;
  z-index: 20; font-size: 13px; }
nav.ap-nav a { margin-right: 14px; color: var(--accent); text-decoration: none; white-space: nowrap; }
nav.ap-nav a.ap-off { color: var(--muted); }
main { padding: 4px 32px 24px; max-width: 1400px; }
section.ap-section { border-bottom: 1px solid var(--line); padding: 10px 0 18px; overflow-x: auto; }
section.ap-section h2 { font-size: 20px; margin: 12px 0 6px; }
section.ap-section h3 { font-size: 16px; margin: 16px 0 6px; }
.ap-lead { color: var(--muted); max-width: 980px; margin: 4px 0 10px; }
.ap-note { color: #6e5b00; background: #fff8c5; border: 1px solid #eed888; padding: 6px 10px; border-radius: 4px;
  display: inline-block; max-width: 980px; }
section.ap-failed .ap-note { color: #82071e; background: #ffebe9; border-color: #ffcecb; }
.ap-ok-note { color: #1a7f37; font-weight: 600; }
.ap-warn-note { color: #9a6700; font-weight: 600; }
table.ap-kv th { text-align: left; padding: 2px 14px 2px 0; color: var(--muted); font-weight: 600;
  vertical-align: top; }
table.ap-kv td { padding: 2px 0; }
table.ap-table { border-collapse: collapse; font-size: 13px; margin: 4px 0 10px; }
table.ap-table th, table.ap-table td { border: 1px solid var(--line); padding: 3px 8px; text-align: right; }
table.ap-table th { background: var(--soft); }
table.ap-table td:first-child, table.ap-table td.ap-heads { text-align: left; }
td.ap-heads { font-size: 12px; color: var(--muted); max-width: 520px; }
ol.ap-inputs li { margin-bottom: 8px; }
.ap-text { font-weight: 600; }
.ap-toks { line-height: 1.9; }
.ap-tok { display: inline-block; font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace;
  background: var(--soft); border: 1px solid var(--line); border-radius: 3px; padding: 0 4px; margin: 1px 2px;
  white-space: pre; }
figure.ap-fig { margin: 8px 14px 14px 0; display: inline-block; vertical-align: top; max-width: 100%; }
figure.ap-fig img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figure.ap-fig figcaption { font-size: 13px; color: var(--muted); max-width: 900px; }
.ap-files a { color: var(--accent); }
.ap-row { display: flex; flex-wrap: wrap; align-items: flex-start; }
.ap-view { margin: 6px 0 16px; }
.ap-views > .ap-view { margin-right: 36px; }
pre { background: var(--soft); border: 1px solid var(--line); padding: 8px; font-size: 12px; overflow-x: auto; }
footer.ap-footer { padding: 12px 32px 30px; color: var(--muted); font-size: 13px; }
"""


def _page(report: _Report, sections: list[Section], total: float) -> str:
    model_name = type(report.model).__name__
    nav = "".join(f'<a href="#{s.id}" class="{"" if s.status == "ok" else "ap-off"}">{_esc(s.title)}</a>'
                  for s in sections)
    body = []
    for s in sections:
        note = f'<p class="ap-note">{_esc(s.note)}</p>' if s.note else ""
        body.append(f'<section id="{s.id}" class="ap-section ap-{s.status}" data-status="{s.status}">'
                    f"<h2>{_esc(s.title)}</h2>{note}{s.body}</section>")
    timings = "".join(f"<tr><td>{_esc(s.title)}</td><td>{_esc(s.status)}</td><td>{s.seconds:.1f} s</td></tr>"
                      for s in sections)
    files = ", ".join(f'<a href="{_esc(f)}">{_esc(f)}</a>' for f in sorted(set(report.files)))
    first = report.texts[0]
    preview = first if len(first) <= 80 else first[:77] + "..."
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>attn-plugins report: {_esc(model_name)}</title><style>{CSS}</style></head>\n<body>\n"
        f'<header class="ap-header"><h1>Attention report: {_esc(model_name)}</h1>'
        f"<p>{_esc(report.source)} &middot; {len(report.texts)} input(s), the first: &ldquo;{_esc(preview)}&rdquo;</p>"
        f"<p>Built by attn-plugins in {total:.1f} s on {time.strftime('%Y-%m-%d %H:%M')}; works offline.</p>"
        f'</header>\n<nav class="ap-nav">{nav}</nav>\n<main>\n' + "\n".join(body) + "\n</main>\n"
        f'<footer class="ap-footer"><h3>About this report</h3><table class="ap-table"><tr><th>section</th>'
        f"<th>status</th><th>time</th></tr>{timings}<tr><td>loading the model</td><td></td>"
        f"<td>{report.load_seconds:.1f} s</td></tr><tr><td>capture</td><td></td>"
        f"<td>{report.capture_seconds:.1f} s</td></tr></table><p>Files written beside this page: {files}</p>"
        "</footer>\n</body></html>\n"
    )


# ---------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------
def build_report(model=None, tokenizer=None, texts=None, out_dir="out", model_dir=None, progress: bool = True, *,
                 text_file=None, max_tokens: int = MAX_TOKENS_DEFAULT, sections=None) -> str:
    """Write the report into ``out_dir`` and return the path of its page (``report.html``).

    Args:
        model: a transformers model (or any model attn-plugins captures), a transformers
            ``pipeline`` (its model and tokenizer are used) or ``None``: loaded from
            ``model_dir``, or the bundled MiniLM.
        tokenizer: the model's tokenizer (default: the pipeline's, or loaded from ``model_dir``).
        texts: a text or a list of texts (default: the fixture sentences).
        out_dir: where ``report.html``, ``plots/`` (PNG and SVG), ``head_stats.csv`` and
            ``record.safetensors`` are written.
        model_dir: a local ``save_pretrained()`` directory.
        progress: show a progress bar (stderr).
        text_file: a UTF-8 file with one text per line (added after ``texts``).
        max_tokens: refuse inputs longer than this (or the model's maximum).
        sections: the section ids to build (default: all; see :data:`SECTIONS`).

    Raises:
        ReportError: a bad model path, an unreadable text file, empty text, an input that is too
            long, or a model without attention. Anything that goes wrong inside a section only
            replaces that section by a note.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    if texts is None and text_file is None:
        texts = default_texts()
    else:
        texts = (_clean_texts(texts) if texts is not None else []) + \
            (read_text_file(text_file) if text_file is not None else [])
    chosen = [(sid, title) for sid, title in SECTIONS if sections is None or sid in sections]
    if sections is not None:
        unknown = set(sections) - {sid for sid, _ in SECTIONS}
        if unknown:
            raise ReportError(f"unknown sections {sorted(unknown)}; available: {', '.join(s for s, _ in SECTIONS)}")
    out_dir = os.fspath(out_dir)
    bar = tqdm(total=len(chosen) + 2, desc="report", unit="step", disable=not progress, file=sys.stderr,
               leave=True, dynamic_ncols=True)
    try:
        bar.set_postfix_str("loading the model")
        load_start = time.perf_counter()
        model, tokenizer, source = _resolve(model, tokenizer, model_dir)
        report = _Report(model, tokenizer, texts, out_dir, source, max_tokens)
        report.load_seconds = time.perf_counter() - load_start
        bar.update(1)
        bar.set_postfix_str("capture")
        report.capture()
        try:
            os.makedirs(os.path.join(out_dir, PLOT_DIR), exist_ok=True)
        except OSError as exc:
            raise ReportError(f"cannot write the report to {out_dir!r}: {exc}") from None
        report.save_record()
        bar.update(1)
        built = []
        for sid, title in chosen:
            bar.set_postfix_str(title)
            built.append(report.run_section(sid, title))
            bar.update(1)
        bar.set_postfix_str("writing the page")
        page = _page(report, built, time.perf_counter() - started)
        path = os.path.join(out_dir, REPORT_FILE)
        try:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(page)
        except OSError as exc:
            raise ReportError(f"cannot write {path!r}: {exc}") from None
        bar.set_postfix_str("done")
    finally:
        bar.close()
    return path


__all__ = ["DEFAULT_SENTENCES", "ReportError", "SECTIONS", "build_report", "default_texts", "load_model_dir",
           "read_text_file"]
