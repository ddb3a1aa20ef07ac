"""Attention-based saliency (attention, rollout, flow, grad_attention) against direct computations
on an independent eager-attention copy of the fixture classifier."""

import numpy as np
import pytest
import torch

import attn_plugins as ap
from attn_plugins.saliency import Explainer, attention_saliency

from .helpers import TEXTS, classifier, eager_classifier
from .test_flow import networkx_flow
from .test_rollout import hand_rollout


@pytest.fixture(scope="module")
def eager_run():
    model, tok = classifier()
    eager = eager_classifier()
    enc = tok(TEXTS, return_tensors="pt", padding=True)
    outputs = eager(**enc, output_attentions=True)
    return enc, [a.detach().double() for a in outputs.attentions], outputs.logits.detach()


def real_of(enc, b):
    return torch.nonzero(enc["attention_mask"][b]).flatten()


def test_attention_row(eager_run):
    enc, attentions, _ = eager_run
    model, tok = classifier()
    got = Explainer(model, tok).explain(TEXTS, "attention")
    for b, res in enumerate(got):
        real = real_of(enc, b)
        np.testing.assert_allclose(res.scores, attentions[-1][b, :, 0, real].mean(0).numpy(), atol=1e-5)
        assert res.query == 0
    head = Explainer(model, tok).explain(TEXTS, "attention", layer=1, head=4, query=2)
    for b, res in enumerate(head):
        np.testing.assert_allclose(res.scores, attentions[1][b, 4, 2, real_of(enc, b)].numpy(), atol=1e-5)


def test_rollout_row(eager_run):
    enc, attentions, _ = eager_run
    model, tok = classifier()
    for b, res in enumerate(Explainer(model, tok).explain(TEXTS, "rollout")):
        real = real_of(enc, b)
        mats = [a[b][:, real][:, :, real].numpy() for a in attentions]
        mats = [m / m.sum(-1, keepdims=True) for m in mats]
        np.testing.assert_allclose(res.scores, hand_rollout(mats)[0], atol=1e-5)


def test_flow_row_against_networkx(eager_run):
    enc, attentions, _ = eager_run
    model, tok = classifier()
    res = Explainer(model, tok).explain(TEXTS[:1], "flow")[0]
    real = real_of(enc, 0)
    mats = [a[0][:, real][:, :, real].numpy() for a in attentions]
    np.testing.assert_allclose(res.scores, networkx_flow(mats)[0], atol=1e-5)


def test_grad_attention_against_retain_grad(eager_run):
    model, tok = classifier()
    eager = eager_classifier()
    enc = tok(TEXTS, return_tensors="pt", padding=True)
    outputs = eager(**enc, output_attentions=True)
    for a in outputs.attentions:
        a.retain_grad()
    predicted = outputs.logits.argmax(-1)
    outputs.logits[torch.arange(len(TEXTS)), predicted].sum().backward()
    weighted = [(a.detach() * a.grad).clamp(min=0).mean(1).double() for a in outputs.attentions]
    mean = torch.stack(weighted).mean(0)
    explainer = Explainer(model, tok)
    got = explainer.explain(TEXTS, "grad_attention")
    assert model.config._attn_implementation == "sdpa"  # the user's model keeps its kernel
    for b, res in enumerate(got):
        real = real_of(enc, b)
        np.testing.assert_allclose(res.scores, mean[b, 0, real].numpy(), atol=1e-7, rtol=1e-4)
    # the Chefer et al. rollout variant
    relevance = torch.eye(mean.shape[-1], dtype=torch.float64).expand_as(mean).clone()
    for w in weighted:
        relevance = relevance + w @ relevance
    rolled = explainer.explain(TEXTS, "grad_attention", aggregate="rollout")
    for b, res in enumerate(rolled):
        np.testing.assert_allclose(res.scores, relevance[b, 0, real_of(enc, b)].numpy(), atol=1e-7, rtol=1e-4)


def test_attention_saliency_from_a_record():
    model, tok = classifier()
    enc = tok(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad(), ap.capture(model, tok) as cap:
        model(**enc)
    from_record = attention_saliency(cap.record, "rollout")
    from_explainer = Explainer(model, tok).explain(TEXTS, "rollout")
    for a, b in zip(from_record, from_explainer, strict=True):
        assert a.tokens == b.tokens
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-12)
    with pytest.raises(ValueError, match="needs a model"):
        attention_saliency(cap.record, "integrated_gradients")
    last = attention_saliency(cap.record, "attention", query="last")
    assert all(r.query == len(r.tokens) - 1 for r in last)
