"""The fixture sentiment head on the frozen MiniLM."""

import torch

from fixtures.minilm_head import LABELS, accuracy, load_classifier, load_dataset, split

from .helpers import classifier


def test_dataset_is_balanced_and_split_is_fixed():
    texts, labels = load_dataset()
    assert len(texts) == 200 and len(set(texts)) == 200
    assert labels.count(0) == labels.count(1) == 100
    first, second = split(), split()
    assert first == second
    assert len(first["test"][0]) == 40 and not set(first["test"][0]) & set(first["train"][0])


def test_classifier_predicts_held_out_sentences():
    model, tok = classifier()
    assert model.config.id2label == dict(enumerate(LABELS))
    assert accuracy(model, tok, *split()["test"]) >= 0.85
    assert not model.training
    assert all(p.requires_grad for p in model.parameters())  # gradients flow for saliency


def test_encoder_is_the_untouched_minilm_and_cache_reproduces(tmp_path, monkeypatch):
    from transformers import AutoModel

    from .helpers import minilm_path

    model, tok = classifier()
    base = AutoModel.from_pretrained(minilm_path())
    for name, value in base.state_dict().items():
        if not name.startswith("pooler."):
            assert torch.equal(model.bert.state_dict()[name], value), name
    monkeypatch.setenv("ATTN_PLUGINS_CACHE", str(tmp_path))
    built, _ = load_classifier()  # trains and caches
    assert list((tmp_path / "minilm_head").glob("head-*.safetensors"))
    cached, _ = load_classifier()  # loads the cache
    enc = tok(["A moving story.", "Dull and clumsy."], return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(built(**enc).logits, cached(**enc).logits)
        assert built(**enc).logits.argmax(-1).tolist() == [1, 0]
