"""The Bahdanau date model (a real AllenNLP SimpleSeq2Seq with AdditiveAttention), the predictor
add-on through AllenNLP's own CLI, and the interpreters through AllenNLP's own interpret API."""

import json
import os
import subprocess
import sys

import pytest
import torch

from attn_plugins.compat import install_allennlp_compat

install_allennlp_compat()
pytest.importorskip("allennlp")
pytest.importorskip("allennlp_models")

from allennlp.interpret.saliency_interpreters import SaliencyInterpreter, SimpleGradient  # noqa: E402

import attn_plugins  # noqa: E402
from attn_plugins.integrations.allennlp_predictor import AttentionPredictor, with_attention  # noqa: E402
from fixtures.date_seq2seq import build  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="session")
def date_archive():
    return build.archive_path()  # trained once (about a minute), then cached in fixtures/.cache/


@pytest.fixture(scope="module")
def date_predictor(date_archive):
    return build.load_predictor(date_archive)


def test_date_model_is_accurate_and_its_attention_aligns(date_predictor):
    rows = build.test_rows()
    accuracy = build.accuracy(date_predictor, rows)
    score, digits = build.alignment_score(date_predictor, rows)
    print(f"date model: accuracy {accuracy:.3f}, alignment {score:.3f} over {digits} digits")
    assert accuracy >= 0.95
    assert digits > 2000 and score >= 0.9


def test_decoder_steps_are_captured_exactly_and_outputs_unchanged(date_predictor):
    from allennlp.data import Batch

    model = date_predictor._model
    reader = date_predictor._dataset_reader
    rows = build.test_rows()[:6]
    instances = [reader.text_to_instance(s, " ".join(t)) for s, t in rows]
    for instance in instances:
        reader.apply_token_indexers(instance)
    batch = Batch(instances)
    batch.index_instances(model.vocab)
    tensors = batch.as_tensor_dict()
    seen = []
    handle = model._attention.register_forward_hook(lambda m, a, out: seen.append(out.detach().clone()))
    try:
        with torch.no_grad():
            expected = model(**tensors)
            seen.clear()
            with attn_plugins.capture(model) as cap:
                got = model(**tensors)
    finally:
        handle.remove()
    assert torch.equal(got["predictions"], expected["predictions"]) and torch.equal(got["loss"], expected["loss"])
    forced, greedy = cap.records  # eval mode with targets: the teacher-forced loop, then greedy decoding
    assert forced.metadata["phase"] == "forward" and greedy.metadata["phase"] == "greedy_decoding"
    steps_forced = forced.layers[0].weights.shape[2]
    assert steps_forced == tensors["target_tokens"]["tokens"]["tokens"].shape[1] - 1
    assert torch.equal(forced.layers[0].weights[:, 0], torch.stack(seen[:steps_forced], 1))
    assert torch.equal(greedy.layers[0].weights[:, 0], torch.stack(seen[steps_forced:], 1))
    layer = greedy.layers[0]
    assert (layer.name, layer.stack, layer.kind) == ("_attention", "decoder", "cross")
    assert "".join(greedy.tokens[0][: len(rows[0][0])]) == rows[0][0]
    assert "".join(forced.decoder_tokens[0][:10]) == rows[0][1]


def test_python_wrapper_adds_attention_to_predictions(date_predictor):
    predictor = with_attention(date_predictor)
    out = predictor.predict_json({"source": "24 November 2026"})
    assert "".join(out["predicted_tokens"][0]) == "2026-11-24"
    attention = out["attention"]
    assert "".join(attention["tokens"]) == "24 November 2026"
    assert attention["decoder_tokens"] == list("2026-11-24") + ["@end@"]
    (layer,) = attention["layers"]
    weights = torch.tensor(layer["weights"])  # [head][query][key]
    assert weights.shape == (1, 11, 16) and layer["key_tokens"] == attention["tokens"]
    assert torch.allclose(weights.sum(-1), torch.ones(1, 11), atol=1e-5)
    source = attention["tokens"]
    picked = [source[int(weights[0, t].argmax())] for t in range(10) if attention["decoder_tokens"][t].isdigit()]
    assert picked[:4] == list("2026") and picked[-2:] == list("24")


def test_registered_predictor_through_allennlp_cli(date_archive, tmp_path):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"source": "24 November 2026"}\n{"source": "Mar 3, 1999"}\n')
    output = tmp_path / "out.jsonl"
    script = os.path.join(os.path.dirname(sys.executable), "allennlp")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ROOT}
    result = subprocess.run(
        [
            script,
            "predict",
            str(date_archive),
            str(inputs),
            "--include-package",
            "attn_plugins.integrations.allennlp_predictor",
            "--predictor",
            "attn_plugins",
            "--output-file",
            str(output),
            "--silent",
            "--batch-size",
            "2",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert ["".join(line["predicted_tokens"][0]) for line in lines] == ["2026-11-24", "1999-03-03"]
    second = lines[1]["attention"]
    assert "".join(second["tokens"]) == "Mar 3, 1999"  # padding removed per item
    assert torch.tensor(second["layers"][0]["weights"]).shape == (1, 11, 11)


def test_attention_interpreter_through_allennlp_interpret_api(date_predictor):
    assert {"attn_plugins_attention", "attn_plugins_rollout"} <= set(SaliencyInterpreter.list_available())
    interpreter = SaliencyInterpreter.by_name("attn_plugins_attention")(date_predictor)
    result = interpreter.saliency_interpret_from_json({"source": "24 November 2026"})
    scores = result["instance_1"]["grad_input_1"]
    assert len(scores) == len("24 November 2026") and abs(sum(scores) - 1) < 1e-6


def test_interpret_works_on_a_wrapped_hf_model(minilm_path):
    """AllenNLP's own SimpleGradient and our attention interpreters on a classifier over an HF encoder."""
    from allennlp.data import Vocabulary
    from allennlp.data.dataset_readers import TextClassificationJsonReader
    from allennlp.data.token_indexers import PretrainedTransformerIndexer
    from allennlp.data.tokenizers import PretrainedTransformerTokenizer
    from allennlp.models import BasicClassifier
    from allennlp.modules.seq2vec_encoders import ClsPooler
    from allennlp.modules.text_field_embedders import BasicTextFieldEmbedder
    from allennlp.modules.token_embedders import PretrainedTransformerEmbedder
    from allennlp.predictors import TextClassifierPredictor

    torch.manual_seed(0)
    reader = TextClassificationJsonReader(
        tokenizer=PretrainedTransformerTokenizer(minilm_path),
        token_indexers={"tokens": PretrainedTransformerIndexer(minilm_path)},
    )
    vocab = Vocabulary()
    vocab.add_tokens_to_namespace(["neg", "pos"], "labels")
    embedder = BasicTextFieldEmbedder({"tokens": PretrainedTransformerEmbedder(minilm_path)})
    model = BasicClassifier(vocab, embedder, ClsPooler(embedder.get_output_dim()), namespace="tags").eval()
    predictor = TextClassifierPredictor(model, reader)
    sentence = {"sentence": "attention is not explanation"}
    n_tokens = len(reader._tokenizer.tokenize(sentence["sentence"]))
    gradient = SimpleGradient(predictor).saliency_interpret_from_json(sentence)
    assert len(gradient["instance_1"]["grad_input_1"]) == n_tokens
    for name in ("attn_plugins_attention", "attn_plugins_rollout"):
        result = SaliencyInterpreter.by_name(name)(predictor).saliency_interpret_from_json(sentence)
        scores = result["instance_1"]["grad_input_1"]
        assert len(scores) == n_tokens and abs(sum(scores) - 1) < 1e-6, name
    out = AttentionPredictor(model, reader, inner=predictor).predict_json(sentence)
    assert len(out["attention"]["layers"]) == 6 and out["attention"]["tokens"][0] == "[CLS]"
    assert torch.tensor(out["attention"]["layers"][0]["weights"]).shape == (12, n_tokens, n_tokens)


def test_streamed_decoder_steps_equal_the_in_memory_records(date_predictor, tmp_path):
    from allennlp.data import Batch

    from tests.core.test_record import _same

    model = date_predictor._model
    reader = date_predictor._dataset_reader
    instances = [reader.text_to_instance(s, " ".join(t)) for s, t in build.test_rows()[:4]]
    for instance in instances:
        reader.apply_token_indexers(instance)
    batch = Batch(instances)
    batch.index_instances(model.vocab)
    tensors = batch.as_tensor_dict()
    with torch.no_grad():
        with attn_plugins.capture(model) as in_memory:
            model(**tensors)
        with attn_plugins.capture(model, stream_to=tmp_path / "run") as streamed:
            model(**tensors)
    assert len(streamed.records) == len(in_memory.records) == 2
    for a, b in zip(in_memory.records, streamed.records, strict=True):
        _same(a, b)
    assert sorted(os.listdir(tmp_path / "run")) == ["record-0000", "record-0001"]
    # every decoding step was a block of its own; the layer file holds them merged
    assert os.listdir(tmp_path / "run" / "record-0001" / "layers") == ["decoder-cross-000.safetensors"]
