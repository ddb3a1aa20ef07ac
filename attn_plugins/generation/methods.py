"""Attribution methods over a generated sequence, every target step in one batch.

A method is ``fn(teacher, steps, output=..., **options) -> (source [n, S], prefix [n, P])`` for the
target steps ``steps`` (a list of step indices). Gradient and perturbation methods call Captum once
on inputs replicated once per step (row ``i`` explains step ``steps[i]``), so one backward (or one
batched forward per ablated token) gives every step; the numbers are those of Captum called on each
step alone. Attention methods read the capture of the teacher-forced forward (:mod:`.attention`).
"""

from __future__ import annotations

import torch

from ..errors import import_optional
from ..registry import Registry
from ..saliency.methods import quiet_captum, reduce_embedding
from ..saliency.problem import ForwardModule, transform_output

GENERATION_METHODS = Registry("generation attribution method", "attn_plugins.generation_methods")


def method(name: str, family: str):
    def add(fn):
        fn.family = family
        fn.method_name = name
        GENERATION_METHODS.register(name, fn)
        return fn

    return add


def _captum():
    return import_optional("captum.attr", "generation attribution")


class StepBatch:
    """The inputs of steps ``steps`` replicated along the batch, and the Captum forward over them."""

    def __init__(self, teacher, steps: list[int], output: str) -> None:
        self.teacher = teacher
        src, prefix = teacher.embeddings()
        n = len(steps)
        self.embeds = (src.expand(n, -1, -1).clone(), prefix.expand(n, -1, -1).clone())
        self.ids = (teacher.source_ids.to(teacher.device).expand(n, -1).clone(),
                    teacher.prefix_ids.to(teacher.device).expand(n, -1).clone())
        self.positions = teacher.positions[steps].to(teacher.device)
        self.targets = [int(teacher.targets[s]) for s in steps]
        self.output = output

    def embed_forward(self, src, prefix, positions):
        return transform_output(self.teacher.forward(src, prefix, positions), self.output)

    def ids_forward(self, src_ids, prefix_ids, positions):
        return transform_output(self.teacher.ids_forward(src_ids, prefix_ids, positions), self.output)

    def baselines(self, baseline):
        """``"zeros"`` (Captum's default), a number, or ``(source ids, prefix ids)``: the embeddings of
        reference tokens (inseq's choice: the unknown token, with EOS and BOS kept)."""
        if isinstance(baseline, (tuple, list)) and len(baseline) == 2:
            teacher, n = self.teacher, self.embeds[0].shape[0]
            ids = [torch.as_tensor(b, device=teacher.device).long().view(1, -1) for b in baseline]
            if ids[0].shape[1] != self.embeds[0].shape[1] or ids[1].shape[1] != self.embeds[1].shape[1]:
                raise ValueError("baseline ids must have one id per source token and one per prefix token")
            with torch.no_grad():
                return (teacher.source_layer(ids[0]).expand(n, -1, -1).to(self.embeds[0]),
                        teacher.target_layer(ids[1]).expand(n, -1, -1).to(self.embeds[1]))
        if isinstance(baseline, str) and baseline in ("zeros", "zero") or baseline is None:
            return tuple(torch.zeros_like(e) for e in self.embeds)
        if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
            return tuple(torch.full_like(e, float(baseline)) for e in self.embeds)
        raise ValueError(f"baseline must be 'zeros' or a number, got {baseline!r}")


def _pair(attr, reduce: str):
    return reduce_embedding(attr[0], reduce).double(), reduce_embedding(attr[1], reduce).double()


def _quiet():
    return quiet_captum()


@method("saliency", "gradient")
def saliency(batch: StepBatch, *, reduce: str = "sum", abs: bool = True):  # noqa: A002 - Captum's name
    with _quiet():
        attr = _captum().Saliency(batch.embed_forward).attribute(
            batch.embeds, target=batch.targets, additional_forward_args=(batch.positions,), abs=abs)
    return _pair(attr, reduce)


@method("input_x_gradient", "gradient")
def input_x_gradient(batch: StepBatch, *, reduce: str = "sum"):
    with _quiet():
        attr = _captum().InputXGradient(batch.embed_forward).attribute(
            batch.embeds, target=batch.targets, additional_forward_args=(batch.positions,))
    return _pair(attr, reduce)


@method("integrated_gradients", "gradient")
def integrated_gradients(batch: StepBatch, *, n_steps: int = 50, integration: str = "gausslegendre",
                         baseline="zeros", internal_batch_size: int | None = None, reduce: str = "sum"):
    with _quiet():
        attr = _captum().IntegratedGradients(batch.embed_forward).attribute(
            batch.embeds, baselines=batch.baselines(baseline), target=batch.targets,
            additional_forward_args=(batch.positions,), n_steps=n_steps, method=integration,
            internal_batch_size=internal_batch_size)
    return _pair(attr, reduce)


@method("layer_integrated_gradients", "gradient")
def layer_integrated_gradients(batch: StepBatch, *, n_steps: int = 50, integration: str = "gausslegendre",
                               baseline_id: int | None = None, internal_batch_size: int | None = None,
                               reduce: str = "sum"):
    """On the word-embedding layer of each side; baseline: ``baseline_id`` (default the pad id) everywhere."""
    teacher = batch.teacher
    if baseline_id is None:
        baseline_id = getattr(getattr(teacher.model, "config", None), "pad_token_id", None)
        baseline_id = 0 if baseline_id is None else int(baseline_id)
    baselines = tuple(torch.full_like(i, int(baseline_id)) for i in batch.ids)
    with _quiet():
        attr = _captum().LayerIntegratedGradients(
            batch.ids_forward, [teacher.source_layer, teacher.target_layer]).attribute(
            batch.ids, baselines=baselines, target=batch.targets, additional_forward_args=(batch.positions,),
            n_steps=n_steps, method=integration, internal_batch_size=internal_batch_size)
    return _pair(attr, reduce)


@method("deeplift", "gradient")
def deeplift(batch: StepBatch, *, baseline="zeros", reduce: str = "sum"):
    module = ForwardModule(batch.teacher.model, batch.embed_forward)
    with _quiet():
        attr = _captum().DeepLift(module).attribute(
            batch.embeds, baselines=batch.baselines(baseline), target=batch.targets,
            additional_forward_args=(batch.positions,))
    return _pair(attr, reduce)


@method("feature_ablation", "perturbation")
def feature_ablation(batch: StepBatch, *, baseline="zeros", perturbations_per_eval: int = 1):
    """Occlusion of one token at a time (its embedding replaced by the baseline), every step at once."""
    src, prefix = batch.embeds
    n, s, d = src.shape
    p = prefix.shape[1]
    masks = (torch.arange(s, device=src.device).view(1, s, 1).expand(n, s, d),
             (torch.arange(p, device=src.device) + s).view(1, p, 1).expand(n, p, d))
    with torch.no_grad(), _quiet():
        attr = _captum().FeatureAblation(batch.embed_forward).attribute(
            batch.embeds, baselines=batch.baselines(baseline), target=batch.targets,
            additional_forward_args=(batch.positions,), feature_mask=masks,
            perturbations_per_eval=perturbations_per_eval)
    return attr[0][..., 0].double(), attr[1][..., 0].double()
