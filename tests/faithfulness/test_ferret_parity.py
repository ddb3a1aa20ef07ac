"""Our AOPC comprehensiveness / sufficiency, leave-one-out tau and AUPRC equal ferret's evaluators
(ferret-xai 0.4.2) on the same explanations of the MiniLM sentiment head and the same removal settings.

ferret's package ``__init__`` imports its benchmark module (``datasets``, ``seaborn``, ``pandas``),
which this test environment does not have; its evaluators need none of them. So ferret is installed
with ``--no-deps`` and its evaluator modules are imported without running the top-level ``__init__``
(the package is registered as a bare package whose ``__path__`` is ferret's own directory). ferret's
code runs unchanged: its own tokenisation, its own decode-and-retokenise removal, its own forward.
"""

import importlib
import importlib.util
import sys
import types

import numpy as np
import pytest

from attn_plugins.faithfulness import (
    Scorer,
    comprehensiveness_sufficiency,
    leave_one_out,
    make_instances,
    plausibility,
    rationale_mask,
)
from attn_plugins.saliency import Explainer
from tests.saliency.helpers import classifier

# held-out sentences whose tokens are whole words: ferret removes tokens by decoding the remaining ids
# to text and tokenising it again, which equals removing the ids only when no word piece is split
TEXTS = [
    "The director's work looked clever from start to finish.",
    "What a moving experience; the dialogue was charming.",
    "This film looked excellent from start to finish.",
    "I thought the movie was boring.",
    "Please do not watch this.",
]
BINS = {"eraser": [0.01, 0.05, 0.1, 0.2, 0.5], "ferret": list(np.arange(0.1, 1.1, 0.1))}


@pytest.fixture(scope="module")
def ferret():
    spec = importlib.util.find_spec("ferret")
    if spec is None:
        pytest.skip("ferret-xai is not installed (pip install --no-deps ferret-xai)")
    saved = {k: v for k, v in sys.modules.items() if k == "ferret" or k.startswith("ferret.")}
    package = types.ModuleType("ferret")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["ferret"] = package
    try:
        faith = importlib.import_module("ferret.evaluators.faithfulness_measures")
        plaus = importlib.import_module("ferret.evaluators.plausibility_measures")
        expl = importlib.import_module("ferret.explainers.explanation")
        yield types.SimpleNamespace(faith=faith, plaus=plaus, expl=expl)
    finally:
        for key in [k for k in sys.modules if k == "ferret" or k.startswith("ferret.")]:
            del sys.modules[key]
        sys.modules.update(saved)


@pytest.fixture(scope="module")
def explained():
    model, tok = classifier()
    explainer = Explainer(model, tok)
    out = {m: explainer.explain(TEXTS, m, progress=False) for m in ("attention", "input_x_gradient")}
    for results in out.values():
        assert all(not t.startswith("##") for r in results for t in r.tokens)
    return model, tok, out


@pytest.mark.parametrize("removal", ["delete", "mask"])
@pytest.mark.parametrize("bins", list(BINS))
def test_aopc_equals_ferret(ferret, explained, removal, bins):
    model, tok, results = explained
    thresholds = BINS[bins]
    args = {"removal_args": {"remove_tokens": removal == "delete", "based_on": "perc", "thresholds": thresholds}}
    comp_ev = ferret.faith.AOPC_Comprehensiveness_Evaluation(model, tok)
    suff_ev = ferret.faith.AOPC_Sufficiency_Evaluation(model, tok)
    checked = 0
    for method, sals in results.items():  # input_x_gradient is signed: only positive tokens are rationale
        ours = comprehensiveness_sufficiency(
            make_instances(sals, tok),
            Scorer(model, tok),
            replacement=None if removal == "delete" else tok.mask_token_id,
            bins=thresholds,
        )
        for sal, row in zip(sals, ours, strict=True):
            explanation = ferret.expl.Explanation(sal.text, sal.tokens, sal.scores, method, sal.target)
            if not row["bin_sizes"]:
                continue  # no bin left: ferret returns its placeholder (0 / 1), we return NaN
            comp = comp_ev.compute_evaluation(explanation, target=sal.target, **args).score
            suff = suff_ev.compute_evaluation(explanation, target=sal.target, **args).score
            assert abs(row["comprehensiveness"] - comp) < 1e-6, (method, sal.text)
            assert abs(row["sufficiency"] - suff) < 1e-6, (method, sal.text)
            checked += 1
    assert checked >= 8


def test_leave_one_out_tau_equals_ferret(ferret, explained):
    model, tok, results = explained
    evaluator = ferret.faith.TauLOO_Evaluation(model, tok)
    for method, sals in results.items():
        ours = leave_one_out(make_instances(sals, tok), Scorer(model, tok), replacement=None)
        for sal, row in zip(sals, ours, strict=True):
            explanation = ferret.expl.Explanation(sal.text, sal.tokens, sal.scores, method, sal.target)
            theirs = evaluator.compute_evaluation(explanation, target=sal.target).score
            assert abs(row["loo_tau"] - theirs) < 1e-6, (method, sal.text)


def test_auprc_equals_ferret(ferret, explained):
    model, tok, results = explained
    evaluator = ferret.plaus.AUPRC_PlausibilityEvaluation(model, tok)
    words = [["clever"], ["moving", "charming"], ["excellent"], ["boring"], ["not", "watch"]]
    for method, sals in results.items():
        for sal, rationale in zip(sals, words, strict=True):
            mask = rationale_mask(sal, rationale)
            explanation = ferret.expl.ExplanationWithRationale(
                sal.text, sal.tokens, sal.scores, method, sal.target, mask.astype(int)
            )
            theirs = evaluator.compute_evaluation(explanation).score
            assert abs(plausibility(sal, mask)["auprc"] - theirs) < 1e-9
