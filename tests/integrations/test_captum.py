"""Exporter "captum": records that Captum's visualize_text renders."""

import html

import numpy as np
import pytest
import torch
from captum.attr import visualization as viz

import attn_plugins as ap

from ._saliency_common import HOSTILE, browser, fixture_table, hostile_results  # noqa: F401


def test_records_fields_and_captum_rendering():
    table = fixture_table()
    out = ap.export(table["integrated_gradients"], "captum")
    assert len(out) == 3
    for rec, res in zip(out.records, table["integrated_gradients"], strict=True):
        assert isinstance(rec, viz.VisualizationDataRecord)
        expected = res.scores / np.abs(res.scores).max()
        np.testing.assert_allclose(rec.word_attributions.numpy(), expected, atol=1e-12)
        assert rec.raw_input_ids == res.tokens
        assert rec.pred_class == res.prediction_label and rec.pred_prob == pytest.approx(res.probability)
        assert rec.attr_class == res.target_label
        assert rec.attr_score == pytest.approx(float(res.scores.sum()))
        assert rec.convergence_score == pytest.approx(res.info["delta"])
    rendered = viz.visualize_text(out.records)  # Captum's own function
    assert rendered.data == out._repr_html_()
    for token in table["integrated_gradients"][0].tokens:
        assert viz.format_special_tokens(token) in rendered.data


def test_attention_methods_and_records_export():
    table = fixture_table()
    out = ap.export(table["rollout"], "captum")
    assert all(rec.word_attributions.max() == pytest.approx(1.0) for rec in out.records)
    assert "rollout" not in out.records[0].attr_class  # the target label is the attribution class
    model, tok = __import__("tests.saliency.helpers", fromlist=["classifier"]).classifier()
    with torch.no_grad(), ap.capture(model, tok) as cap:
        model(**tok(["A fine film."], return_tensors="pt"))
    from_record = ap.export(cap.record, "captum", method="flow")
    assert from_record.records[0].raw_input_ids == ["[CLS]", "a", "fine", "film", ".", "[SEP]"]
    assert from_record.records[0].attr_class == "flow"
    raw = ap.export(table["saliency"], "captum", normalize="none")
    np.testing.assert_allclose(raw.records[0].word_attributions.numpy(), table["saliency"][0].scores)


def test_hostile_tokens_are_escaped_in_records_and_page(tmp_path, browser):  # noqa: F811
    out = ap.export(hostile_results(), "captum")
    assert out.records[0].raw_input_ids == [html.escape(t, quote=True) for t in HOSTILE]
    raw = ap.export(hostile_results(), "captum", escape=False)
    assert raw.records[0].raw_input_ids == HOSTILE
    path = out.save(tmp_path / "captum.html")
    page = browser.open(path)
    assert page.console_errors() == [] and page.network_requests() == [] and page.alerts() == 0
    assert page.count("script") == 0 and page.count("img") == 0 and page.count("svg") == 0
    marks = page.text("mark font")
    assert [m.strip() for m in marks] == HOSTILE  # shown as text, exactly


def test_real_page_in_browser(tmp_path, browser):  # noqa: F811
    path = ap.export(fixture_table()["saliency"], "captum", path=tmp_path / "c.html")
    page = browser.open(tmp_path / "c.html")
    assert page.console_errors() == [] and page.network_requests() == []
    assert page.count("mark") == sum(len(r.tokens) for r in fixture_table()["saliency"])
    assert path.records


def test_page_without_ipython(monkeypatch):
    """visualize_text needs IPython; without it the exporter still builds its table from Captum's
    cell formatters (escaped tokens, one shaded mark per token)."""
    monkeypatch.setattr(viz, "HAS_IPYTHON", False)
    out = ap.export(hostile_results(), "captum")
    page = out._repr_html_()
    assert page.count("<mark") == len(HOSTILE)
    assert "<script>" not in page and "&lt;script&gt;" in page
