"""Per-head statistics against values worked out by hand from the definitions."""

import math

import pytest
import torch

from attn_plugins.analysis import stats

from .fixtures import A_TOKENS, B1, BATCH, BATCH_MASK, A, record_of

LN2 = math.log(2)
LN3 = math.log(3)
# entropies of the rows of B1 (item 1), by hand: -(p ln p + q ln q)
H_06_04 = -(0.6 * math.log(0.6) + 0.4 * math.log(0.4))
H_02_08 = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))


def approx(x):
    return pytest.approx(x, abs=1e-6)


def test_entropy_of_one_head():
    # rows: ln 2, 0.5 ln 4 + 0.5 ln 2 = 1.5 ln 2, 0
    assert stats.entropy(A).item() == approx((LN2 + 1.5 * LN2 + 0.0) / 3)
    assert stats.entropy(A, base=2).item() == approx((1 + 1.5 + 0) / 3)


def test_normalized_entropy_uses_the_reachable_keys():
    # row 0 reaches 2 keys (1.0 of uniform), row 1 reaches 3 (1.5 ln2 / ln3), row 2 reaches 1 key: left out
    assert stats.entropy(A, normalized=True).item() == approx((1.0 + 1.5 * LN2 / LN3) / 2)
    # uniform baseline: mean of ln(n) over the rows = (ln2 + ln3 + ln1) / 3
    assert stats.uniform_entropy(A).item() == approx((LN2 + LN3 + 0) / 3)


def test_mean_distance():
    # rows: 0.5*1, 0.25*1 + 0.25*1, 0 -> mean 1/3
    assert stats.mean_distance(A).item() == approx(1 / 3)


def test_previous_next_self():
    assert stats.previous_token_share(A).item() == approx((0.25 + 0.0) / 2)  # rows 1, 2
    assert stats.next_token_share(A).item() == approx((0.5 + 0.25) / 2)  # rows 0, 1
    assert stats.self_share(A).item() == approx((0.5 + 0.5 + 1.0) / 3)


def test_special_token_shares_from_tokens():
    # [CLS] is key 0 and '.' is key 2 (punctuation); rows: 0.5, 0.5, 1.0
    assert stats.special_token_share(A, tokens=A_TOKENS).item() == approx(2 / 3)
    groups = stats.token_group_shares(A, tokens=A_TOKENS)
    assert groups["[CLS]/BOS"].item() == approx((0.5 + 0.25 + 0) / 3)
    assert groups["punctuation"].item() == approx((0 + 0.25 + 1.0) / 3)
    assert groups["[SEP]/EOS"].item() == approx(0.0)
    # a given set, a bool mask and key indices pick the same keys
    assert stats.token_share(A, {"hello"}, tokens=A_TOKENS).item() == approx((0.5 + 0.5 + 0) / 3)
    assert stats.token_share(A, torch.tensor([False, True, False])).item() == approx(1 / 3)
    assert stats.token_share(A, [1]).item() == approx(1 / 3)


def test_special_tokens_need_tokens():
    with pytest.raises(ValueError, match="tokens"):
        stats.special_token_share(A)


def test_token_classes():
    assert stats.is_punctuation(".") and stats.is_punctuation("Ġ,") and stats.is_punctuation("▁!")
    assert not stats.is_punctuation("cat") and not stats.is_punctuation("[CLS]")
    for tok in ("[CLS]", "[SEP]", "<s>", "</s>", "<|endoftext|>", "<bos>"):
        assert stats.is_special_token(tok)
    assert not stats.is_special_token("hello")


def test_padding_is_excluded():
    mask = BATCH_MASK
    # pooled over the 5 real rows (3 of item 0, 2 of item 1); item 1's padded query row is left out
    assert stats.entropy(BATCH, attention_mask=mask).item() == approx((LN2 + 1.5 * LN2 + 0 + H_06_04 + H_02_08) / 5)
    assert stats.entropy(BATCH, attention_mask=mask, item=1).item() == approx((H_06_04 + H_02_08) / 2)
    # distance: item 1 rows 0.4*1 and 0.2*1
    assert stats.mean_distance(BATCH, attention_mask=mask).item() == approx((0.5 + 0.5 + 0 + 0.4 + 0.2) / 5)
    # previous: item 0 rows 1, 2 (0.25, 0) and item 1 row 1 (0.2)
    assert stats.previous_token_share(BATCH, attention_mask=mask).item() == approx((0.25 + 0 + 0.2) / 3)
    # next: item 1 row 1's next key is padding, so only its row 0 counts (0.4)
    assert stats.next_token_share(BATCH, attention_mask=mask).item() == approx((0.5 + 0.25 + 0.4) / 3)


def test_masked_item_equals_the_cropped_matrix():
    padded = stats.head_stats(BATCH, attention_mask=BATCH_MASK, item=1)
    cropped = stats.head_stats(B1[:2, :2])
    for name in ("entropy", "distance", "previous", "next", "self"):
        assert padded.get(name).item() == approx(cropped.get(name).item()), name


def test_record_gives_layers_by_heads_and_reads_its_mask():
    two_heads = torch.stack([A, A.T / A.T.sum(-1, keepdim=True)])[None]  # [1, 2, 3, 3]
    rec = record_of(two_heads, two_heads, tokens=[A_TOKENS])
    ent = stats.entropy(rec)
    assert ent.shape == (2, 2)
    assert ent[0, 0].item() == approx((LN2 + 1.5 * LN2) / 3)
    hs = stats.head_stats(rec)
    assert hs.labels == ["L0", "L1"] and hs.heads == [[0, 1], [0, 1]]
    assert hs.special[1, 0].item() == approx(2 / 3)
    assert len(hs.rows()) == 4 and "entropy" in str(hs)
    masked = record_of(BATCH, mask=BATCH_MASK)
    assert stats.entropy(masked, item=1)[0, 0].item() == approx((H_06_04 + H_02_08) / 2)
    assert stats.entropy(rec, layers=[-1]).shape == (1, 2)


def test_shapes_of_plain_inputs():
    assert stats.entropy(A).dim() == 0
    assert stats.entropy(A[None]).shape == (1,)
    assert stats.entropy(BATCH).shape == (1,)
    with pytest.raises(ValueError, match="batch, heads"):
        stats.entropy(torch.zeros(3))


def test_cross_attention_has_no_positions():
    with pytest.raises(ValueError, match="cross"):
        stats.mean_distance(A, kind="cross")
