"""The report section on captioning models: where each generated token looks in the image.

Built when the model is a ``VisionEncoderDecoderModel`` and the report is given an image
(``build_report(model, tokenizer, image=...)``): the report then captures a greedy ``generate()``
on the image instead of a forward pass over texts, and this section shows each generated token's
cross-attention over the image patches (small multiples, an animated GIF beside the page) and the
encoder's attention rollout with its patch grid labelled.
"""

from __future__ import annotations

import os

from .markup import SectionUnavailableError, esc

CAPTION_STEPS = 12
GIF_FILE = "caption_attention.gif"


def is_captioner(model) -> bool:
    """Whether ``model`` is a transformers ``VisionEncoderDecoderModel`` (by class name: no import)."""
    return any(cls.__name__ == "VisionEncoderDecoderModel" for cls in type(model).__mro__)


def pixel_values(image, model):
    """``pixel_values`` for the model: a tensor as given (``[3, H, W]`` or ``[1, 3, H, W]``), or a
    PIL image / array resized and normalised by the image processor saved beside the model."""
    import torch

    if isinstance(image, torch.Tensor):
        return image[None] if image.dim() == 3 else image
    from transformers import AutoImageProcessor

    source = getattr(model.config, "_name_or_path", None) or getattr(model, "name_or_path", None)
    if not source:
        raise SectionUnavailableError(
            "give the image as pixel_values (a tensor): the model has no saved image processor"
        )
    return AutoImageProcessor.from_pretrained(source)(images=image, return_tensors="pt")["pixel_values"]


def patch_grid_of(model, pixels) -> tuple[int, int] | None:
    """``(rows, cols)`` of the encoder's patch grid for these pixels (from its ``patch_size``), so a
    non-square grid is not mistaken for a square one; None when the config does not say."""
    patch = getattr(getattr(model.config, "encoder", None), "patch_size", None)
    if isinstance(patch, (tuple, list)):
        ph, pw = patch
    elif isinstance(patch, int):
        ph = pw = patch
    else:
        return None
    return int(pixels.shape[-2]) // ph, int(pixels.shape[-1]) // pw


def capture_caption(model, tokenizer, image, steps: int = CAPTION_STEPS):
    """``(record, caption tokens)``: a greedy ``generate()`` on the image, captured."""
    import torch

    from ..capturing import capture

    pixels = pixel_values(image, model)
    with torch.no_grad(), capture(model, tokenizer=tokenizer) as cap:
        out = model.generate(pixel_values=pixels, max_new_tokens=steps, do_sample=False, num_beams=1)
    ids = out[0, 1:].tolist()
    if tokenizer is not None:
        words = tokenizer.convert_ids_to_tokens(ids)
    else:
        words = [f"#{i}" for i in ids]
    return cap.record, pixels, words


def section_captioning(ctx) -> str:
    """Each generated token's cross-attention over the image, as small multiples and a GIF; the
    encoder's rollout with its patch grid labelled."""
    if ctx.image is None or not is_captioner(ctx.model):
        raise SectionUnavailableError(
            "Captioning: give a VisionEncoderDecoder model and an image (image=) to see "
            "where each generated token looks in the image."
        )
    from ..plots import caption_attention, caption_gif, vit_rollout
    from ..plots.vision import caption_maps

    record, pixels, words = ctx.caption
    grid = patch_grid_of(ctx.model, pixels)
    maps = caption_maps(record, grid=grid)
    steps = maps["maps"].shape[0]
    gif = os.path.join(ctx.out_dir, GIF_FILE)
    caption_gif(record, pixels, gif, tokens=words, grid=grid)
    ctx.files.append(GIF_FILE)
    prefix = ", ".join(maps["prefix_labels"]) or "none"
    parts = [
        f'<p class="ap-lead">Greedy caption of the image ({steps} tokens): <b>{esc(" ".join(words[:steps]))}'
        f"</b>. Each panel is one generated token: the image under that token's cross-attention over the "
        f"{maps['rows']}x{maps['cols']} patches (mean of the decoder's layers and heads; one colour scale "
        f"for all panels). Tokens before the grid ({esc(prefix)}) are not patches: their weight is written "
        f'under each panel. Animated: <a href="{esc(GIF_FILE)}">{esc(GIF_FILE)}</a>.</p>'
    ]
    parts.append(
        ctx.figure(
            "caption_attention",
            caption_attention(record, pixels, tokens=words, grid=grid),
            "Where each generated token looks in the image.",
        )
    )
    encoder = type(record)(
        layers=record.select("encoder", "self"), tokens=record.tokens, model_class=record.model_class
    )
    if encoder.layers:
        parts.append(
            ctx.figure(
                "vit_rollout",
                vit_rollout(encoder, pixels, grid=grid),
                "Attention rollout of the image encoder ([CLS] over the patch grid).",
            )
        )
    return "".join(parts)
