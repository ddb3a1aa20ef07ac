"""Report sections about the heads: heatmaps, per-head statistics and notable heads, head
similarity and clustering."""

from __future__ import annotations

import csv
import math
import os

from ..atomic import atomic_path
from .markup import esc, fmt


def section_heatmaps(ctx) -> str:
    """The mean of heads of every layer, and every head of the layer whose heads differ most."""
    from ..plots import head_grid

    parts = [
        '<p class="ap-lead">Rows are the attending tokens (queries), columns the tokens attended to '
        "(keys); each row sums to 1. Padding is cropped.</p>"
    ]
    # figures are passed as functions: they are drawn where they render (see ReportContext.figure)
    parts.append(
        ctx.figure(
            "layers_mean",
            lambda: layers_figure(ctx.record, 0, ctx.stack),
            "Input 1: the mean of the heads in every layer (one colour scale).",
        )
    )
    if ctx.record.is_encoder_decoder:
        parts.extend(seq2seq_figures(ctx))
    layer = ctx.widest_layer()
    parts.append(
        ctx.figure(
            f"head_grid_L{layer}",
            lambda: head_grid(ctx.record, layer, item=0, stack=ctx.stack),
            f"Input 1: every head of layer {layer}, the layer whose heads differ most from one "
            "another (largest mean Jensen-Shannon distance between its heads).",
        )
    )
    return "".join(parts)


def seq2seq_figures(ctx) -> list[str]:
    """An encoder-decoder model's other two sides for input 1: the decoder's self-attention by layer
    and the cross-attention of the decoder over the source (the alignment)."""
    from ..plots import alignment

    parts = []
    kinds = {(layer.stack, layer.kind) for layer in ctx.record.layers}
    if ("decoder", "self") in kinds:
        parts.append(
            ctx.figure(
                "decoder_layers_mean",
                lambda: layers_figure(ctx.record, 0, "decoder"),
                "Input 1: the decoder's self-attention, the mean of the heads in every layer "
                "(rows: the decoder's tokens, the model's own output).",
            )
        )
    if any(kind == "cross" for _, kind in kinds):
        parts.append(
            ctx.figure(
                "cross_attention",
                lambda: alignment(ctx.record, "mean", "mean", item=0),
                "Input 1: cross-attention, each output token (row) over the source tokens, the "
                "mean of every layer and head; a red box marks each row's most attended source "
                "token.",
            )
        )
    return parts


# A head is notable only where it beats uniform attention on its own rows by a margin: for shares,
# at least NOTABLE_MARGIN more than uniform's share and at least NOTABLE_RATIO times it; for entropy
# (lower is sharper) and distance, NOTABLE_RATIO of uniform's.
NOTABLE_MARGIN = 0.1
NOTABLE_RATIO = 1.5


def notable_heads(ctx) -> list[tuple[str, str, str, int, float, float]]:
    """(role, statistic, layer label, head, value, uniform baseline): the most typical head of each
    behaviour, kept only when it beats what uniform attention over the same rows would score."""
    import torch

    hs, base = ctx.stats, ctx.baseline
    roles = [
        ("attends to the previous token", "previous", max),
        ("attends to the next token", "next", max),
        ("attends to [CLS]/[SEP]/punctuation", "special", max),
        ("attends to itself", "self", max),
        ("most focused (lowest entropy)", "entropy", min),
        ("longest reach (mean distance)", "distance", max),
    ]
    out = []
    for role, name, pick in roles:
        values = hs.get(name)
        flat = torch.nan_to_num(values, nan=-math.inf if pick is max else math.inf)
        index = int(flat.argmax() if pick is max else flat.argmin())
        li, hi = divmod(index, values.shape[1])
        value = float(values[li, hi])
        if math.isnan(value) or hi >= len(hs.heads[li]):
            continue
        uniform = float(base.get(name)[li, hi])
        if not beats_uniform(name, value, uniform):
            continue
        out.append((role, name, hs.labels[li], hs.heads[li][hi], value, uniform))
    return out


def beats_uniform(name: str, value: float, uniform: float) -> bool:
    """Whether ``value`` of statistic ``name`` is remarkable next to uniform attention's ``uniform``."""
    if math.isnan(uniform):
        return False
    if name == "entropy":
        return value * NOTABLE_RATIO <= uniform
    if name == "distance":
        return value >= NOTABLE_RATIO * uniform
    return value >= uniform + NOTABLE_MARGIN and value >= NOTABLE_RATIO * uniform


def section_statistics(ctx) -> str:
    """Per-head statistics (Clark et al. 2019) as plots and tables, the notable heads, and head_stats.csv."""
    from ..analysis.stats import STAT_TITLES
    from ..plots import head_stats_plot, heatmap

    hs = ctx.stats
    parts = [
        '<p class="ap-lead">Per-head statistics as in Clark et al. (2019), averaged over the real '
        "tokens of all inputs (padding excluded): entropy relative to uniform attention, mean distance "
        "in tokens, and the share of attention on special tokens, the previous and next token, and "
        "the token itself.</p>"
    ]
    for name, stats, caption in (
        ("head_stats", ("normalized_entropy", "distance", "self"), "How broad and how far each head attends"),
        ("head_shares", ("special", "previous", "next"), "Where each head's attention goes"),
    ):
        parts.append(
            f'<figure class="ap-fig ap-heats" data-table="{esc(name)}"><div class="ap-row">'
            f"{''.join(stat_table(hs, stat) for stat in stats)}</div><figcaption>{esc(caption)}, by layer (rows) "
            "and head (columns); hover a cell for its layer and head.</figcaption></figure>"
        )
        parts.append(
            ctx.figure(
                name,
                lambda stats=stats: head_stats_plot(hs, stats, style="matrix"),
                f"{caption} as a figure",
                screen=False,
            )
        )
    parts.append(
        ctx.figure(
            "head_stats_by_layer",
            lambda: head_stats_plot(hs, ("entropy", "distance"), style="scatter"),
            "Entropy and distance by layer: one dot per head, the layer mean as a line; the "
            "dashed line is the entropy of uniform attention.",
        )
    )
    notable = notable_heads(ctx)
    rows = []
    for role, name, label, head, value, uniform in notable:
        rows.append(
            f"<tr><td>{esc(role)}</td><td>{esc(label)} head {head}</td>"
            f"<td>{esc(STAT_TITLES.get(name, name))}</td><td>{fmt(value)}</td><td>{fmt(uniform)}</td></tr>"
        )
    parts.append(
        '<h3>Notable heads</h3><p class="ap-lead">The most typical head of each behaviour, shown only '
        "where it beats uniform attention over the same rows (for a share: at least "
        f"{NOTABLE_MARGIN:g} above and {NOTABLE_RATIO:g}x the uniform value; for entropy and distance: "
        f"{NOTABLE_RATIO:g}x); the uniform value is given beside each.</p>"
    )
    if rows:
        parts.append(
            '<table class="ap-table"><tr><th>behaviour</th><th>head</th><th>statistic</th><th>value</th>'
            f"<th>uniform attention</th></tr>{''.join(rows)}</table>"
        )
    else:
        parts.append('<p class="ap-note">No head beats uniform attention by that margin on these inputs.</p>')
    shown = {r[1]: r for r in notable}
    figs = []
    for name in ("previous", "next", "special"):
        if name not in shown:
            continue
        role, _, label, head, value, uniform = shown[name]
        layer = ctx.layer_of(label).index

        def fig(layer=layer, head=head, title=f"{label} head {head}: {role}"):
            return heatmap(ctx.record, layer, head, item=0, stack=ctx.stack, title=title)

        figs.append(
            ctx.figure(
                f"notable_{name}_{label.replace(' ', '_')}_H{head}",
                fig,
                f"Input 1, {label} head {head}: {role} ({fmt(value)}; uniform attention: {fmt(uniform)}).",
            )
        )
    parts.append(f'<div class="ap-row">{"".join(figs)}</div>')
    # per layer and per head tables, and the CSV
    csv_path = os.path.join(ctx.out_dir, "head_stats.csv")
    table_rows = hs.rows()
    if table_rows:
        with atomic_path(csv_path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(table_rows[0]))
            writer.writeheader()
            writer.writerows(table_rows)
        ctx.files.append(os.path.relpath(csv_path, ctx.out_dir))
    cols = ["entropy", "normalized_entropy", "distance", "special", "previous", "next", "self"]
    head = "".join(f"<th>{esc(STAT_TITLES.get(c, c))}</th>" for c in cols)
    per_layer = []
    for li, label in enumerate(hs.labels):
        cells = []
        for c in cols:
            row = hs.get(c)[li]
            row = row[~row.isnan()]
            cells.append(f"<td>{fmt(row.mean()) if row.numel() else '-'}</td>")
        per_layer.append(f"<tr><th>{esc(label)}</th>{''.join(cells)}</tr>")
    parts.append(
        f'<h3>Mean over heads, by layer</h3><table class="ap-table"><tr><th>layer</th>{head}</tr>'
        f"{''.join(per_layer)}</table>"
    )
    per_head = "".join(
        f"<tr><th>{esc(r['layer'])}</th><th>{r['head']}</th>" + "".join(f"<td>{fmt(r[c])}</td>" for c in cols) + "</tr>"
        for r in table_rows
    )
    parts.append(
        f"<details><summary>every head ({len(table_rows)} rows; also in "
        f'<a href="head_stats.csv">head_stats.csv</a>)</summary><table class="ap-table">'
        f"<tr><th>layer</th><th>head</th>{head}</tr>{per_head}</table></details>"
    )
    return "".join(parts)


def stat_table(hs, name: str) -> str:
    """One statistic of every head as a shaded layers x heads table, on the colour scale its figure
    uses (:func:`attn_plugins.plots.heads.stat_scale`); values are written when there are at most
    16 heads per layer (else each cell's tooltip carries it)."""
    from ..analysis.stats import STAT_TITLES
    from ..integrations.heat_table import heat_table
    from ..plots.heads import stat_scale, stat_text

    values = hs.get(name).numpy()
    width = values.shape[1]
    heads = hs.heads[0] if all(h == hs.heads[0] for h in hs.heads) and len(hs.heads[0]) == width else range(width)
    columns = [str(h) for h in heads]
    cmap, vmin, vmax = stat_scale(hs, name)
    return heat_table(
        values,
        hs.labels,
        columns,
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        title=STAT_TITLES.get(name, f"share to {name}"),
        fmt=stat_text,
        corner="layer \\ head",
        show_values=width <= 16,
        cell_title=lambda i, j: f"{hs.labels[i]} head {columns[j]}: {fmt(float(values[i, j]))}",
    )


def section_clustering(ctx) -> str:
    """Head-to-head Jensen-Shannon distances, clustered, and what each cluster of heads does."""
    from ..analysis.head_similarity import cluster
    from ..plots import layer_similarity_plot, similarity_plot

    d = ctx.distances
    parts = [
        '<p class="ap-lead">How alike the heads attend: the mean Jensen-Shannon distance between two '
        "heads' attention rows over the real tokens of all inputs (Clark et al. 2019), ordered by "
        "hierarchical clustering (average linkage). Small distances are light (yellow-green): light "
        "blocks on the diagonal are families of heads that attend the same way.</p>"
    ]
    parts.append(
        ctx.figure(
            "head_similarity",
            lambda: similarity_plot(d),
            "Head-distance matrix with its dendrogram (a large model has every few heads labelled; "
            "the tables below list every cluster's heads).",
        )
    )
    if len(ctx.self_layers) > 1:
        parts.append(
            ctx.figure(
                "layer_similarity",
                lambda: layer_similarity_plot(ctx.record, stack=ctx.stack),
                "Layer-to-layer similarity of the head-averaged attention (1 - mean Jensen-Shannon distance).",
            )
        )
    n = len(d.labels)
    if n >= 2:
        k = min(6, n)
        clusters = cluster(d, n_clusters=k)
        hs = ctx.stats
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
            rows.append(
                f"<tr><td>{c}</td><td>{len(members)}</td><td>{esc(describe(means))}</td>"
                f"<td>{fmt(means['normalized_entropy'], 2)}</td><td>{fmt(means['distance'], 2)}</td>"
                f'<td class="ap-heads">{esc(heads)}</td></tr>'
            )
        parts.append(
            f'<h3>{k} clusters</h3><table class="ap-table"><tr><th>cluster</th><th>heads</th>'
            "<th>what they do (mean shares)</th><th>entropy / uniform</th><th>distance</th>"
            f"<th>members</th></tr>{''.join(rows)}</table>"
        )
    return "".join(parts)


def describe(means: dict) -> str:
    """A few words for what a cluster of heads does, from its mean statistics."""
    shares = {
        "previous": "previous token",
        "next": "next token",
        "self": "itself",
        "special": "[CLS]/[SEP]/punctuation",
    }
    ranked = sorted(((v, k) for k, v in means.items() if k in shares and not math.isnan(v)), reverse=True)
    if ranked and ranked[0][0] >= 0.5:
        return f"mostly {shares[ranked[0][1]]} ({ranked[0][0]:.2f})"
    entropy = means.get("normalized_entropy", math.nan)
    if not math.isnan(entropy) and entropy >= 0.8:
        return f"broad, close to uniform; {', '.join(f'{shares[k]} {v:.2f}' for v, k in ranked[:2])}"
    return "mixed: " + ", ".join(f"{shares[k]} {v:.2f}" for v, k in ranked[:2])


def layers_figure(record, item: int, stack):
    """Small multiples: each layer's mean of heads for one input, on one colour scale."""
    from ..analysis.blocks import record_view, select_layers
    from ..analysis.tokens import readable_token
    from ..plots.canvas import colour_scale, label_bar, new_figure, style
    from ..plots.heatmaps import draw_matrix

    layers = select_layers(record, None, stack, "self")
    mats = []
    for layer in layers:
        v = record_view(record, layer).select_item(item)
        m = v.weights[0].mean(dim=0)
        qm, km = v.query_mask[0], v.key_mask[0]
        m = m[qm][:, km]
        qt = (
            [readable_token(t) for t, keep in zip(v.query_tokens[0], qm, strict=True) if keep]
            if v.query_tokens
            else None
        )
        kt = [readable_token(t) for t, keep in zip(v.key_tokens[0], km, strict=True) if keep] if v.key_tokens else None
        mats.append((v.label, m, qt, kt))
    n = len(mats)
    ncols = min(n, 6 if n <= 12 else 8)
    nrows = math.ceil(n / ncols)
    size = max(m.shape[0] for _, m, _, _ in mats)
    labelled = size <= 24
    cell = 1.7 if labelled else 1.3
    vmax, scale_label = colour_scale([m for _, m, _, _ in mats], "fixed", what="attention weight, mean of heads")
    with style():
        fig = new_figure(cell * ncols + 1.0, cell * nrows + 0.7)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        image = None
        for idx, ax in enumerate(axes.flat):
            if idx >= n:
                ax.set_axis_off()
                continue
            label, m, qt, kt = mats[idx]
            image = draw_matrix(
                ax,
                m,
                query_labels=qt if labelled and idx % ncols == 0 else None,
                key_labels=kt if labelled else None,
                vmax=vmax,
                annotate=False,
                xlabel="",
                ylabel="",
                max_labels=24,
            )
            ax.set_title(label, fontsize=7, pad=2)
            ax.tick_params(labelsize=4.5, length=1.2)
            if not labelled:
                ax.set_xticks([])
                ax.set_yticks([])
            elif idx % ncols != 0:
                ax.set_yticks([])
        bar = fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.02, pad=0.01, shrink=0.9)
        # on two lines when one would run past a short figure's top and bottom
        label_bar(bar, scale_label, fontsize=7)
        bar.outline.set_linewidth(0.5)
        fig.suptitle("mean attention of each layer" + (f" (input {item + 1})" if record.batch_size > 1 else ""))
    return fig
