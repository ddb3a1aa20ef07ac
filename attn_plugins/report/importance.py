"""Report section on head importance (Michel et al. 2019) for sequence classifiers, beside what
each head attends to: do the sharp heads, the [CLS]/[SEP] heads, the previous-token heads matter?"""

from __future__ import annotations

import numpy as np

from .markup import SectionUnavailableError, esc, fmt

TOP = 8  # heads listed in the table


def section_head_importance(ctx) -> str:
    """Importance of every head on the report's inputs (loss against the model's own prediction),
    scattered against its statistics, and the head clustering with an importance strip."""
    from ..saliency.problem import detect_task

    task = detect_task(ctx.model)
    if task != "sequence-classification":
        raise SectionUnavailableError(
            "Head importance is shown for sequence classifiers (the gradient of the loss "
            f"against the model's own prediction); this model is a {esc(task)} model."
        )
    from ..errors import InputError
    from ..heads import head_importance, importance_rows, importance_stats_plot
    from ..plots import similarity_plot

    batch = dict(ctx.tokenizer(list(ctx.texts), return_tensors="pt", padding=True))
    # the blocks the report captured (all, or those of --layers), matched to the model's attention
    # blocks by module path; --heads keeps the captured heads' rows (each block is scored over all
    # its heads, so a head's importance is the same with or without the selection)
    layers = [layer.name for layer in ctx.self_layers]
    try:
        importance = head_importance(ctx.model, [batch], loss="predicted", layers=layers)
        rows = importance_rows(importance, ctx.stats)
    except InputError as exc:
        raise SectionUnavailableError(
            f"Head importance could not be matched to the captured layers ({esc(', '.join(layers))}): {esc(exc)}"
        ) from None
    flat = np.asarray([r["importance"] for r in rows])
    selection = ""
    if ctx.layers_wanted is not None or ctx.heads_wanted is not None:
        selection = (
            f" The report captured {len(rows)} heads (its layer/head selection): they are shown, each "
            "scored and normalised among all the heads of its layer as without the selection."
        )
    parts = [
        '<p class="ap-lead">How much each head matters to the prediction: Michel et al.\'s (2019) importance, '
        "the mean |dL/dgate| of a gate on each head's output (one backward pass under the model's own kernel, "
        f"loss against its own prediction on the {len(ctx.texts)} inputs, normalised per layer), beside "
        f"what the head attends to.{selection}</p>",
        ctx.figure(
            "head_importance_stats",
            lambda: importance_stats_plot(importance, ctx.stats),
            "Each head's importance against its entropy (relative to uniform), its share of attention "
            "on [CLS]/[SEP] and on the previous token; Spearman's rho over heads in each title.",
        ),
        ctx.figure(
            "head_similarity_importance",
            lambda: similarity_plot(ctx.record, stack=ctx.stack, importance=flat),
            "The head clustering with each head's importance as a strip under the dendrogram.",
        ),
    ]
    top = sorted(rows, key=lambda r: -r["importance"])[:TOP]
    head = (
        "<tr><th>layer</th><th>head</th><th>importance</th><th>entropy / uniform</th><th>[CLS]/[SEP]</th>"
        "<th>previous</th></tr>"
    )
    body = "".join(
        f"<tr><td>{esc(r['layer'])}</td><td>{r['head']}</td><td>{fmt(r['importance'])}</td>"
        f"<td>{fmt(r['normalized_entropy'])}</td><td>{fmt(r['special'])}</td>"
        f"<td>{fmt(r['previous'])}</td></tr>"
        for r in top
    )
    parts.append(
        f'<h3>The {len(top)} most important heads</h3><table class="ap-table ap-importance">{head}{body}</table>'
    )
    return "".join(parts)
