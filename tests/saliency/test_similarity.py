"""Sentence-similarity explanations of the bundled MiniLM."""

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients

from attn_plugins.saliency import SimilarityExplainer

from .helpers import minilm_path

PAIR = ("A man is playing a guitar.", "Someone plays an instrument.")


@pytest.fixture(scope="module")
def sim():
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_path())
    return SimilarityExplainer(AutoModel.from_pretrained(minilm_path()).eval(), tok)


def test_similarity_equals_sentence_transformers(sim):
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(minilm_path(), device="cpu")
    a, b = st.encode(list(PAIR), convert_to_tensor=True)
    expected = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    assert sim.similarity(*PAIR) == pytest.approx(expected, abs=1e-5)


def test_integrated_gradients_per_side_against_captum(sim):
    side_a, side_b = sim.explain(PAIR, "integrated_gradients", n_steps=16)[0]
    model, tok = sim.model, sim.tokenizer
    enc = tok(list(PAIR), return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    for side, res in ((0, side_a), (1, side_b)):
        single = tok(PAIR[side], return_tensors="pt")
        other = pooled[1 - side].unsqueeze(0)

        def f(embeds, single=single, other=other):  # this side's inputs
            h = model(
                inputs_embeds=embeds, attention_mask=single["attention_mask"], token_type_ids=single["token_type_ids"]
            ).last_hidden_state
            return torch.nn.functional.cosine_similarity(h.mean(1), other, dim=-1)

        embeds = model.get_input_embeddings()(single["input_ids"]).detach()
        ref = IntegratedGradients(f).attribute(embeds, baselines=torch.zeros_like(embeds), n_steps=16).sum(-1)[0]
        np.testing.assert_allclose(res.scores, ref.detach().double().numpy(), atol=1e-6, rtol=1e-5)
        assert res.field == ("sentence_a" if side == 0 else "sentence_b")
        assert res.info["similarity"] == pytest.approx(sim.similarity(*PAIR), abs=1e-6)
    # the content words carry the similarity
    top_a = {side_a.tokens[i] for i in side_a.top_k(3, skip_special=True)}
    top_b = {side_b.tokens[i] for i in side_b.top_k(3, skip_special=True)}
    assert "guitar" in top_a and "instrument" in top_b


@pytest.mark.parametrize("method", ["rollout", "attention", "grad_attention", "saliency"])
def test_other_methods_run_on_pairs(sim, method):
    results = sim.explain([PAIR, ("A cat sleeps.", "The stock market fell.")], method)
    assert len(results) == 2
    for a, b in results:
        assert len(a.scores) == len(a.tokens) and np.isfinite(a.scores).all() and np.isfinite(b.scores).all()
    if method in ("rollout", "attention"):
        # mean pooling reads every row: the score is the mean of the real rows
        assert results[0][0].query is None
        assert results[0][0].scores.sum() == pytest.approx(1.0, abs=1e-6)


def test_captum_table_shows_the_similarity_not_nan(sim):
    """Captum's table for the similarity task: "cosine similarity (0.xx)" as the predicted label."""
    import attn_plugins as ap

    results = sim.explain(PAIR, "input_x_gradient")
    view = ap.export(results, "captum")
    expected = sim.similarity(*PAIR)
    for record in view.records:
        assert record.pred_class == "cosine similarity"
        assert record.pred_prob == pytest.approx(expected, abs=1e-6)
    page = view._repr_html_()
    assert "(nan)" not in page and f"cosine similarity ({expected:.2f})" in page
