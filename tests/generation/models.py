"""Tiny generation models (built from configs, >= 2 layers per stack, float64) for the generation tests."""

from __future__ import annotations

import torch

SOURCE = [5, 6, 7, 8, 2]


def marian():
    import transformers as tf

    cfg = tf.MarianConfig(
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        vocab_size=99,
        max_position_embeddings=64,
        pad_token_id=98,
        eos_token_id=2,
        decoder_start_token_id=98,
        scale_embedding=True,
    )
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


def whisper():
    """Tiny Whisper: 8 mel bins, 12 input frames -> 6 encoder positions (windows of 2 frames)."""
    import transformers as tf

    cfg = tf.WhisperConfig(
        vocab_size=99,
        num_mel_bins=8,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        d_model=16,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_source_positions=6,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        suppress_tokens=None,
        begin_suppress_tokens=None,
        init_std=0.3,
    )
    torch.manual_seed(0)
    model = tf.WhisperForConditionalGeneration(cfg).eval().double()
    features = torch.randn(1, 8, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return model, features


def captioner(decoder: str = "gpt2"):
    """Tiny VisionEncoderDecoder: a ViT (16x16 image, 4x4 patches -> [CLS] + 16 positions) and a GPT-2
    or BERT decoder with cross-attention, two layers each."""
    import transformers as tf

    vit = tf.ViTConfig(
        image_size=16,
        patch_size=4,
        num_channels=3,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        initializer_range=0.3,
    )
    if decoder == "gpt2":
        dec = tf.GPT2Config(
            vocab_size=99,
            n_positions=32,
            n_embd=16,
            n_layer=2,
            n_head=2,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
            add_cross_attention=True,
            is_decoder=True,
            initializer_range=0.3,
        )
    else:
        dec = tf.BertConfig(
            vocab_size=99,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=32,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            add_cross_attention=True,
            is_decoder=True,
            initializer_range=0.3,
        )
    cfg = tf.VisionEncoderDecoderConfig.from_encoder_decoder_configs(vit, dec)
    cfg.decoder_start_token_id, cfg.pad_token_id, cfg.eos_token_id = 1, 0, 2
    torch.manual_seed(0)
    model = tf.VisionEncoderDecoderModel(cfg).eval().double()
    model.generation_config.decoder_start_token_id = 1
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = 0, 2
    pixels = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return model, pixels
