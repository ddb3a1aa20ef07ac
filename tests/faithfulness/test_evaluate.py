"""ap.evaluate end to end on the MiniLM head, the result type, the rationale fixture and the
cascading randomization check."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import attn_plugins as ap
from attn_plugins.errors import InputError
from attn_plugins.faithfulness import (
    FaithfulnessResult,
    Scorer,
    bootstrap_ci,
    cascade_steps,
    leave_one_out,
    make_instances,
    randomization_check,
    rationale_mask,
)
from attn_plugins.saliency import Explainer
from tests.saliency.helpers import classifier

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "minilm_head" / "rationales.jsonl"


def rationales():
    return [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


def test_rationale_fixture_is_the_held_out_split_and_maps_onto_tokens():
    from fixtures.minilm_head import LABELS, split

    rows = rationales()
    texts, labels = split()["test"]
    assert [r["text"] for r in rows] == texts and [r["label"] for r in rows] == [LABELS[y] for y in labels]
    model, tok = classifier()
    sals = Explainer(model, tok).explain(texts, "attention", progress=False)
    for row, sal in zip(rows, sals, strict=True):
        mask = rationale_mask(sal, row["rationale"])
        assert 1 <= mask.sum() <= len(sal) - 3, row


def test_evaluate_on_the_minilm_head(tmp_path):
    model, tok = classifier()
    rows = rationales()[:4]
    texts = [r["text"] for r in rows]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = ap.evaluate(
        model, tok, texts, ["attention", "saliency"], rationales=[r["rationale"] for r in rows], batch_size=16
    )
    assert result.methods == ["attention", "saliency"]
    for method in result.methods:
        assert len(result.instances[method]) == 4
        for row in result.instances[method]:
            for key in (
                "comprehensiveness",
                "sufficiency",
                "deletion_auc",
                "insertion_auc",
                "loo_tau",
                "token_f1",
                "iou",
                "auprc",
            ):
                assert key in row
            assert row["deletion"][0] == pytest.approx(row["probability"]) == pytest.approx(row["insertion"][-1])
    # the same numbers as the metric functions on the same explanations
    sals = Explainer(model, tok).explain(texts, "saliency", progress=False)
    loo = leave_one_out(make_instances(sals, tok), Scorer(model, tok), replacement=None)
    assert [r["loo_tau"] for r in result.instances["saliency"]] == pytest.approx([r["loo_tau"] for r in loo], abs=1e-9)
    summary = result.summary()
    for stats in summary["saliency"].values():
        if stats["n"]:
            assert stats["low"] <= stats["mean"] <= stats["high"]
    table = result.table()
    assert "attention" in table and "comp" in table and "AUPRC" in table
    path = result.save(tmp_path / "faith.json")
    loaded = FaithfulnessResult.load(path)
    assert loaded.instances["saliency"][0]["loo_tau"] == result.instances["saliency"][0]["loo_tau"]
    assert json.loads(path.read_text())["summary"]["saliency"]["comprehensiveness"]["n"] == 4
    assert loaded.table() == table
    grid, curve = result.mean_curve("attention", "deletion")
    assert grid[0] == 0 and grid[-1] == 1 and curve.shape == grid.shape
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])


def test_bootstrap_interval():
    stats = bootstrap_ci([1.0, 2.0, 3.0, float("nan"), 4.0], n_boot=2000, seed=1)
    assert stats["n"] == 4 and stats["mean"] == 2.5 and 1.0 <= stats["low"] < 2.5 < stats["high"] <= 4.0
    assert bootstrap_ci([2.0, 2.0])["low"] == bootstrap_ci([2.0, 2.0])["high"] == 2.0
    assert math.isnan(bootstrap_ci([])["mean"])


def test_evaluate_bad_input():
    model, tok = classifier()
    with pytest.raises(InputError, match="unknown metrics"):
        ap.evaluate(model, tok, ["fine"], metrics=["accuracy"])
    with pytest.raises(InputError, match="removal must be"):
        ap.evaluate(model, tok, ["fine"], removal="drop")
    with pytest.raises(InputError, match="bins must be"):
        ap.evaluate(model, tok, ["fine"], bins=[0, 2])
    with pytest.raises(InputError, match="needs texts"):
        ap.evaluate(model, tok)


def tiny_classifier(kernel="sdpa"):
    import transformers as tf

    config = tf.BertConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=37, vocab_size=30522, num_labels=2
    )
    torch.manual_seed(0)
    return tf.AutoModelForSequenceClassification.from_config(config, attn_implementation=kernel).eval()


def test_cascading_randomization(minilm_tokenizer):
    model = tiny_classifier()
    steps = cascade_steps(model)
    assert [name for name, _ in steps] == ["head", "layer 1", "layer 0", "embeddings"]
    names = [n for group in steps for n in group[1]]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())  # a partition
    assert all(n.startswith(("bert.pooler", "classifier")) for n in steps[0][1])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    texts = ["a fine and moving film", "dull, clumsy and far too long"]
    out = randomization_check(model, minilm_tokenizer, texts, ["attention", "saliency"], seed=0)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])  # the user's model untouched
    # raw attention does not depend on the classifier head: unchanged after the first step;
    # the gradient does: it changes at once
    assert out["attention"]["correlation"][0] == pytest.approx([1.0, 1.0])
    assert min(out["saliency"]["correlation"][0]) < 0.999
    assert out["attention"]["steps"] == ["head", "layer 1", "layer 0", "embeddings"]
    assert max(out["attention"]["correlation"][1]) < 0.999  # top layer randomized
    assert all(-1 <= v <= 1 for c in out["saliency"]["correlation"] for v in c if not np.isnan(v))
