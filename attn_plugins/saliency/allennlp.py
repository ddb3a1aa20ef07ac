"""Captum saliency of an AllenNLP predictor's labelled instances (the AllenNLP Interpret setting).

    from attn_plugins.saliency.allennlp import AllenNLPExplainer
    explainer = AllenNLPExplainer(predictor)
    results = explainer.explain_json({"sentence": "a fine film"}, "input_x_gradient")
    ap.export(results, "allennlp")        # the JSON of AllenNLP's SimpleGradient

What AllenNLP's interpreters compute, and the method that equals each (same model, same
labelled instances):

* ``SimpleGradient``: gradient of the loss w.r.t. the embedding layer's output, times that
  output, summed over the embedding dimension -> ``"input_x_gradient"``;
* ``IntegratedGradient``: the same with the gradient averaged over the embedding output scaled
  by ``alpha`` in ``0, 0.1, ..., 0.9`` -> ``"integrated_gradients"`` with ``n_steps=10,
  integration="riemann_left"`` (zero baseline);

and the exporter applies their absolute value and L1 normalisation.

* ``"simple_gradient"``: AllenNLP's ``SimpleGradient`` output itself, reproduced exactly (its
  first-token behaviour below included), for comparing with numbers AllenNLP produced.

One difference is AllenNLP's, not ours: in allennlp 2.10.1, ``SimpleGradient`` indexes the
embeddings it hooked with ``[0]`` after squeezing away the batch dimension, so unless the indexer is
a mismatched one it multiplies every token's gradient by the *first* token's embedding. Our
gradients equal ``predictor.get_gradients`` (within 1e-6) and ``input_x_gradient`` applies the
per-token product that SimpleGradient's code intends; ``IntegratedGradient`` has no such defect
and our numbers equal its output within 1e-6 (``tests/saliency/test_allennlp.py``). Like AllenNLP, the target
is the loss of each labelled instance (``predictor.json_to_labeled_instances``: the model's own
prediction as the label); it is computed per example as ``-log_softmax(logits)[label]``, which is
the loss of classifiers trained with cross-entropy on ``output_dict["logits"]`` (``output="logit"``
explains the logit instead). The embedding layer is AllenNLP's own choice
(``allennlp.nn.util.find_embedding_layer``). Every text field the model embeds is one field of the
result, in the order the model embeds them; their embeddings are attributed jointly (Integrated
Gradients scales all of them at once, as AllenNLP does).

Attention-based saliency of AllenNLP models is served by the predictor add-on's interpreters
(``attn_plugins.integrations.allennlp_predictor``: ``attn_plugins_attention``/``_rollout``/``_flow``).
"""

from __future__ import annotations

from typing import Any

import torch

from .methods import METHODS, Extras
from .problem import OUTPUTS, Problem, transform_output
from .result import TokenSaliency

SUPPORTED = (
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "smoothgrad",
    "deeplift",
    "feature_ablation",
    "simple_gradient",
    "smoothgrad_allennlp",
)


def allennlp_simple_gradient(problem: Problem, lengths: list[int]) -> torch.Tensor:
    """AllenNLP 2.10.1's ``SimpleGradient`` numbers, reproduced exactly for comparison with its outputs:
    each token's gradient dotted with its field's *first* token embedding (see the module docstring).
    Prefer ``"input_x_gradient"`` (the per-token product) for analysis.

    Args:
        problem: a one-instance problem built by :meth:`AllenNLPExplainer.problem`.
        lengths: the token count of each embedded field, in embedding order.

    Returns:
        ``[1, sum(lengths)]`` scores.
    """
    if problem.embed_forward is None or problem.targets is None:
        raise ValueError("simple_gradient needs a model and a target")
    embeds = problem.embeddings().detach().clone().requires_grad_()
    value = problem.embed_forward(embeds, *problem.args)[0, problem.targets[0]]
    (grad,) = torch.autograd.grad(value, embeds)
    parts, start = [], 0
    for length in lengths:
        field = slice(start, start + length)
        parts.append((grad[:, field] * embeds.detach()[:, start : start + 1]).sum(-1))
        start += length
    return torch.cat(parts, dim=1)


def _flatten(value: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Tensor leaves of a nested tensor dict as ``[(path, tensor)]``; other leaves are kept aside."""
    if isinstance(value, dict):
        out = []
        for key, item in value.items():
            out.extend(_flatten(item, path + (key,)))
        return out
    return [(path, value)]


def _unflatten(leaves: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path, value in leaves:
        node = root
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return root


class AllenNLPExplainer:
    """Gradient saliency (Captum) of an AllenNLP ``Predictor``'s labelled instances.

    Args:
        predictor: an AllenNLP ``Predictor`` (its ``_model`` is explained).
        output: what is differentiated: ``"loss"`` (AllenNLP's choice), ``"logit"``, ``"prob"``
            or ``"log_prob"``.
        label_key: the instance field holding the label.
        logits_key: the model output's key holding the logits.
    """

    def __init__(
        self, predictor: Any, *, output: str = "loss", label_key: str = "label", logits_key: str = "logits"
    ) -> None:
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.predictor = predictor
        self.model = predictor._model
        self.output = output
        self.label_key = label_key
        self.logits_key = logits_key

    # ----- instances -----------------------------------------------------------------------------
    def labeled_instances(self, inputs: dict[str, Any]) -> list[Any]:
        """The instances AllenNLP's interpreters explain (the model's own prediction as the label).

        Args:
            inputs: the predictor's JSON input, e.g. ``{"sentence": "a fine film"}``.

        Returns:
            The predictor's ``json_to_labeled_instances(inputs)``.
        """
        instances: list[Any] = self.predictor.json_to_labeled_instances(inputs)
        return instances

    def _tensors(self, instance: Any) -> dict[str, Any]:
        from allennlp.data.batch import Batch
        from allennlp.nn import util

        batch = Batch([instance])
        batch.index_instances(self.model.vocab)
        device = getattr(self.predictor, "cuda_device", -1)
        tensors: dict[str, Any] = util.move_to_device(batch.as_tensor_dict(), device)
        return tensors

    def _embedding_layer(self) -> Any:
        """The layer AllenNLP's interpreters use (``predictor.get_interpretable_layer()``)."""
        get = getattr(self.predictor, "get_interpretable_layer", None)
        if get is not None:
            return get()
        from allennlp.nn import util

        return util.find_embedding_layer(self.model)

    # ----- the problem ---------------------------------------------------------------------------
    def problem(self, instance: Any) -> tuple[Problem, list[int], dict[str, Any]]:
        """A :class:`Problem` over the concatenated embeddings of every embedded field.

        Args:
            instance: one labelled AllenNLP ``Instance``.

        Returns:
            The problem, the token count of each embedded field (embedding order), and the
            prediction info (``prediction``, ``probability``, ``target_probability``).
        """
        layer = self._embedding_layer()
        tensors = self._tensors(instance)
        leaves = _flatten(tensors)
        tensor_leaves = [(p, v) for p, v in leaves if isinstance(v, torch.Tensor)]
        fixed = [(p, v) for p, v in leaves if not isinstance(v, torch.Tensor)]
        seen: list[torch.Tensor] = []
        handle = layer.register_forward_hook(lambda module, args, output: seen.append(output.detach()))
        try:
            with torch.no_grad():
                outputs = self.model(**tensors)
        finally:
            handle.remove()
        if not seen:
            raise ValueError(f"{type(self.model).__name__} never called its embedding layer {type(layer).__name__}")
        lengths = [int(e.shape[1]) for e in seen]
        embeds = torch.cat(seen, dim=1)
        logits = outputs.get(self.logits_key)
        if logits is None:
            raise ValueError(
                f"the model's output has no {self.logits_key!r}: pass logits_key= (keys: {sorted(outputs)})"
            )
        label = tensors.get(self.label_key)
        target = int(label.reshape(-1)[0]) if isinstance(label, torch.Tensor) else int(logits.argmax(-1)[0])
        names = [p for p, _ in tensor_leaves]
        output = self.output
        model = self.model

        def embed_forward(embeds: Any, *args: Any) -> torch.Tensor:
            state = {"call": 0}
            offsets = [sum(lengths[:k]) for k in range(len(lengths))]

            def replace(module: Any, inputs: Any, out: Any) -> Any:
                k = state["call"]
                state["call"] += 1
                if k < len(lengths):
                    return embeds[:, offsets[k] : offsets[k] + lengths[k]]
                return out

            hook = layer.register_forward_hook(replace)
            try:
                result = model(**_unflatten(list(zip(names, args, strict=False)) + fixed))
            finally:
                hook.remove()
            return transform_output(result[self.logits_key], output)

        def ids_forward(*_: Any) -> torch.Tensor:
            raise ValueError("layer methods are not available for AllenNLP models; use integrated_gradients")

        n = embeds.shape[1]
        problem = Problem(
            model=model,
            embedding_layer=layer,
            input_ids=torch.zeros(1, n, dtype=torch.long),
            attention_mask=torch.ones(1, n, dtype=torch.long),
            embeds=embeds,
            args=tuple(v for _, v in tensor_leaves),
            embed_forward=embed_forward,
            ids_forward=ids_forward,
            targets=[target],
            queries=[0],
        )
        probs = torch.softmax(logits.double(), dim=-1)[0]
        info = {
            "prediction": int(probs.argmax()),
            "probability": float(probs.max()),
            "target_probability": float(probs[target]),
        }
        return problem, lengths, info

    # ----- public ----------------------------------------------------------------------------------
    def explain_instance(self, instance: Any, method: str = "input_x_gradient", **options: Any) -> list[TokenSaliency]:
        """Saliency of one labelled instance.

        Args:
            instance: one labelled AllenNLP ``Instance``.
            method: a name of ``SUPPORTED``.
            **options: passed to the method (e.g. ``n_steps=``).

        Returns:
            One :class:`TokenSaliency` per embedded field, in the order the model embeds them.
        """
        if method not in SUPPORTED:
            raise ValueError(
                f"{method!r} is not available for AllenNLP models here; choose from {SUPPORTED} "
                "(attention methods: the predictor add-on's interpreters)"
            )
        training = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        try:
            problem, lengths, info = self.problem(instance)
            extras: Extras
            if method == "simple_gradient":
                scores, extras = allennlp_simple_gradient(problem, lengths), []
            elif method == "smoothgrad_allennlp":  # AllenNLP draws noise per embedding call (field)
                scores, extras = METHODS.get(method)(problem, field_lengths=lengths, **options)
            else:
                scores, extras = METHODS.get(method)(problem, **options)
        finally:
            for module, mode in training:
                module.training = mode
        scores = scores.detach().double().cpu()[0]
        fields = self._field_tokens(instance, lengths)
        vocab = self.model.vocab
        label_name = lambda i: vocab.get_token_from_index(i, namespace="labels")  # noqa: E731
        out, offset = [], 0
        for (name, tokens), length in zip(fields, lengths, strict=True):
            target = problem.targets[0] if problem.targets is not None else None
            out.append(
                TokenSaliency(
                    tokens=tokens,
                    scores=scores[offset : offset + length].numpy(),
                    method=method,
                    target=target,
                    target_label=_safe(label_name, target),
                    prediction=info["prediction"],
                    prediction_label=_safe(label_name, info["prediction"]),
                    probability=info["probability"],
                    target_probability=info["target_probability"],
                    field=name,
                    info={**options, **(extras[0] if extras else {}), "output": self.output, "task": "allennlp"},
                )
            )
            offset += length
        return out

    def explain_json(
        self, inputs: dict[str, Any], method: str = "input_x_gradient", **options: Any
    ) -> list[list[TokenSaliency]]:
        """Every labelled instance of ``inputs``, as AllenNLP's interpreters see them.

        Args:
            inputs: the predictor's JSON input.
            method: a name of ``SUPPORTED``.
            **options: passed to the method.

        Returns:
            A list of instances, each a list of fields (the input of the ``"allennlp"`` exporter).
        """
        return [self.explain_instance(instance, method, **options) for instance in self.labeled_instances(inputs)]

    @staticmethod
    def _field_tokens(instance: Any, lengths: list[int]) -> list[tuple[str, list[str]]]:
        """(field name, tokens) of each embedding call: text fields in instance order, matched by length."""
        from allennlp.data.fields.text_field import TextField

        text_fields = [
            (str(name), [str(t.text) for t in field.tokens])
            for name, field in instance.fields.items()
            if isinstance(field, TextField)
        ]
        out: list[tuple[str, list[str]]] = []
        for k, length in enumerate(lengths):
            match = next((f for f in text_fields if len(f[1]) == length), None)
            if match is not None:
                text_fields.remove(match)
                out.append(match)
            else:
                out.append((f"field_{k + 1}", [f"#{i}" for i in range(length)]))
        return out


def _safe(fn: Any, value: Any) -> str:
    try:
        return str(fn(value))
    except Exception:  # noqa: BLE001 - a label namespace the model does not have
        return str(value)
