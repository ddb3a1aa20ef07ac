"""The registered saliency methods.

Every method is ``method(problem, **options) -> (scores, extras)``: ``scores`` is ``[batch, n]``
(one value per token position of the padded batch) and ``extras`` a list of per-item dicts
(e.g. Captum's convergence ``delta``). Methods carry ``family`` (``"attention"`` or
``"gradient"``) and a one-line ``description``.

Gradient methods call Captum on the word-embedding output and reduce the embedding dimension
with ``reduce`` (``"sum"``, the Captum tutorials' choice, or ``"l2"``/``"mean"``); attention
methods read a captured :class:`~attn_plugins.record.AttentionRecord`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from ..errors import import_optional as optional
from ..registry import Registry
from .problem import Problem

if TYPE_CHECKING:
    from ..record import AttentionRecord, LayerAttention

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


def _no_extras(problem: Problem) -> Extras:
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
    Saliency = _captum().Saliency

    with _quiet_captum():
        attr = Saliency(problem.embed_forward).attribute(
            problem.embeddings(), target=problem.targets, additional_forward_args=problem.args, abs=abs)
    return reduce_embedding(attr, reduce), _no_extras(problem)


@method("input_x_gradient", "gradient", "Captum InputXGradient: embedding x gradient")
def input_x_gradient(problem: Problem, *, reduce: str = "sum") -> MethodResult:
    """Captum's ``InputXGradient``: the word embeddings times their gradient.

    Args:
        problem: the batch to explain (built by an explainer).
        reduce: how the embedding dimension is reduced (``"sum"``, ``"mean"``, ``"l2"``).

    Returns:
        ``([batch, n] scores, extras)``; extras are empty dicts.
    """
    InputXGradient = _captum().InputXGradient

    with _quiet_captum():
        attr = InputXGradient(problem.embed_forward).attribute(
            problem.embeddings(), target=problem.targets, additional_forward_args=problem.args)
    return reduce_embedding(attr, reduce), _no_extras(problem)


@method("integrated_gradients", "gradient",
        "Captum IntegratedGradients over the word embeddings (baseline: zero embeddings)")
def integrated_gradients(problem: Problem, *, n_steps: int = 50, integration: str = "gausslegendre",
                         baseline: str | float | torch.Tensor = "zeros",
                         internal_batch_size: int | None = None, reduce: str = "sum") -> MethodResult:
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
    IntegratedGradients = _captum().IntegratedGradients

    attr, delta = IntegratedGradients(problem.embed_forward).attribute(
        problem.embeddings(), baselines=problem.baseline_embeds(baseline), target=problem.targets,
        additional_forward_args=problem.args, n_steps=n_steps, method=integration,
        internal_batch_size=internal_batch_size, return_convergence_delta=True)
    return reduce_embedding(attr, reduce), _deltas(delta)


@method("layer_integrated_gradients", "gradient",
        "Captum LayerIntegratedGradients on the embedding layer (baseline: [PAD] for every non-special token)")
def layer_integrated_gradients(problem: Problem, *, n_steps: int = 50, integration: str = "gausslegendre",
                               baseline: str = "pad",
                               internal_batch_size: int | None = None, reduce: str = "sum") -> MethodResult:
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
    LayerIntegratedGradients = _captum().LayerIntegratedGradients

    if baseline in ("pad", "mask"):
        baselines = problem.baseline_ids(baseline)
    elif baseline in (None, "zeros", "zero"):
        baselines = torch.zeros_like(problem.input_ids)  # id 0 everywhere
    else:
        raise ValueError(f"baseline for layer_integrated_gradients must be 'pad', 'mask' or 'zeros', got {baseline!r}")
    attr, delta = LayerIntegratedGradients(problem.ids_forward, problem.embedding_layer).attribute(
        problem.input_ids, baselines=baselines, target=problem.targets, additional_forward_args=problem.args,
        n_steps=n_steps, method=integration, internal_batch_size=internal_batch_size, return_convergence_delta=True)
    return reduce_embedding(attr, reduce), _deltas(delta)


@method("smoothgrad", "gradient",
        "Captum NoiseTunnel(Saliency), SmoothGrad (Smilkov et al. 2017), seeded so runs agree")
def smoothgrad(problem: Problem, *, nt_samples: int = 10, noise_level: float = 0.01, stdevs: float | None = None,
               seed: int = 0, base: str = "saliency", nt_type: str = "smoothgrad", reduce: str = "sum",
               nt_samples_batch_size: int | None = None) -> MethodResult:
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
    InputXGradient, NoiseTunnel, Saliency = _captum().InputXGradient, _captum().NoiseTunnel, _captum().Saliency

    bases = {"saliency": Saliency, "input_x_gradient": InputXGradient}
    if base not in bases:
        raise ValueError(f"base must be one of {sorted(bases)}, got {base!r}")
    embeds = problem.embeddings()
    if stdevs is None:
        stdevs = float(noise_level) * float(embeds.max() - embeds.min())
    devices = [embeds.device.index] if embeds.is_cuda else []
    with torch.random.fork_rng(devices=devices), _quiet_captum():
        torch.manual_seed(seed)
        attr = NoiseTunnel(bases[base](problem.embed_forward)).attribute(
            embeds, nt_type=nt_type, nt_samples=nt_samples, stdevs=stdevs, target=problem.targets,
            additional_forward_args=problem.args, nt_samples_batch_size=nt_samples_batch_size)
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
    DeepLift = _captum().DeepLift

    from .problem import ForwardModule

    if problem.model is None or problem.embed_forward is None:
        raise ValueError("deeplift needs a model: use an Explainer")
    module = ForwardModule(problem.model, problem.embed_forward)
    with _quiet_captum():
        attr, delta = DeepLift(module).attribute(
            problem.embeddings(), baselines=problem.baseline_embeds(baseline), target=problem.targets,
            additional_forward_args=problem.args, return_convergence_delta=True)
    return reduce_embedding(attr, reduce), _deltas(delta)


@method("feature_ablation", "gradient",
        "Captum FeatureAblation: change of the target when one token's embedding is replaced by the baseline")
def feature_ablation(problem: Problem, *, baseline: str | float | torch.Tensor = "zeros",
                     perturbations_per_eval: int = 1) -> MethodResult:
    """Captum's ``FeatureAblation``, one token (its whole embedding) at a time.

    Args:
        problem: the batch to explain (built by an explainer).
        baseline: what a token's embedding is replaced by: ``"zeros"``, ``"pad"``, ``"mask"``,
            a float or a tensor.
        perturbations_per_eval: ablations run in one forward pass.

    Returns:
        ``([batch, n] scores, extras)``; extras are empty dicts.
    """
    FeatureAblation = _captum().FeatureAblation

    embeds = problem.embeddings()
    b, n, d = embeds.shape
    mask = torch.arange(n, device=embeds.device).view(1, n, 1).expand(b, n, d)
    with torch.no_grad(), _quiet_captum():
        attr = FeatureAblation(problem.embed_forward).attribute(
            problem.embeddings(), baselines=problem.baseline_embeds(baseline), target=problem.targets,
            additional_forward_args=problem.args, feature_mask=mask,
            perturbations_per_eval=perturbations_per_eval)
    # every dimension of a token carries the token's ablation effect: read one
    return attr[..., 0], _no_extras(problem)


# ---------------------------------------------------------------------------------------------
# attention methods
# ---------------------------------------------------------------------------------------------
def _real(mask_row: torch.Tensor) -> list[int]:
    real: list[int] = torch.nonzero(mask_row).flatten().tolist()
    return real


def _row(matrix: torch.Tensor, query: int | None, real: list[int]) -> torch.Tensor:
    """Row ``query`` of one item's ``[n, n]`` matrix; ``None``: the mean of the real rows (what a
    mean-pooled sentence embedding reads)."""
    if query is None:
        return matrix[real].mean(dim=0)
    return matrix[query]


def _self_layers(record: AttentionRecord) -> list[LayerAttention]:
    from ..analysis.rollout import self_layers as select

    return select(record, ...)


@method("attention", "attention", "raw attention of the query row (one layer or the mean of layers; heads averaged)")
def attention(problem: Problem, *, layer: Any = -1, head: Any = None) -> MethodResult:
    """Raw attention of the query row (``None`` query: the mean of the real rows).

    Args:
        problem: the batch to explain (built by an explainer).
        layer: a layer, ``"mean"`` or a list of layers (as :func:`~attn_plugins.analysis.rollout.raw_attention`).
        head: a head, or None for the mean of the heads.

    Returns:
        ``([batch, n] scores, extras)``; extras name the layer and head.
    """
    from ..analysis.rollout import raw_attention

    record = problem.record()
    out = torch.zeros(problem.input_ids.shape, dtype=torch.float64)
    for b, q in enumerate(problem.queries):
        item = _item_record(record, b)
        real = _real(problem.attention_mask[b])
        rows = [q] if q is not None else real
        values = [raw_attention(item, query=real.index(r), layer=layer, head=head)[0] for r in rows]
        out[b] = torch.stack(values).mean(dim=0)[: out.shape[1]].cpu()
    return out, [{"layer": layer, "head": head} for _ in range(problem.batch_size)]


@method("rollout", "attention", "attention rollout (Abnar & Zuidema 2020): row of the query token")
def rollout(problem: Problem, *, head_fusion: str = "mean", add_residual: bool = True,
            start_layer: int = 0) -> MethodResult:
    """Attention rollout (Abnar & Zuidema 2020): the query token's row of the rolled-out matrix.

    Args:
        problem: the batch to explain (built by an explainer).
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.
        add_residual: add the identity for the residual connection (and renormalise).
        start_layer: the first layer rolled out.

    Returns:
        ``([batch, n] scores, extras)``; extras are empty dicts.
    """
    from ..analysis.rollout import rollout as roll

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        matrix = roll(problem.record(), head_fusion=head_fusion, add_residual=add_residual, start_layer=start_layer)
    out = torch.zeros(problem.input_ids.shape, dtype=torch.float64)
    for b, q in enumerate(problem.queries):
        out[b] = _row(matrix[b], q, _real(problem.attention_mask[b])).cpu()
    return out, _no_extras(problem)


@method("flow", "attention", "attention flow (Abnar & Zuidema 2020): max flow from the query token to each input")
def flow(problem: Problem, *, head_fusion: str = "mean", add_residual: bool = True, normalize: bool = True,
         backend: str = "scipy", scale: int | None = None) -> MethodResult:
    """Attention flow (Abnar & Zuidema 2020): max flow from the query token to each input.

    Args:
        problem: the batch to explain (built by an explainer).
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.
        add_residual: add the identity for the residual connection.
        normalize: scale each row's flows to sum 1.
        backend: the max-flow solver (``"scipy"`` or ``"networkx"``).
        scale: integer capacity scale for SciPy's solver (default: the analysis module's).

    Returns:
        ``([batch, n] scores, extras)``; extras are empty dicts.
    """
    from ..analysis.flow import DEFAULT_SCALE, flow_matrices

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layers = _self_layers(problem.record())
    out = torch.zeros(problem.input_ids.shape, dtype=torch.float64)
    for b, q in enumerate(problem.queries):
        real = _real(problem.attention_mask[b])
        index = torch.tensor(real)
        weights = [l.weights[b : b + 1].index_select(-1, index.to(l.weights.device))
                   .index_select(-2, index.to(l.weights.device)) for l in layers]
        full = flow_matrices(weights, query=real.index(q) if q is not None else None, head_fusion=head_fusion,
                             add_residual=add_residual, normalize=normalize, backend=backend,
                             scale=scale or DEFAULT_SCALE)[0]
        out[b, index] = full if q is not None else full.mean(dim=0)
    return out, _no_extras(problem)


@method("grad_attention", "attention",
        "gradient-weighted attention: attention x d target / d attention, positive part, heads averaged")
def grad_attention(problem: Problem, *, aggregate: str = "mean", positive: bool = True,
                   layer: int = -1) -> MethodResult:
    """``aggregate``: ``"rollout"`` (Chefer et al. 2021: ``R = I``, ``R += Abar @ R`` layer by layer),
    ``"mean"`` (mean over layers of ``Abar``) or ``"layer"`` (``Abar`` of ``layer``); then the query row.
    ``Abar = mean_heads(A * dA)``, clamped at 0 when ``positive``.

    Args:
        problem: the batch to explain (built by an explainer).
        aggregate: ``"rollout"``, ``"mean"`` or ``"layer"``.
        positive: clamp ``A * dA`` at 0.
        layer: the layer for ``aggregate="layer"``.

    Returns:
        ``([batch, n] scores, extras)``; extras are empty dicts.
    """
    if problem.attention_function is None:
        raise ValueError("grad_attention needs a model: use an Explainer")
    pairs = problem.attention_function()  # [(A, dA)] per layer, each [b, h, n, n]
    weighted = []
    for attn, grad in pairs:
        value = (attn.detach().double() * grad.detach().double())
        if positive:
            value = value.clamp(min=0)
        weighted.append(value.mean(dim=1))
    if aggregate == "rollout":
        n = weighted[0].shape[-1]
        relevance = torch.eye(n, dtype=torch.float64, device=weighted[0].device).expand_as(weighted[0]).clone()
        for value in weighted:
            relevance = relevance + torch.matmul(value, relevance)
        matrix = relevance
    elif aggregate == "mean":
        matrix = torch.stack(weighted).mean(dim=0)
    elif aggregate == "layer":
        matrix = weighted[layer]
    else:
        raise ValueError(f"aggregate must be 'rollout', 'mean' or 'layer', got {aggregate!r}")
    out = torch.zeros(problem.input_ids.shape, dtype=torch.float64)
    for b, q in enumerate(problem.queries):
        out[b] = _row(matrix[b], q, _real(problem.attention_mask[b])).cpu()
    return out, _no_extras(problem)


def _item_record(record: AttentionRecord, b: int) -> AttentionRecord:
    """A view of one batch item of a record (weights and inputs sliced; nothing copied)."""
    from dataclasses import replace

    from ..record import LayerAttention

    layers = [LayerAttention(name=l.name, stack=l.stack, kind=l.kind, index=l.index, weights=l.weights[b : b + 1],
                             heads=l.heads) for l in record.layers]
    inputs = {k: v[b : b + 1] for k, v in record.inputs.items() if isinstance(v, torch.Tensor) and v.dim() >= 1}
    return replace(record, layers=layers, inputs=inputs,
                   tokens=record.tokens[b : b + 1] if record.tokens else None)


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
