"""Every gradient and perturbation number of explain_generation equals Captum called directly on each
step alone, through a hand-built forward for that step (the prefix cut at the step, inputs_embeds)."""

from __future__ import annotations

import pytest
import torch

captum_attr = pytest.importorskip("captum.attr")

from attn_plugins.generation import explain_generation  # noqa: E402

from .models import SOURCE, encoder_scale, tiny  # noqa: E402

TOL = 1e-6
GRADIENT = ["saliency", "input_x_gradient", ("integrated_gradients", {"n_steps": 8}), "deeplift", "feature_ablation"]


class StepForward(torch.nn.Module):
    """Step ``t``'s probability of each token, from the source and the decoder embeddings up to ``t``."""

    def __init__(self, model, t: int) -> None:
        super().__init__()
        self.model, self.t = model, t
        self.encoder_decoder = model.config.is_encoder_decoder

    def forward(self, src, prefix):
        if self.encoder_decoder:
            out = self.model(
                inputs_embeds=src * encoder_scale(self.model),
                attention_mask=torch.ones(src.shape[:2], dtype=torch.long),
                decoder_inputs_embeds=prefix[:, : self.t + 1],
                use_cache=False,
            )
        else:
            out = self.model(inputs_embeds=torch.cat([src, prefix[:, : self.t]], dim=1), use_cache=False)
        return torch.softmax(out.logits[:, -1], dim=-1)


def _embeds(model, result_ids, source_ids):
    seq2seq = model.config.is_encoder_decoder
    enc = model.get_encoder().get_input_embeddings() if seq2seq else model.get_input_embeddings()
    dec = model.get_decoder().get_input_embeddings() if model.config.is_encoder_decoder else enc
    with torch.no_grad():
        return enc(torch.tensor([source_ids])), dec(torch.tensor([result_ids]))


def _reference(name, options, fwd, src, prefix, target):
    inputs = (src.clone(), prefix.clone())
    zeros = tuple(torch.zeros_like(x) for x in inputs)
    if name == "saliency":
        attr = captum_attr.Saliency(fwd).attribute(inputs, target=target, abs=True)
    elif name == "input_x_gradient":
        attr = captum_attr.InputXGradient(fwd).attribute(inputs, target=target)
    elif name == "integrated_gradients":
        attr = captum_attr.IntegratedGradients(fwd).attribute(inputs, baselines=zeros, target=target, **options)
    elif name == "deeplift":
        attr = captum_attr.DeepLift(fwd).attribute(inputs, baselines=zeros, target=target)
    else:
        s, p = src.shape[1], prefix.shape[1]
        masks = (torch.arange(s).view(1, s, 1).expand_as(src), (torch.arange(p) + s).view(1, p, 1).expand_as(prefix))
        with torch.no_grad():
            attr = captum_attr.FeatureAblation(fwd).attribute(
                inputs, baselines=zeros, target=target, feature_mask=masks
            )
        return attr[0][0, :, 0], attr[1][0, :, 0]
    return attr[0][0].sum(-1), attr[1][0].sum(-1)


# generated targets (greedy, three tokens) for some models, forced targets for the others
@pytest.mark.parametrize(
    "arch, target",
    [("marian", None), ("bart", [11, 12, 13]), ("t5", [11, 12, 13]), ("gpt2", None), ("llama", [11, 12, 13])],
)
def test_every_step_equals_captum_on_that_step(arch, target):
    model = tiny(arch)
    before = [p.requires_grad for p in model.parameters()]
    result = explain_generation(
        model,
        None,
        SOURCE,
        target,
        methods=GRADIENT,
        progress=False,
        generate_kwargs={"max_new_tokens": 3, "min_new_tokens": 3},
    )
    if target is not None:
        assert result.target_ids == target
    assert [p.requires_grad for p in model.parameters()] == before and not model.training
    prefix_ids = [int(t) for t in result.info["prefix_ids"]]
    src, prefix = _embeds(model, prefix_ids, SOURCE)
    assert len(result) >= 2
    for entry in GRADIENT:
        name, options = (entry, {}) if isinstance(entry, str) else entry
        label = name if not options else f"{name}(" + ",".join(f"{k}={v}" for k, v in options.items()) + ")"
        for t, target in enumerate(result.target_ids):
            fwd = StepForward(model, t)
            ref_src, ref_prefix = _reference(name, options, fwd, src, prefix, target)
            cut = t + 1 if model.config.is_encoder_decoder else t
            torch.testing.assert_close(torch.from_numpy(result.source[label][t]), ref_src.double(), atol=TOL, rtol=0)
            torch.testing.assert_close(
                torch.from_numpy(result.prefix[label][t][:cut]), ref_prefix[:cut].double(), atol=TOL, rtol=0
            )
            assert not result.prefix[label][t][cut:].any(), "a step cannot rest on later tokens"


@pytest.mark.parametrize("arch", ["marian", "gpt2"])
def test_layer_integrated_gradients_equals_captum_on_the_embedding_layers(arch):
    model = tiny(arch)
    pad = model.config.pad_token_id
    result = explain_generation(
        model,
        None,
        SOURCE,
        methods=[("layer_integrated_gradients", {"n_steps": 8})],
        generate_kwargs={"max_new_tokens": 3, "min_new_tokens": 3},
        progress=False,
    )
    matrix, prefix = (
        result.source["layer_integrated_gradients(n_steps=8)"],
        result.prefix["layer_integrated_gradients(n_steps=8)"],
    )
    prefix_ids = [int(t) for t in result.info["prefix_ids"]]
    for t, target in enumerate(result.target_ids):
        if model.config.is_encoder_decoder:

            def fwd(src_ids, dec_ids, t=t):
                out = model(input_ids=src_ids, decoder_input_ids=dec_ids[:, : t + 1], use_cache=False)
                return torch.softmax(out.logits[:, -1], dim=-1)

            layers = [model.get_encoder().embed_tokens, model.get_decoder().embed_tokens]
            assert layers[0] is not layers[1]
            inputs = (torch.tensor([SOURCE]), torch.tensor([prefix_ids]))
            attr = captum_attr.LayerIntegratedGradients(fwd, layers).attribute(
                inputs, baselines=tuple(torch.full_like(x, pad) for x in inputs), target=target, n_steps=8
            )
            ref_src, ref_prefix = attr[0][0].sum(-1), attr[1][0].sum(-1)
            cut = t + 1
        else:
            ids = torch.tensor([SOURCE + prefix_ids])

            def fwd(full, t=t):
                return torch.softmax(model(input_ids=full[:, : len(SOURCE) + t], use_cache=False).logits[:, -1], -1)

            attr = (
                captum_attr.LayerIntegratedGradients(fwd, model.get_input_embeddings())
                .attribute(ids, baselines=torch.full_like(ids, pad), target=target, n_steps=8)[0]
                .sum(-1)
            )
            ref_src, ref_prefix, cut = attr[: len(SOURCE)], attr[len(SOURCE) :], t
        torch.testing.assert_close(torch.from_numpy(matrix[t]), ref_src.double(), atol=TOL, rtol=0)
        torch.testing.assert_close(torch.from_numpy(prefix[t][:cut]), ref_prefix[:cut].double(), atol=TOL, rtol=0)


def test_step_batches_give_the_same_numbers():
    model = tiny("bart")
    whole = explain_generation(
        model, None, SOURCE, [11, 12, 13], methods=["input_x_gradient", "feature_ablation"], progress=False
    )
    split = explain_generation(
        model,
        None,
        SOURCE,
        [11, 12, 13],
        methods=["input_x_gradient", "feature_ablation"],
        progress=False,
        step_batch=1,
    )
    for name in whole.methods:
        torch.testing.assert_close(
            torch.from_numpy(whole.source[name]), torch.from_numpy(split.source[name]), atol=1e-10, rtol=0
        )
