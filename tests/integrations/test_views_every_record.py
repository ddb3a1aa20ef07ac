"""Every record kind the library produces exports to every view that can show it, and the page
draws in headless Chromium (offline); a view that cannot show a record says why.

Record kinds: encoder self-attention (MiniLM, a sentence pair), decoder self-attention (a tiny GPT-2
forward), encoder-decoder (a tiny BART forward), cross-attention only (the Luong seq2seq of
``fixtures/luong_seq2seq``, the README's hand-written attention), generation (GPT-2 ``generate()``),
a layer/head subset of MiniLM, and plain ``torch.nn.MultiheadAttention`` (``nn.TransformerEncoder``).
"""

from __future__ import annotations

import functools

import pytest
import torch

import attn_plugins as ap

from .. import _browser
from . import _bertviz_records as bertviz_records

pytest.importorskip("bertviz")

VIEWS = ("head", "model", "neuron", "long")
# what each view waits for in the page: something it draws from the data
DRAWN = {
    "head": "document.querySelectorAll('{root} #attention line').length",
    "model": "document.querySelectorAll('{root} .attn_background').length",
    "neuron": "document.querySelectorAll('{root} #vis svg text').length",
    "long": "document.querySelector('.apl-root[data-ready]')",
}


@functools.cache
def luong_record():
    from fixtures.luong_seq2seq import model as luong

    torch.manual_seed(0)
    model = luong.LuongSeq2Seq().eval()
    src = torch.tensor([[3, 4, 5, 6, 7], [8, 9, 10, luong.PAD, luong.PAD]])
    with torch.no_grad(), ap.capture(model, tokenizer=luong.Vocab()) as cap:
        model(src, max_len=4)
    return cap.record


@functools.cache
def gpt2_forward():
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = bertviz_records.minilm_tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=tok.vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=4)
    ).eval()
    enc = tok(["the cat sat on the mat"], return_tensors="pt", add_special_tokens=False, return_token_type_ids=False)
    with torch.no_grad(), ap.capture(model, tok, keep_queries_keys=True) as cap:
        model(**enc)
    return cap.record


@functools.cache
def bart_forward():
    from transformers import BartConfig, BartForConditionalGeneration

    tok = bertviz_records.minilm_tokenizer()
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
    )
    model = BartForConditionalGeneration(config).eval()
    enc = tok(["Attention is all you need"], return_tensors="pt", return_token_type_ids=False)
    dec = tok(["Aufmerksamkeit ist alles"], return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad(), ap.capture(model, tok) as cap:
        model(**enc, decoder_input_ids=dec["input_ids"])
    return cap.record


@functools.cache
def minilm_subset():
    tok, model = bertviz_records.minilm_tokenizer(), bertviz_records.minilm_model()
    enc = tok(["The cat sat on the mat."], return_tensors="pt")
    with torch.no_grad(), ap.capture(model, tok, layers=[1, 4], heads=[0, 3, 7], keep_queries_keys=True) as cap:
        model(**enc)
    return cap.record


@functools.cache
def torch_mha():
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, batch_first=True)
    model = torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()
    x = torch.randn(1, 7, 16)
    with torch.no_grad(), ap.capture(model) as cap:
        model(x)
    return cap.record


RECORDS = {
    "encoder-self": lambda: bertviz_records.minilm()[0],
    "decoder-self": gpt2_forward,
    "encoder-decoder": bart_forward,
    "cross-only": luong_record,
    "generation": bertviz_records.gpt2,
    "layer-head-subset": minilm_subset,
    "torch-mha": torch_mha,
}


def has_queries_keys(record) -> bool:
    return all(layer.queries is not None and layer.keys is not None for layer in record.layers)


@pytest.fixture(scope="module")
def browser():
    with _browser.Browser() as b:
        yield b


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("kind", list(RECORDS))
def test_every_record_kind_draws_in_every_view_or_says_why(kind, view, browser, tmp_path):
    record = RECORDS[kind]()
    if view == "neuron" and not has_queries_keys(record):
        with pytest.raises(ValueError) as info:
            ap.export(record, "bertviz", view=view)
        assert "keep_queries_keys=True" in str(info.value)
        return
    path = tmp_path / f"{kind}-{view}.html"
    result = ap.export(record, "bertviz", view=view, path=path)
    root = f"#{result.root_id}" if hasattr(result, "root_id") else ""
    page = browser.open(path, wait_for=DRAWN[view].format(root=root))
    assert page.console_errors() == []
    assert page.network_requests() == []


def test_cross_only_head_view_has_target_and_source_sides(browser, tmp_path):
    """The Luong alignment (target steps x source symbols) is a head view with two sides: the
    steps on the left, the source symbols on the right, and the recorded weights on the lines."""
    record = luong_record()
    assert [layer.kind for layer in record.layers] == ["cross"]
    weights = record.layers[0].weights
    steps, src_len = weights.shape[2], weights.shape[3]
    result = ap.export(record, "bertviz", view="head", path=tmp_path / "luong.html")
    root = f"#{result.root_id}"
    page = browser.open(tmp_path / "luong.html", wait_for=f"document.querySelectorAll('{root} #attention line').length")
    assert page.console_errors() == []
    left = page.js(f"return Array.from(document.querySelectorAll('{root} #left text')).map(t => t.textContent)")
    right = page.js(f"return Array.from(document.querySelectorAll('{root} #right text')).map(t => t.textContent)")
    assert left == [f"step {i}" for i in range(steps)]
    assert right == record.tokens[0]
    assert page.count(f"{root} #attention line") == steps * src_len
    value = page.js(f"return document.querySelector('{root} #attention').children[0].children[2].children[1].__data__")
    assert torch.tensor(value, dtype=torch.float32) == weights[0, 0, 2, 1]
    # stock BertViz gets the same sides
    import bertviz

    from attn_plugins.integrations.bertviz import bertviz_inputs

    args = bertviz_inputs(record, item=1)
    assert args["decoder_tokens"] == [f"step {i}" for i in range(steps)]
    assert args["encoder_tokens"] == record.tokens[1]
    assert torch.equal(args["cross_attention"][0][0], weights[1])
    html = bertviz.head_view(**args, html_action="return")
    assert "step 0" in html.data


def test_cross_only_alignment_labels_steps_and_source_tokens():
    """The alignment figure of the Luong record labels its rows with the decoder's steps and its
    columns with the source tokens of the item shown (it took the source tokens, shifted, as rows)."""
    from attn_plugins import plots

    record = luong_record()
    for item in (0, 1):
        fig = plots.alignment(record, "mean", "mean", item=item)
        ax = fig.axes[0]
        steps = record.layers[0].weights.shape[2]
        assert [t.get_text() for t in ax.get_yticklabels()] == [f"step {i}" for i in range(steps)]
        assert [t.get_text() for t in ax.get_xticklabels()] == list(record.tokens[item])
        shown = ax.images[0].get_array()
        torch.testing.assert_close(
            torch.as_tensor(shown.data, dtype=torch.float32), record.layers[0].weights[item].mean(dim=0)
        )
