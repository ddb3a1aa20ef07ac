"""Exporter "saliency": the AllenNLP-demo-style view, checked in headless Chromium."""

import pytest

import attn_plugins as ap
from attn_plugins.saliency import TokenSaliency

from ._saliency_common import HOSTILE, browser, fixture_table, hostile_results  # noqa: F401


def test_hostile_tokens_are_inert(tmp_path, browser):  # noqa: F811
    path = ap.export(hostile_results(), "saliency", path=tmp_path / "s.html").save(tmp_path / "s.html")
    page = browser.open(path)
    assert page.console_errors() == [] and page.network_requests() == []
    assert page.alerts() == 0
    assert page.count(".ap-tok img, .ap-tok script, .ap-tok svg, .ap-tok b") == 0
    assert page.count("img") == 0 and page.count("svg") == 0
    assert page.text(".ap-tok") == HOSTILE
    page.hover(".ap-tok")
    assert page.alerts() == 0


def test_zero_is_shown_as_zero_and_top_k_slider(tmp_path, browser):  # noqa: F811
    sal = TokenSaliency(tokens=["zero", "big", "small", "mid"], scores=[0.0, 4.0, 1.0, 3.0], method="saliency")
    path = ap.export(sal, "saliency", top_k=2).save(tmp_path / "z.html")
    page = browser.open(path)
    assert page.console_errors() == []
    tips = page.js("return Array.from(document.querySelectorAll('.ap-tok')).map(e => e.getAttribute('data-tip'))")
    assert "score 0.0000" in tips[0] and "raw 0" in tips[0]
    colours = page.js(
        "return Array.from(document.querySelectorAll('.ap-tok')).map(e => getComputedStyle(e).backgroundColor)"
    )
    assert colours[0] == "rgba(0, 0, 0, 0)"  # no shade for a zero score
    assert colours[1] == "rgb(31, 119, 180)"  # the largest is fully shaded
    assert page.text(".ap-tok.ap-top") == ["big", "mid"]
    page.js(
        "var s = document.querySelector('input.ap-range'); s.value = 3;"
        "s.dispatchEvent(new Event('input', {bubbles: true}));"
    )
    assert page.text(".ap-tok.ap-top") == ["big", "small", "mid"]
    assert page.text(".ap-kval") == ["3"]
    page.js(
        "var s = document.querySelector('input.ap-range'); s.value = 4;"
        "s.dispatchEvent(new Event('input', {bubbles: true}));"
    )
    assert "zero" not in page.text(".ap-tok.ap-top")  # a zero score is never among the top


def test_real_results_all_methods(tmp_path, browser):  # noqa: F811
    table = fixture_table()
    out = ap.export(table, "saliency", top_k=2, path=tmp_path / "all.html")
    page = browser.open(tmp_path / "all.html")
    assert page.console_errors() == [] and page.network_requests() == []
    assert page.count(".ap-method") == 3 * len(table)
    for i, res in enumerate(table["saliency"]):
        assert res.text in page.text("h3")[i]
    # [CLS]/[SEP] never count for the top k; the outlined ones are the largest plain tokens
    first = table["saliency"][0]
    plain = [i for i in first.top_k(len(first), skip_special=True)][:2]
    rows = page.js(
        "return Array.from(document.querySelectorAll('.ap-method')).map(m => "
        "Array.from(m.querySelectorAll('.ap-tok.ap-top')).map(e => e.textContent))"
    )
    names = list(table)
    assert sorted(rows[names.index("saliency")]) == sorted(first.tokens[i] for i in plain)
    assert "<style>" in out._repr_html_()
    page.screenshot(tmp_path / "all.png")


def test_single_method_from_mapping_and_record():
    table = fixture_table()
    single = ap.export(table, "saliency", method="rollout")
    assert single.body.count('class="ap-method"') == 3
    with pytest.raises(KeyError):
        ap.export(table, "saliency", method="flow")


def test_signed_scores_show_both_signs_by_default(tmp_path, browser):  # noqa: F811
    """Integrated-gradients-style scores: the negative token is red, the positive ones blue, each
    shaded by magnitude; ``signed=False`` asks for magnitudes only (all blue)."""
    sal = TokenSaliency(
        tokens=["good", "not", "fine", "zero"], scores=[2.0, -4.0, 1.0, 0.0], method="integrated_gradients"
    )
    colours_js = "return Array.from(document.querySelectorAll('.ap-tok')).map(e => getComputedStyle(e).backgroundColor)"
    page = browser.open(ap.export(sal, "saliency").save(tmp_path / "signed.html"))
    assert page.console_errors() == []
    colours = page.js(colours_js)
    assert colours[1] == "rgb(214, 39, 40)"  # the negative score, the largest magnitude: full red
    assert colours[0] == "rgba(31, 119, 180, 0.5)"  # positive, half the largest magnitude: blue
    assert colours[2] == "rgba(31, 119, 180, 0.25)"
    assert colours[3] == "rgba(0, 0, 0, 0)"
    assert "red: negative" in page.text(".ap-legend")[0]
    page.screenshot(tmp_path / "signed.png")
    absolute = browser.open(ap.export(sal, "saliency", signed=False).save(tmp_path / "absolute.html"))
    colours = absolute.js(colours_js)
    assert colours[1] == "rgb(31, 119, 180)" and colours[0] == "rgba(31, 119, 180, 0.5)"
    assert "red: negative" not in absolute.text(".ap-legend")[0]
    # attention scores are never negative: no red, no sign legend
    plain = TokenSaliency(tokens=["a", "b"], scores=[0.25, 0.75], method="attention")
    page = browser.open(ap.export(plain, "saliency").save(tmp_path / "plain.html"))
    assert "red: negative" not in page.text(".ap-legend")[0]
