"""A captioning model's cross-attention over image patches (tiny VisionEncoderDecoder models built
from configs: a ViT or a DINOv2-with-registers encoder, a GPT-2 decoder), checked against the
weights transformers itself returns with ``output_attentions=True``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attn_plugins as ap
from attn_plugins import plots
from attn_plugins.plots.vision import caption_maps

transformers = pytest.importorskip("transformers")
pytest.importorskip("matplotlib")

STEPS = 4


def captioner(encoder: str):
    from transformers import (
        Dinov2WithRegistersConfig,
        Dinov2WithRegistersModel,
        GPT2Config,
        GPT2LMHeadModel,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTModel,
    )

    torch.manual_seed(0)
    if encoder == "vit":  # a 32x48 image in 8x8 patches: a 4x6 grid after [CLS]
        enc = ViTModel(
            ViTConfig(
                image_size=(32, 48),
                patch_size=8,
                num_hidden_layers=2,
                hidden_size=32,
                num_attention_heads=2,
                intermediate_size=37,
                attn_implementation="eager",
            ),
            add_pooling_layer=False,
        )
        size = (32, 48)
    else:  # [CLS] + 4 registers + a 4x4 grid
        enc = Dinov2WithRegistersModel(
            Dinov2WithRegistersConfig(
                image_size=32,
                patch_size=8,
                num_hidden_layers=2,
                hidden_size=32,
                num_attention_heads=2,
                intermediate_size=37,
                num_register_tokens=4,
                attn_implementation="eager",
            )
        )
        size = (32, 32)
    dec = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=50,
            n_positions=32,
            n_embd=32,
            n_layer=2,
            n_head=2,
            add_cross_attention=True,
            bos_token_id=1,
            eos_token_id=2,
            attn_implementation="eager",
        )
    )
    model = VisionEncoderDecoderModel(encoder=enc, decoder=dec).eval()
    model.config.decoder_start_token_id, model.config.pad_token_id, model.config.eos_token_id = 1, 0, 49
    pixels = torch.rand(1, 3, *size)
    return model, pixels


def generate(model, pixels):
    with torch.no_grad(), ap.capture(model) as cap:
        out = model.generate(pixel_values=pixels, max_new_tokens=STEPS, do_sample=False)
    with torch.no_grad():
        ref = model.generate(
            pixel_values=pixels,
            max_new_tokens=STEPS,
            do_sample=False,
            output_attentions=True,
            return_dict_in_generate=True,
        )
    assert torch.equal(out, ref.sequences)
    return cap.record, ref


@pytest.mark.parametrize(
    "encoder, prefix, grid",
    [("vit", ["[CLS]"], (4, 6)), ("registers", ["[CLS]", "[REG1]", "[REG2]", "[REG3]", "[REG4]"], None)],
)
def test_caption_maps_are_the_models_cross_attention(encoder, prefix, grid):
    model, pixels = captioner(encoder)
    record, ref = generate(model, pixels)
    maps = caption_maps(record, layer=1, head=0, grid=grid)
    rows, cols = grid or (4, 4)
    assert maps["prefix_labels"] == prefix and (maps["rows"], maps["cols"]) == (rows, cols)
    assert maps["maps"].shape == (STEPS, rows, cols)
    for t in range(STEPS):  # step t's cross-attention (layer 1, head 0) of the newest decoder position
        eager = ref.cross_attentions[t][1][0, 0, -1]
        assert torch.allclose(maps["prefix"][t], eager[: len(prefix)], atol=1e-5)
        # patch (r, c) is key prefix + r * cols + c: the grid is laid row by row
        assert torch.allclose(maps["maps"][t], eager[len(prefix) :].reshape(rows, cols), atol=1e-5)
    mean = caption_maps(record, grid=grid)  # mean of layers and heads: still a distribution per step
    assert torch.allclose(mean["maps"].sum(dim=(1, 2)) + mean["prefix"].sum(dim=1), torch.ones(STEPS), atol=1e-5)
    with pytest.raises(ValueError, match="cross-attention layer 7 was not captured"):
        caption_maps(record, layer=7, grid=grid)


def test_caption_plot_gif_and_labelled_rollout(tmp_path):
    from PIL import Image

    model, pixels = captioner("registers")
    record, ref = generate(model, pixels)
    words = [f"w{int(i)}" for i in ref.sequences[0, 1:]]
    fig = plots.caption_attention(record, pixels, tokens=words, path=tmp_path / "caption.png")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == [f"{t + 1}. {w}" for t, w in enumerate(words)]
    assert all("[CLS]" in ax.get_xlabel() and "[REG4]" in ax.get_xlabel() for ax in panels)
    assert any("scale 0 to" in ax.get_ylabel() for ax in fig.axes)  # the colour bar states its range
    image = Image.open(tmp_path / "caption.png")
    assert image.size[0] > 300 and np.asarray(image.convert("L")).std() > 5
    plots.caption_gif(record, pixels, tmp_path / "caption.gif", tokens=words)
    gif = Image.open(tmp_path / "caption.gif")
    assert gif.n_frames == STEPS
    with pytest.raises(ValueError, match="holds no cross-attention"):
        caption_maps(
            ap.AttentionRecord(
                layers=[layer for layer in record.layers if layer.kind != "cross"],
                tokens=record.tokens,
                model_class=record.model_class,
            )
        )
    # ViT rollout over the same encoder: the patch grid numbered, the registers named
    encoder_record = ap.AttentionRecord(
        layers=[layer for layer in record.layers if layer.stack == "encoder"],
        tokens=record.tokens,
        model_class=record.model_class,
    )
    fig = plots.vit_rollout(encoder_record, pixels)
    ax = fig.axes[1]
    assert "4x4 grid" in ax.get_xlabel() and "[REG1]" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "3"]


def test_report_captioning_section(tmp_path, minilm_tokenizer):
    """The report of a VisionEncoderDecoder given an image: a greedy caption captured, the small
    multiples inline, the GIF beside the page; other models say how to get the section."""
    import re

    from PIL import Image

    from attn_plugins.report import build_report

    model, pixels = captioner("vit")
    path = build_report(
        model, minilm_tokenizer, image=pixels, out_dir=tmp_path / "cap", sections=["captioning"], progress=False
    )
    html = open(path, encoding="utf-8").read()
    section = re.search(r'<section id="captioning".*?</section>', html, re.S).group(0)
    assert 'data-status="ok"' in section, section[:3000]
    assert 'data-plot="caption_attention"' in section and 'data-plot="vit_rollout"' in section
    assert "4x6 patches" in section and "[CLS]" in section
    gif = Image.open(tmp_path / "cap" / "caption_attention.gif")
    assert gif.n_frames >= 2
