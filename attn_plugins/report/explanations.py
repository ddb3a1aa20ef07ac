"""Report sections on saliency: what the output rests on by every method installed, Captum's
own view, and how much the methods agree."""

from __future__ import annotations

import logging

from .. import inputs
from .markup import SectionUnavailableError, available, esc, has_exporter

log = logging.getLogger(__name__)

SALIENCY_INSTANCES = 2  # instances explained by every saliency method (they cost a backward pass each)


def saliency_table(ctx) -> tuple[dict, str]:
    """``({method: results}, description)``, computed once for the saliency and comparison sections."""
    if "saliency" not in ctx.shared:
        with inputs.borrowed_pad_token(ctx.tokenizer):
            ctx.shared["saliency"] = _compute(ctx)
    return ctx.shared["saliency"]


def _compute(ctx) -> tuple[dict, str]:
    if not (available("attn_plugins.saliency") and has_exporter("saliency")):
        raise SectionUnavailableError("Saliency appears here once attn-plugins' saliency part is installed.")
    from ..saliency import Explainer, SimilarityExplainer, attention_saliency, method_names
    from ..saliency.problem import detect_task

    names = method_names()
    captum = available("captum")
    wanted = ["attention", "rollout", "grad_attention"] + (["saliency", "integrated_gradients"] if captum else [])
    methods = [m for m in wanted if m in names]
    options = {"integrated_gradients": {"n_steps": 16}}
    texts = ctx.texts[:SALIENCY_INSTANCES]
    task = detect_task(ctx.model)
    if task != "custom":
        try:
            ex = Explainer(ctx.model, ctx.tokenizer)
            table = {m: ex.explain(texts, m, progress=False, **options.get(m, {})) for m in methods}
            label = table[methods[0]][0].prediction_label if table else None
            what = (
                f"the model's prediction ({esc(task)}; for input 1: <b>{esc(label)}</b>)"
                if label is not None
                else f"the model's prediction ({esc(task)})"
            )
            return table, what
        except Exception as exc:  # noqa: BLE001 - e.g. a masked LM and a text without [MASK]: next way
            log.info("report: the %s explainer is not usable here (%s: %s)", task, type(exc).__name__, exc)
    if len(ctx.texts) >= 2 and not ctx.record.is_encoder_decoder:
        pairs = [(ctx.texts[i], ctx.texts[i + 1]) for i in range(0, min(len(ctx.texts) - 1, 2 * SALIENCY_INSTANCES), 2)]
        try:
            ex = SimilarityExplainer(ctx.model, ctx.tokenizer)
            # every method on the same encoded pairs (one record per side for the attention methods)
            table = ex.explain_methods(pairs, methods, progress=False, options=options)
            sims = [f"{side_a.info['similarity']:.3f}" for side_a, _ in table[methods[0]]]
            what = (
                "the cosine similarity of the mean-pooled sentence embeddings of each pair of inputs "
                f"(inputs 1 and 2{', 3 and 4' if len(pairs) > 1 else ''}; cosine {', '.join(sims)}): "
                "each side's tokens are scored with the other side held fixed"
            )
            return table, what
        except Exception as exc:  # noqa: BLE001 - fall back to the record alone
            log.info("report: the similarity explainer is not usable here (%s: %s)", type(exc).__name__, exc)
    record_methods = [m for m in ("attention", "rollout", "flow") if m in names]
    table = {m: attention_saliency(ctx.record, m, query=0) for m in record_methods}
    return table, "the attention that flows to the first token, read from the record alone"


def section_saliency(ctx) -> str:
    """Every installed saliency method side by side, and integrated gradients in Captum's own view."""
    from ..integrations import export

    table, what = saliency_table(ctx)
    parts = [
        f'<p class="ap-lead">Which input tokens the output rests on, explaining {what}. Attention-based '
        "methods (raw attention, rollout, attention x gradient) beside gradient methods from Captum "
        "(saliency, integrated gradients). Shade: share of the method's total absolute score; outlined: "
        "top 3; hover a token for its values.</p>"
    ]
    parts.append(f'<div class="ap-view" data-view="saliency">{export(table, "saliency")._repr_html_()}</div>')
    ig = table.get("integrated_gradients")
    if ig and has_exporter("captum") and available("captum"):
        try:
            captum_view = export(ig, "captum")
            parts.append(
                '<h3>Integrated gradients in Captum\'s own view</h3><div class="ap-view" '
                f'data-view="captum">{captum_view._repr_html_()}</div>'
            )
        except Exception as exc:  # noqa: BLE001
            log.warning("report: Captum view failed: %s: %s", type(exc).__name__, exc)
            parts.append(f'<p class="ap-note">Captum view not shown: {esc(type(exc).__name__)}: {esc(exc)}</p>')
    elif not available("captum"):
        parts.append(
            '<p class="ap-note">Gradient methods and Captum\'s view need Captum: '
            'pip install "attn-plugins[captum]".</p>'
        )
    return "".join(parts)


def section_comparison(ctx) -> str:
    """How far the saliency methods agree (rank correlations, top-k overlap, divergence)."""
    if not has_exporter("comparison") or not available("attn_plugins.integrations.comparison"):
        raise SectionUnavailableError("The comparison of saliency methods appears here once its exporter is installed.")
    from ..integrations import export

    table, what = saliency_table(ctx)
    if len(table) < 2:
        raise SectionUnavailableError("Only one saliency method is available, so there is nothing to compare.")
    # the averaged metrics as a shaded table (the page's own plot of the same numbers costs seconds)
    page = export(table, "comparison", title="Do the methods agree?", plot=None)
    lead = (
        '<p class="ap-lead">Agreement of every pair of methods on the same inputs (Kendall tau, Spearman '
        'rho, top-3 overlap, Jensen-Shannon divergence), the analysis of "Attention is not Explanation" '
        f"(Jain and Wallace 2019), explaining {what}. The averaged table is shaded on each metric's "
        "scale: blue is agreement, red disagreement (rank correlations run from -1 to 1).</p>"
    )
    return lead + f'<div class="ap-view" data-view="comparison">{page._repr_html_()}</div>'
