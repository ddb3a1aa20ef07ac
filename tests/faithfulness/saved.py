"""A tiny BERT sequence classifier saved with the MiniLM tokenizer, and a JSONL file of texts with a
rationale of words ("words"): what the command line and the corpus engines load by path."""

import json

import torch


def words(text):
    """The rationale of a text: its first two words."""
    return text.replace(",", "").split()[:2]


def save_classifier(root, tokenizer, texts):
    """``root/model`` (a save_pretrained() directory) and ``root/texts.jsonl``; returns ``root``."""
    import transformers as tf

    config = tf.BertConfig(
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=37,
        vocab_size=tokenizer.vocab_size,
        num_labels=2,
    )
    torch.manual_seed(0)
    tf.BertForSequenceClassification(config).eval().save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    (root / "texts.jsonl").write_text("".join(json.dumps({"text": t, "words": words(t)}) + "\n" for t in texts))
    return root
