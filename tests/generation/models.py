"""Tiny generation models (built from configs, >= 2 layers per stack, float64) for the generation tests."""

from __future__ import annotations

import torch

SOURCE = [5, 6, 7, 8, 2]


def marian():
    import transformers as tf

    cfg = tf.MarianConfig(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                          decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, vocab_size=99,
                          max_position_embeddings=64, pad_token_id=98, eos_token_id=2, decoder_start_token_id=98,
                          scale_embedding=True)
    torch.manual_seed(0)
    return tf.MarianMTModel(cfg).eval().double()


def tiny(name: str):
    from fixtures.tiny_models import build

    if name == "marian":
        return marian()
    model, _ = build(name)
    return model.double()


def encoder_scale(model) -> float:
    """What the encoder multiplies word embeddings by on the input_ids path but not on inputs_embeds (Marian)."""
    if type(model).__name__.startswith("Marian"):
        return float(model.get_encoder().embed_scale)
    return 1.0
