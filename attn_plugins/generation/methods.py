"""Attribution methods over a generated sequence, every target step in one batch.

A method is ``fn(teacher, steps, output=..., **options) -> (source [n, S], prefix [n, P])`` for the
target steps ``steps`` (a list of step indices). Gradient and perturbation methods call Captum once
on inputs replicated once per step (row ``i`` explains step ``steps[i]``), so one backward (or one
batched forward per ablated token) gives every step; the numbers are those of Captum called on each
step alone. Attention methods read the capture of the teacher-forced forward (:mod:`.attention`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from ..errors import InputError, import_optional
from ..registry import Registry
from ..saliency.methods import quiet_captum
from ..saliency.problem import ForwardModule, transform_output

if TYPE_CHECKING:
    from .teacher import TeacherForced

GENERATION_METHODS = Registry("generation attribution method", "attn_plugins.generation_methods")

Rows = tuple[torch.Tensor, torch.Tensor]
F = TypeVar("F", bound=Callable[..., Rows])


def method(name: str, family: str) -> Callable[[F], F]:
    """Register ``fn`` under ``name`` with its ``family`` (``"gradient"``, ``"perturbation"``, ``"attention"``)."""

    def add(fn: F) -> F:
        fn.family = family  # type: ignore[attr-defined]
        fn.method_name = name  # type: ignore[attr-defined]
        GENERATION_METHODS.register(name, fn)
        return fn

    return add


def family_of(name: str) -> str:
    """The family a registered method was registered with."""
    return str(getattr(GENERATION_METHODS.get(name), "family", "gradient"))


def _captum() -> Any:
    return import_optional("captum.attr", "generation attribution")


class StepBatch:
    """The inputs of steps ``steps`` replicated along the batch, and the Captum forward over them."""

    def __init__(self, teacher: TeacherForced, steps: list[int], output: str) -> None:
        self.teacher = teacher
        src, prefix = teacher.embeddings()
        n = len(steps)
        self.embeds = (src.expand(n, *src.shape[1:]).clone(), prefix.expand(n, -1, -1).clone())
        self.ids = (
            teacher.source_ids.to(teacher.device).expand(n, -1).clone(),
            teacher.prefix_ids.to(teacher.device).expand(n, -1).clone(),
        )
        self.positions = teacher.positions[steps].to(teacher.device)
        self.targets = [int(teacher.targets[s]) for s in steps]
        self.output = output

    def embed_forward(self, src: torch.Tensor, prefix: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = transform_output(self.teacher.forward(src, prefix, positions), self.output)
        return out

    def ids_forward(self, src_ids: torch.Tensor, prefix_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = transform_output(self.teacher.ids_forward(src_ids, prefix_ids, positions), self.output)
        return out

    def baselines(self, baseline: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``"zeros"`` (Captum's default), a number, or ``(source ids, prefix ids)``: the embeddings of
        reference tokens (inseq's choice: the unknown token, with EOS and BOS kept)."""
        if isinstance(baseline, (tuple, list)) and len(baseline) == 2:
            teacher, n = self.teacher, self.embeds[0].shape[0]
            if teacher.source_layer is None:
                raise InputError("baseline ids need a token-id source; give 'zeros' or a number")
            ids = [torch.as_tensor(b, device=teacher.device).long().view(1, -1) for b in baseline]
            if ids[0].shape[1] != self.embeds[0].shape[1] or ids[1].shape[1] != self.embeds[1].shape[1]:
                raise ValueError("baseline ids must have one id per source token and one per prefix token")
            with torch.no_grad():
                return (
                    teacher.source_layer(ids[0]).expand(n, -1, -1).to(self.embeds[0]),
                    teacher.target_layer(ids[1]).expand(n, -1, -1).to(self.embeds[1]),
                )
        if isinstance(baseline, str) and baseline in ("zeros", "zero") or baseline is None:
            return torch.zeros_like(self.embeds[0]), torch.zeros_like(self.embeds[1])
        if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
            return torch.full_like(self.embeds[0], float(baseline)), torch.full_like(self.embeds[1], float(baseline))
        raise ValueError(f"baseline must be 'zeros' or a number, got {baseline!r}")


def _quiet() -> AbstractContextManager[Any]:
    quiet: AbstractContextManager[Any] = quiet_captum()
    return quiet


@method("saliency", "gradient")
def saliency(batch: StepBatch, *, reduce: str = "sum", abs: bool = True) -> Rows:  # noqa: A002 - Captum's name
    with _quiet():
        attr = (
            _captum()
            .Saliency(batch.embed_forward)
            .attribute(batch.embeds, target=batch.targets, additional_forward_args=(batch.positions,), abs=abs)
        )
    return batch.teacher.pool(attr, reduce)


@method("input_x_gradient", "gradient")
def input_x_gradient(batch: StepBatch, *, reduce: str = "sum") -> Rows:
    with _quiet():
        attr = (
            _captum()
            .InputXGradient(batch.embed_forward)
            .attribute(batch.embeds, target=batch.targets, additional_forward_args=(batch.positions,))
        )
    return batch.teacher.pool(attr, reduce)


@method("integrated_gradients", "gradient")
def integrated_gradients(
    batch: StepBatch,
    *,
    n_steps: int = 50,
    integration: str = "gausslegendre",
    baseline: Any = "zeros",
    internal_batch_size: int | None = None,
    reduce: str = "sum",
) -> Rows:
    with _quiet():
        attr = (
            _captum()
            .IntegratedGradients(batch.embed_forward)
            .attribute(
                batch.embeds,
                baselines=batch.baselines(baseline),
                target=batch.targets,
                additional_forward_args=(batch.positions,),
                n_steps=n_steps,
                method=integration,
                internal_batch_size=internal_batch_size,
            )
        )
    return batch.teacher.pool(attr, reduce)


@method("layer_integrated_gradients", "gradient")
def layer_integrated_gradients(
    batch: StepBatch,
    *,
    n_steps: int = 50,
    integration: str = "gausslegendre",
    baseline_id: int | None = None,
    internal_batch_size: int | None = None,
    reduce: str = "sum",
) -> Rows:
    """On the word-embedding layer of each side; baseline: ``baseline_id`` (default the pad id) everywhere."""
    teacher = batch.teacher
    if teacher.source_layer is None:
        raise InputError(
            "layer_integrated_gradients needs a token-id source (its layer is the word embedding); "
            "use integrated_gradients for audio or image sources"
        )
    if baseline_id is None:
        baseline_id = getattr(getattr(teacher.model, "config", None), "pad_token_id", None)
        baseline_id = 0 if baseline_id is None else int(baseline_id)
    baselines = tuple(torch.full_like(i, int(baseline_id)) for i in batch.ids)
    with _quiet():
        attr = (
            _captum()
            .LayerIntegratedGradients(batch.ids_forward, [teacher.source_layer, teacher.target_layer])
            .attribute(
                batch.ids,
                baselines=baselines,
                target=batch.targets,
                additional_forward_args=(batch.positions,),
                n_steps=n_steps,
                method=integration,
                internal_batch_size=internal_batch_size,
            )
        )
    return batch.teacher.pool(attr, reduce)


@method("deeplift", "gradient")
def deeplift(batch: StepBatch, *, baseline: Any = "zeros", reduce: str = "sum") -> Rows:
    module = ForwardModule(batch.teacher.model, batch.embed_forward)
    with _quiet():
        attr = (
            _captum()
            .DeepLift(module)
            .attribute(
                batch.embeds,
                baselines=batch.baselines(baseline),
                target=batch.targets,
                additional_forward_args=(batch.positions,),
            )
        )
    return batch.teacher.pool(attr, reduce)


@method("feature_ablation", "perturbation")
def feature_ablation(batch: StepBatch, *, baseline: Any = "zeros", perturbations_per_eval: int = 1) -> Rows:
    """Occlusion of one source position (token, frame window, image patch) or prefix token at a time,
    replaced by the baseline, every step at once."""
    masks = batch.teacher.ablation_masks(batch.embeds)
    with torch.no_grad(), _quiet():
        attr = (
            _captum()
            .FeatureAblation(batch.embed_forward)
            .attribute(
                batch.embeds,
                baselines=batch.baselines(baseline),
                target=batch.targets,
                additional_forward_args=(batch.positions,),
                feature_mask=masks,
                perturbations_per_eval=perturbations_per_eval,
            )
        )
    return batch.teacher.ablation_values(attr)
