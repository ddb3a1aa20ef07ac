"""``evaluate``: faithfulness (and plausibility, and the randomization check) of saliency methods."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import InputError
from ..saliency import Explainer, TokenSaliency
from .metrics import DEFAULT_BINS, comprehensiveness_sufficiency, deletion_insertion, leave_one_out
from .perturb import Scorer, make_instances, removal_token
from .plausibility import plausibility, rationale_mask
from .randomization import randomization_check
from .result import FaithfulnessResult
from .timing import stage

METRIC_GROUPS = ("comprehensiveness", "sufficiency", "deletion", "insertion", "loo")
DEFAULT_METHODS = ("attention", "rollout", "saliency", "integrated_gradients")


def _saliencies(
    model: Any,
    tokenizer: Any,
    texts: str | Sequence[str] | None,
    methods: Sequence[str],
    saliencies: Mapping[str, Sequence[TokenSaliency]] | Sequence[TokenSaliency] | None,
    method_options: Mapping[str, Mapping[str, Any]] | None,
    target: Any,
    batch_size: int,
    progress: bool | None,
    log: Callable[[str], None] | None,
) -> dict[str, list[TokenSaliency]]:
    """The results to evaluate: ``saliencies`` as given, or each method's explanations of ``texts``."""
    if saliencies is not None:
        if isinstance(saliencies, Mapping):
            out: dict[str, list[TokenSaliency]] = {str(k): list(v) for k, v in saliencies.items()}
        else:
            items = list(saliencies)
            out = {items[0].method if items and isinstance(items[0], TokenSaliency) else "saliency": items}
        if not out or any(not v for v in out.values()):
            raise InputError("saliencies must be a non-empty {method: [TokenSaliency, ...]}")
        return out
    if texts is None:
        raise InputError("evaluate needs texts= (explained here) or saliencies={method: [TokenSaliency]}")
    given = [texts] if isinstance(texts, str) else list(texts)
    if not given or not all(isinstance(t, str) for t in given):
        raise InputError("texts must be a non-empty list of strings")
    explainer = Explainer(model, tokenizer)
    out = {}
    for m in methods:
        with stage(log, f"explain {len(given)} inputs with {m}"):
            out[m] = explainer.explain(
                given, m, target=target, batch_size=batch_size, progress=progress, **(method_options or {}).get(m, {})
            )
    return out


def evaluate(
    model: Any,
    tokenizer: Any,
    texts: str | Sequence[str] | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    *,
    saliencies: Mapping[str, Sequence[TokenSaliency]] | Sequence[TokenSaliency] | None = None,
    metrics: Sequence[str] = METRIC_GROUPS,
    removal: str = "delete",
    bins: Sequence[float] = DEFAULT_BINS,
    only_positive: bool = True,
    rationales: Sequence[Sequence[Any]] | None = None,
    randomization: bool = False,
    target: Any = "predicted",
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    batch_size: int = 32,
    explain_batch_size: int = 8,
    progress: bool | None = False,
    seed: int = 0,
    confidence: float = 0.95,
    n_boot: int = 1000,
    log: Callable[[str], None] | None = None,
) -> FaithfulnessResult:
    """Faithfulness of saliency methods for a text classifier, per instance and aggregated.

    Args:
        model, tokenizer: a transformers sequence classifier and its tokenizer.
        texts: inputs to explain with each of ``methods`` (any name of ``attn_plugins.saliency.METHODS``).
        saliencies: instead of ``texts``/``methods``: results already computed, ``{method: [TokenSaliency]}``
            (token level; their ``target`` is the class evaluated).
        metrics: any of ``"comprehensiveness"``, ``"sufficiency"`` (AOPC over ``bins``), ``"deletion"``,
            ``"insertion"`` (curves and areas), ``"loo"`` (leave-one-out Kendall tau).
        removal: ``"delete"`` the tokens, or replace them with the ``"mask"`` or ``"pad"`` token.
            Special tokens are never removed.
        bins: fractions of the removable tokens for the AOPC metrics.
        only_positive: rationales hold only tokens scored > 0 (ferret's default).
        rationales: human rationales aligned with the inputs (per input: a list of words, or a 0/1
            list per token): adds token F1, IOU and AUPRC.
        randomization: also run the cascading model-parameter randomization check (needs ``texts``).
        target: the class explained (``"predicted"``, an index, a label, or a list).
        method_options: ``{method: options}`` passed to the explainer.
        batch_size: perturbed inputs per forward pass.
        seed, confidence, n_boot: the bootstrap of the confidence intervals (and the randomization seed).
        log: called with one line per stage done (each method's explanations, metrics, randomization
            step) and its seconds: progress for long runs (the benchmark prints it).

    Returns:
        A :class:`FaithfulnessResult` (``.table()``, ``.summary()``, ``.save(path)``).
    """
    unknown = [m for m in metrics if m not in METRIC_GROUPS]
    if unknown:
        raise InputError(f"unknown metrics {unknown}; choose from {METRIC_GROUPS}")
    if not bins or not all(0 < float(b) <= 1 for b in bins):
        raise InputError(f"bins must be fractions in (0, 1], got {bins}")
    replacement = removal_token(tokenizer, removal)
    results = _saliencies(
        model, tokenizer, texts, methods, saliencies, method_options, target, explain_batch_size, progress, log
    )
    scorer = Scorer(model, tokenizer, batch_size)
    instances_out: dict[str, list[dict[str, Any]]] = {}
    for method, sals in results.items():
        instances = make_instances(sals, tokenizer)
        rows: list[dict[str, Any]] = [
            {
                "index": i,
                "text": s.text,
                "target": inst.target,
                "prediction": s.prediction,
                "n_tokens": len(inst.candidates),
            }
            for i, (s, inst) in enumerate(zip(sals, instances, strict=True))
        ]
        parts: list[list[dict[str, Any]]] = []
        with stage(log, f"faithfulness metrics of {method}"):
            if {"comprehensiveness", "sufficiency"} & set(metrics):
                parts.append(
                    comprehensiveness_sufficiency(
                        instances, scorer, replacement=replacement, bins=bins, only_positive=only_positive
                    )
                )
            if {"deletion", "insertion"} & set(metrics):
                parts.append(deletion_insertion(instances, scorer, replacement=replacement))
            if "loo" in metrics:
                parts.append(leave_one_out(instances, scorer, replacement=replacement))
        for part in parts:
            for row, values in zip(rows, part, strict=True):
                row.update(values)
        if rationales is not None:
            if len(rationales) != len(sals):
                raise InputError(f"{len(rationales)} rationales for {len(sals)} inputs")
            for row, sal, rationale in zip(rows, sals, rationales, strict=True):
                row.update(plausibility(sal, rationale_mask(sal, rationale), only_positive=only_positive))
        instances_out[method] = rows
    randomized = None
    if randomization:
        if texts is None:
            raise InputError("randomization=True re-explains the inputs on a randomized copy: pass texts=")
        randomized = randomization_check(
            model,
            tokenizer,
            [texts] if isinstance(texts, str) else list(texts),
            list(results),
            originals=results,
            seed=seed,
            method_options=dict(method_options or {}),
            batch_size=explain_batch_size,
            log=log,
        )
    settings = {
        "removal": removal,
        "bins": [float(b) for b in bins],
        "only_positive": only_positive,
        "metrics": list(metrics),
        "batch_size": batch_size,
        "forward_passes": scorer.forwards,
    }
    return FaithfulnessResult(instances_out, settings, randomized, confidence=confidence, n_boot=n_boot, seed=seed)
