"""The registered saliency methods.

Every method is ``method(problem, **options) -> (scores, extras)``: ``scores`` is ``[batch, n]``
(one value per token position of the padded batch) and ``extras`` a list of per-item dicts
(e.g. Captum's convergence ``delta``). Methods carry ``family`` (``"attention"`` or
``"gradient"``) and a one-line ``description``.

Gradient methods call Captum on the word-embedding output and reduce the embedding dimension
with ``reduce`` (``"sum"``, the Captum tutorials' choice, or ``"l2"``/``"mean"``); attention
methods (:mod:`attn_plugins.saliency.attention_methods`) read a captured
:class:`~attn_plugins.record.AttentionRecord`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch

from ..errors import import_optional as optional
from ..registry import Registry
from .problem import Problem

METHODS = Registry("saliency method", "attn_plugins.saliency_methods")

Extras = list[dict[str, Any]]
"""Per-item extra information of a method's result (e.g. Captum's convergence ``delta``)."""
MethodResult = tuple[torch.Tensor, Extras]
"""What a method returns: ``[batch, n]`` scores and one extras dict per item."""
Method = TypeVar("Method", bound=Callable[..., MethodResult])


def method(name: str, family: str, description: str) -> Callable[[Method], Method]:
    """Decorator that registers a saliency method in :data:`METHODS`.

    Args:
        name: the name callers pass as ``method=``.
        family: ``"attention"`` (reads a record) or ``"gradient"`` (needs the model).
        description: one line shown in method listings.

    Returns:
        A decorator that tags the function with ``family``, ``description`` and ``method_name``,
        registers it, and returns it unchanged.
    """

    def add(fn: Method) -> Method:
        tagged: Any = fn
        tagged.family = family
        tagged.description = description
        tagged.method_name = name
        METHODS.register(name, fn)
        return fn

    return add


def _captum() -> Any:
    return optional("captum.attr", "gradient saliency")


def reduce_embedding(attributions: torch.Tensor, how: str = "sum") -> torch.Tensor:
    """``[b, n, d]`` -> ``[b, n]``: one score per token from its embedding dimensions.

    Args:
        attributions: per-dimension attributions ``[b, n, d]``.
        how: ``"sum"`` (the Captum tutorials' choice), ``"mean"`` or ``"l2"`` (the norm).

    Returns:
        The ``[b, n]`` scores.
    """
    if how == "sum":
        return attributions.sum(dim=-1)
    if how == "mean":
        return attributions.mean(dim=-1)
    if how == "l2":
        norm: torch.Tensor = attributions.norm(dim=-1)
        return norm
    raise ValueError(f"reduce must be 'sum', 'mean' or 'l2', got {how!r}")


def no_extras(problem: Problem) -> Extras:
    """One empty extras dict per item (a method with nothing to add)."""
    return [{} for _ in range(problem.batch_size)]


def _deltas(delta: Any) -> Extras:
    return [{"delta": float(v)} for v in delta.detach().reshape(-1).tolist()]


@contextlib.contextmanager
def _quiet_captum() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(hooks|non-linear|nonlinear).*")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"captum\..*")
        warnings.filterwarnings("ignore", message=r"Multiple layers provided")
        warnings.filterwarnings("ignore", message=r"Input Tensor \d+ did not already require gradients")
        yield


quiet_captum = _quiet_captum  # public name: generation attribution filters Captum's warnings the same way


# ---------------------------------------------------------------------------------------------
# gradient methods (Captum)
# ---------------------------------------------------------------------------------------------
@method("saliency", "gradient", "Captum Saliency: |d target / d embedding| (Simonyan et al. 2014)")
def saliency(problem: Problem, *, reduce: str = "sum", abs: bool = True) -> MethodResult:  # noqa: A002 - Captum's name
    """Captum's ``Saliency``: the gradient of the target w.r.t. the word embeddings.

    Args:
        problem: the batch to explain (built by an explainer).
        reduce: how the embedding dimension is reduced (``"sum"``, ``"mean"``, ``"l2"``).
        abs: take the gradient's absolute value first (Captum's option).

    Returns:
        ``([batch, n] scores, extras)``; extras are empty dicts.
    """
    captum_attr = _captum()

    with _quiet_captum():
        attr = captum_attr.Saliency(problem.embed_forward).attribute(
            problem.embeddings(), target=problem.targets, additional_forward_args=problem.args, abs=abs
        )
    return reduce_embedding(attr, reduce), no_extras(problem)


@method("input_x_gradient", "gradient", "Captum InputXGradient: embedding x gradient")
def input_x_gradient(problem: Problem, *, reduce: str = "sum") -> MethodResult:
    """Captum's ``InputXGradient``: the word embeddings times their gradient.

    Args:
        problem: the batch to explain (built by an explainer).
        reduce: how the embedding dimension is reduced (``"sum"``, ``"mean"``, ``"l2"``).

    Returns:
        ``([batch, n] scores, extras)``; extras are empty dicts.
    """
    captum_attr = _captum()

    with _quiet_captum():
        attr = captum_attr.InputXGradient(problem.embed_forward).attribute(
            problem.embeddings(), target=problem.targets, additional_forward_args=problem.args
        )
    return reduce_embedding(attr, reduce), no_extras(problem)


@method(
    "integrated_gradients",
    "gradient",
    "Captum IntegratedGradients over the word embeddings (baseline: zero embeddings)",
)
def integrated_gradients(
    problem: Problem,
    *,
    n_steps: int = 50,
    integration: str = "gausslegendre",
    baseline: str | float | torch.Tensor = "zeros",
    internal_batch_size: int | None = None,
    reduce: str = "sum",
) -> MethodResult:
    """Captum's ``IntegratedGradients`` over the word embeddings.

    Args:
        problem: the batch to explain (built by an explainer).
        n_steps: integration steps.
        integration: Captum's ``method`` (``"gausslegendre"``, ``"riemann_left"``, ...).
        baseline: ``"zeros"`` (default), ``"pad"``, ``"mask"``, a float or a tensor.
        internal_batch_size: Captum's batch size for the scaled inputs (None: all at once).
        reduce: how the embedding dimension is reduced (``"sum"``, ``"mean"``, ``"l2"``).

    Returns:
        ``([batch, n] scores, extras)``; extras hold Captum's convergence ``delta``.
    """
    captum_attr = _captum()

    attr, delta = captum_attr.IntegratedGradients(problem.embed_forward).attribute(
        problem.embeddings(),
        baselines=problem.baseline_embeds(baseline),
        target=problem.targets,
        additional_forward_args=problem.args,
        n_steps=n_steps,
        method=integration,
        internal_batch_size=internal_batch_size,
        return_convergence_delta=True,
    )
    return reduce_embedding(attr, reduce), _deltas(delta)


@method(
    "layer_integrated_gradients",
    "gradient",
    "Captum LayerIntegratedGradients on the embedding layer (baseline: [PAD] for every non-special token)",
)
def layer_integrated_gradients(
    problem: Problem,
    *,
    n_steps: int = 50,
    integration: str = "gausslegendre",
    baseline: str = "pad",
    internal_batch_size: int | None = None,
    reduce: str = "sum",
) -> MethodResult:
    """Captum's ``LayerIntegratedGradients`` on the embedding layer, from reference input ids.

    Args:
        problem: the batch to explain (built by an explainer).
        n_steps: integration steps.
        integration: Captum's ``method``.
        baseline: ``"pad"`` (default: every non-special real token replaced by [PAD]), ``"mask"``
            or ``"zeros"`` (id 0 everywhere).
        internal_batch_size: Captum's batch size for the scaled inputs.
        reduce: how the embedding dimension is reduced (``"sum"``, ``"mean"``, ``"l2"``).

    Returns:
        ``([batch, n] scores, extras)``; extras hold Captum's convergence ``delta``.
    """
    captum_attr = _captum()

    if baseline in ("pad", "mask"):
        baselines = problem.baseline_ids(baseline)
    elif baseline in (None, "zeros", "zero"):
        baselines = torch.zeros_like(problem.input_ids)  # id 0 everywhere
    else:
        raise ValueError(f"baseline for layer_integrated_gradients must be 'pad', 'mask' or 'zeros', got {baseline!r}")
    attr, delta = captum_attr.LayerIntegratedGradients(problem.ids_forward, problem.embedding_layer).attribute(
        problem.input_ids,
        baselines=baselines,
        target=problem.targets,
        additional_forward_args=problem.args,
        n_steps=n_steps,
        method=integration,
        internal_batch_size=internal_batch_size,
        return_convergence_delta=True,
    )
    return reduce_embedding(attr, reduce), _deltas(delta)


@method(
    "smoothgrad", "gradient", "Captum NoiseTunnel(Saliency), SmoothGrad (Smilkov et al. 2017), seeded so runs agree"
)
def smoothgrad(
    problem: Problem,
    *,
    nt_samples: int = 10,
    noise_level: float = 0.01,
    stdevs: float | None = None,
    seed: int = 0,
    base: str = "saliency",
    nt_type: str = "smoothgrad",
    reduce: str = "sum",
    nt_samples_batch_size: int | None = None,
) -> MethodResult:
    """``stdevs`` defaults to ``noise_level * (max - min)`` of the batch's embeddings, with
    AllenNLP's SmoothGradient defaults (``noise_level=0.01``, 10 samples); the image-domain
    10-20 % of Smilkov et al. drowns word embeddings in noise.

    The noise is drawn from torch's global generator seeded with ``seed`` inside ``fork_rng``, so
    two calls with the same seed agree and the caller's random state is left untouched (AllenNLP's
    SmoothGradient is unseeded, allennlp#3442).

    Args:
        problem: the batch to explain (built by an explainer).
        nt_samples: noisy samples averaged.
        noise_level: the noise scale relative to ``max - min`` of the embeddings.
        stdevs: an absolute noise scale (overrides ``noise_level``).
        seed: seeds the noise.
        base: the attribution smoothed: ``"saliency"`` or ``"input_x_gradient"``.
        nt_type: Captum's ``nt_type`` (``"smoothgrad"``, ``"smoothgrad_sq"``, ``"vargrad"``).
        reduce: how the embedding dimension is reduced (``"sum"``, ``"mean"``, ``"l2"``).
        nt_samples_batch_size: Captum's batch size for the noisy samples.

    Returns:
        ``([batch, n] scores, extras)``; extras hold the noise scale and seed.
    """
    captum_attr = _captum()

    bases = {"saliency": captum_attr.Saliency, "input_x_gradient": captum_attr.InputXGradient}
    if base not in bases:
        raise ValueError(f"base must be one of {sorted(bases)}, got {base!r}")
    embeds = problem.embeddings()
    if stdevs is None:
        stdevs = float(noise_level) * float(embeds.max() - embeds.min())
    devices = [embeds.device.index] if embeds.is_cuda else []
    with torch.random.fork_rng(devices=devices), _quiet_captum():
        torch.manual_seed(seed)
        attr = captum_attr.NoiseTunnel(bases[base](problem.embed_forward)).attribute(
            embeds,
            nt_type=nt_type,
            nt_samples=nt_samples,
            stdevs=stdevs,
            target=problem.targets,
            additional_forward_args=problem.args,
            nt_samples_batch_size=nt_samples_batch_size,
        )
    extras = [{"stdevs": stdevs, "seed": seed} for _ in range(problem.batch_size)]
    return reduce_embedding(attr, reduce), extras


@method("deeplift", "gradient", "Captum DeepLift (rescale rule on supported non-linearities), zero-embedding baseline")
def deeplift(problem: Problem, *, baseline: str | float | torch.Tensor = "zeros", reduce: str = "sum") -> MethodResult:
    """Captum's ``DeepLift`` (rescale rule) through the problem's forward function.

    Args:
        problem: the batch to explain (built by an explainer).
        baseline: ``"zeros"`` (default), ``"pad"``, ``"mask"``, a float or a tensor.
        reduce: how the embedding dimension is reduced (``"sum"``, ``"mean"``, ``"l2"``).

    Returns:
        ``([batch, n] scores, extras)``; extras hold Captum's convergence ``delta``.
    """
    captum_attr = _captum()

    from .problem import ForwardModule

    if problem.model is None or problem.embed_forward is None:
        raise ValueError("deeplift needs a model: use an Explainer")
    module = ForwardModule(problem.model, problem.embed_forward)
    with _quiet_captum():
        attr, delta = captum_attr.DeepLift(module).attribute(
            problem.embeddings(),
            baselines=problem.baseline_embeds(baseline),
            target=problem.targets,
            additional_forward_args=problem.args,
            return_convergence_delta=True,
        )
    return reduce_embedding(attr, reduce), _deltas(delta)


@method(
    "feature_ablation",
    "gradient",
    "Captum FeatureAblation: change of the target when one token's embedding is replaced by the baseline",
)
def feature_ablation(
    problem: Problem, *, baseline: str | float | torch.Tensor = "zeros", perturbations_per_eval: int = 1
) -> MethodResult:
    """Captum's ``FeatureAblation``, one token (its whole embedding) at a time.

    Args:
        problem: the batch to explain (built by an explainer).
        baseline: what a token's embedding is replaced by: ``"zeros"``, ``"pad"``, ``"mask"``,
            a float or a tensor.
        perturbations_per_eval: ablations run in one forward pass.

    Returns:
        ``([batch, n] scores, extras)``; extras are empty dicts.
    """
    captum_attr = _captum()

    embeds = problem.embeddings()
    b, n, d = embeds.shape
    mask = torch.arange(n, device=embeds.device).view(1, n, 1).expand(b, n, d)
    with torch.no_grad(), _quiet_captum():
        attr = captum_attr.FeatureAblation(problem.embed_forward).attribute(
            problem.embeddings(),
            baselines=problem.baseline_embeds(baseline),
            target=problem.targets,
            additional_forward_args=problem.args,
            feature_mask=mask,
            perturbations_per_eval=perturbations_per_eval,
        )
    # every dimension of a token carries the token's ablation effect: read one
    return attr[..., 0], no_extras(problem)


ATTENTION_FAMILY = "attention"
GRADIENT_FAMILY = "gradient"


def family_of(name: str) -> str:
    """The family of a registered method.

    Args:
        name: a name of :data:`METHODS`.

    Returns:
        ``"attention"`` or ``"gradient"`` (a third-party method without ``family`` counts as gradient).
    """
    return str(getattr(METHODS.get(name), "family", "gradient"))
