"""Real AllenNLP predictors for the tests (allennlp 2.10.1 through attn_plugins.compat).

* ``bert_predictor()``: ``BasicClassifier`` over a ``PretrainedTransformerEmbedder`` of the bundled
  MiniLM with ``BertPooler``; pooler and classification layer are loaded from the fixture sentiment
  head, so the AllenNLP model computes exactly what the fixture classifier computes.
* ``nli_predictor()``: allennlp-models' ``DecomposableAttention`` with two embedded text fields
  (premise, hypothesis), small random weights with a fixed seed (tanh units, so no gradient dies).
"""

from __future__ import annotations

import functools
import warnings

import pytest


def require_allennlp():
    """Skip the calling test when the real allennlp cannot be imported here."""
    try:
        from attn_plugins.compat import install_allennlp_compat

        install_allennlp_compat()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import allennlp  # noqa: F401
            import allennlp_models  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any failure means: not available here
        pytest.skip(f"allennlp is not importable here ({type(exc).__name__}: {exc}); run scripts/install_allennlp.sh")


@functools.cache
def bert_predictor():
    require_allennlp()
    import torch
    from allennlp.data import Vocabulary
    from allennlp.data.dataset_readers import TextClassificationJsonReader
    from allennlp.data.token_indexers import PretrainedTransformerIndexer
    from allennlp.data.tokenizers import PretrainedTransformerTokenizer
    from allennlp.models import BasicClassifier
    from allennlp.modules.seq2vec_encoders import BertPooler
    from allennlp.modules.text_field_embedders import BasicTextFieldEmbedder
    from allennlp.modules.token_embedders import PretrainedTransformerEmbedder
    from allennlp.predictors import TextClassifierPredictor

    from .helpers import classifier, minilm_path

    hf, _ = classifier()
    path = minilm_path()
    vocab = Vocabulary()
    vocab.add_tokens_to_namespace(["negative", "positive"], "labels")
    reader = TextClassificationJsonReader(
        tokenizer=PretrainedTransformerTokenizer(path), token_indexers={"tokens": PretrainedTransformerIndexer(path)}
    )
    pooler = BertPooler(path, dropout=0.0)
    model = BasicClassifier(
        vocab,
        BasicTextFieldEmbedder({"tokens": PretrainedTransformerEmbedder(path)}),
        pooler,
        dropout=None,
        namespace="tags",
    )
    with torch.no_grad():
        pooler.pooler.load_state_dict(hf.bert.pooler.state_dict())
        model._classification_layer.load_state_dict(hf.classifier.state_dict())
    model.eval()
    return TextClassifierPredictor(model, reader)


@functools.cache
def nli_predictor():
    require_allennlp()
    import torch
    from allennlp.data import Vocabulary
    from allennlp.data.tokenizers import WhitespaceTokenizer
    from allennlp.modules import FeedForward
    from allennlp.modules.matrix_attention import DotProductMatrixAttention
    from allennlp.modules.text_field_embedders import BasicTextFieldEmbedder
    from allennlp.modules.token_embedders import Embedding
    from allennlp.nn import Activation
    from allennlp_models.pair_classification import DecomposableAttention, SnliReader, TextualEntailmentPredictor

    torch.manual_seed(0)
    words = "a the man dog is playing sleeping guitar park in outside music someone cat".split()
    vocab = Vocabulary()
    vocab.add_tokens_to_namespace(words, "tokens")
    vocab.add_tokens_to_namespace(["entailment", "contradiction", "neutral"], "labels")
    relu, linear = Activation.by_name("tanh")(), Activation.by_name("linear")()  # tanh: no dead units
    embedder = BasicTextFieldEmbedder(
        {"tokens": Embedding(embedding_dim=10, num_embeddings=vocab.get_vocab_size("tokens"))}
    )
    model = DecomposableAttention(
        vocab,
        embedder,
        FeedForward(10, 1, 8, relu),
        DotProductMatrixAttention(),
        FeedForward(20, 1, 8, relu),
        FeedForward(16, 2, [8, 3], [relu, linear]),
    )
    model.eval()
    return TextualEntailmentPredictor(model, SnliReader(tokenizer=WhitespaceTokenizer()))
