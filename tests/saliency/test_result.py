"""TokenSaliency and word-piece merging."""

import json

import numpy as np
import pytest

from attn_plugins.saliency import TokenSaliency, merge_words


def make(tokens, scores, **kw):
    return TokenSaliency(tokens=tokens, scores=scores, method="test", **kw)


def test_normalisation_keeps_zero_as_zero():
    sal = make(["a", "b", "c"], [0.0, -2.0, 2.0])
    np.testing.assert_allclose(sal.normalized("l1"), [0.0, 0.5, 0.5])
    np.testing.assert_allclose(sal.normalized("max", absolute=False), [0.0, -1.0, 1.0])
    np.testing.assert_array_equal(make(["a", "b"], [0.0, 0.0]).normalized("l1"), [0.0, 0.0])
    np.testing.assert_array_equal(make(["a"], [0.0]).normalized("max"), [0.0])


def test_validation_top_k_and_round_trip():
    with pytest.raises(ValueError):
        make(["a", "b"], [1.0])
    sal = make(
        ["[CLS]", "x", "y", "[SEP]"],
        [5.0, -3.0, 1.0, 0.5],
        special=[True, False, False, True],
        offsets=[(0, 0), (0, 1), (2, 3), (0, 0)],
        info={"delta": np.float32(0.25)},
    )
    assert sal.top_k(2) == [0, 1]
    assert sal.top_k(2, skip_special=True) == [1, 2]
    data = json.loads(json.dumps(sal.to_dict()))
    back = TokenSaliency.from_dict(data)
    assert back.tokens == sal.tokens and back.offsets == sal.offsets
    np.testing.assert_array_equal(back.scores, sal.scores)
    assert sal.without_special().tokens == ["x", "y"]


def test_merge_by_word_ids_and_offsets():
    sal = make(
        ["[CLS]", "un", "##believ", "##able", "film", "[SEP]"],
        [0.1, 1.0, 2.0, -0.5, 3.0, 0.2],
        word_ids=[None, 0, 0, 0, 1, None],
        special=[True, False, False, False, False, True],
        offsets=[(0, 0), (0, 2), (2, 8), (8, 12), (13, 17), (0, 0)],
        text="Unbelievable film",
        position=2,
    )
    for how, expected in (("sum", 2.5), ("mean", 2.5 / 3), ("max", 2.0), ("absmax", 2.0), ("first", 1.0)):
        words = merge_words(sal, how)
        assert words.tokens == ["[CLS]", "Unbelievable", "film", "[SEP]"]
        assert words.scores[1] == pytest.approx(expected)
        assert words.position == 1
    assert merge_words(sal, keep_special=False).tokens == ["Unbelievable", "film"]
    with pytest.raises(ValueError):
        merge_words(sal, "median")


def test_merge_by_markers():
    wordpiece = make(["play", "##ing", "guitar"], [1.0, 2.0, 4.0])
    assert merge_words(wordpiece).tokens == ["playing", "guitar"]
    bpe = make(
        ["<s>", "\u0120play", "ing", "\u0120guitar", "</s>"],
        [0, 1.0, 2.0, 4.0, 0],
        special=[True, False, False, False, True],
    )
    merged = merge_words(bpe)
    assert merged.tokens == ["<s>", "playing", "guitar", "</s>"]
    np.testing.assert_allclose(merged.scores, [0, 3.0, 4.0, 0])
    sp = make(["\u2581Un", "believ", "able", "\u2581film"], [1, 1, 1, 1])
    assert merge_words(sp).tokens == ["Unbelievable", "film"]
