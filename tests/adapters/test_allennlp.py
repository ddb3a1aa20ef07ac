"""The AllenNLP adapter against real allennlp modules (no mocks): exactness, unchanged outputs, clean-up."""

import pytest
import torch

from attn_plugins.compat import install_allennlp_compat

install_allennlp_compat()
pytest.importorskip("allennlp")

from allennlp.data import Vocabulary  # noqa: E402
from allennlp.models import Model  # noqa: E402
from allennlp.modules import attention as allennlp_attention  # noqa: E402
from allennlp.modules import matrix_attention as allennlp_matrix_attention  # noqa: E402
from allennlp.modules.transformer import SelfAttention, T5Attention  # noqa: E402

import attn_plugins  # noqa: E402
from attn_plugins.adapters import ADAPTERS, adapter_for  # noqa: E402

D = 8


def _attentions():
    return {
        "additive": allennlp_attention.AdditiveAttention(D, D),
        "dot": allennlp_attention.DotProductAttention(),
        "bilinear": allennlp_attention.BilinearAttention(D, D),
        "cosine": allennlp_attention.CosineAttention(),
        "linear": allennlp_attention.LinearAttention(D, D, combination="x,y"),
        "scaled": allennlp_attention.ScaledDotProductAttention(D),
    }


class Steps(Model):
    """A decoder-like loop: each step attends from a new query vector to the same source matrix."""

    def __init__(self, vocab, attentions, steps: int = 4, normalize: bool = True):
        super().__init__(vocab)
        self.attentions = torch.nn.ModuleDict(attentions)
        self.cell = torch.nn.GRUCell(D, D)
        self.steps = steps

    def forward(self, source, mask):
        state = source.mean(dim=1)
        outputs = {}
        for name, attention in self.attentions.items():
            h = state
            rows = []
            for _ in range(self.steps):
                weights = attention(h, source, mask)
                rows.append(weights)
                h = self.cell((weights.unsqueeze(-1) * source).sum(1), h)
            outputs[name] = torch.stack(rows, 1)
        return outputs


def _batch(seed=0, batch=3, length=6):
    g = torch.Generator().manual_seed(seed)
    source = torch.randn(batch, length, D, generator=g)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2, 2:] = False
    return source, mask


def test_the_allennlp_adapter_is_chosen_for_allennlp_models():
    model = Steps(Vocabulary(), _attentions())
    assert adapter_for(model) is ADAPTERS.get("allennlp")


def test_every_attention_class_is_captured_exactly_over_all_decoding_steps():
    torch.manual_seed(0)
    model = Steps(Vocabulary(), _attentions()).eval()
    source, mask = _batch()
    with torch.no_grad():
        expected = model(source, mask)
        with attn_plugins.capture(model) as cap:
            got = model(source, mask)
    for name in expected:
        assert torch.equal(got[name], expected[name]), "outputs changed"
    record = cap.record
    assert len(cap.records) == 1
    layers = {layer.name: layer for layer in record.layers}
    assert set(layers) == {f"attentions.{n}" for n in expected}
    for name, weights in expected.items():
        layer = layers[f"attentions.{name}"]
        assert (layer.stack, layer.kind) == (None, "cross")
        assert layer.weights.shape == (3, 1, 4, 6)
        assert torch.equal(layer.weights[:, 0], weights), name
    assert torch.all(layers["attentions.additive"].weights[2, 0, :, 2:] == 0)  # masked keys


def test_unnormalised_attention_is_labelled():
    model = Steps(Vocabulary(), {"dot": allennlp_attention.DotProductAttention(normalize=False)}).eval()
    source, mask = _batch()
    with torch.no_grad(), attn_plugins.capture(model) as cap:
        model(source, mask)
    assert cap.record.metadata["unnormalised_layers"] == ["attentions.dot"]


class Matrix(Model):
    def __init__(self, vocab):
        super().__init__(vocab)
        self.cross = allennlp_matrix_attention.BilinearMatrixAttention(D, D)
        self.self_scores = allennlp_matrix_attention.DotProductMatrixAttention()

    def forward(self, a, b):
        return {"cross": self.cross(a, b), "self": self.self_scores(a, a)}


def test_matrix_attention_scores_are_captured_and_marked_unnormalised():
    torch.manual_seed(0)
    model = Matrix(Vocabulary()).eval()
    a, b = torch.randn(2, 5, D), torch.randn(2, 7, D)
    with torch.no_grad(), attn_plugins.capture(model) as cap:
        out = model(a, b)
    layers = {layer.name: layer for layer in cap.record.layers}
    assert torch.equal(layers["cross"].weights[:, 0], out["cross"]) and layers["cross"].kind == "cross"
    assert torch.equal(layers["self_scores"].weights[:, 0], out["self"]) and layers["self_scores"].kind == "self"
    assert set(cap.record.metadata["unnormalised_layers"]) == {"cross", "self_scores"}
    assert "not probabilities" in cap.record.metadata["unnormalised_note"]


class Transformer(Model):
    def __init__(self, vocab):
        super().__init__(vocab)
        self.encoder_attention = SelfAttention(hidden_size=16, num_attention_heads=4)
        self.decoder_attention = T5Attention(
            is_decoder=True,
            hidden_size=16,
            key_value_proj_dim=4,
            num_heads=4,
            has_relative_attention_bias=True,
            dropout=0.0,
        )
        self.decoder_cross = T5Attention(
            is_decoder=True, hidden_size=16, key_value_proj_dim=4, num_heads=4, dropout=0.0, is_cross_attention=True
        )

    def forward(self, x, mask, y):
        enc = self.encoder_attention(x, attention_mask=mask)
        dec = self.decoder_attention(y)
        cross = self.decoder_cross(y, key_value_states=enc.hidden_states)
        return {"enc": enc, "dec": dec, "cross": cross}


def test_transformer_attention_modules_are_exact_and_their_outputs_unchanged():
    torch.manual_seed(0)
    model = Transformer(Vocabulary()).eval()
    x, y = torch.randn(2, 5, 16), torch.randn(2, 3, 16)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    with torch.no_grad():
        expected = model(x, mask, y)
        with attn_plugins.capture(model) as cap:
            got = model(x, mask, y)
        direct_enc = model.encoder_attention(x, attention_mask=mask, output_attentions=True).attention_probs
        direct_dec = model.decoder_attention(y, output_attentions=True).attention_probs
        direct_cross = model.decoder_cross(
            y, key_value_states=expected["enc"].hidden_states, output_attentions=True
        ).attention_probs
    for key in expected:
        assert torch.equal(got[key].hidden_states, expected[key].hidden_states)
        assert got[key].attention_probs is None  # the caller did not ask for it
    layers = {layer.name: layer for layer in cap.record.layers}
    assert torch.equal(layers["encoder_attention"].weights, direct_enc)
    assert (layers["encoder_attention"].stack, layers["encoder_attention"].kind) == ("encoder", "self")
    assert torch.equal(layers["decoder_attention"].weights, direct_dec)
    assert torch.equal(layers["decoder_cross"].weights, direct_cross)
    assert (layers["decoder_cross"].stack, layers["decoder_cross"].kind) == ("decoder", "cross")
    assert layers["encoder_attention"].weights.shape == (2, 4, 5, 5)


def test_pretrained_transformer_embedder_reuses_the_hf_adapter(minilm_path):
    from allennlp.modules.text_field_embedders import BasicTextFieldEmbedder
    from allennlp.modules.token_embedders import PretrainedTransformerEmbedder
    from transformers import AutoModel, AutoTokenizer

    class Encoder(Model):
        def __init__(self, vocab):
            super().__init__(vocab)
            self.embedder = BasicTextFieldEmbedder({"bert": PretrainedTransformerEmbedder(minilm_path)})

        def forward(self, tokens):
            return {"encoded": self.embedder(tokens)}

    model = Encoder(Vocabulary()).eval()
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    enc = tokenizer(["attention is not explanation", "short"], padding=True, return_tensors="pt")
    mask = enc["attention_mask"].bool()
    tokens = {"bert": {"token_ids": enc["input_ids"], "mask": mask, "type_ids": enc["token_type_ids"]}}
    eager = AutoModel.from_pretrained(minilm_path, attn_implementation="eager").eval()  # same weights
    with torch.no_grad():
        expected_out = model(tokens)["encoded"]
        expected = eager(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            token_type_ids=enc["token_type_ids"],
            output_attentions=True,
        ).attentions
        with attn_plugins.capture(model) as cap:
            out = model(tokens)["encoded"]
    assert torch.equal(out, expected_out)
    record = cap.record
    assert len(record.layers) == len(expected) == 6
    assert record.layers[0].name.startswith("embedder.token_embedder_bert.transformer_model.")
    mask4 = enc["attention_mask"].bool()[:, None, :, None]
    for layer, ref in zip(record.layers, expected, strict=True):
        assert torch.allclose(layer.weights.masked_fill(~mask4, 0), ref.masked_fill(~mask4, 0), atol=1e-5)
    assert torch.equal(record.inputs["input_ids"], enc["input_ids"])


def test_hooks_are_removed_after_an_exception():
    model = Steps(Vocabulary(), _attentions()).eval()
    transformer = Transformer(Vocabulary())
    source, mask = _batch()
    for m in (model, transformer):
        before = {name: (len(mod._forward_hooks), len(mod._forward_pre_hooks)) for name, mod in m.named_modules()}
        with pytest.raises(RuntimeError, match="boom"):
            with attn_plugins.capture(m):
                if m is model:
                    model(source, mask)
                raise RuntimeError("boom")
        after = {name: (len(mod._forward_hooks), len(mod._forward_pre_hooks)) for name, mod in m.named_modules()}
        assert before == after
    with torch.no_grad(), attn_plugins.capture(model) as cap:  # and the model can be captured again
        model(source, mask)
    assert len(cap.record.layers) == 6
