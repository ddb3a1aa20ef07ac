"""smoothgrad_allennlp equals AllenNLP's own SmoothGradient (allennlp 2.10.1) key by key, with the same
seed; and it is not what Captum's smoothgrad computes."""

import warnings

import numpy as np
import pytest
import torch

import attn_plugins as ap

from ._allennlp_models import bert_predictor, nli_predictor, require_allennlp
from .helpers import classifier
from .test_allennlp import PAIR, SENTENCE, assert_same_json


@pytest.fixture
def _allennlp():
    require_allennlp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def theirs(predictor, inputs, seed=0):
    from allennlp.interpret.saliency_interpreters import SmoothGradient

    torch.manual_seed(seed)  # AllenNLP's SmoothGradient draws from torch's global generator
    return SmoothGradient(predictor).saliency_interpret_from_json(inputs)


@pytest.mark.usefixtures("_allennlp")
def test_equals_allennlp_on_two_embedded_fields():
    from attn_plugins.saliency.allennlp import AllenNLPExplainer

    predictor = nli_predictor()
    ours = AllenNLPExplainer(predictor, logits_key="label_logits").explain_json(PAIR, "smoothgrad_allennlp", seed=3)
    assert_same_json(ap.export(ours, "allennlp").data, theirs(predictor, PAIR, seed=3))


@pytest.mark.usefixtures("_allennlp")
def test_on_bert_the_signed_sum_is_rounding_noise_and_differs_from_captum_smoothgrad():
    """On BERT the LayerNorm after the embeddings makes the gradient sum to ~0 over the hidden
    dimension: AllenNLP's signed sum is float rounding noise, so its normalised JSON cannot be
    matched key by key (by us or by a second AllenNLP run on another summation order); Captum's
    abs-inside variant carries the signal."""
    from attn_plugins.saliency.allennlp import AllenNLPExplainer

    predictor = bert_predictor()
    explainer = AllenNLPExplainer(predictor)
    signed = np.abs(explainer.explain_json(SENTENCE, "smoothgrad_allennlp", seed=0)[0][0].scores)
    magnitude = np.abs(explainer.explain_json(SENTENCE, "smoothgrad", seed=0)[0][0].scores)  # sum_d mean |g|
    assert signed.max() < 1e-4 * magnitude.max()
    reference = theirs(predictor, SENTENCE, seed=0)["instance_1"]["grad_input_1"]
    captum = ap.export(explainer.explain_json(SENTENCE, "smoothgrad", seed=0), "allennlp").data
    assert np.abs(np.array(captum["instance_1"]["grad_input_1"]) - np.array(reference)).max() > 0.02


def test_hf_batches_use_each_instance_own_noise_scale():
    """Padding does not enter the noise scale: item 0 of a padded batch equals item 0 alone."""
    model, tok = classifier()
    explainer = ap.saliency.Explainer(model, tok)
    texts = ["A moving, heartfelt and beautifully acted film.", "Dull."]
    batch = explainer.explain(texts, "smoothgrad_allennlp", num_samples=3, progress=False)
    alone = explainer.explain(texts[:1], "smoothgrad_allennlp", num_samples=3, progress=False)
    np.testing.assert_allclose(batch[0].scores, alone[0].scores, rtol=1e-4, atol=1e-7)
    assert batch[0].info["num_samples"] == 3 and len(batch[1]) == 4
