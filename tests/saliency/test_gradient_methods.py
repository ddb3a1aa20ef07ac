"""Gradient saliency through the Explainer against Captum called directly on the model."""

import numpy as np
import pytest
import torch
from captum.attr import (
    DeepLift,
    FeatureAblation,
    InputXGradient,
    IntegratedGradients,
    LayerIntegratedGradients,
    NoiseTunnel,
    Saliency,
)

from attn_plugins.saliency import METHODS, Explainer

from .helpers import TEXTS, classifier

ATOL = 1e-6


@pytest.fixture(scope="module")
def setup():
    model, tok = classifier()
    enc = tok(TEXTS, return_tensors="pt", padding=True)
    embeds = model.get_input_embeddings()(enc["input_ids"]).detach()
    with torch.no_grad():
        predicted = model(**enc).logits.argmax(-1).tolist()
    return model, tok, enc, embeds, predicted


def forward(model):
    def f(embeds, mask, token_types):
        return model(inputs_embeds=embeds, attention_mask=mask, token_type_ids=token_types).logits

    return f


def ours(model, tok, method, **kwargs):
    return Explainer(model, tok).explain(TEXTS, method, batch_size=len(TEXTS), progress=False, **kwargs)


def check(results, reference, enc):
    for b, res in enumerate(results):
        real = enc["attention_mask"][b].bool()
        np.testing.assert_allclose(res.scores, reference[b][real].detach().double().numpy(), atol=ATOL, rtol=1e-5)
        assert res.tokens == [
            t for t, m in zip(classifier()[1].convert_ids_to_tokens(enc["input_ids"][b]), real, strict=True) if m
        ]


def args(enc):
    return (enc["attention_mask"], enc["token_type_ids"])


def test_every_named_method_is_registered():
    for name in (
        "attention",
        "rollout",
        "flow",
        "grad_attention",
        "saliency",
        "input_x_gradient",
        "integrated_gradients",
        "layer_integrated_gradients",
        "smoothgrad",
        "deeplift",
        "feature_ablation",
    ):
        assert name in METHODS


def test_saliency(setup):
    model, tok, enc, embeds, predicted = setup
    ref = Saliency(forward(model)).attribute(embeds, target=predicted, additional_forward_args=args(enc)).sum(-1)
    check(ours(model, tok, "saliency"), ref, enc)


def test_input_x_gradient(setup):
    model, tok, enc, embeds, predicted = setup
    ref = InputXGradient(forward(model)).attribute(embeds, target=predicted, additional_forward_args=args(enc)).sum(-1)
    check(ours(model, tok, "input_x_gradient"), ref, enc)


def test_integrated_gradients_and_delta(setup):
    model, tok, enc, embeds, predicted = setup
    ref, delta = IntegratedGradients(forward(model)).attribute(
        embeds,
        baselines=torch.zeros_like(embeds),
        target=predicted,
        additional_forward_args=args(enc),
        n_steps=20,
        return_convergence_delta=True,
    )
    results = ours(model, tok, "integrated_gradients", n_steps=20)
    check(results, ref.sum(-1), enc)
    for res, d in zip(results, delta, strict=True):
        assert res.info["delta"] == pytest.approx(float(d), abs=1e-5)


def test_explicit_target_by_index_and_label(setup):
    model, tok, enc, embeds, predicted = setup
    ref = Saliency(forward(model)).attribute(embeds, target=0, additional_forward_args=args(enc)).sum(-1)
    check(ours(model, tok, "saliency", target=0), ref, enc)
    check(ours(model, tok, "saliency", target="negative"), ref, enc)
    results = ours(model, tok, "saliency", target="negative")
    assert all(r.target == 0 and r.target_label == "negative" for r in results)
    with pytest.raises(ValueError, match="unknown label"):
        ours(model, tok, "saliency", target="neutral")


def test_output_loss_differentiates_negative_log_probability(setup):
    model, tok, enc, embeds, predicted = setup

    def loss(embeds, mask, token_types):
        return -torch.log_softmax(forward(model)(embeds, mask, token_types), -1)

    ref = InputXGradient(loss).attribute(embeds, target=predicted, additional_forward_args=args(enc)).sum(-1)
    got = Explainer(model, tok, output="loss").explain(TEXTS, "input_x_gradient", batch_size=8)
    check(got, ref, enc)


def test_layer_integrated_gradients(setup):
    model, tok, enc, embeds, predicted = setup

    def ids_forward(ids, mask, token_types):
        return model(input_ids=ids, attention_mask=mask, token_type_ids=token_types).logits

    special = torch.zeros_like(enc["input_ids"], dtype=torch.bool)
    for sid in tok.all_special_ids:
        special |= enc["input_ids"] == sid
    baseline = torch.where(special | (enc["attention_mask"] == 0), enc["input_ids"], tok.pad_token_id)
    ref = LayerIntegratedGradients(ids_forward, model.get_input_embeddings()).attribute(
        enc["input_ids"], baselines=baseline, target=predicted, additional_forward_args=args(enc), n_steps=20
    )
    check(ours(model, tok, "layer_integrated_gradients", n_steps=20), ref.sum(-1), enc)


def test_smoothgrad_is_seeded(setup):
    model, tok, enc, embeds, predicted = setup
    state = torch.random.get_rng_state()
    first = ours(model, tok, "smoothgrad", nt_samples=6, stdevs=0.02, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's generator is untouched
    second = ours(model, tok, "smoothgrad", nt_samples=6, stdevs=0.02, seed=3)
    other = ours(model, tok, "smoothgrad", nt_samples=6, stdevs=0.02, seed=4)
    for a, b, c in zip(first, second, other, strict=True):
        np.testing.assert_array_equal(a.scores, b.scores)
        assert not np.allclose(a.scores, c.scores)
    with torch.random.fork_rng():
        torch.manual_seed(3)
        ref = NoiseTunnel(Saliency(forward(model))).attribute(
            embeds, nt_type="smoothgrad", nt_samples=6, stdevs=0.02, target=predicted, additional_forward_args=args(enc)
        )
    check(first, ref.sum(-1), enc)


def test_deeplift(setup):
    model, tok, enc, embeds, predicted = setup

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, embeds, mask, token_types):
            return self.model(inputs_embeds=embeds, attention_mask=mask, token_type_ids=token_types).logits

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = DeepLift(Wrapped()).attribute(
            embeds, baselines=torch.zeros_like(embeds), target=predicted, additional_forward_args=args(enc)
        )
    check(ours(model, tok, "deeplift"), ref.sum(-1), enc)


def test_feature_ablation(setup):
    model, tok, enc, embeds, predicted = setup
    b, n, d = embeds.shape
    mask = torch.arange(n).view(1, n, 1).expand(b, n, d)
    ref = FeatureAblation(forward(model)).attribute(
        embeds, baselines=0.0, target=predicted, additional_forward_args=args(enc), feature_mask=mask
    )
    check(ours(model, tok, "feature_ablation"), ref[..., 0], enc)
    # by hand for one token of the first sentence: the logit drop when its embedding is zeroed
    cut = embeds.clone()
    cut[0, 2] = 0
    with torch.no_grad():
        full = forward(model)(embeds, *args(enc))[0, predicted[0]]
        ablated = forward(model)(cut, *args(enc))[0, predicted[0]]
    got = ours(model, tok, "feature_ablation")[0].scores[2]
    assert got == pytest.approx(float(full - ablated), abs=1e-5)


def test_batching_does_not_change_results(setup):
    model, tok, *_ = setup
    explainer = Explainer(model, tok)
    together = explainer.explain(TEXTS, "integrated_gradients", n_steps=8, batch_size=3)
    apart = explainer.explain(TEXTS, "integrated_gradients", n_steps=8, batch_size=1)
    for a, b in zip(together, apart, strict=True):
        assert a.tokens == b.tokens
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


def test_result_fields(setup):
    model, tok, enc, embeds, predicted = setup
    res = ours(model, tok, "saliency", true_labels=["positive", "negative", "positive"])
    with torch.no_grad():
        probs = torch.softmax(model(**enc).logits.double(), -1)
    for b, r in enumerate(res):
        assert r.prediction == predicted[b] and r.target == predicted[b]
        assert r.prediction_label in ("negative", "positive")
        assert r.probability == pytest.approx(float(probs[b].max()))
        assert r.special[0] and r.special[-1] and not any(r.special[1:-1])
        assert r.text == TEXTS[b] and r.method == "saliency"
    assert res[1].true_label == "negative"


def test_progress_bar_over_many_inputs(setup, capsys):
    model, tok, *_ = setup
    results = Explainer(model, tok).explain(TEXTS * 3, "integrated_gradients", n_steps=4, batch_size=2, progress=True)
    err = capsys.readouterr().err
    # the bar names the method and counts the 9 inputs (tqdm throttles redraws, so the last count drawn varies)
    assert "integrated_gradients" in err and "0/9" in err and len(results) == 9
    Explainer(model, tok).explain(TEXTS, "saliency", batch_size=8)
    assert capsys.readouterr().err == ""  # one batch: no bar


def test_merge_words(setup):
    model, tok, *_ = setup
    res = Explainer(model, tok).explain(["Unbelievably charming storytelling."], "input_x_gradient")[0]
    assert any(t.startswith("##") for t in res.tokens)
    words = res.to_words()
    assert words.tokens == ["[CLS]", "Unbelievably", "charming", "storytelling", ".", "[SEP]"]
    assert words.scores.sum() == pytest.approx(res.scores.sum())
    merged = Explainer(model, tok).explain(
        ["Unbelievably charming storytelling."], "input_x_gradient", merge_words="max"
    )[0]
    pieces = merged.info["word_pieces"][1]
    idx = [res.tokens.index(p) for p in pieces]
    assert merged.scores[1] == pytest.approx(max(res.scores[i] for i in idx))


# ----- other heads: token classification, masked LM, causal LM --------------------------------------
@pytest.fixture(scope="module")
def heads():
    from transformers import BertForMaskedLM, BertForTokenClassification, GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging

    from .helpers import minilm_path

    logging.set_verbosity_error()
    torch.manual_seed(0)
    return {
        "token": BertForTokenClassification.from_pretrained(minilm_path(), num_labels=3).eval(),
        "mlm": BertForMaskedLM.from_pretrained(minilm_path()).eval(),
        "clm": GPT2LMHeadModel(GPT2Config(vocab_size=30522, n_positions=64, n_embd=32, n_layer=2, n_head=2)).eval(),
    }


def _positions_reference(model, enc, positions, targets, use_token_types=True):
    def f(embeds, mask, *rest):
        kw = {"token_type_ids": rest[0]} if use_token_types else {}
        logits = model(inputs_embeds=embeds, attention_mask=mask, **kw).logits
        return logits[torch.arange(len(positions)), positions]

    embeds = model.get_input_embeddings()(enc["input_ids"]).detach()
    extra = (enc["attention_mask"], enc["token_type_ids"]) if use_token_types else (enc["attention_mask"],)
    return InputXGradient(f).attribute(embeds, target=targets, additional_forward_args=extra).sum(-1)


def test_token_classification(heads):
    _, tok = classifier()
    model = heads["token"]
    enc = tok(TEXTS, return_tensors="pt", padding=True)
    positions = torch.tensor([2, 2, 2])
    with torch.no_grad():
        targets = model(**enc).logits[torch.arange(3), positions].argmax(-1).tolist()
    ref = _positions_reference(model, enc, positions, targets)
    got = Explainer(model, tok).explain(TEXTS, "input_x_gradient", position=2)
    check(got, ref, enc)
    assert all(r.position == 2 for r in got)
    with pytest.raises(ValueError, match="position"):
        Explainer(model, tok).explain(TEXTS, "input_x_gradient")


def test_masked_lm(heads):
    _, tok = classifier()
    model = heads["mlm"]
    texts = ["The movie was [MASK].", "I [MASK] this film a lot."]
    enc = tok(texts, return_tensors="pt", padding=True)
    positions = (enc["input_ids"] == tok.mask_token_id).int().argmax(-1)
    target = tok.convert_tokens_to_ids("great")
    ref = _positions_reference(model, enc, positions, [target, target])
    got = Explainer(model, tok).explain(texts, "input_x_gradient", target="great")
    for b, r in enumerate(got):
        real = enc["attention_mask"][b].bool()
        np.testing.assert_allclose(r.scores, ref[b][real].detach().double().numpy(), atol=ATOL, rtol=1e-5)
        assert r.target_label == "great" and r.tokens[r.position] == "[MASK]"
    with pytest.raises(ValueError, match="mask token"):
        Explainer(model, tok).explain(["no mask here"], "saliency")


def test_causal_lm_next_token(heads):
    _, tok = classifier()
    model = heads["clm"]
    texts = ["the film was", "a much longer prefix of the review"]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    enc.pop("token_type_ids")
    positions = enc["attention_mask"].sum(-1) - 1
    with torch.no_grad():
        targets = model(**enc).logits[torch.arange(2), positions].argmax(-1).tolist()
    ref = _positions_reference(model, enc, positions, targets, use_token_types=False)
    got = Explainer(model, tok).explain(dict(enc), "input_x_gradient")
    for b, r in enumerate(got):
        real = enc["attention_mask"][b].bool()
        np.testing.assert_allclose(r.scores, ref[b][real].detach().double().numpy(), atol=ATOL, rtol=1e-5)
        assert r.position == len(r.tokens) - 1 and r.target == targets[b]


def test_missing_captum_names_the_extra(setup, monkeypatch):
    import sys

    model, tok, *_ = setup
    monkeypatch.setitem(sys.modules, "captum.attr", None)  # as if captum were not installed
    with pytest.raises(ImportError, match=r"attn-plugins\[captum\]"):
        Explainer(model, tok).explain(TEXTS[:1], "saliency")
