"""Whisper (attribution over input-feature frames, summed per frame window) and VisionEncoderDecoder
(over pixels, summed per patch): every gradient and occlusion number equals Captum called directly on
each step alone (a hand-built forward on ``input_features``/``pixel_values`` and the decoder embeddings
cut at the step, pooled here by hand), and attention rows are the captured cross-attention exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attn_plugins as ap
from attn_plugins.generation import explain_generation

from .models import captioner, whisper

captum_attr = pytest.importorskip("captum.attr")

TOL = 1e-6
GRADIENT = ["saliency", "input_x_gradient", ("integrated_gradients", {"n_steps": 8}), "deeplift", "feature_ablation"]
STEPS = {"max_new_tokens": 3, "min_new_tokens": 3}
BUILD = {"whisper": whisper, "vit-gpt2": lambda: captioner("gpt2"), "vit-bert": lambda: captioner("bert")}


class StepForward(torch.nn.Module):
    """Step ``t``'s probabilities from the source features and the decoder embeddings up to ``t``."""

    def __init__(self, model, t: int) -> None:
        super().__init__()
        self.model, self.t = model, t

    def forward(self, source, prefix):
        out = self.model(
            **{self.model.main_input_name: source}, decoder_inputs_embeds=prefix[:, : self.t + 1], use_cache=False
        )
        return torch.softmax(out.logits[:, -1], dim=-1)


def _windows(model, x):
    """Per input element, the encoder position it feeds (the reference grouping, written out by hand)."""
    if model.main_input_name == "input_features":  # conv strides 1 and 2: two frames per position
        return (torch.arange(x.shape[-1]) // 2).view(1, 1, -1).expand_as(x), 0, x.shape[-1] // 2
    ids = torch.zeros(x.shape[-2:], dtype=torch.long)
    for r in range(4):
        for c in range(4):
            ids[4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = 4 * r + c
    return ids.view(1, 1, 16, 16).expand_as(x), 1, 16  # ViT: [CLS] first, 16 patches


def _reference(name, options, fwd, x, prefix, target, groups, extra, count):
    inputs = (x.clone(), prefix.clone())
    zeros = tuple(torch.zeros_like(v) for v in inputs)
    if name == "feature_ablation":
        p = prefix.shape[1]
        masks = (groups, (torch.arange(p) + count).view(1, p, 1).expand_as(prefix))
        with torch.no_grad():
            attr = captum_attr.FeatureAblation(fwd).attribute(
                inputs, baselines=zeros, target=target, feature_mask=masks
            )
        per_group = [attr[0][groups == g][0] for g in range(count)]  # every element of a group holds its value
        return torch.tensor([0.0] * extra + per_group, dtype=torch.float64), attr[1][0, :, 0]
    if name == "saliency":
        attr = captum_attr.Saliency(fwd).attribute(inputs, target=target, abs=True)
    elif name == "input_x_gradient":
        attr = captum_attr.InputXGradient(fwd).attribute(inputs, target=target)
    elif name == "integrated_gradients":
        attr = captum_attr.IntegratedGradients(fwd).attribute(inputs, baselines=zeros, target=target, **options)
    else:
        attr = captum_attr.DeepLift(fwd).attribute(inputs, baselines=zeros, target=target)
    summed = [float(attr[0][groups == g].sum().detach()) for g in range(count)]
    return torch.tensor([0.0] * extra + summed, dtype=torch.float64), attr[1][0].sum(-1)


@pytest.mark.parametrize("arch, forced", [("whisper", None), ("vit-gpt2", None), ("vit-bert", [11, 12, 13])])
def test_every_step_equals_captum_on_that_step(arch, forced):
    model, x = BUILD[arch]()
    before = [p.requires_grad for p in model.parameters()]
    result = explain_generation(model, None, x, forced, methods=GRADIENT, generate_kwargs=STEPS, progress=False)
    assert [p.requires_grad for p in model.parameters()] == before and not model.training
    if forced is not None:
        assert result.target_ids == forced
    else:  # the model's own greedy output
        with torch.no_grad():
            out = model.generate(**{model.main_input_name: x}, do_sample=False, **STEPS)[0].tolist()
        assert result.target_ids == (out[1:] if out[0] == model.config.decoder_start_token_id else out)
    groups, extra, count = _windows(model, x)
    assert len(result.source_tokens) == extra + count and result.info["source_special"][:extra] == [True] * extra
    prefix_ids = torch.tensor([result.info["prefix_ids"]])
    with torch.no_grad():
        prefix = model.get_decoder().get_input_embeddings()(prefix_ids)
    for entry in GRADIENT:
        name, options = (entry, {}) if isinstance(entry, str) else entry
        label = name if not options else f"{name}(n_steps=8)"
        assert np.abs(result.source[label]).max() > 1e-3  # numbers large enough for TOL to tell
        for t, target in enumerate(result.target_ids):
            ref_src, ref_prefix = _reference(
                name, options, StepForward(model, t), x, prefix, target, groups, extra, count
            )
            torch.testing.assert_close(torch.from_numpy(result.source[label][t]), ref_src.double(), atol=TOL, rtol=0)
            torch.testing.assert_close(
                torch.from_numpy(result.prefix[label][t][: t + 1]), ref_prefix[: t + 1].double(), atol=TOL, rtol=0
            )
            assert not result.prefix[label][t][t + 1 :].any()


@pytest.mark.parametrize("arch", ["whisper", "vit-gpt2"])
def test_attention_rows_are_the_captured_cross_attention(arch):
    model, x = BUILD[arch]()
    methods = [("attention", {"layer": 0, "head": 1}), ("attention", {"layer": "mean"}), "rollout"]
    result = explain_generation(model, None, x, methods=methods, generate_kwargs=STEPS, progress=False)
    with ap.capture(model) as cap:
        with torch.no_grad():
            model(**{model.main_input_name: x}, decoder_input_ids=torch.tensor([result.info["prefix_ids"]]))
    cross = cap.record.select("decoder", "cross")
    assert len(cross) == 2
    assert np.array_equal(result.source["attention(head=1,layer=0)"], cross[0].weights[0, 1].double().numpy())
    mean = torch.stack([layer.weights[0].double().mean(0) for layer in cross]).mean(0).numpy()
    assert np.array_equal(result.source["attention(layer=mean)"], mean)
    # the independent reference: transformers' eager attention with output_attentions=True
    model.set_attn_implementation("eager")
    with torch.no_grad():
        eager = model(
            **{model.main_input_name: x},
            decoder_input_ids=torch.tensor([result.info["prefix_ids"]]),
            output_attentions=True,
        )
    np.testing.assert_allclose(
        result.source["attention(head=1,layer=0)"], eager.cross_attentions[0][0, 1].numpy(), atol=1e-6, rtol=0
    )
    np.testing.assert_allclose(result.source["rollout"].sum(1), 1.0, atol=1e-9)


def test_feature_sources_refuse_what_needs_token_ids():
    model, x = whisper()
    with pytest.raises(ap.InputError, match="token-id source"):
        explain_generation(model, None, x, [5, 6], methods=["layer_integrated_gradients"], progress=False)
    with pytest.raises(ap.InputError, match="summed per frame window"):
        explain_generation(model, None, x, [5, 6], methods=[("saliency", {"reduce": "l2"})], progress=False)
    with pytest.raises(ap.InputError, match="windows of 2"):
        explain_generation(model, None, x[..., :11], [5, 6], methods=["saliency"], progress=False)
