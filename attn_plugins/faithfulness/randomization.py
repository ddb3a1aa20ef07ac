"""Model-parameter randomization sanity check (Adebayo et al. 2018), cascading from the top.

A saliency method that explains the *model* must change when the model is destroyed. On a copy of
the model, parameters are re-drawn at random one group at a time from the output down (the task
head, then each layer of the main stack from the last, then the embeddings), cumulatively; after each
step every method explains the same inputs for the same target classes again, and the Spearman rank
correlation of each instance's saliency (absolute values, non-special tokens, as Adebayo et al.'s
"absolute" variant) with the original's is recorded. A method whose correlation stays high once the
layers are random fails the check. Re-drawn values: ``N(0, sigma)`` with ``sigma`` the original
tensor's standard deviation (0.02 where it is constant, as LayerNorm gains), seeded.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..analysis.ranks import spearman_rho
from ..saliency import Explainer, TokenSaliency
from .timing import stage


def cascade_steps(model: nn.Module) -> list[tuple[str, list[str]]]:
    """``[(step name, parameter names)]``, from the output down: ``head``, ``layer N-1`` ... ``layer 0``,
    ``embeddings``. The layers are the largest ``nn.ModuleList`` (by parameters)."""
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m)]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no nn.ModuleList of layers to randomize")
    stack_name, stack = max(lists, key=lambda item: sum(p.numel() for p in item[1].parameters()))
    get_embeddings = getattr(model, "get_input_embeddings", None)
    embedding = get_embeddings() if callable(get_embeddings) else None
    names = {id(m): n for n, m in model.named_modules()}
    embed_path = names.get(id(embedding), "") if embedding is not None else ""
    embed_root = embed_path.rsplit(".", 1)[0] if "." in embed_path else embed_path
    if embed_root and stack_name.startswith(embed_root + "."):
        embed_root = embed_path  # the embedding sits next to the stack: take it alone
    params = [n for n, _ in model.named_parameters()]

    def under(name: str, root: str) -> bool:
        return bool(root) and (name == root or name.startswith(root + "."))

    layers = [[n for n in params if under(n, f"{stack_name}.{i}")] for i in range(len(stack))]
    embeds = [n for n in params if under(n, embed_root)]
    taken = {n for group in layers for n in group} | set(embeds)
    steps = [("head", [n for n in params if n not in taken])]
    steps += [(f"layer {i}", layers[i]) for i in reversed(range(len(stack)))]
    steps.append(("embeddings", embeds))
    return [(name, group) for name, group in steps if group]


def _randomize(model: nn.Module, names: Sequence[str], generator: torch.Generator) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in names:
            p = params[name]
            sigma = float(p.float().std()) if p.numel() > 1 else 0.0
            sigma = sigma if np.isfinite(sigma) and sigma > 0 else 0.02
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p.dtype) * sigma)


def _rho(a: TokenSaliency, b: TokenSaliency) -> float:
    keep = [i for i, s in enumerate(a.special or [False] * len(a)) if not s]
    x, y = np.abs(a.scores[keep]), np.abs(b.scores[keep])
    if len(keep) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return spearman_rho(x, y)


def randomization_check(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    methods: Sequence[str],
    *,
    originals: Mapping[str, list[TokenSaliency]] | None = None,
    seed: int = 0,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
    batch_size: int = 8,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Cascading randomization; the user's model is never modified (a deep copy is randomized).

    Args:
        model: the classifier.
        tokenizer: its tokenizer.
        texts: the inputs.
        methods: saliency method names (``attn_plugins.saliency.METHODS``).
        originals: the methods' results on the intact model (computed when missing); their targets
            are kept at every step.
        seed: seeds the re-drawn parameters.
        method_options: ``{method: options}`` for the explainer.
        batch_size: inputs per explanation batch.
        log: called with one line per step done (and its seconds).

    Returns:
        ``{method: {"steps": [names], "correlation": [[rho per instance] per step]}}``.
    """
    method_options = method_options or {}
    originals = dict(originals or {})
    explainer = Explainer(model, tokenizer)
    for method in methods:
        if method not in originals:
            originals[method] = explainer.explain(
                list(texts), method, batch_size=batch_size, progress=False, **method_options.get(method, {})
            )
    targets = {m: [r.target for r in originals[m]] for m in methods}
    broken = copy.deepcopy(model).eval()
    generator = torch.Generator().manual_seed(seed)
    steps = cascade_steps(broken)
    out: dict[str, dict[str, Any]] = {m: {"steps": [], "correlation": []} for m in methods}
    for number, (name, params) in enumerate(steps):
        with stage(log, f"randomization step {number + 1}/{len(steps)} ({name} randomized), {len(methods)} methods"):
            _randomize(broken, params, generator)
            randomized = Explainer(broken, tokenizer)  # anew each step: an explainer caches its eager copy
            for method in methods:
                again = randomized.explain(
                    list(texts),
                    method,
                    target=targets[method],
                    batch_size=batch_size,
                    progress=False,
                    **method_options.get(method, {}),
                )
                out[method]["steps"].append(name)
                out[method]["correlation"].append([_rho(a, b) for a, b in zip(originals[method], again, strict=True)])
    return out
