"""Head importance vs finite differences of the gated eager reference; knockout vs masked eager
reference; the pruning curve vs the reference with the same heads zeroed."""

import pytest
import torch

import attn_plugins as ap
from attn_plugins.errors import InputError
from attn_plugins.heads import attention_units
from fixtures.tiny_models import build

from .reference import Edits, eager_reference, output_of


def classifier(kernel, dtype=torch.float32):
    import transformers as tf

    config = tf.BertConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=37, vocab_size=99, num_labels=3
    )
    torch.manual_seed(0)
    return tf.AutoModelForSequenceClassification.from_config(config, attn_implementation=kernel).eval().to(dtype)


def batches_for(model_name, n=2, seed=3):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(3, 99, (3, 7), generator=g)
        mask = torch.ones_like(ids)
        mask[1, -2:] = 0
        batch = {"input_ids": ids, "attention_mask": mask}
        batch["labels"] = ids.clone() if model_name in ("llama", "gpt2") else torch.randint(0, 3, (3,), generator=g)
        out.append(batch)
    return out


def models(name):
    if name == "bert":
        return classifier("sdpa", torch.float64), classifier("eager", torch.float64)
    return build(name, "sdpa")[0].double(), build(name, "eager")[0].double()


def next_token_loss(outputs, batch):
    """Causal-LM cross-entropy in the logits' own dtype (transformers' loss casts to float32, too coarse
    for finite differences in float64)."""
    logits = outputs.logits[:, :-1]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1))


# (GPT-2, not Llama: Llama's RMSNorm computes in float32 even in a float64 model, too coarse for the differences)
LOSS = {"bert": lambda outputs, batch: outputs.loss, "gpt2": next_token_loss}


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_importance_equals_finite_differences_of_gated_reference(name):
    model, reference = models(name)
    batches = batches_for(name)
    loss = LOSS[name]
    raw = ap.head_importance(model, batches, normalize=False, loss=loss)
    units = attention_units(reference)
    eps = 1e-5
    expected = {}
    for unit in units:
        values = []
        for h in range(unit.num_heads):
            diffs = []
            for batch in batches:
                losses = []
                for sign in (1, -1):
                    edits = Edits()
                    gate = torch.ones(unit.num_heads, dtype=torch.float64)
                    gate[h] += sign * eps
                    edits.gate[id(unit.core)] = gate
                    with torch.no_grad(), eager_reference(reference, edits):
                        losses.append(float(loss(reference(**batch), batch)))
                diffs.append(abs(losses[0] - losses[1]) / (2 * eps))
            values.append(sum(diffs) / len(diffs))
        expected[unit.name] = values
    for unit in units:
        got = raw.scores[unit.name]
        assert max(got) > 1e-7  # gradients do flow to the gates
        assert max(abs(a - b) for a, b in zip(got, expected[unit.name], strict=True)) < 1e-5 * max(got)
    normed = ap.head_importance(model, batches, loss=loss)
    for unit in units:
        v = raw.scores[unit.name]
        torch.testing.assert_close(torch.tensor(normed.scores[unit.name]), torch.tensor(v / (v**2).sum() ** 0.5))
    assert not [n for n, m in model.named_modules() if m._forward_pre_hooks]


def test_importance_loss_options_and_errors():
    model = classifier("sdpa")
    batches = batches_for("bert", 1)
    no_labels = [{k: v for k, v in b.items() if k != "labels"} for b in batches]
    with pytest.raises(InputError, match="returned no loss"):
        ap.head_importance(model, no_labels)
    predicted = ap.head_importance(model, no_labels, loss="predicted")
    with torch.no_grad():
        labels = model(**no_labels[0]).logits.argmax(-1)
    same = ap.head_importance(model, [{**no_labels[0], "labels": labels}])
    for name in predicted.order:
        torch.testing.assert_close(torch.tensor(predicted.scores[name]), torch.tensor(same.scores[name]))
    assert predicted.matrix().shape == (2, 4) and len(predicted.ranking()) == 8
    with pytest.raises(InputError, match="loss must be"):
        ap.head_importance(model, batches, loss="mse")


KNOCK = {
    "bert": dict(queries=[0, 2], keys=[1, 4], layers=[1]),
    "llama": dict(edges=[(4, 1), (6, 2), (6, 5)], layers=[0, 1]),
    "bart": dict(queries=[0, 2], keys=[1, 4], layers=[1, 3]),
}


def _knock_edits(reference, spec):
    units = attention_units(reference)
    pairs = list(spec.get("edges", [])) + [(q, k) for q in spec.get("queries", []) for k in spec.get("keys", [])]
    edits = Edits()
    for key in spec["layers"]:
        edits.block[id(units[key].core)] = pairs
    return edits


@pytest.mark.parametrize("name", list(KNOCK))
@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
@pytest.mark.parametrize("padded", [True, False])
def test_knockout_equals_masked_eager_reference(name, kernel, padded):
    model, batch = build(name, kernel)
    reference, _ = build(name, "eager")
    if not padded:  # no mask: sdpa gets None (and its causal flag); the wrapper builds the mask
        batch = {k: v for k, v in batch.items() if "attention_mask" not in k}
    spec = KNOCK[name]
    from transformers.modeling_utils import AttentionInterface

    before = dict(AttentionInterface._global_mapping)
    with torch.no_grad():
        plain = output_of(model(**batch), batch)
        with ap.knockout(model, **spec):
            knocked = output_of(model(**batch), batch)
        with eager_reference(reference, _knock_edits(reference, spec)):
            expected = output_of(reference(**batch), batch)
        after = output_of(model(**batch), batch)
    assert (knocked - expected).abs().max() < 1e-5
    assert (knocked - plain).abs().max() > 1e-4
    torch.testing.assert_close(after, plain, atol=0, rtol=0)
    assert dict(AttentionInterface._global_mapping) == before


def test_knockout_bad_input():
    model, batch = build("bert", "sdpa")
    with pytest.raises(InputError, match="both queries= and keys="):
        with ap.knockout(model, queries=[0]):
            pass
    with pytest.raises(InputError, match="outside"):
        with torch.no_grad(), ap.knockout(model, edges=[(0, 40)]):
            model(**batch)
    with pytest.raises(InputError, match="MultiheadAttention"):
        with ap.knockout(torch.nn.MultiheadAttention(8, 2), edges=[(0, 1)]):
            pass


def test_pruning_curve_points_equal_reference_with_those_heads_zeroed():
    model, reference = classifier("sdpa"), classifier("eager")
    batches = batches_for("bert", 2)
    held = batches_for("bert", 1, seed=9)[0]

    def metric_of(m):
        with torch.no_grad():
            logp = torch.log_softmax(m(**{k: v for k, v in held.items() if k != "labels"}).logits, -1)
        return float(logp[torch.arange(3), held["labels"]].mean())

    curve = ap.pruning_curve(model, metric_of, batches=batches, steps=[0, 2, 5, 8], n_random=2, seed=1)
    importance = ap.head_importance(model, batches)
    assert curve.order == importance.ranking()
    flat = sorted(v for name in importance.order for v in importance.scores[name])
    scores = {
        (i, h): importance.scores[name][h]
        for name, i in zip(importance.order, importance.indices, strict=True)
        for h in range(4)
    }
    assert [scores[p] for p in curve.order] == flat  # least important first
    units = attention_units(reference)
    runs = [(curve.order, curve.by_importance)] + list(zip(curve.random_orders, curve.random, strict=True))
    for order, values in runs:
        assert sorted(order) == sorted((u.index, h) for u in units for h in range(4))
        for k, value in zip(curve.removed, values, strict=True):
            edits = Edits()
            for unit, head in order[:k]:
                edits.zero.setdefault(id(units[unit].core), []).append(head)
            with eager_reference(reference, edits):
                assert abs(metric_of(reference) - value) < 1e-5
    assert curve.removed == [0, 2, 5, 8] and curve.total == 8 and curve.fraction[-1] == 1.0
    again = ap.pruning_curve(model, metric_of, importance=importance, steps=[0, 2, 5, 8], n_random=2, seed=1)
    assert again.random == curve.random and len(curve.to_dict()["random_mean"]) == 4
