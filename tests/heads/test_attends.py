"""Heads beside what they attend to: importance next to head statistics, the figures, the report section."""

import re

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

import attn_plugins as ap
from attn_plugins.analysis.stats import head_stats
from attn_plugins.errors import InputError
from attn_plugins.heads import importance_rows, importance_stats_plot
from attn_plugins.plots import similarity_plot

TEXTS = ["a warm, funny and moving film", "dull, clumsy and far too long"]


def tiny(minilm_tokenizer):
    import transformers as tf

    config = tf.BertConfig(
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=37,
        vocab_size=minilm_tokenizer.vocab_size,
        num_labels=2,
    )
    torch.manual_seed(0)
    return tf.BertForSequenceClassification(config).eval()


def test_rows_and_plot_put_importance_beside_the_statistics(minilm_tokenizer):
    model = tiny(minilm_tokenizer)
    batch = dict(minilm_tokenizer(TEXTS, return_tensors="pt", padding=True))
    importance = ap.head_importance(model, [batch], loss="predicted")
    with torch.no_grad(), ap.capture(model, tokenizer=minilm_tokenizer) as cap:
        model(**batch)
    record = cap.record
    stats = head_stats(record)
    rows = importance_rows(importance, stats)
    assert len(rows) == 8
    matrix = importance.matrix()
    for r in rows:
        li = stats.labels.index(r["layer"])
        assert r["importance"] == matrix[li, r["head"]]
        assert r["special"] == pytest.approx(float(stats.special[li, r["head"]]))
        assert r["previous"] == pytest.approx(float(stats.previous[li, r["head"]]))
    fig = importance_stats_plot(importance, stats)
    titles = [ax.get_title() for ax in fig.axes[:3]]
    rho = spearmanr([r["special"] for r in rows], [r["importance"] for r in rows]).statistic
    assert titles[1] == f"[CLS]/[SEP] share (rho {rho:.2f})"
    strip = similarity_plot(record, importance=matrix.reshape(-1))
    shown = [im.get_array() for ax in strip.axes for im in ax.images if im.get_array().shape[0] == 1]
    assert len(shown) == 1 and sorted(np.asarray(shown[0]).ravel()) == pytest.approx(sorted(matrix.ravel()))
    with pytest.raises(ValueError, match="importance has 3 values for 8 heads"):
        similarity_plot(record, importance=[1, 2, 3])
    with pytest.raises(InputError, match="compute the importance on the layers that were captured"):
        importance_rows(importance, head_stats(record, layers=[0]))


def test_report_section_for_a_classifier(tmp_path, minilm_tokenizer):
    from attn_plugins import report

    model = tiny(minilm_tokenizer)
    path = report.build_report(
        model, minilm_tokenizer, TEXTS, out_dir=tmp_path, sections=["head_importance"], progress=False
    )
    html = open(path, encoding="utf-8").read()
    assert re.search(r'<section id="head_importance" class="[^"]*" data-status="ok"', html), html[-3000:]
    cells = re.findall(r"<tr><td>([^<]*)</td><td>(\d+)</td><td>([\d.]+)</td>", html)
    assert len(cells) == 8
    batch = dict(minilm_tokenizer(TEXTS, return_tensors="pt", padding=True))
    matrix = ap.head_importance(model, [batch], loss="predicted").matrix()
    assert [float(c[2]) for c in cells] == pytest.approx(sorted(matrix.ravel(), reverse=True), abs=1e-3)
    assert 'data-plot="head_importance_stats"' in html and 'data-plot="head_similarity_importance"' in html


def test_report_section_for_chosen_layers_and_heads(tmp_path, minilm_tokenizer):
    """A report built with layers/heads (the CLI's --layers/--heads) shows the captured heads, each
    with the importance it has among all the heads of its layer (the full computation's value)."""
    import attn_plugins.report as report_pkg

    model = tiny(minilm_tokenizer)
    path = report_pkg.build_report(
        model,
        minilm_tokenizer,
        TEXTS,
        out_dir=tmp_path,
        sections=["head_importance"],
        layers=[1],
        heads=[0, 2],
        progress=False,
    )
    html = open(path, encoding="utf-8").read()
    assert re.search(r'<section id="head_importance" class="[^"]*" data-status="ok"', html), html[-3000:]
    cells = re.findall(r"<tr><td>([^<]*)</td><td>(\d+)</td><td>([\d.]+)</td>", html)
    batch = dict(minilm_tokenizer(TEXTS, return_tensors="pt", padding=True))
    matrix = ap.head_importance(model, [batch], loss="predicted").matrix()  # every layer and head, independently
    assert sorted((int(c[1]), float(c[2])) for c in cells) == [
        (0, pytest.approx(matrix[1, 0], abs=1e-3)),
        (2, pytest.approx(matrix[1, 2], abs=1e-3)),
    ]
    assert {c[0] for c in cells} == {"L1"}
    assert "captured 2 heads" in html
    assert 'data-plot="head_importance_stats"' in html and 'data-plot="head_similarity_importance"' in html
