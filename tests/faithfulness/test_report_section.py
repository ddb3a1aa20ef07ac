"""The report's faithfulness section on the MiniLM sentiment head, drawn in headless Chromium."""

import re

import pytest

from attn_plugins import report
from attn_plugins.faithfulness import evaluate
from tests.saliency.helpers import classifier

TEXTS = ["a warm, funny and moving film", "dull, clumsy and far too long"]


@pytest.fixture(scope="module")
def browser():
    from tests._browser import Browser

    with Browser() as b:
        yield b


def test_faithfulness_section_draws_its_numbers(tmp_path, browser):
    model, tok = classifier()
    path = report.build_report(
        model, tok, TEXTS, out_dir=tmp_path, sections=["summary", "saliency", "faithfulness"], progress=False
    )
    html = open(path, encoding="utf-8").read()
    statuses = dict(re.findall(r'<section id="(\w+)" class="[^"]*" data-status="(\w+)"', html))
    assert statuses["faithfulness"] == "ok", html[html.find('id="faithfulness"') :][:2000]
    page = browser.open(path, wait_for="document.readyState === 'complete'", timeout=60)
    assert page.console_errors() == [] and page.network_requests() == []
    methods = page.js(
        "return [...document.querySelectorAll('#faithfulness table.ap-faith tr')].slice(1)"
        ".map(r => r.cells[0].textContent)"
    )
    assert "attention" in methods and "rollout" in methods
    values = page.js(
        "return [...document.querySelectorAll('#faithfulness td[data-metric]')]"
        ".map(c => [c.closest('tr').cells[0].textContent, c.dataset.metric, +c.dataset.value])"
    )
    # the numbers drawn are those of evaluate on the same explanations, computed here independently
    from attn_plugins.saliency import Explainer

    explainer = Explainer(model, tok)
    table = {m: explainer.explain(TEXTS, m, progress=False) for m in ("attention", "rollout")}
    ref = evaluate(model, tok, saliencies=table, n_boot=200).summary()
    shown = {(m, k): v for m, k, v in values}
    for method in table:
        for metric in ("comprehensiveness", "sufficiency", "deletion_auc", "insertion_auc", "loo_tau"):
            assert shown[(method, metric)] == pytest.approx(ref[method][metric]["mean"], abs=1e-6)
    assert page.js("return document.querySelector('#faithfulness figure img').naturalWidth") > 100


def test_a_model_that_is_not_a_classifier_gets_a_note(tmp_path, minilm, minilm_tokenizer):
    path = report.build_report(
        minilm, minilm_tokenizer, TEXTS[:1], out_dir=tmp_path, sections=["faithfulness"], progress=False
    )
    html = open(path, encoding="utf-8").read()
    assert re.search(r'<section id="faithfulness" class="[^"]*" data-status="unavailable"', html)
    assert "sequence classifiers" in html
