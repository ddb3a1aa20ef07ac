"""Report sections about the model as a whole: model and inputs, BertViz's views, diagnostics."""

from __future__ import annotations

import logging
import sys

from .context import NEURON_MAX_TOKENS
from .markup import SectionUnavailableError, available, esc, fmt, has_exporter, version

log = logging.getLogger(__name__)


def section_summary(ctx) -> str:
    """The model (class, sizes, attention implementation, versions) and each input with its tokens."""
    import torch

    import attn_plugins

    model, record = ctx.model, ctx.record
    config = getattr(model, "config", None)
    params = sum(p.numel() for p in model.parameters())
    rows = [("model class", type(model).__name__), ("loaded from", ctx.source), ("parameters", f"{params:,}")]
    for label, attrs in (
        ("layers", ("num_hidden_layers", "n_layer", "num_layers")),
        ("attention heads", ("num_attention_heads", "n_head", "num_heads")),
        ("hidden size", ("hidden_size", "n_embd", "d_model")),
        ("vocabulary", ("vocab_size",)),
        ("maximum positions", ("max_position_embeddings", "n_positions")),
    ):
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
        rows.append(
            (
                key,
                f"{len(layers)} layers x {len(first.head_indices)} heads, query x key "
                f"{first.weights.shape[2]} x {first.weights.shape[3]}",
            )
        )
    rows.append(
        (
            "texts",
            f"{len(ctx.texts)} (batch of {record.batch_size}, padded to {record.layers[0].weights.shape[-1]} tokens)",
        )
    )
    rows.append(("capture time", f"{ctx.capture_seconds:.2f} s"))
    rows.append(
        (
            "versions",
            f"attn-plugins {attn_plugins.__version__}, torch {torch.__version__}, "
            f"transformers {version('transformers')}, Python {sys.version.split()[0]}",
        )
    )
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    inputs = []
    mask = record.attention_mask
    for i, text in enumerate(ctx.texts):
        toks = record.tokens[i] if record.tokens and i < len(record.tokens) else []
        if mask is not None and toks:
            toks = [t for t, m in zip(toks, mask[i].tolist(), strict=False) if m]
        spans = "".join(f'<span class="ap-tok">{esc(t)}</span>' for t in toks)
        inputs.append(
            f'<li><div class="ap-text">{esc(text)}</div>'
            f'<div class="ap-toks" title="{len(toks)} tokens">{spans}</div></li>'
        )
    return (
        f'<table class="ap-kv">{table}</table>'
        f'<h3>Inputs and their tokens</h3><ol class="ap-inputs">{"".join(inputs)}</ol>'
        f"<details><summary>record summary (<code>attn-plugins info record.safetensors</code>)</summary>"
        f"<pre>{esc(record.summary())}</pre></details>"
    )


HEAD_VIEWS_MAX = 8  # head views in one report page; past it a note says where the others are


def section_bertviz(ctx) -> str:
    """BertViz's head, model and neuron views, drawn offline (the neuron view only for short inputs)."""
    if not has_exporter("bertviz"):
        raise SectionUnavailableError(
            'BertViz views appear here once the "bertviz" exporter is available (pip install "attn-plugins[bertviz]").'
        )
    if not available("bertviz"):
        raise SectionUnavailableError('BertViz is not installed: pip install "attn-plugins[bertviz]".')
    from ..integrations import export

    record = ctx.record
    parts = [
        '<p class="ap-lead">BertViz\'s own views, drawn offline. <b>Head view</b>: pick a layer; each '
        "colour is a head, lines join a token (left) to the tokens it attends to (right); hover a token. "
        "<b>Model view</b>: every head of every layer at a glance; click a thumbnail to enlarge it. "
        "<b>Neuron view</b>: how one head's queries and keys produce its weights.</p>"
    ]
    notes = []
    shown = min(record.batch_size, HEAD_VIEWS_MAX)
    views = [("head", i) for i in range(shown)] + [("model", 0)]
    if record.batch_size > shown:
        notes.append(
            f"head views are shown for the first {shown} of {record.batch_size} inputs (each view adds its "
            f"own data to the page); every input is in record.safetensors: "
            "ap.export(ap.AttentionRecord.load('record.safetensors'), 'bertviz', item=N)"
        )
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
                options["layer"] = ctx.self_layers[0].index
            result = export(record, "bertviz", view=view, **options)
            block = (
                f'<div class="ap-view" data-view="{esc(view)}" data-item="{item}">'
                f"<h3>{esc(title)}</h3>{result._repr_html_()}</div>"
            )
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
        parts.append('<p class="ap-note">' + "<br>".join(esc(n) for n in notes) + "</p>")
    return "".join(parts)


def section_diagnostics(ctx) -> str:
    """Heads with NaN weights, rows not summing to 1, padding leaks, near-uniform or collapsed attention."""
    from ..analysis.diagnostics import diagnose

    findings = diagnose(ctx.record)
    lead = (
        '<p class="ap-lead">Every head is checked for NaN or infinite weights, rows that do not sum to 1, '
        "attention leaking onto padding, near-uniform heads (entropy at least 98% of uniform) and heads "
        "collapsed onto one token (90% of the attention on a single key).</p>"
    )
    if not findings:
        return lead + '<p class="ap-ok-note">No attention problems found.</p>'
    counts = {}
    for f in findings:
        counts[f.problem] = counts.get(f.problem, 0) + 1
    summary = ", ".join(f"{n} {p}" for p, n in counts.items())
    rows = []
    for problem in counts:  # one line per problem, listing its heads, not one sentence per head
        group = [f for f in findings if f.problem == problem]
        heads = ", ".join(f"{f.layer} head {f.head}" for f in group)
        low, high = min(f.value for f in group), max(f.value for f in group)
        values = fmt(low) if low == high else f"{fmt(low)} to {fmt(high)}"
        example = (
            group[0].reason if len(group) == 1 else f"e.g. {group[0].layer} head {group[0].head}: {group[0].reason}"
        )
        rows.append(
            f'<tr><td>{esc(problem)}</td><td>{len(group)}</td><td class="ap-heads">{esc(heads)}</td>'
            f"<td>{values}</td><td>{esc(example)}</td></tr>"
        )
    return (
        lead + f'<p class="ap-warn-note">{len(findings)} finding(s): {esc(summary)}.</p>'
        '<table class="ap-table"><tr><th>problem</th><th>heads</th><th>which</th><th>value</th>'
        f"<th>why</th></tr>{''.join(rows)}</table>"
    )
