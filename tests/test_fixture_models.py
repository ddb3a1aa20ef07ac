"""The classic attention models of the article, trained as fixtures, captured through the adapters.

Each model is trained on first use (seeded, a few seconds on a CPU) and cached in
``fixtures/.cache/``; the tests check that the captured attention means what it should.
"""

import pytest
import torch

import attn_plugins as ap
from fixtures.luong_seq2seq import model as luong
from fixtures.luong_seq2seq import train as luong_train
from fixtures.tiny_transformer import model as tiny
from fixtures.tiny_transformer import train as tiny_train


# --------------------------------------------------------------------------------------------------
# Luong seq2seq (plain PyTorch): dot, general, concat scores on sequence reversal
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=luong.SCORES)
def luong_model(request):
    return request.param, luong_train.load_or_train(request.param)


def test_luong_reverses_and_attends_to_the_mirrored_position(luong_model):
    score, model = luong_model
    result = luong_train.evaluate(model)
    print(f"luong {score}: { ({k: round(v, 3) for k, v in result.items() if k != 'record'}) }")
    assert result["sequence_accuracy"] >= 0.9
    # output position i of a length-n input attends most to source position n-1-i
    assert result["alignment"] >= 0.9
    layer = result["record"].layers[0]
    assert (layer.name, layer.kind, layer.stack) == ("attention", "cross", None)


def test_luong_alignment_matrix_is_exactly_what_the_layer_returned(luong_model):
    _, model = luong_model
    src, lengths, tgt_in, _ = luong_train.test_batch(8, seed=7)
    returned = []
    handle = model.attention.register_forward_hook(lambda m, a, out: returned.append(out[1]))
    try:
        with torch.no_grad():
            expected_logits = model(src, tgt_in)
    finally:
        handle.remove()
    with torch.no_grad(), ap.capture(model, tokenizer=luong.Vocab()) as cap:
        logits = model(src, tgt_in)
    assert torch.equal(logits, expected_logits)
    record = cap.record
    (layer,) = record.layers
    assert layer.weights.shape == (8, 1, tgt_in.shape[1], src.shape[1])
    assert torch.equal(layer.weights[:, 0], torch.stack(returned, 1))
    assert torch.all(layer.weights.sum(-1).sub(1).abs() < 1e-5)
    pad = src == luong.PAD
    assert torch.all(layer.weights[:, 0][pad[:, None, :].expand(-1, tgt_in.shape[1], -1)] == 0)
    assert record.tokens[0][: lengths[0]] == [luong.itos(int(i)) for i in src[0, : lengths[0]]]
    assert torch.equal(record.inputs["decoder_input_ids"], tgt_in)


# --------------------------------------------------------------------------------------------------
# tiny Transformer from our own attention modules, on toy translation
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def transformer():
    return tiny_train.load_or_train()


def test_tiny_transformer_translates_and_cross_attention_aligns(transformer):
    result = tiny_train.evaluate(transformer)
    print(
        f"tiny transformer: accuracy {result['sequence_accuracy']:.3f}, scores "
        f"{ ({k: round(v, 3) for k, v in result['scores'].items()}) }"
    )
    assert result["sequence_accuracy"] >= 0.95
    # the last decoder layer's cross-attention (heads averaged) peaks on the source word each target word
    # translates, adjective-noun reordering included
    assert result["alignment"] >= 0.9
    record = result["record"]
    kinds = sorted((layer.stack, layer.kind, layer.index, layer.name) for layer in record.layers)
    assert kinds == [
        ("decoder", "cross", 0, "decoder.layers.0.cross_attn"),
        ("decoder", "cross", 1, "decoder.layers.1.cross_attn"),
        ("decoder", "self", 0, "decoder.layers.0.self_attn"),
        ("decoder", "self", 1, "decoder.layers.1.self_attn"),
        ("encoder", "self", 0, "encoder.layers.0.self_attn"),
        ("encoder", "self", 1, "encoder.layers.1.self_attn"),
    ]


def test_tiny_transformer_greedy_decoding_capture_matches_teacher_forcing(transformer):
    """Greedy decoding re-runs the decoder over its prefix at each step; the capture keeps each step's
    new row, which must be the row a teacher-forced pass over the same tokens computes."""
    src, _, _, _ = tiny_train.test_batch(16, seed=99)
    with torch.no_grad(), ap.capture(transformer) as greedy:
        _, tokens = transformer(src)
    tgt_in = torch.cat([torch.full((src.shape[0], 1), tiny.BOS), tokens[:, :-1]], dim=1)
    with torch.no_grad(), ap.capture(transformer) as forced:
        transformer(src, tgt_in)
    steps = tokens.shape[1]
    for layer in forced.record.layers:
        other = greedy.record.layer(layer.index, stack=layer.stack, kind=layer.kind)
        assert other.weights.shape == layer.weights.shape, layer.name
        torch.testing.assert_close(other.weights, layer.weights, rtol=1e-4, atol=1e-5)
    self_attention = forced.record.layer(0, stack="decoder", kind="self").weights
    assert self_attention.shape[2] == steps and torch.all(self_attention.triu(1) == 0)
