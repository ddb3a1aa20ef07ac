"""Report section on faithfulness: for a sequence classifier, does removing what each saliency
method calls important change the prediction? (DeYoung et al. 2020; Jain and Wallace 2019)."""

from __future__ import annotations

from .. import inputs
from .explanations import saliency_table
from .markup import SectionUnavailableError, available, esc


def section_faithfulness(ctx) -> str:
    """The faithfulness table and the deletion/insertion curves of the saliency section's methods,
    on the same few inputs (their explanations are reused: only the perturbed forwards are new)."""
    from ..saliency.problem import detect_task

    task = detect_task(ctx.model)
    if task != "sequence-classification":
        raise SectionUnavailableError(
            "Faithfulness is measured for sequence classifiers (removing tokens and watching "
            f"the predicted class's probability); this model is a {esc(task)} model."
        )
    if not available("attn_plugins.faithfulness"):
        raise SectionUnavailableError("Faithfulness appears here once attn-plugins' faithfulness part is installed.")
    from ..faithfulness import curves_plot, evaluate
    from ..faithfulness.html import faithfulness_table_html

    table, what = saliency_table(ctx)
    with inputs.borrowed_pad_token(ctx.tokenizer):
        result = evaluate(ctx.model, ctx.tokenizer, saliencies=table, n_boot=200)
    parts = [
        '<p class="ap-lead">Does removing what a method calls important change the prediction? '
        "Comprehensiveness (probability drop when its top tokens are deleted, AOPC over 1-50%), sufficiency "
        "(drop when only they are kept), the areas under the deletion and insertion curves, and the Kendall "
        f"tau of the scores with each token's leave-one-out drop, explaining {what}. With only "
        f"{len(next(iter(table.values())))} inputs the intervals are wide: use "
        "<code>attn-plugins faithfulness</code> over a corpus for conclusions.</p>",
        f'<div class="ap-view" data-view="faithfulness">{faithfulness_table_html(result)}</div>',
        ctx.figure(
            "faithfulness_curves",
            curves_plot(result),
            "Mean deletion (lower is more faithful) and insertion (higher) curves of each method.",
        ),
    ]
    return "".join(parts)
