"""Plain PyTorch seq2seq models through TeacherForced subclasses: the Luong GRU model, whose decoder embeds
one token per step from the encoder's own embedding table, against Captum on a hand-written forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

captum_attr = pytest.importorskip("captum.attr")

import attn_plugins as ap  # noqa: E402
from attn_plugins.generation.attribute import attribute  # noqa: E402
from fixtures.luong_seq2seq import model as luong  # noqa: E402
from fixtures.teachers import LuongTeacher, TinyTransformerTeacher  # noqa: E402

SOURCE = [[4, 9, 5, 12]]
SEQUENCE = [[luong.BOS, 12, 5, 9, 4, luong.EOS]]


def _luong():
    torch.manual_seed(0)
    return luong.LuongSeq2Seq("general").eval().double()


def _step_forward(model, t):
    """Step ``t``'s probabilities from source and decoder-input embeddings, written out from the model's code."""

    def forward(src_e, dec_e):
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            src_e, torch.tensor([src_e.shape[1]] * src_e.shape[0]), batch_first=True, enforce_sorted=False
        )
        outputs, final = model.encoder(packed)
        keys, _ = torch.nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True, total_length=src_e.shape[1])
        state = torch.tanh(model.bridge(torch.cat([final[0], final[1]], dim=-1)))
        mask = torch.ones(src_e.shape[:2], dtype=torch.bool)
        feed = keys.new_zeros(src_e.shape[0], model.hidden)
        for k in range(t + 1):
            state = model.decoder_cell(torch.cat([dec_e[:, k], feed], dim=-1), state)
            context, _ = model.attention(state, keys, mask)
            feed = torch.tanh(model.combine(torch.cat([context, state], dim=-1)))
        return torch.softmax(model.out(feed), dim=-1)

    return forward


def test_luong_input_x_gradient_equals_captum_per_step():
    model = _luong()
    teacher = LuongTeacher(model, torch.tensor(SOURCE), torch.tensor(SEQUENCE))
    result = attribute(teacher, ["input_x_gradient", "feature_ablation"], progress=False)
    with torch.no_grad():
        src_e, dec_e = model.embed(torch.tensor(SOURCE)), model.embed(torch.tensor(SEQUENCE)[:, :-1])
    for t, target in enumerate(result.target_ids):
        fwd = _step_forward(model, t)
        attr = captum_attr.InputXGradient(fwd).attribute((src_e.clone(), dec_e.clone()), target=target)
        np.testing.assert_allclose(result.source["input_x_gradient"][t], attr[0][0].sum(-1).detach().numpy(), atol=1e-6)
        np.testing.assert_allclose(result.prefix["input_x_gradient"][t], attr[1][0].sum(-1).detach().numpy(), atol=1e-6)
        s, p = src_e.shape[1], dec_e.shape[1]
        masks = (torch.arange(s).view(1, s, 1).expand_as(src_e), (torch.arange(p) + s).view(1, p, 1).expand_as(dec_e))
        with torch.no_grad():
            occl = captum_attr.FeatureAblation(fwd).attribute((src_e, dec_e), target=target, feature_mask=masks)
        np.testing.assert_allclose(result.source["feature_ablation"][t], occl[0][0, :, 0].numpy(), atol=1e-6)


def test_luong_attention_rows_are_the_captured_alignment():
    model = _luong()
    teacher = LuongTeacher(model, torch.tensor(SOURCE), torch.tensor(SEQUENCE))
    result = attribute(teacher, ["attention"], progress=False)
    with ap.capture(model) as cap:
        with torch.no_grad():
            model(torch.tensor(SOURCE), torch.tensor(SEQUENCE)[:, :-1])
    rows = (
        torch.cat([x.weights[0].double().mean(0) for x in cap.record.select(..., "cross")])
        if len(cap.record.select(..., "cross")) > 1
        else cap.record.select(..., "cross")[0].weights[0].double().mean(0)
    )
    assert np.array_equal(result.source["attention"], rows.numpy())


def test_tiny_transformer_teacher_logits_are_the_models():
    from fixtures.tiny_transformer.model import TinyTransformer

    torch.manual_seed(0)
    model = TinyTransformer().eval().double()
    src, seq = torch.tensor([[3, 10, 20, 25]]), torch.tensor([[1, 5, 6, 7, 2]])
    teacher = TinyTransformerTeacher(model, src, seq)
    with torch.no_grad():
        expected = model(src, seq[:, :-1])[0]
    assert torch.equal(teacher.logits(), expected)


def test_allennlp_date_teacher_is_the_models_own_teacher_forcing():
    """The AllenNLP SimpleSeq2Seq through its decoder step: the step probabilities give the model's own loss,
    and the attention rows are the captured additive attention."""
    pytest.importorskip("allennlp_models")
    from allennlp.data import Batch

    from fixtures.date_seq2seq import build
    from fixtures.date_seq2seq import data as date_data
    from fixtures.teachers import AllenNLPSeq2SeqTeacher

    predictor = build.load_predictor(build.archive_path())
    model, reader = predictor._model.eval(), predictor._dataset_reader  # noqa: SLF001 - the fixture's objects
    source, target = date_data.make_split(1, 99)[0]
    instance = reader.text_to_instance(source, " ".join(target))
    reader.apply_token_indexers(instance)
    batch = Batch([instance])
    batch.index_instances(model.vocab)
    tensors = batch.as_tensor_dict()
    teacher = AllenNLPSeq2SeqTeacher(
        model, tensors["source_tokens"]["tokens"]["tokens"], tensors["target_tokens"]["tokens"]["tokens"]
    )
    result = attribute(teacher, ["attention", "input_x_gradient"], progress=False)
    with torch.no_grad():
        loss = model(**tensors)["loss"]
    assert abs(-np.log(result.step_scores["probability"]).mean() - float(loss)) < 1e-5
    assert result.source["attention"].shape == (len(target) + 1, len(source))
    spans = date_data.alignment_sources(source, target)
    copied = [(j, span[0]) for j, span in enumerate(spans) if span and len(span) == 1]
    assert copied and all(int(np.argmax(result.source["attention"][j])) == i for j, i in copied)
