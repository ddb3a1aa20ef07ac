"""The report section on generative models: attention over greedy generation steps."""

from __future__ import annotations

from .. import inputs
from .markup import SectionUnavailable, esc

GENERATION_STEPS = 8


def section_generation(ctx) -> str:
    """Greedy generation from input 1, captured, and the attention of each step (generative models only)."""
    import torch

    from ..capture import capture
    from ..plots import generation_plot

    model = ctx.model
    can = getattr(model, "can_generate", None)
    if not (callable(can) and can()):
        raise SectionUnavailable(f"{type(model).__name__} does not generate text, so there is no attention over "
                                 "generation steps to show (pass a causal or seq2seq language model).")
    enc = inputs.model_inputs(model, ctx.tokenizer, ctx.texts[0], ctx.max_tokens)
    pad = getattr(ctx.tokenizer, "pad_token_id", None)
    if pad is None:
        pad = getattr(ctx.tokenizer, "eos_token_id", None)
    with torch.no_grad(), capture(model, tokenizer=ctx.tokenizer) as cap:
        model.generate(**enc, max_new_tokens=GENERATION_STEPS, min_new_tokens=GENERATION_STEPS, do_sample=False,
                       num_beams=1, pad_token_id=pad)
    record = cap.record
    kind = "cross" if record.is_encoder_decoder else "self"
    from ..analysis.evolution import generation_evolution

    evo = generation_evolution(record, kind=kind)
    parts = [f'<p class="ap-lead">Greedy generation of {GENERATION_STEPS} tokens after input 1. Each panel is '
             "one step: the attention of the token being processed over the keys seen so far (last layer, "
             "mean of heads).</p>"]
    parts.append(ctx.figure("generation", generation_plot(evo), "Attention over generation steps."))
    parts.append(f"<pre>{esc(str(evo))}</pre>")
    return "".join(parts)
