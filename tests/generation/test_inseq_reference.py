"""Our matrices equal inseq's (0.7.1, installed --no-deps) for the same tiny model, method and settings.

inseq imports and runs on transformers 5.24 here; compared on a decoder-only model (GPT-2). Not compared:
encoder-decoder models. With Marian, inseq scales decoder embeddings that transformers 5 scales again
(its step-2+ probabilities differ from the model's own; step 1, whose prefix is the zero pad embedding,
agrees); with BART it starts targets with BOS instead of ``decoder_start_token_id`` and its target-side
tokenization (``text_target``) of our word-level test tokenizer does not give the target's ids.
Baselines: inseq's (the unknown token's embedding, the model's EOS kept) passed to ours as ids.
"""

from __future__ import annotations

import numpy as np
import pytest

inseq = pytest.importorskip("inseq")

from attn_plugins.generation import explain_generation  # noqa: E402

from .models import SOURCE, tiny  # noqa: E402

TARGET = [11, 12, 13]
UNK = 3
METHODS = [
    ("saliency", {}, {}),
    ("input_x_gradient", {}, {}),
    ("integrated_gradients", {"n_steps": 8}, {"n_steps": 8}),
    ("deeplift", {}, {}),
    ("feature_ablation", {}, None),
]


def _tokenizer(model):
    import transformers as tf
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = Tokenizer(models.WordLevel({f"w{i}": i for i in range(99)}, unk_token=f"w{UNK}"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    return tf.PreTrainedTokenizerFast(
        tokenizer_object=words,
        unk_token=f"w{UNK}",
        eos_token="w2",
        bos_token="w0",
        pad_token=f"w{model.config.pad_token_id}",
    )


def _text(ids):
    return " ".join(f"w{i}" for i in ids)


def _baseline(ids, eos=2, keep_first=False):
    out = [i if i == eos else UNK for i in ids]
    if keep_first:
        out[0] = ids[0]
    return out


@pytest.mark.parametrize("arch", ["gpt2"])
@pytest.mark.parametrize("name, ours, theirs", METHODS, ids=[m[0] for m in METHODS])
def test_matrices_equal_inseq(arch, name, ours, theirs):
    model = tiny(arch)
    tokenizer = _tokenizer(model)
    options = dict(ours)
    if arch == "bart":
        model.config.decoder_start_token_id = 0  # inseq starts targets with BOS
        prefix = [0] + TARGET[:-1]
        if name != "saliency" and name != "input_x_gradient":
            options["baseline"] = (_baseline(SOURCE), _baseline(prefix, keep_first=True))
    elif name not in ("saliency", "input_x_gradient"):
        eos = model.config.eos_token_id
        options["baseline"] = (_baseline(SOURCE, eos), _baseline(TARGET[:-1], eos))
    attributor = inseq.load_model(model, "occlusion" if name == "feature_ablation" else name, tokenizer=tokenizer)
    if arch == "bart":
        out = attributor.attribute(
            _text(SOURCE), _text(TARGET), attribute_target=True, show_progress=False, **(theirs or {})
        )
    else:
        out = attributor.attribute(_text(SOURCE), _text(SOURCE + TARGET), show_progress=False, **(theirs or {}))
    seq = out.sequence_attributions[0]
    result = explain_generation(model, None, SOURCE, TARGET, methods=[(name, options)], progress=False)
    label = result.methods[0]

    def steps_first(tensor):
        tensor = tensor.sum(-1) if tensor.dim() == 3 else tensor
        return np.nan_to_num(tensor.T.double().numpy())

    if arch == "bart":
        src, pre = steps_first(seq.source_attributions), steps_first(seq.target_attributions)[:, : len(TARGET)]
    else:
        full = steps_first(seq.target_attributions)
        src, pre = full[:, : len(SOURCE)], full[:, len(SOURCE) : len(SOURCE) + len(TARGET) - 1]
    ours_src, ours_pre = result.source[label], result.prefix[label]
    if name == "feature_ablation":  # inseq's occlusion keeps the magnitude of the change only
        ours_src, ours_pre = np.abs(ours_src), np.abs(ours_pre)
    np.testing.assert_allclose(ours_src, src, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours_pre, pre, atol=1e-5, rtol=0)
