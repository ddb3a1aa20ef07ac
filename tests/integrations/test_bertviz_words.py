"""Word-level attention (attn_plugins.analysis.words) and the exporter's words= option."""

from __future__ import annotations

import pytest
import torch

import attn_plugins as ap
from attn_plugins.analysis.words import groups_from_word_ids, merge_attention, word_groups, word_labels

from . import _bertviz_records as bertviz_records


def test_wordpiece_groups_from_offsets():
    tok = bertviz_records.minilm_tokenizer()
    text = "The tokenization isn't unbelievable."
    enc = tok(text, return_offsets_mapping=True)
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    groups = word_groups(enc["offset_mapping"], text)
    labels = word_labels(groups, enc["offset_mapping"], text, tokens)
    assert labels == ["[CLS]", "The", "tokenization", "isn", "'", "t", "unbelievable", ".", "[SEP]"]
    # the same words from the tokenizer's own word ids
    assert groups == groups_from_word_ids(enc.word_ids())
    # without the text: token strings (## continuation) and gaps decide
    assert word_groups(enc["offset_mapping"], tokens=tokens) == groups


def test_byte_level_bpe_and_sentencepiece():
    # GPT-2 style: the leading space is inside the span, marked by "Ġ"
    tokens = ["Hello", "Ġwor", "ld", "!", "Ġok"]
    offsets = [(0, 5), (5, 9), (9, 11), (11, 12), (12, 15)]
    text = "Hello world! ok"
    assert word_groups(offsets, text) == [[0], [1, 2], [3], [4]]
    assert word_groups(offsets, tokens=tokens) == [[0], [1, 2], [3], [4]]
    assert word_labels([[0], [1, 2], [3], [4]], offsets, text) == ["Hello", "world", "!", "ok"]
    assert word_labels([[0], [1, 2], [3], [4]], tokens=tokens) == ["Hello", "world", "!", "ok"]
    # SentencePiece style, spans without the space; special tokens (empty spans) stand alone
    tokens = ["<s>", "▁Hel", "lo", "▁world", "</s>", "<pad>"]
    offsets = [(0, 0), (0, 3), (3, 5), (6, 11), (0, 0), (0, 0)]
    assert word_groups(offsets, "Hello world", tokens=tokens) == [[0], [1, 2], [3], [4], [5]]
    assert word_groups(offsets, split_punctuation=False) == [[0], [1, 2], [3], [4], [5]]


def test_merge_sums_targets_and_averages_sources():
    torch.manual_seed(0)
    w = torch.softmax(torch.randn(2, 3, 5, 5), dim=-1)
    groups = [[0], [1, 2], [3, 4]]
    merged = merge_attention(w, groups)
    assert merged.shape == (2, 3, 3, 3)
    # attention from word 1 (pieces 1, 2) to word 2 (pieces 3, 4)
    expected = (w[..., 1, 3] + w[..., 1, 4] + w[..., 2, 3] + w[..., 2, 4]) / 2
    assert torch.allclose(merged[..., 1, 2], expected)
    assert torch.allclose(merged[..., 0, 0], w[..., 0, 0])
    assert torch.allclose(merged.sum(-1), torch.ones(2, 3, 3))
    # cross-attention: different groups on each side; positions in no group are dropped
    cross = torch.softmax(torch.randn(4, 6), dim=-1)
    out = merge_attention(cross, [[0, 1], [2, 3]], [[0], [1, 2, 3], [5]])
    assert out.shape == (2, 3)
    assert torch.allclose(out[1, 1], (cross[2, 1:4].sum() + cross[3, 1:4].sum()) / 2)
    with pytest.raises(IndexError, match="position 9"):
        merge_attention(cross, [[9]])


def test_exporter_words_option():
    record, offsets = bertviz_records.minilm()
    result = ap.export(record, "bertviz", view="head", words=True, offsets=offsets, text=None)
    from attn_plugins.integrations.panels import panels

    (p,) = panels(record, words=True, offsets=offsets)
    assert "tokenization" in p.left and "unbelievably" in p.left and "." in p.left
    assert p.attn.shape[-1] == len(p.left) < len(record.tokens[0])
    assert torch.allclose(p.attn.sum(-1), torch.ones(p.attn.shape[:-1]), atol=1e-5)
    # the sentence-pair split moves to the word index where sentence B starts
    assert p.left[p.sentence_b_start] == "it"
    assert "merged into words" in result.body
    # without offsets: the word ids the capture kept from the tokenizer give the same words
    enc = bertviz_records.minilm_tokenizer()(
        [bertviz_records.TEXT_A, "Short one."], [bertviz_records.TEXT_B, "x"], padding=True
    )
    for item in (0, 1):
        assert groups_from_word_ids(record.metadata["word_ids"][item]) == groups_from_word_ids(enc.word_ids(item))
    (same,) = panels(record, words=True)
    assert same.left == p.left and same.right == p.right
    assert torch.equal(same.attn, p.attn)
    # and a saved record keeps them
    import copy

    bare = copy.copy(record)
    bare.tokens, bare.metadata = None, {}
    with pytest.raises(ValueError, match="offsets="):
        panels(bare, words=True)
    with pytest.raises(ValueError, match="neuron view"):
        ap.export(record, "bertviz", view="neuron", words=True, offsets=offsets)


def test_show_words_with_the_real_fast_tokenizer(tmp_path):
    """``ap.show(model, text, tok, words=True)`` just works: the capture keeps each token's word."""
    tok, model = bertviz_records.minilm_tokenizer(), bertviz_records.minilm_model()
    text = "Tokenization isn't unbelievably hard."
    view = ap.show(model, text, tok, words=True)
    entry = view.params["attention"][0]
    enc = tok(text, return_offsets_mapping=True)
    groups = groups_from_word_ids(enc.word_ids())
    expected = word_labels(groups, tokens=tok.convert_ids_to_tokens(enc["input_ids"]))  # the pieces, joined
    assert (
        entry["left_text"]
        == expected
        == ["[CLS]", "tokenization", "isn", "'", "t", "unbelievably", "hard", ".", "[SEP]"]
    )
    # the word-level weights: rows are means over the pieces, columns sums (Clark et al.)
    record = ap.AttentionRecord.load(_saved(tok, model, text, tmp_path))
    from attn_plugins.integrations.panels import panels

    (p,) = panels(record, words=True)
    assert p.left == expected
    w = record.layers[0].weights[0]
    assert torch.allclose(p.attn[0], merge_attention(w, groups), atol=1e-6)


def _saved(tok, model, text, tmp_path):
    """A record made with the tokenizer, saved and loaded: the word ids travel in its metadata."""
    with torch.no_grad(), ap.capture(model, tok) as cap:
        model(**tok(text, return_tensors="pt"))
    return cap.record.save(tmp_path / "words.safetensors")
