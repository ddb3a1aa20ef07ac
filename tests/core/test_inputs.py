"""The one path from text to model inputs (attn_plugins.inputs): the token limit is the model's own
(a longer input really breaks the model, and is refused with a message naming both numbers), a
pad token is borrowed and given back, and the inputs equal the tokenizer's own."""

from __future__ import annotations

import copy

import pytest
import torch

import attn_plugins as ap
from attn_plugins import inputs


@pytest.fixture(scope="module")
def short_bert(minilm_tokenizer):
    """A two-layer BERT with only 16 positions (built from a config; no download)."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=minilm_tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=16,
    )
    return BertModel(config).eval()


def _text_of(tokenizer, n_tokens: int) -> str:
    """A text that the tokenizer turns into exactly ``n_tokens`` ids ([CLS] and [SEP] included)."""
    text = " ".join(["cat"] * (n_tokens - 2))
    assert tokenizer(text, return_tensors="pt")["input_ids"].shape[1] == n_tokens
    return text


def test_the_limit_is_the_models_own(short_bert, minilm_tokenizer):
    long_text = _text_of(minilm_tokenizer, 20)
    # the model itself cannot take 20 tokens: it fails inside the position embedding...
    with pytest.raises((IndexError, RuntimeError)):
        short_bert(**minilm_tokenizer(long_text, return_tensors="pt"))
    # ...the inputs path says so first, naming the length and the limit
    with pytest.raises(
        ap.InputError,
        match=r"the input is 20 tokens long, over the limit of 16 tokens for this "
        r"model \(BertModel has 16 positions\)",
    ):
        inputs.model_inputs(short_bert, minilm_tokenizer, long_text, max_tokens=512)
    with pytest.raises(ap.InputError, match="over the limit of 16"):
        inputs.check_length(short_bert, 20)
    inputs.check_length(short_bert, 16)  # exactly the limit is fine
    # the caller's own, smaller limit is named as such
    with pytest.raises(ap.InputError, match=r"over the limit of 8 tokens \(max_tokens\).*the model's 16 positions"):
        inputs.check_length(short_bert, 10, max_tokens=8)
    assert inputs.token_limit(short_bert) == 16 and inputs.token_limit(short_bert.config, 8) == 8
    assert inputs.position_limit(torch.nn.Linear(2, 2)) is None  # no config: no limit known
    inputs.check_length(torch.nn.Linear(2, 2), 10_000)


def test_gpt2_names_its_limit_n_positions(minilm_tokenizer):
    from transformers import GPT2Config, GPT2Model

    model = GPT2Model(
        GPT2Config(vocab_size=minilm_tokenizer.vocab_size, n_positions=12, n_embd=16, n_layer=2, n_head=2)
    ).eval()
    assert inputs.position_limit(model) == 12
    with pytest.raises(ap.InputError, match="the input is 13 tokens long, over the limit of 12"):
        inputs.check_length(model, torch.zeros(1, 13, dtype=torch.long))


def test_inputs_and_record_equal_the_direct_call(short_bert, minilm_tokenizer):
    texts = ["the cat sat", "a dog"]
    direct = minilm_tokenizer(texts, return_tensors="pt", padding=True)
    enc = inputs.model_inputs(short_bert, minilm_tokenizer, texts)
    assert set(enc) == set(direct) and all(torch.equal(enc[k], direct[k]) for k in direct)
    record = inputs.capture_texts(short_bert, minilm_tokenizer, texts)
    # the reference: an eager copy with the same weights (the sdpa model returns no attentions)
    from transformers import AutoModel

    reference_model = AutoModel.from_config(copy.deepcopy(short_bert.config), attn_implementation="eager").eval()
    reference_model.load_state_dict(short_bert.state_dict())
    with torch.no_grad():
        eager = reference_model(**direct, output_attentions=True).attentions
    assert len(record.layers) == 2
    for layer, reference in zip(record.layers, eager, strict=True):
        torch.testing.assert_close(layer.weights, reference, rtol=1e-5, atol=1e-6)


def test_the_notebook_one_liner_refuses_an_over_long_text(short_bert, minilm_tokenizer):
    with pytest.raises(ap.InputError, match="the input is 20 tokens long, over the limit of 16"):
        ap.heatmap(short_bert, _text_of(minilm_tokenizer, 20), tokenizer=minilm_tokenizer)


def test_pad_token_is_borrowed_and_given_back(minilm_tokenizer):
    import copy

    tokenizer = copy.deepcopy(minilm_tokenizer)
    tokenizer.pad_token = None
    tokenizer.eos_token = "[SEP]"
    enc = inputs.encode(tokenizer, ["the cat sat on the mat", "a dog"])
    assert tokenizer.pad_token is None
    assert enc["input_ids"][1, -1].item() == tokenizer.convert_tokens_to_ids("[SEP]")
    assert enc["attention_mask"][1].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    tokenizer.eos_token = None
    with pytest.raises(ap.InputError, match="no pad token to batch several texts"):
        inputs.encode(tokenizer, ["a", "b"])
    inputs.encode(tokenizer, "one text needs no padding")


@pytest.mark.parametrize(
    "texts, message",
    [([], "no texts given"), (["ok", "  "], "a text is empty .text 2 of 2"), ([3], "texts must be strings")],
)
def test_bad_texts(texts, message):
    with pytest.raises(ap.InputError, match=message):
        inputs.check_texts(texts)


def test_read_text_file(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("first\n\n  second  \n", encoding="utf-8")
    assert inputs.read_text_file(path) == ["first", "second"]
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ap.InputError, match="cannot read text file .*latin1.txt"):
        inputs.read_text_file(tmp_path / "latin1.txt")
    with pytest.raises(ap.InputError, match="cannot read text file .*: No such file or directory"):
        inputs.read_text_file(tmp_path / "missing.txt")
