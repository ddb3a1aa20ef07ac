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
from typing import TYPE_CHECKING, Any

import torch

from ..errors import import_optional as optional
from ..registry import Registry

if TYPE_CHECKING:
    from ..record import AttentionRecord

METHODS = Registry("saliency method", "attn_plugins.saliency_methods")


def method(name: str, family: str, description: str):
    def add(fn: Any):
        fn.family = family
        fn.description = description
        fn.method_name = name
        METHODS.register(name, fn)
        return fn

    return add


def _captum():
    return optional("captum.attr", "gradient saliency")


def reduce_embedding(attributions: torch.Tensor, how: str = "sum") -> torch.Tensor:
    """``[b, n, d]`` -> ``[b, n]``."""
    if how == "sum":
        return attributions.sum(dim=-1)
    if how == "mean":
        return attributions.mean(dim=-1)
    if how == "l2":
        return attributions.norm(dim=-1)
    raise ValueError(f"reduce must be 'sum', 'mean' or 'l2', got {how!r}")


def _no_extras(problem: Any) -> list[dict]:
    return [{} for _ in range(problem.batch_size)]


def _deltas(delta: Any) -> list[dict]:
    return [{"delta": float(v)} for v in delta.detach().reshape(-1).tolist()]


@contextlib.contextmanager
def _quiet_captum():
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
def saliency(problem: Any, *, reduce: str = "sum", abs: bool = True):  # noqa: A002 - Captum's name
    captum_attr = _captum()

    with _quiet_captum():
        attr = captum_attr.Saliency(problem.embed_forward).attribute(
            problem.embeds, target=problem.targets, additional_forward_args=problem.args, abs=abs)
    return reduce_embedding(attr, reduce), _no_extras(problem)


@method("input_x_gradient", "gradient", "Captum InputXGradient: embedding x gradient")
def input_x_gradient(problem: Any, *, reduce: str = "sum"):
    captum_attr = _captum()

    with _quiet_captum():
        attr = captum_attr.InputXGradient(problem.embed_forward).attribute(
            problem.embeds, target=problem.targets, additional_forward_args=problem.args)
    return reduce_embedding(attr, reduce), _no_extras(problem)


@method("integrated_gradients", "gradient",
        "Captum IntegratedGradients over the word embeddings (baseline: zero embeddings)")
def integrated_gradients(problem: Any, *, n_steps: int = 50, integration: str = "gausslegendre",
                         baseline: str = "zeros",
                         internal_batch_size: int | None = None, reduce: str = "sum"):
    """``integration`` is Captum's ``method`` (``"gausslegendre"``, ``"riemann_left"``, ...);
    ``baseline``: ``"zeros"`` (default), ``"pad"``, ``"mask"``, a float or a tensor."""
    captum_attr = _captum()

    attr, delta = captum_attr.IntegratedGradients(problem.embed_forward).attribute(
        problem.embeds, baselines=problem.baseline_embeds(baseline), target=problem.targets,
        additional_forward_args=problem.args, n_steps=n_steps, method=integration,
        internal_batch_size=internal_batch_size, return_convergence_delta=True)
    return reduce_embedding(attr, reduce), _deltas(delta)


@method("layer_integrated_gradients", "gradient",
        "Captum LayerIntegratedGradients on the embedding layer (baseline: [PAD] for every non-special token)")
def layer_integrated_gradients(problem: Any, *, n_steps: int = 50, integration: str = "gausslegendre",
                               baseline: str = "pad",
                               internal_batch_size: int | None = None, reduce: str = "sum"):
    """``integration`` is Captum's ``method``; ``baseline``: ``"pad"`` (default: every non-special
    real token replaced by [PAD]), ``"mask"`` or ``"zeros"`` (id 0 everywhere)."""
    captum_attr = _captum()

    if baseline in ("pad", "mask"):
        baselines = problem.baseline_ids(baseline)
    elif baseline in (None, "zeros", "zero"):
        baselines = torch.zeros_like(problem.input_ids)  # id 0 everywhere
    else:
        raise ValueError(f"baseline for layer_integrated_gradients must be 'pad', 'mask' or 'zeros', got {baseline!r}")
    attr, delta = captum_attr.LayerIntegratedGradients(problem.ids_forward, problem.embedding_layer).attribute(
        problem.input_ids, baselines=baselines, target=problem.targets, additional_forward_args=problem.args,
        n_steps=n_steps, method=integration, internal_batch_size=internal_batch_size, return_convergence_delta=True)
    return reduce_embedding(attr, reduce), _deltas(delta)


@method("smoothgrad", "gradient",
        "Captum NoiseTunnel(Saliency), SmoothGrad (Smilkov et al. 2017), seeded so runs agree")
def smoothgrad(problem: Any, *, nt_samples: int = 10, noise_level: float = 0.01, stdevs: float | None = None,
               seed: int = 0, base: str = "saliency", nt_type: str = "smoothgrad", reduce: str = "sum",
               nt_samples_batch_size: int | None = None):
    """``stdevs`` defaults to ``noise_level * (max - min)`` of the batch's embeddings, with
    AllenNLP's SmoothGradient defaults (``noise_level=0.01``, 10 samples); the image-domain
    10-20 % of Smilkov et al. drowns word embeddings in noise.

    The noise is drawn from torch's global generator seeded with ``seed`` inside ``fork_rng``, so
    two calls with the same seed agree and the caller's random state is left untouched (AllenNLP's
    SmoothGradient is unseeded, allennlp#3442).
    """
    captum_attr = _captum()

    bases = {"saliency": captum_attr.Saliency, "input_x_gradient": captum_attr.InputXGradient}
    if base not in bases:
        raise ValueError(f"base must be one of {sorted(bases)}, got {base!r}")
    if stdevs is None:
        stdevs = float(noise_level) * float(problem.embeds.max() - problem.embeds.min())
    devices = [problem.embeds.device.index] if problem.embeds.is_cuda else []
    with torch.random.fork_rng(devices=devices), _quiet_captum():
        torch.manual_seed(seed)
        attr = captum_attr.NoiseTunnel(bases[base](problem.embed_forward)).attribute(
            problem.embeds, nt_type=nt_type, nt_samples=nt_samples, stdevs=stdevs, target=problem.targets,
            additional_forward_args=problem.args, nt_samples_batch_size=nt_samples_batch_size)
    extras = [{"stdevs": stdevs, "seed": seed} for _ in range(problem.batch_size)]
    return reduce_embedding(attr, reduce), extras


@method("deeplift", "gradient", "Captum DeepLift (rescale rule on supported non-linearities), zero-embedding baseline")
def deeplift(problem: Any, *, baseline: str = "zeros", reduce: str = "sum"):
    captum_attr = _captum()

    from .problem import ForwardModule

    module = ForwardModule(problem.model, problem.embed_forward)
    with _quiet_captum():
        attr, delta = captum_attr.DeepLift(module).attribute(
            problem.embeds, baselines=problem.baseline_embeds(baseline), target=problem.targets,
            additional_forward_args=problem.args, return_convergence_delta=True)
    return reduce_embedding(attr, reduce), _deltas(delta)


@method("feature_ablation", "gradient",
        "Captum FeatureAblation: change of the target when one token's embedding is replaced by the baseline")
def feature_ablation(problem: Any, *, baseline: str = "zeros", perturbations_per_eval: int = 1):
    captum_attr = _captum()

    b, n, d = problem.embeds.shape
    mask = torch.arange(n, device=problem.embeds.device).view(1, n, 1).expand(b, n, d)
    with torch.no_grad(), _quiet_captum():
        attr = captum_attr.FeatureAblation(problem.embed_forward).attribute(
            problem.embeds, baselines=problem.baseline_embeds(baseline), target=problem.targets,
            additional_forward_args=problem.args, feature_mask=mask,
            perturbations_per_eval=perturbations_per_eval)
    # every dimension of a token carries the token's ablation effect: read one
    return attr[..., 0], _no_extras(problem)


# ---------------------------------------------------------------------------------------------
# attention methods
# ---------------------------------------------------------------------------------------------
def _real(mask_row: torch.Tensor) -> list[int]:
    return torch.nonzero(mask_row).flatten().tolist()


def _row(matrix: torch.Tensor, query: int | None, real: list[int]) -> torch.Tensor:
    """Row ``query`` of one item's ``[n, n]`` matrix; ``None``: the mean of the real rows (what a
    mean-pooled sentence embedding reads)."""
    if query is None:
        return matrix[real].mean(dim=0)
    return matrix[query]


def _self_layers(record: AttentionRecord):
    from ..analysis.rollout import self_layers as select

    return select(record, ...)


@method("attention", "attention", "raw attention of the query row (one layer or the mean of layers; heads averaged)")
def attention(problem: Any, *, layer: Any = -1, head: Any = None):
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
def rollout(problem: Any, *, head_fusion: str = "mean", add_residual: bool = True, start_layer: int = 0):
    from ..analysis.rollout import rollout as roll

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        matrix = roll(problem.record(), head_fusion=head_fusion, add_residual=add_residual, start_layer=start_layer)
    out = torch.zeros(problem.input_ids.shape, dtype=torch.float64)
    for b, q in enumerate(problem.queries):
        out[b] = _row(matrix[b], q, _real(problem.attention_mask[b])).cpu()
    return out, _no_extras(problem)


@method("flow", "attention", "attention flow (Abnar & Zuidema 2020): max flow from the query token to each input")
def flow(problem: Any, *, head_fusion: str = "mean", add_residual: bool = True, normalize: bool = True,
         backend: str = "scipy", scale: int | None = None):
    from ..analysis.flow import DEFAULT_SCALE, flow_matrices

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layers = _self_layers(problem.record())
    out = torch.zeros(problem.input_ids.shape, dtype=torch.float64)
    for b, q in enumerate(problem.queries):
        real = _real(problem.attention_mask[b])
        index = torch.tensor(real)
        weights = [layer.weights[b : b + 1].index_select(-1, index.to(layer.weights.device))
                   .index_select(-2, index.to(layer.weights.device)) for layer in layers]
        full = flow_matrices(weights, query=real.index(q) if q is not None else None, head_fusion=head_fusion,
                             add_residual=add_residual, normalize=normalize, backend=backend,
                             scale=scale or DEFAULT_SCALE)[0]
        out[b, index] = full if q is not None else full.mean(dim=0)
    return out, _no_extras(problem)


@method("grad_attention", "attention",
        "gradient-weighted attention: attention x d target / d attention, positive part, heads averaged")
def grad_attention(problem: Any, *, aggregate: str = "mean", positive: bool = True, layer: int = -1):
    """``aggregate``: ``"rollout"`` (Chefer et al. 2021: ``R = I``, ``R += Abar @ R`` layer by layer),
    ``"mean"`` (mean over layers of ``Abar``) or ``"layer"`` (``Abar`` of ``layer``); then the query row.
    ``Abar = mean_heads(A * dA)``, clamped at 0 when ``positive``.
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


def _item_record(record: AttentionRecord, b: int):
    """A view of one batch item of a record (weights and inputs sliced; nothing copied)."""
    from dataclasses import replace

    from ..record import LayerAttention

    layers = [LayerAttention(name=layer.name, stack=layer.stack, kind=layer.kind, index=layer.index,
                             weights=layer.weights[b : b + 1], heads=layer.heads) for layer in record.layers]
    inputs = {k: v[b : b + 1] for k, v in record.inputs.items() if isinstance(v, torch.Tensor) and v.dim() >= 1}
    return replace(record, layers=layers, inputs=inputs,
                   tokens=record.tokens[b : b + 1] if record.tokens else None)


ATTENTION_FAMILY = "attention"
GRADIENT_FAMILY = "gradient"


def family_of(name: str) -> str:
    return getattr(METHODS.get(name), "family", "gradient")
