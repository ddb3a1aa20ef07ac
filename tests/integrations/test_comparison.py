"""Exporter "comparison": methods side by side with their agreement."""

import base64

import numpy as np
import pytest
from scipy import stats

import attn_plugins as ap
from attn_plugins.saliency import TokenSaliency

from ._saliency_common import HOSTILE, browser, fixture_table, hostile_results  # noqa: F401


def test_agreement_numbers_match_scipy_per_instance_and_averaged():
    table = fixture_table()
    page = ap.export(table, "comparison", k=2)
    agree = page.agreement
    assert agree.methods == list(table)
    taus = []
    for i in range(3):
        a = table["attention"][i]
        b = table["integrated_gradients"][i]
        keep = [p for p, s in enumerate(a.special) if not s]
        tau = stats.kendalltau(np.abs(a.scores[keep]), np.abs(b.scores[keep])).statistic
        rho = stats.spearmanr(np.abs(a.scores[keep]), np.abs(b.scores[keep])).statistic
        got = agree.per_unit[i][("attention", "integrated_gradients")]
        assert got["kendall_tau"] == pytest.approx(tau) and got["spearman_rho"] == pytest.approx(rho)
        taus.append(tau)
    assert agree.mean("attention", "integrated_gradients", "kendall_tau") == pytest.approx(np.mean(taus))
    summary = page.summary()
    assert "| attention |" in summary and "integrated_gradients" in summary.splitlines()[2]


def test_page_in_browser_with_plot(tmp_path, browser):  # noqa: F811
    page_obj = ap.export(fixture_table(), "comparison", path=tmp_path / "cmp.html")
    page = browser.open(tmp_path / "cmp.html")
    assert page.console_errors() == [] and page.network_requests() == []
    assert page.count("table.ap-rows tr") == 3 * 4
    src = page.js("return document.querySelector('img.ap-plot').getAttribute('src')")
    assert src.startswith("data:image/png;base64,")
    assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.js("return document.querySelector('img.ap-plot').naturalWidth") > 100
    page.screenshot(tmp_path / "cmp.png")
    assert "Averaged over 3 instances" in page_obj._repr_html_()
    # the averaged table is shaded on each metric's scale, as the plot: the cell of a pair's tau is
    # the RdBu colour of its value on -1..1
    from matplotlib import colormaps
    from matplotlib.colors import to_rgb

    agree = page_obj.agreement
    last = "document.querySelectorAll('table.ap-metrics')[document.querySelectorAll('table.ap-metrics').length - 1]"
    cells = page.js(
        f"return Array.from({last}.querySelectorAll('tr')).slice(1).map(r => "
        "[r.cells[0].textContent, getComputedStyle(r.cells[1]).backgroundColor, r.cells[1].textContent])"
    )
    assert len(cells) == len(agree.per_unit[0])
    for pair, colour, text in cells:
        a, b = pair.split(" / ")
        tau = agree.mean(a, b, "kendall_tau")
        assert float(text) == pytest.approx(tau, abs=5e-4)
        want = [round(255 * c) for c in to_rgb(colormaps["RdBu"]((tau + 1) / 2))]
        got = [int(v) for v in colour[colour.index("(") + 1 : colour.index(")")].split(",")[:3]]
        assert max(abs(g - w) for g, w in zip(got, want, strict=True)) <= 1, (pair, got, want)
    # without a plot the page has the table and no image
    bare = ap.export(fixture_table(), "comparison", plot=None)._repr_html_()
    assert "<img" not in bare and "background:#" in bare


def test_svg_plot_and_hostile_tokens(tmp_path, browser):  # noqa: F811
    table = {"a": hostile_results("a"), "b": hostile_results("b")}
    table["b"][0].scores[:] = table["b"][0].scores[::-1]
    path = ap.export(table, "comparison", plot="svg").save(tmp_path / "h.html")
    page = browser.open(path)
    assert page.console_errors() == [] and page.alerts() == 0
    assert page.count(".ap-tok img, .ap-tok script, .ap-tok svg") == 0
    assert page.text("table.ap-rows tr:first-child .ap-tok") == HOSTILE
    assert page.count("div.ap-plot svg") == 1


def test_mismatched_inputs_are_refused():
    a = TokenSaliency(tokens=["x", "y"], scores=[1, 2], method="a")
    b = TokenSaliency(tokens=["x", "z"], scores=[1, 2], method="b")
    with pytest.raises(ValueError, match="other tokens"):
        ap.export({"a": [a], "b": [b]}, "comparison")
    with pytest.raises(ValueError, match="at least two"):
        ap.export({"a": [a]}, "comparison")
    with pytest.raises(ValueError, match="different numbers"):
        ap.export({"a": [a, a], "b": [a]}, "comparison")


def test_faithfulness_table_in_browser(tmp_path, browser):  # noqa: F811
    from tests.saliency.helpers import classifier

    model, tok = classifier()
    result = ap.evaluate(model, tok, saliencies=fixture_table(), metrics=["comprehensiveness", "sufficiency", "loo"])
    ap.export(fixture_table(), "comparison", faithfulness=result, path=tmp_path / "f.html")
    page = browser.open(tmp_path / "f.html")
    assert page.console_errors() == [] and page.network_requests() == []
    assert page.count("table.ap-faith tr") == 1 + 4
    headers = page.js("return [...document.querySelectorAll('table.ap-faith th')].map(t => t.textContent.trim())")
    assert headers == ["method", "comp ↑", "suff ↓", "LOO tau ↑"]
    summary = result.summary()
    for row in range(4):
        method = page.js(f"return document.querySelectorAll('table.ap-faith tr')[{row + 1}].cells[0].textContent")
        shown = page.js(
            f"return [...document.querySelectorAll('table.ap-faith tr')[{row + 1}].cells]"
            ".slice(1).map(c => c.textContent)"
        )
        for text, metric in zip(shown, ["comprehensiveness", "sufficiency", "loo_tau"], strict=True):
            s = summary[method][metric]
            assert text == f"{s['mean']:.3f} [{s['low']:.3f}, {s['high']:.3f}]"
    best = page.js(
        "return document.querySelector('td[data-metric=comprehensiveness] b').closest('tr').cells[0].textContent"
    )
    assert best == max(summary, key=lambda m: summary[m]["comprehensiveness"]["mean"])
