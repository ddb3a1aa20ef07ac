"""``smoothgrad_allennlp``: AllenNLP's ``SmoothGradient`` formula, next to Captum's (``smoothgrad``).

The two names compute different things:

* ``smoothgrad`` (Captum ``NoiseTunnel(Saliency)``): for each token, the sum over the embedding
  dimension of the mean **absolute** gradient, ``sum_d mean_s |g_s|``, with one noise scale
  ``noise_level * (max - min)`` over the padded batch's embeddings (pad embeddings included);
* ``smoothgrad_allennlp`` (allennlp 2.10.1 ``SmoothGradient``): the sum over the embedding dimension
  of the mean **signed** gradient, ``sum_d mean_s g_s`` (the allennlp exporter then takes its
  absolute value and L1-normalises, as AllenNLP does), with noise ``N(0, 1) * stdev * (max - min)``
  drawn per instance and per embedding call (field) from that call's own embeddings, one instance at
  a time, in the order the model embeds its fields. With the same seed it draws the same numbers in
  the same order as AllenNLP, so the JSON equals AllenNLP's own, key by key.

On BERT-style models AllenNLP's signed sum is close to float rounding noise: the LayerNorm right
after the embeddings makes the gradient sum to about zero over the hidden dimension (a LayerNorm's
output is invariant to adding a constant to its input), which is why the abs-inside variant exists.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from .methods import MethodResult, method
from .problem import Problem


def _item_args(args: tuple[Any, ...], b: int, batch: int) -> tuple[Any, ...]:
    return tuple(a[b : b + 1] if isinstance(a, torch.Tensor) and a.dim() and a.shape[0] == batch else a for a in args)


@method(
    "smoothgrad_allennlp",
    "gradient",
    "AllenNLP's SmoothGradient formula: |sum_d mean signed gradient| with per-instance noise scale",
)
def smoothgrad_allennlp(
    problem: Problem,
    *,
    stdev: float = 0.01,
    num_samples: int = 10,
    seed: int | None = 0,
    field_lengths: list[int] | None = None,
) -> MethodResult:
    """AllenNLP's SmoothGradient: the mean signed gradient over noisy copies of the embeddings.

    Args:
        problem: the batch to explain (a model-backed problem).
        stdev: the noise scale relative to ``max - min`` of each field's embeddings (AllenNLP: 0.01).
        num_samples: noisy samples averaged (AllenNLP: 10).
        seed: seeds torch's global generator inside ``fork_rng`` (the caller's state is kept);
            ``None`` draws from the global generator as AllenNLP does.
        field_lengths: lengths of consecutive embedding calls (AllenNLP's fields); default one field
            holding each item's real tokens.

    Returns:
        ``(scores [batch, tokens], extras)``: the signed sum over the embedding dimension of the mean gradient.
    """
    if problem.embed_forward is None:
        raise ValueError("smoothgrad_allennlp needs a model: use an Explainer")
    embeds = problem.embeddings().detach()
    batch = embeds.shape[0]
    out = torch.zeros(embeds.shape[:2], dtype=embeds.dtype, device=embeds.device)
    devices = [embeds.device.index] if embeds.is_cuda else []
    context: Any = torch.random.fork_rng(devices=devices) if seed is not None else contextlib.nullcontext()
    with context, torch.enable_grad():
        if seed is not None:
            torch.manual_seed(seed)
        for b in range(batch):
            if field_lengths is not None:
                starts = [sum(field_lengths[:k]) for k in range(len(field_lengths))]
                fields = [list(range(s, s + n)) for s, n in zip(starts, field_lengths, strict=True)]
            else:
                fields = [torch.nonzero(problem.attention_mask[b]).flatten().tolist()]
            item = embeds[b : b + 1]
            args = _item_args(problem.args, b, batch)
            total = torch.zeros_like(item)
            for _ in range(int(num_samples)):
                noisy = item.clone()
                for positions in fields:
                    part = item[:, positions]
                    scale = part.max() - part.min()
                    noisy[:, positions] = part + torch.randn(part.shape, device=part.device) * stdev * scale
                noisy.requires_grad_()
                value = problem.embed_forward(noisy, *args)
                value = value[0, problem.targets[b]] if value.dim() == 2 and problem.targets is not None else value[0]
                (grad,) = torch.autograd.grad(value, noisy)
                total += grad
            out[b] = (total / num_samples)[0].sum(-1)
    return out, [{"stdev": stdev, "num_samples": num_samples, "seed": seed} for _ in range(batch)]
