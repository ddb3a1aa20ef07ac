"""The report section on generative models: attention over the steps of the model's own decoding."""

from __future__ import annotations

from .. import inputs
from .markup import SectionUnavailableError, esc

GENERATION_STEPS = 8


def decoding_text(decoding: dict) -> str:
    """One phrase naming the decoding a record came from (``record.metadata["decoding"]``)."""
    strategy = decoding.get("strategy", "greedy")
    if strategy in ("beam_search", "beam_sampling"):
        what = "beam search" if strategy == "beam_search" else "beam sampling"
        return (
            f"{what} with {decoding['num_beams']} beams ({decoding['num_return_sequences']} returned, "
            f"length penalty {decoding['length_penalty']:g}, early stopping {decoding['early_stopping']}); "
            "shown: the best returned sequence"
        )
    if strategy == "sampling":
        knobs = ", ".join(f"{k} {decoding[k]}" for k in ("temperature", "top_k", "top_p") if k in decoding)
        return f"sampling ({knobs})" if knobs else "sampling"
    return "greedy decoding"


def section_generation(ctx) -> str:
    """Generation from input 1 as the model's ``generation_config`` decodes (greedy, sampling or beam
    search: the report shows what ``generate()`` does for this model), captured, and the attention
    of each step (generative models only)."""
    import torch

    from ..capturing import capture
    from ..plots import generation_plot

    model = ctx.model
    can = getattr(model, "can_generate", None)
    if not (callable(can) and can()):
        raise SectionUnavailableError(
            f"{type(model).__name__} does not generate text, so there is no attention over "
            "generation steps to show (pass a causal or seq2seq language model)."
        )
    enc = inputs.model_inputs(model, ctx.tokenizer, ctx.texts[0], ctx.max_tokens)
    pad = getattr(ctx.tokenizer, "pad_token_id", None)
    if pad is None:
        pad = getattr(ctx.tokenizer, "eos_token_id", None)
    with torch.no_grad(), capture(model, tokenizer=ctx.tokenizer) as cap:
        model.generate(**enc, max_new_tokens=GENERATION_STEPS, min_new_tokens=GENERATION_STEPS, pad_token_id=pad)
    record = cap.record
    kind = "cross" if record.is_encoder_decoder else "self"
    from ..analysis.evolution import generation_evolution

    evo = generation_evolution(record, kind=kind)
    decoding = decoding_text(record.metadata.get("decoding", {}))
    parts = [
        f'<p class="ap-lead" data-decoding="{esc(record.metadata.get("decoding", {}).get("strategy", ""))}">'
        f"Generation of {GENERATION_STEPS} tokens after input 1, decoded as the model's "
        f"generation config says: {esc(decoding)}. Each panel is one of the {evo.steps} steps: the attention "
        "of the token being processed over the keys seen so far (last layer, mean of heads).</p>"
    ]
    parts.append(ctx.figure("generation", generation_plot(evo), "Attention over generation steps."))
    parts.append(f"<pre>{esc(str(evo))}</pre>")
    return "".join(parts)


ATTRIBUTION_STEPS = 6  # generated tokens attributed (every gradient method costs one batched backward per step set)


def section_generation_attribution(ctx) -> str:
    """What each generated token rests on: :func:`~attn_plugins.generation.explain_generation` on input 1
    (or the report's image), an alignment heatmap per method (target rows, source columns), the page where
    each generated token is clickable, and the agreement of the methods per step and averaged."""
    from ..generation import explain_generation
    from ..generation.views import export_generation, heatmap
    from ..integrations import export
    from .markup import available
    from .vision import is_captioner

    model = ctx.model
    can = getattr(model, "can_generate", None)
    if not (callable(can) and can()):
        raise SectionUnavailableError(
            f"{type(model).__name__} does not generate text, so there are no generated "
            "tokens to attribute (pass a causal or seq2seq language model)."
        )
    if is_captioner(model):
        if ctx.caption is None:
            raise SectionUnavailableError("Captioning models are attributed over an image: give one (image=).")
        source, what = ctx.caption[1], "the image (attribution summed per patch)"
    else:
        source, what = ctx.texts[0], "input 1"
    methods: list = ["attention", "rollout"]
    if available("captum"):
        methods += ["input_x_gradient", ("integrated_gradients", {"n_steps": 16}), "feature_ablation"]
    pad = getattr(ctx.tokenizer, "pad_token_id", None)
    if pad is None:
        pad = getattr(ctx.tokenizer, "eos_token_id", None)
    steps = {"max_new_tokens": ATTRIBUTION_STEPS, "min_new_tokens": ATTRIBUTION_STEPS, "do_sample": False}
    if pad is not None:
        steps["pad_token_id"] = pad
    result = explain_generation(model, ctx.tokenizer, source, methods=methods, generate_kwargs=steps, progress=False)
    parts = [
        f'<p class="ap-lead">The model generated {len(result)} tokens from {esc(what)} (greedy); for each '
        "generated token (rows), the share of each source token (columns) in its attribution, by attention "
        "(last layer, mean of heads; rollout) and, with Captum, by gradients and occlusion. Boxed: the source "
        "token each method aligns the generated token with (its largest share).</p>"
    ]
    for i, method in enumerate(result.methods):
        parts.append(
            ctx.figure(
                f"generation_attribution_{i}",
                heatmap(result, method),
                f"Alignment by {method}: generated tokens (rows) over source tokens (columns).",
            )
        )
    page = export_generation(result, element_id="ap-generation-attribution")
    parts.append(
        '<h3>Click a generated token</h3><div class="ap-view" data-view="generation-attribution">'
        f"{page._repr_html_()}</div>"
    )
    if len(result.methods) >= 2:
        comparison = export(result, "comparison", title="Do the methods agree on each generated token?", plot=None)
        parts.append(f'<div class="ap-view" data-view="generation-comparison">{comparison._repr_html_()}</div>')
    return "".join(parts)
