"""The report of an encoder-decoder model given only texts: the decoder is started with the model's
own start token and reads back the model's greedy output, and the page shows the encoder, the
decoder and the cross-attention (checked against the model's eager attention)."""

from __future__ import annotations

import copy
import re

import pytest
import torch

from attn_plugins.record import AttentionRecord
from attn_plugins.report import build_report

pytest.importorskip("matplotlib")

TEXTS = ["the cat sat on the mat", "a dog runs"]


def _marian(tokenizer):
    from transformers import MarianConfig, MarianMTModel

    # Marian starts its decoder with the padding token
    config = MarianConfig(
        vocab_size=tokenizer.vocab_size,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        forced_eos_token_id=None,
    )
    return MarianMTModel(config)


def _bart(tokenizer):
    from transformers import BartConfig, BartForConditionalGeneration

    # BART starts its decoder with the end token
    config = BartConfig(
        vocab_size=tokenizer.vocab_size,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.sep_token_id,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
    )
    return BartForConditionalGeneration(config)


@pytest.mark.parametrize("make", [_marian, _bart], ids=["marian", "bart"])
def test_encoder_decoder_report_from_texts_alone(tmp_path, minilm_tokenizer, make):
    torch.manual_seed(0)
    model = make(minilm_tokenizer).eval()
    path = build_report(
        model, minilm_tokenizer, TEXTS, out_dir=tmp_path, progress=False, sections=["summary", "bertviz", "heatmaps"]
    )
    html = open(path, encoding="utf-8").read()
    sections = dict(re.findall(r'<section id="(\w+)" class="[^"]*" data-status="(\w+)"', html))
    assert sections == {"summary": "ok", "bertviz": "ok", "heatmaps": "ok"}, html[-3000:]
    for plot in ("layers_mean", "decoder_layers_mean", "cross_attention"):
        assert f'data-plot="{plot}"' in html
    # the caption describes the marks the alignment figure draws: one red box per output row
    from matplotlib.patches import Rectangle

    from attn_plugins.plots import alignment

    assert "a red box marks each row" in html
    record = AttentionRecord.load(tmp_path / "record.safetensors")
    fig = alignment(record, "mean", "mean", item=0)
    boxes = [p for p in fig.axes[0].patches if isinstance(p, Rectangle) and p.get_edgecolor()[0] > 0.7]
    assert len(boxes) == int(record.inputs["decoder_attention_mask"][0].sum())
    record = AttentionRecord.load(tmp_path / "record.safetensors")
    assert {(layer.stack, layer.kind) for layer in record.layers} == {
        ("encoder", "self"),
        ("decoder", "self"),
        ("decoder", "cross"),
    }
    ids = record.inputs["decoder_input_ids"]
    start = model.config.decoder_start_token_id
    assert ids.shape[0] == len(TEXTS) and ids.shape[1] > 1 and (ids[:, 0] == start).all()
    # the decoder read the model's own greedy output
    enc = minilm_tokenizer(TEXTS, return_tensors="pt", padding=True, return_token_type_ids=False)
    reference_model = copy.deepcopy(model)
    reference_model.set_attn_implementation("eager")
    with torch.no_grad():
        greedy = model.generate(**enc, max_new_tokens=ids.shape[1] - 1, do_sample=False, num_beams=1)
        eager = reference_model(
            **enc,
            decoder_input_ids=ids,
            decoder_attention_mask=record.inputs["decoder_attention_mask"],
            output_attentions=True,
        )
    assert torch.equal(greedy[:, : ids.shape[1]], ids)
    cross = sorted((layer for layer in record.layers if layer.kind == "cross"), key=lambda lay: lay.index)
    for layer, reference in zip(cross, eager.cross_attentions, strict=True):
        torch.testing.assert_close(layer.weights.float(), reference, atol=1e-5, rtol=1e-4)
    # the BertViz views hold all three sides
    view = html[html.index('<section id="bertviz"') : html.index('<section id="heatmaps"')]
    for side in ("encoder", "decoder", "cross"):
        assert side in view.lower()
