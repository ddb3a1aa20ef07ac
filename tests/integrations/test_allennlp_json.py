"""Exporter "allennlp": AllenNLP Interpret's saliency JSON."""

import json
import math

import numpy as np
import pytest

import attn_plugins as ap
from attn_plugins.saliency import TokenSaliency

from ._saliency_common import fixture_table


def allennlp_normalise(emb_grad):
    """AllenNLP 2.10 SaliencyInterpreter code, verbatim in substance:
    norm = numpy.linalg.norm(emb_grad, ord=1); [math.fabs(e) / norm for e in emb_grad]"""
    norm = np.linalg.norm(emb_grad, ord=1)
    return [math.fabs(e) / norm for e in emb_grad]


def test_structure_key_by_key():
    results = fixture_table()["integrated_gradients"]
    out = ap.export(results, "allennlp")
    assert list(out.data) == ["instance_1", "instance_2", "instance_3"]
    for i, res in enumerate(results):
        entry = out.data[f"instance_{i + 1}"]
        assert list(entry) == ["grad_input_1"]
        assert len(entry["grad_input_1"]) == len(res.tokens)
        assert entry["grad_input_1"] == pytest.approx(allennlp_normalise(res.scores), abs=1e-15)
        assert sum(entry["grad_input_1"]) == pytest.approx(1.0)
        assert all(v >= 0 for v in entry["grad_input_1"])
    assert json.loads(out.to_json()) == out.data


def test_fields_numbered_in_reverse_embedding_order(tmp_path):
    premise = TokenSaliency(tokens=["a", "b"], scores=[1.0, -3.0], method="m", field="premise")
    hypothesis = TokenSaliency(tokens=["c", "d", "e"], scores=[2.0, 2.0, 0.0], method="m", field="hypothesis")
    out = ap.export([(premise, hypothesis), premise], "allennlp", path=tmp_path / "interp.json")
    data = json.loads((tmp_path / "interp.json").read_text())
    assert data == {
        "instance_1": {"grad_input_1": [0.5, 0.5, 0.0], "grad_input_2": [0.25, 0.75]},
        "instance_2": {"grad_input_1": [0.25, 0.75]},
    }
    assert list(data["instance_1"]) == ["grad_input_1", "grad_input_2"]
    assert out["instance_2"] == data["instance_2"]


def test_zero_scores_stay_zero_and_attention_methods_export():
    zero = TokenSaliency(tokens=["a", "b"], scores=[0.0, 0.0], method="m")
    assert ap.export(zero, "allennlp").data == {"instance_1": {"grad_input_1": [0.0, 0.0]}}
    rollout = ap.export(fixture_table()["rollout"], "allennlp")
    assert sum(rollout["instance_1"]["grad_input_1"]) == pytest.approx(1.0)
    assert "<pre>" in rollout._repr_html_()


def test_key_by_key_against_allennlp_integrated_gradient():
    """The exported JSON against AllenNLP's own IntegratedGradient on a real predictor (one field
    and two fields): same instances, same grad_input_k keys in the same order, values within 1e-6."""
    import warnings

    from tests.saliency._allennlp_models import bert_predictor, nli_predictor, require_allennlp

    require_allennlp()
    from allennlp.interpret.saliency_interpreters import IntegratedGradient

    from attn_plugins.saliency.allennlp import AllenNLPExplainer

    cases = (
        (bert_predictor(), {"sentence": "A fine, moving film."}, "logits"),
        (
            nli_predictor(),
            {"premise": "a dog is sleeping outside", "hypothesis": "the dog is in the park"},
            "label_logits",
        ),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for predictor, inputs, key in cases:
            theirs = IntegratedGradient(predictor).saliency_interpret_from_json(inputs)
            ours = ap.export(
                AllenNLPExplainer(predictor, logits_key=key).explain_json(
                    inputs, "integrated_gradients", n_steps=10, integration="riemann_left"
                ),
                "allennlp",
            ).data
            assert list(ours) == list(theirs)
            for instance in theirs:
                assert list(ours[instance]) == list(theirs[instance])
                for name, values in theirs[instance].items():
                    assert len(ours[instance][name]) == len(values)
                    np.testing.assert_allclose(ours[instance][name], values, atol=1e-6)
