"""The metrics against values worked by hand from the papers' formulas, on a transparent bag-of-words
classifier (logit difference = sum of per-token weights, so every probability is a sigmoid of a sum)."""

import math

import numpy as np
import pytest
import torch

from attn_plugins.errors import InputError
from attn_plugins.faithfulness import (
    Scorer,
    comprehensiveness_sufficiency,
    deletion_insertion,
    leave_one_out,
    make_instances,
    plausibility,
    rationale_mask,
)
from attn_plugins.faithfulness.perturb import keep_only, perturb
from attn_plugins.saliency import TokenSaliency

WEIGHTS = {"great": 2.0, "fine": 1.0, "bad": -1.0, "nice": 0.5, "[MASK]": 0.25}
TOKENS = ["[CLS]", "great", "fine", "bad", "nice", "[SEP]"]
SCORES = [0.0, 0.4, 0.3, -0.2, 0.35, 0.0]  # ranking a(great) > d(nice) > b(fine) > c(bad)
sig = lambda s: 1 / (1 + math.exp(-s))  # noqa: E731


class BagOfWords(torch.nn.Module):
    def __init__(self, tokenizer):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(tokenizer.vocab_size, dtype=torch.float64), requires_grad=False)
        for token, w in WEIGHTS.items():
            self.weight.data[tokenizer.convert_tokens_to_ids(token)] = w
        self.calls = []

    def forward(self, input_ids, attention_mask):
        self.calls.append((input_ids.clone(), attention_mask.clone()))
        s = (self.weight[input_ids] * attention_mask).sum(-1)
        return type("Out", (), {"logits": torch.stack([-s / 2, s / 2], dim=-1)})()


@pytest.fixture(scope="module")
def setup(minilm_tokenizer):
    model = BagOfWords(minilm_tokenizer)
    sal = TokenSaliency(
        tokens=TOKENS, scores=SCORES, method="hand", target=1, special=[True, False, False, False, False, True]
    )
    return model, minilm_tokenizer, make_instances([sal], minilm_tokenizer)


def test_aopc_by_hand(setup):
    model, tok, instances = setup
    p = sig(2.5)
    # bins of 4 removable tokens: k = 1, 2, 3, 4; positive ranking great, nice, fine; k=4 repeats k=3: skipped
    row = comprehensiveness_sufficiency(instances, Scorer(model, tok), replacement=None, bins=[0.25, 0.5, 0.75, 1.0])[0]
    assert row["bin_sizes"] == [1, 2, 3]
    assert row["comprehensiveness"] == pytest.approx(np.mean([p - sig(0.5), p - sig(0.0), p - sig(-1.0)]), abs=1e-12)
    assert row["sufficiency"] == pytest.approx(np.mean([p - sig(2.0), p - sig(2.5), p - sig(3.5)]), abs=1e-12)
    # replaced by [MASK] (weight 0.25): each removed token leaves 0.25 behind
    masked = comprehensiveness_sufficiency(
        instances, Scorer(model, tok), replacement=tok.mask_token_id, bins=[0.25, 0.5, 0.75, 1.0]
    )[0]
    assert masked["comprehensiveness"] == pytest.approx(
        np.mean([p - sig(0.75), p - sig(0.5), p - sig(-0.25)]), abs=1e-12
    )
    assert masked["sufficiency"] == pytest.approx(np.mean([p - sig(2.75), p - sig(3.0), p - sig(3.75)]), abs=1e-12)
    # the ERASER bins on 4 tokens: 1%, 5%, 10%, 20% give k = 0 (skipped), 50% gives k = 2
    eraser = comprehensiveness_sufficiency(instances, Scorer(model, tok), replacement=None)[0]
    assert eraser["bin_sizes"] == [2] and eraser["comprehensiveness"] == pytest.approx(p - sig(0.0), abs=1e-12)


def test_deletion_insertion_by_hand(setup):
    model, tok, instances = setup
    row = deletion_insertion(instances, Scorer(model, tok), replacement=None)[0]
    deletion = [sig(s) for s in (2.5, 0.5, 0.0, -1.0, 0.0)]  # remove great, nice, fine, bad in turn
    insertion = [sig(s) for s in (0.0, 2.0, 2.5, 3.5, 2.5)]  # keep great, nice, fine, bad in turn
    np.testing.assert_allclose(row["deletion"], deletion, atol=1e-12)
    np.testing.assert_allclose(row["insertion"], insertion, atol=1e-12)
    trap = lambda y: sum((y[i] + y[i + 1]) / 2 * 0.25 for i in range(4))  # noqa: E731
    assert row["deletion_auc"] == pytest.approx(trap(deletion))
    assert row["insertion_auc"] == pytest.approx(trap(insertion))


def test_leave_one_out_by_hand(setup):
    model, tok, instances = setup
    row = leave_one_out(instances, Scorer(model, tok), replacement=None)[0]
    p = sig(2.5)
    np.testing.assert_allclose(row["loo"], [p - sig(0.5), p - sig(1.5), p - sig(3.5), p - sig(2.0)], atol=1e-12)
    # drops rank great > fine > nice > bad, scores great > nice > fine > bad: 5 of 6 pairs agree
    assert row["loo_tau"] == pytest.approx((5 - 1) / 6)


def test_one_forward_per_batch_and_specials_kept(setup, minilm_tokenizer):
    model, tok, _ = setup
    sals = [
        TokenSaliency(
            tokens=["[CLS]"] + words + ["[SEP]"],
            scores=[0] + list(range(len(words), 0, -1)) + [0],
            method="hand",
            target=1,
        )
        for words in (["great", "fine"], ["bad", "nice", "great"], ["fine"])
    ]
    instances = make_instances(sals, tok)
    assert [i.candidates for i in instances] == [[1, 2], [1, 2, 3], [1]]  # specials from the tokenizer
    for replacement in (None, tok.mask_token_id):
        model.calls.clear()
        scorer = Scorer(model, tok, batch_size=4)
        rows = deletion_insertion(instances, scorer, replacement=replacement)
        # every distinct perturbed input is scored once (the intact input starts the deletion curve and
        # ends the insertion curve; the empty one ends the first and starts the second), 4 per forward
        distinct = {
            tuple(f(inst, inst.ranking()[:k], replacement))
            for inst in instances
            for k in range(len(inst.candidates) + 1)
            for f in (perturb, keep_only)
        }
        assert len(distinct) < sum(2 * (len(i.candidates) + 1) for i in instances)
        assert scorer.forwards == len(model.calls) == math.ceil(len(distinct) / 4)
        assert sorted(
            tuple(ids[b, : int(mask[b].sum())].tolist()) for ids, mask in model.calls for b in range(ids.shape[0])
        ) == sorted(distinct)
        assert deletion_insertion(instances, scorer, replacement=replacement) == rows  # remembered: no forward
        assert scorer.forwards == len(model.calls)
        for ids, mask in model.calls:
            lengths = mask.sum(-1)
            assert (ids[:, 0] == tok.cls_token_id).all()
            assert all(ids[b, lengths[b] - 1] == tok.sep_token_id for b in range(ids.shape[0]))
        single = deletion_insertion(instances, Scorer(model, tok, batch_size=1), replacement=replacement)
        for a, b in zip(rows, single, strict=True):
            np.testing.assert_allclose(a["deletion"], b["deletion"], atol=1e-12)


def test_plausibility_by_hand(setup):
    _, tok, instances = setup
    sal = instances[0].saliency
    gold = [False, True, False, True, False, False]  # great, bad
    out = plausibility(sal, gold)  # k = 2: top great, nice
    assert out["token_f1"] == pytest.approx(0.5) and out["iou"] == pytest.approx(1 / 3)
    perfect = plausibility(sal, [False, True, False, False, True, False])  # great, nice: the top two
    assert perfect == {"token_f1": 1.0, "iou": 1.0, "auprc": pytest.approx(1.0)}
    assert math.isnan(plausibility(sal, [False] * 6)["auprc"])


def test_rationale_words_cover_every_word_piece(minilm_tokenizer):
    from attn_plugins.saliency import Explainer  # noqa: F401  (the type of results evaluate gets)

    text = "A heartfelt, unforgettable film."
    enc = minilm_tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    tokens = minilm_tokenizer.convert_ids_to_tokens(enc["input_ids"])
    sal = TokenSaliency(
        tokens=tokens,
        scores=np.ones(len(tokens)),
        method="hand",
        text=text,
        offsets=[tuple(o) for o in enc["offset_mapping"]],
        special=[bool(s) for s in enc["special_tokens_mask"]],
    )
    mask = rationale_mask(sal, ["unforgettable"])
    marked = [t for t, m in zip(tokens, mask, strict=True) if m]
    assert len(marked) >= 2 and "".join(t.lstrip("#") for t in marked) == "unforgettable"
    with pytest.raises(InputError, match="not in"):
        rationale_mask(sal, ["boring"])


def test_word_merged_results_are_refused(setup):
    _, tok, _ = setup
    merged = TokenSaliency(tokens=["[CLS]", "unforgettable", "[SEP]"], scores=[0, 1, 0], method="x", target=1)
    with pytest.raises(InputError, match="merge_words=False"):
        make_instances([merged], tok)
