"""BertViz pages in headless Chromium with the network off: they draw, react, read back the
record's numbers, request nothing and never run token text."""

from __future__ import annotations

import math

import pytest
import torch

import attn_plugins as ap

from .. import _browser
from . import _bertviz_records as bertviz_records

pytest.importorskip("bertviz")


@pytest.fixture(scope="module")
def browser():
    with _browser.Browser() as b:
        yield b


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    return tmp_path_factory.mktemp("bertviz-pages")


def assert_clean(page, hostile: bool = True):
    """Nothing requested but the page itself, no console error, no dialog, no injected markup."""
    assert page.console_errors() == []
    assert page.network_requests() == []
    # nothing loaded but the page (the fallback's inline picture is a data: URI, not a request anywhere)
    assert [u for u in page.requests() if not u.startswith("data:image/png;base64,")] == [page.url]
    assert page.alerts() == 0
    assert page.count("img") == 0
    if hostile:
        texts = page.text("svg text")
        assert bertviz_records.HOSTILE in texts
        assert bertviz_records.QUOTES in texts


def root_of(result) -> str:
    return f"#{result.root_id}"


def test_head_view_draws_reacts_and_reads_back(browser, pages):
    record = bertviz_records.hostile_minilm()
    result = ap.export(record, "bertviz", view="head", path=pages / "head.html")
    n = len(record.tokens[0])
    root = root_of(result)
    page = browser.open(pages / "head.html", wait_for=f"document.querySelectorAll('{root} #attention line').length")
    assert_clean(page)
    assert page.count(f"{root} #attention line") == 12 * n * n
    assert page.count(f"{root} #attention .headAttention") == 12
    tokens = page.js(f"return Array.from(document.querySelectorAll('{root} #left text')).map(t => t.textContent)")
    assert tokens == record.tokens[0]
    # numbers: the data bound to the lines is the record's weights, as float32, exactly
    layer0 = record.layers[0].weights[0]
    for h, i, j in [(0, 0, 0), (3, 2, 7), (11, n - 1, 4), (5, 10, n - 1)]:
        value = page.js(
            f"return document.querySelector('{root} #attention').children[{h}].children[{i}].children[{j}].__data__"
        )
        assert torch.tensor(value, dtype=torch.float32) == layer0[h, i, j]
    # clicking a head's colour square hides its lines
    opacity = (
        f"return document.querySelector('{root} #attention').children[2].children[1].children[3]"
        ".getAttribute('stroke-opacity')"
    )
    before = float(page.js(opacity))
    assert before > 0
    boxes = page.query(f"{root} #vis svg > g:last-of-type rect")
    assert len(boxes) == 12
    page.click(boxes[2])
    assert float(page.js(opacity)) == 0.0
    page.click(boxes[2])
    assert float(page.js(opacity)) == pytest.approx(before)
    # changing the layer draws that layer
    page.js(f"var s = document.querySelector('{root} #layer'); s.value = '4'; s.dispatchEvent(new Event('change'))")
    value = page.js(f"return document.querySelector('{root} #attention').children[1].children[2].children[3].__data__")
    assert torch.tensor(value, dtype=torch.float32) == record.layers[4].weights[0, 1, 2, 3]
    # the sentence-pair filter shows sentence A against sentence B
    b = record.inputs["token_type_ids"][0].nonzero()[0].item()
    page.js(f"var s = document.querySelector('{root} #filter'); s.value = '3'; s.dispatchEvent(new Event('change'))")
    assert page.count(f"{root} #left text") == b and page.count(f"{root} #right text") == n - b
    page.screenshot(pages / "head.png")
    assert_clean(page)


def test_model_view_draws_the_selected_layers_and_heads(browser, pages):
    record = bertviz_records.hostile_minilm()
    result = ap.export(
        record,
        "bertviz",
        view="model",
        include_layers=[1, 4],
        include_heads=[0, 3, 7],
        display_mode="light",
        sentence_b_start=None,
        path=pages / "model.html",
    )
    n = len(record.tokens[0])
    root = root_of(result)
    page = browser.open(pages / "model.html", wait_for=f"document.querySelectorAll('{root} .attn_background').length")
    assert page.count(f"{root} .attn_background") == 2 * 3
    assert page.count(f"{root} line") == 2 * 3 * n * n
    labels = page.text(f"{root} svg > text")
    assert {"1", "4", "0", "3", "7"} <= set(labels)
    assert page.count(f"{root} .detail") == 0
    # clicking a thumbnail opens its detail with the tokens as text
    page.js(
        f"document.querySelector('{root} #attn_background_1_2').parentNode.lastChild"
        ".dispatchEvent(new MouseEvent('click', {bubbles: true}))"
    )
    assert page.count(f"{root} .detail") > 0
    assert page.text(f"{root} text.detail") == ["Layer 4, Head 7"]
    detail_line = page.js(f"return document.querySelector('{root} .attn-line-group').children[5].__data__")
    assert torch.tensor(detail_line, dtype=torch.float32) == record.layer(4).weights[0, 7, 0, 5]
    assert_clean(page)


def _softmax(values):
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def test_neuron_view_from_captured_queries_and_keys(browser, pages):
    record = bertviz_records.hostile_minilm()
    result = ap.export(
        record, "bertviz", view="neuron", layer=3, head=5, sentence_b_start=None, path=pages / "neuron.html"
    )
    root = root_of(result)
    n = len(record.tokens[0])
    page = browser.open(pages / "neuron.html", wait_for=f"document.querySelector('{root} #collapsed')")
    assert page.js(f"return document.querySelector('{root} #layer').selectedOptions[0].textContent") == "3"
    assert page.js(f"return document.querySelector('{root} #att_head').selectedOptions[0].textContent") == "5"
    assert page.count(f"{root} #expanded #queries .vector") == n
    # expand (the "+" next to a token), then hover token 6: BertViz multiplies our queries and keys
    page.js(
        f"var g = document.querySelectorAll('{root} #collapsed #leftText > g')[6];"
        "g.lastChild.dispatchEvent(new MouseEvent('click', {bubbles: true}))"
    )
    assert page.js(f"return document.querySelector('{root} #expanded').getAttribute('visibility')") == "visible"
    page.js(
        f"var g = document.querySelectorAll('{root} #expanded #leftText > g')[6];"
        "g.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}))"
    )
    scores = page.js(
        f"return Array.from(document.querySelectorAll('{root} #dotproducts .dotproduct'))"
        ".map(r => +r.getAttribute('data-value'))"
    )
    assert len(scores) == n
    expected = record.layer(3).weights[0, 5, 6].tolist()
    assert _softmax(scores) == pytest.approx(expected, abs=2e-6)  # softmax of the drawn q.k is the record
    # choosing another head draws that head
    line = f"return document.querySelector('{root} #collapsed .attn-line-group').children[2].__data__"
    page.js(f"var s = document.querySelector('{root} #att_head'); s.value = '0'; s.dispatchEvent(new Event('change'))")
    assert torch.tensor(page.js(line), dtype=torch.float32) == record.layer(3).weights[0, 0, 0, 2]
    assert_clean(page)


def test_encoder_decoder_and_generate_pages(browser, pages):
    bart, gpt2 = bertviz_records.bart(), bertviz_records.gpt2()
    head = ap.export(bart, "bertviz", view="head")
    model = ap.export(bart, "bertviz", view="model")
    neuron = ap.export(bart, "bertviz", view="neuron", stack="cross")
    causal = ap.export(gpt2, "bertviz", view="neuron", item=1)
    gen_head = ap.export(gpt2, "bertviz", view="head", item=1)
    # several views in one notebook: one document holding every output, as Jupyter shows them, with a
    # global require.js loaded first as classic Jupyter has it (our views must not use or disturb it)
    from attn_plugins.integrations import assets

    path = pages / "notebook.html"
    path.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><script>"
        + assets.load("require.js")
        + "</script></head><body>"
        + "".join(r._repr_html_() for r in (head, model, neuron, causal, gen_head))
        + "</body></html>",
        encoding="utf-8",
    )
    roots = [root_of(r) for r in (head, model, neuron, causal, gen_head)]
    page = browser.open(path, wait_for=" && ".join(f"document.querySelector('{r} svg')" for r in roots))
    # head view: encoder first, then cross-attention with decoder tokens left and encoder tokens right
    enc_n, dec_n = len(bart.tokens[0]), len(bart.decoder_tokens[0])
    assert page.count(f"{roots[0]} #attention line") == 4 * enc_n * enc_n
    page.js(
        f"var s = document.querySelector('{roots[0]} #filter'); s.value = '2'; s.dispatchEvent(new Event('change'))"
    )
    assert page.text(f"{roots[0]} #left text") == bart.decoder_tokens[0]
    assert page.text(f"{roots[0]} #right text") == bart.tokens[0]
    value = page.js(
        f"return document.querySelector('{roots[0]} #attention').children[3].children[1].children[2].__data__"
    )
    assert torch.tensor(value, dtype=torch.float32) == bart.layer(0, stack="decoder", kind="cross").weights[0, 3, 1, 2]
    assert page.count(f"{roots[1]} .attn_background") == 2 * 4
    assert page.count(f"{roots[2]} #collapsed #leftText text") == dec_n
    assert page.count(f"{roots[2]} #collapsed #rightText text") == enc_n
    n = int(gpt2.inputs["attention_mask"][1].sum())
    assert page.count(f"{roots[3]} #collapsed #leftText text") == n
    assert page.count(f"{roots[4]} #attention line") == 4 * n * n
    # the other views did not disturb each other: each drew only into its own element
    assert page.count("svg") == 5
    assert page.console_errors() == [] and page.network_requests() == [] and page.alerts() == 0
    assert bertviz_records.HOSTILE in page.text(f"{roots[0]} svg text")
    # the page's own loader knows none of our modules, and no library leaked into the globals
    assert page.js(
        "return typeof window.requirejs === 'function' && !requirejs.defined('d3') && "
        "!requirejs.defined('jquery') && typeof window.d3 === 'undefined' "
        "&& typeof window.$ === 'undefined'"
    )
    assert page.count("img") == 0
    page.screenshot(pages / "notebook.png")


def test_word_level_head_view(browser, pages):
    record, offsets = bertviz_records.minilm()
    result = ap.export(record, "bertviz", view="head", words=True, offsets=offsets, path=pages / "words.html")
    root = root_of(result)
    page = browser.open(pages / "words.html", wait_for=f"document.querySelectorAll('{root} #left text').length")
    words = page.text(f"{root} #left text")
    assert "tokenization" in words and "unbelievably" in words and "##ization" not in words
    assert_clean(page, hostile=False)
