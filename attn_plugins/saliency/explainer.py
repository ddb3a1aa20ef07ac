"""Explainer: saliency of a transformers model's prediction, by any registered method.

    from attn_plugins.saliency import Explainer
    explainer = Explainer(model, tokenizer)                 # head type read from the class name
    results = explainer.explain(["a fine film", "dull"], "integrated_gradients")
    table = explainer.compare(texts, ["rollout", "flow", "integrated_gradients"])

Targets, per head type:

* sequence classification: ``target`` is a class (index or label name) or ``"predicted"``;
* token classification: also ``position=`` (index among the real tokens, or a list per input);
* masked LM: ``position`` defaults to each input's first mask token, ``target`` is a vocabulary
  id or token string or ``"predicted"``;
* causal LM: the next token after the last real token (``position="last"``);
* anything else: ``task="custom"`` with ``head=callable(model_outputs) -> [b, C] or [b]``.

``output`` picks what is differentiated: ``"logit"`` (default), ``"prob"``, ``"log_prob"`` or
``"loss"`` (AllenNLP's interpreters differentiate the loss of the predicted label).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from ..model_state import evaluation_mode
from .methods import METHODS, Extras
from .problem import OUTPUTS, TASKS, Problem, detect_task, logits_of, transform_output
from .result import TokenSaliency

Texts = str | Sequence[str] | Sequence[tuple[str, str]]
"""What an explainer explains: one text, a list of texts or a list of ``(text_a, text_b)`` pairs."""


def progress_bar(show: bool | None, total: int, desc: str, threshold: int) -> Any:
    """A tqdm bar (``show=None``: only for work larger than ``threshold``) or a disabled one.

    Args:
        show: ``True`` forces the bar, ``False`` hides it, ``None`` shows it above ``threshold``.
        total: the number of items the bar counts.
        desc: the bar's label.
        threshold: the work size up to which ``show=None`` stays quiet.

    Returns:
        A ``tqdm`` bar (call ``update`` and ``close``).
    """
    from tqdm.auto import tqdm

    disable = (show is False) or (show is None and total <= threshold)
    return tqdm(total=total, desc=desc, disable=disable, leave=False)


class Explainer:
    """Explains one model's predictions with any method of ``attn_plugins.saliency.METHODS``.

    Args:
        model: a transformers model (or any module whose forward takes ``input_ids``/``inputs_embeds``).
        tokenizer: its tokenizer (needed to explain text; a fast one adds offsets and word ids).
        task: the head type (see the module docs); read from the class name when omitted.
        head: ``callable(model_outputs) -> [b, C] or [b]`` scores, for ``task="custom"``.
        output: what is differentiated: ``"logit"``, ``"prob"``, ``"log_prob"`` or ``"loss"``.
        embedding_layer: the word-embedding module (default: ``model.get_input_embeddings()``).
        max_length: truncation length of the tokenizer (None: no truncation).
        labels: class index -> name (default: the config's ``id2label`` for classification heads).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any = None,
        *,
        task: str | None = None,
        head: Callable[[Any], torch.Tensor] | None = None,
        output: str = "logit",
        embedding_layer: torch.nn.Module | None = None,
        max_length: int | None = 512,
        labels: dict[int, str] | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.task = task or ("custom" if head is not None else detect_task(model))
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.task == "custom" and head is None:
            raise ValueError(
                f"cannot tell what to explain for {type(model).__name__} (no known task head): pass "
                "task='sequence-classification' etc., or head=callable(model_outputs) -> scores"
            )
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.head = head
        self.output = output
        getter: Any = model  # a transformers model: get_input_embeddings is not on nn.Module
        self.embedding_layer: torch.nn.Module = embedding_layer or getter.get_input_embeddings()
        self.max_length = max_length
        config = getattr(model, "config", None)
        self.labels: dict[int, str] = labels or (
            {int(k): v for k, v in getattr(config, "id2label", {}).items()}
            if self.task in ("sequence-classification", "token-classification")
            else {}
        )
        self._eager: torch.nn.Module | None = None

    # ----- inputs --------------------------------------------------------------------------------
    def _encode(self, texts: list[Any]) -> tuple[Any, bool]:
        if self.tokenizer is None:
            raise ValueError("an Explainer needs a tokenizer to explain text (or pass encodings)")
        pairs = bool(texts) and isinstance(texts[0], (tuple, list))
        kwargs: dict[str, Any] = dict(
            return_tensors="pt",
            padding=True,
            truncation=self.max_length is not None,
            max_length=self.max_length,
            return_special_tokens_mask=True,
        )
        if getattr(self.tokenizer, "is_fast", False):
            kwargs["return_offsets_mapping"] = True
        if self.task == "causal-lm" and getattr(self.tokenizer, "pad_token", None) is None:
            raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token (e.g. to eos) to batch inputs")
        if pairs:
            enc = self.tokenizer([a for a, _ in texts], [b for _, b in texts], **kwargs)
        else:
            enc = self.tokenizer(list(texts), **kwargs)
        return enc, pairs

    def _model_inputs(self, enc: Any) -> dict[str, torch.Tensor]:
        weight = getattr(self.embedding_layer, "weight", None)
        device = weight.device if weight is not None else None
        keep: dict[str, torch.Tensor] = {}
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            if name in enc and enc[name] is not None:
                keep[name] = enc[name].to(device) if device is not None else enc[name]
        if "attention_mask" not in keep:
            keep["attention_mask"] = torch.ones_like(keep["input_ids"])
        return keep

    # ----- targets ---------------------------------------------------------------------------------
    def _positions(self, inputs: dict[str, torch.Tensor], position: Any) -> list[int] | None:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        batch = ids.shape[0]
        if self.task == "sequence-classification" or (self.task == "custom" and position is None):
            return None
        if position is None:
            if self.task == "masked-lm":
                mask_id = getattr(self.tokenizer, "mask_token_id", None)
                out = []
                for b in range(batch):
                    hits = torch.nonzero(ids[b] == mask_id).flatten().tolist() if mask_id is not None else []
                    if not hits:
                        raise ValueError(f"input {b} has no mask token to explain: add one or pass position=")
                    out.append(hits[0])
                return out
            if self.task == "causal-lm":
                position = "last"
            else:
                raise ValueError(f"{self.task} needs position= (the token whose prediction is explained)")
        from ..analysis.rollout import resolve_query

        specs = position if isinstance(position, (list, tuple)) else [position] * batch
        if len(specs) != batch:
            raise ValueError(f"{len(specs)} positions for {batch} inputs")
        return [resolve_query(p, ids.shape[1], mask[b]) for b, p in enumerate(specs)]

    def _scores(self, outputs: Any, positions: torch.Tensor | None) -> torch.Tensor:
        if self.head is not None:
            scores = self.head(outputs)
        else:
            scores = logits_of(outputs)
        if scores.dim() == 3:
            if positions is None:
                raise ValueError("the model returns per-token scores: pass position=")
            scores = scores[torch.arange(scores.shape[0], device=scores.device), positions.to(scores.device)]
        if scores.dim() == 2:
            return transform_output(scores, self.output)
        return scores

    def _resolve_targets(self, target: Any, logits: torch.Tensor) -> list[int] | None:
        if logits.dim() == 1:
            return None
        batch = logits.shape[0]
        specs = target if isinstance(target, (list, tuple)) else [target] * batch
        if len(specs) != batch:
            raise ValueError(f"{len(specs)} targets for {batch} inputs")
        out = []
        for b, spec in enumerate(specs):
            if spec is None or spec == "predicted":
                out.append(int(logits[b].argmax()))
            elif isinstance(spec, str):
                out.append(self._label_id(spec))
            elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
                if not 0 <= int(spec) < logits.shape[-1]:
                    raise ValueError(f"target {spec} is out of range for {logits.shape[-1]} outputs")
                out.append(int(spec))
            else:
                raise TypeError(f"target must be an int, a label, 'predicted' or a list of these, got {spec!r}")
        return out

    def _label_id(self, label: str) -> int:
        if self.task in ("masked-lm", "causal-lm"):
            ids = self.tokenizer.convert_tokens_to_ids([label])
            unk = getattr(self.tokenizer, "unk_token_id", None)
            if not ids or ids[0] is None or (ids[0] == unk and label != getattr(self.tokenizer, "unk_token", None)):
                raise ValueError(f"{label!r} is not a token of the vocabulary")
            return int(ids[0])
        for k, v in self.labels.items():
            if v == label:
                return k
        raise ValueError(f"unknown label {label!r}; labels: {sorted(self.labels.values())}")

    def _label_name(self, target: int | None) -> str | None:
        if target is None:
            return None
        if self.task in ("masked-lm", "causal-lm") and self.tokenizer is not None:
            return str(self.tokenizer.convert_ids_to_tokens([target])[0])
        return self.labels.get(target, str(target))

    # ----- problems ------------------------------------------------------------------------------
    def problem(
        self,
        inputs: dict[str, torch.Tensor],
        *,
        target: Any = "predicted",
        position: Any = None,
        query: Any = None,
        queries: list[int] | None = None,
    ) -> tuple[Problem, dict[str, Any]]:
        """A :class:`Problem` for one batch of model inputs, plus prediction info per item.

        Args:
            inputs: model inputs (``input_ids``, ``attention_mask``, optionally ``token_type_ids``).
            target: a class, label, token or ``"predicted"`` (or a list per item).
            position: the token whose prediction is explained (token classification, LMs).
            query: the attention row that attention methods read (int, ``"cls"``, ``"last"``).
            queries: resolved query indices, overriding ``query``.

        Returns:
            The problem, and a dict of lists per item: ``prediction``, ``probability``,
            ``target_probability`` (and ``value`` for scalar heads), ``positions``.
        """
        model = self.model
        positions = self._positions(inputs, position)
        pos_tensor = torch.tensor(positions, device=inputs["input_ids"].device) if positions is not None else None
        extra_names = [n for n in ("attention_mask", "token_type_ids") if n in inputs]
        args = tuple(inputs[n] for n in extra_names) + ((pos_tensor,) if pos_tensor is not None else ())

        def split(rest: tuple[Any, ...]) -> tuple[dict[str, Any], torch.Tensor | None]:
            kw = dict(zip(extra_names, rest[: len(extra_names)], strict=False))
            pos = rest[len(extra_names)] if pos_tensor is not None else None
            return kw, pos

        def embed_forward(embeds: torch.Tensor, *rest: Any) -> torch.Tensor:
            kw, pos = split(rest)
            return self._scores(model(inputs_embeds=embeds, **kw), pos)

        def ids_forward(ids: torch.Tensor, *rest: Any) -> torch.Tensor:
            kw, pos = split(rest)
            return self._scores(model(input_ids=ids, **kw), pos)

        with torch.no_grad():
            raw = self._scores_for_prediction(inputs, pos_tensor)
        targets = self._resolve_targets(target, raw)
        info = self._prediction_info(raw, targets)

        if queries is None:
            queries = self._queries(inputs, positions, query)
        embeds = self.embedding_layer(inputs["input_ids"]).detach()
        tok = self.tokenizer
        special_ids = set(getattr(tok, "all_special_ids", []) or []) if tok is not None else set()
        pad_id = getattr(tok, "pad_token_id", None) if tok is not None else None

        def capture_record() -> Any:
            from ..capturing import capture

            with torch.no_grad(), capture(model, tok) as cap:
                model(**inputs)
            return cap.record

        def attention_gradients() -> list[tuple[torch.Tensor, torch.Tensor]]:
            return self._attention_gradients(inputs, pos_tensor, targets)

        problem = Problem(
            model=model,
            embedding_layer=self.embedding_layer,
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            embeds=embeds,
            args=args,
            embed_forward=embed_forward,
            ids_forward=ids_forward,
            targets=targets,
            queries=queries,
            special_ids=special_ids,
            pad_id=pad_id if pad_id is not None else 0,
            mask_id=getattr(tok, "mask_token_id", None),
            attention_function=attention_gradients,
            record_function=capture_record,
        )
        info["positions"] = positions
        return problem, info

    def _scores_for_prediction(self, inputs: dict[str, torch.Tensor], pos_tensor: torch.Tensor | None) -> torch.Tensor:
        output, self.output = self.output, "logit"
        try:
            return self._scores(self.model(**inputs), pos_tensor)
        finally:
            self.output = output

    def _prediction_info(self, logits: torch.Tensor, targets: list[int] | None) -> dict[str, Any]:
        if logits.dim() == 1:
            return {
                "prediction": [None] * len(logits),
                "probability": [None] * len(logits),
                "target_probability": [None] * len(logits),
                "value": logits.tolist(),
            }
        probs = torch.softmax(logits.double(), dim=-1)
        pred = probs.argmax(dim=-1)
        return {
            "prediction": pred.tolist(),
            "probability": probs.max(dim=-1).values.tolist(),
            "target_probability": [float(probs[b, t]) for b, t in enumerate(targets or [])],
        }

    def _queries(self, inputs: dict[str, torch.Tensor], positions: list[int] | None, query: Any) -> list[int]:
        from ..analysis.rollout import resolve_query

        mask = inputs["attention_mask"]
        batch, n = inputs["input_ids"].shape
        if query is None:
            if positions is not None and self.task != "causal-lm":
                return list(positions)
            query = "last" if self.task == "causal-lm" else 0
        specs = query if isinstance(query, (list, tuple)) else [query] * batch
        return [resolve_query(q, n, mask[b]) for b, q in enumerate(specs)]

    def eager_model(self) -> torch.nn.Module:
        """The model with eager attention (its attention weights are part of the autograd graph).

        Returns:
            The model itself when it already runs eager attention, otherwise a deep copy (made once).
        """
        config = getattr(self.model, "config", None)
        if config is not None and getattr(config, "_attn_implementation", "eager") == "eager":
            return self.model
        if self._eager is None:
            eager: Any = copy.deepcopy(self.model)
            eager.set_attn_implementation("eager")
            self._eager = eager.eval()
        return self._eager

    def _attention_gradients(
        self, inputs: dict[str, torch.Tensor], pos_tensor: torch.Tensor | None, targets: list[int] | None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        model = self.eager_model()
        with evaluation_mode(model), torch.enable_grad():
            outputs = model(**inputs, output_attentions=True)
            attentions = getattr(outputs, "attentions", None)
            if not attentions:
                raise ValueError(f"{type(model).__name__} returned no attentions with output_attentions=True")
            scores = self._scores(outputs, pos_tensor)
            if scores.dim() == 2:
                scores = scores[
                    torch.arange(scores.shape[0], device=scores.device), torch.tensor(targets, device=scores.device)
                ]
            grads = torch.autograd.grad(scores.sum(), list(attentions))
        return [(a.detach(), g.detach()) for a, g in zip(attentions, grads, strict=True)]

    # ----- public ---------------------------------------------------------------------------------
    def explain(
        self,
        texts: Texts | dict[str, Any],
        method: str = "integrated_gradients",
        *,
        target: Any = "predicted",
        position: Any = None,
        query: Any = None,
        batch_size: int = 8,
        merge_words: str | bool = False,
        true_labels: Sequence[Any] | None = None,
        progress: bool | None = None,
        **options: Any,
    ) -> list[TokenSaliency]:
        """One :class:`TokenSaliency` per input (real tokens only, padding dropped).

        Args:
            texts: a string, a list of strings, a list of ``(text_a, text_b)`` pairs, or a dict of
                model inputs (``input_ids`` etc., explained as one batch).
            method: a name of ``METHODS``.
            target: a class index or label, a token (LMs), ``"predicted"``, or a list per input.
            position: the token whose prediction is explained (or a list per input).
            query: the attention row attention methods read (int, ``"cls"``, ``"last"``, or a list).
            batch_size: inputs per forward pass.
            merge_words: ``True``/``"sum"``/``"mean"``/``"max"`` merges word pieces into words.
            true_labels: gold labels, one per input, stored on the results.
            progress: a progress bar shows for work over more than one batch; ``False`` hides it,
                ``True`` forces it.
            **options: passed to the method (e.g. ``n_steps=``).

        Returns:
            One result per input, in input order.
        """
        fn = METHODS.get(method)
        batches: list[tuple[Any, list[Any] | None, int | None]]
        if isinstance(texts, dict) or hasattr(texts, "keys"):  # encodings: one batch, as given
            encodings: Any = texts
            batches = [(encodings, None, None)]
            total = int(encodings["input_ids"].shape[0])
        else:
            items = (
                [texts]
                if isinstance(texts, str)
                or (isinstance(texts, tuple) and len(texts) == 2 and all(isinstance(t, str) for t in texts))
                else list(texts)
            )
            batches = [(None, items[i : i + batch_size], i) for i in range(0, len(items), batch_size)]
            total = len(items)
        results: list[TokenSaliency] = []
        bar = progress_bar(progress, total, f"{method}", threshold=batch_size)
        try:
            for enc, chunk, start in batches:
                if enc is None:
                    enc, _ = self._encode(chunk or [])
                inputs = self._model_inputs(enc)
                size = len(chunk) if chunk is not None else 0
                chunk_targets = (
                    target[start : start + size] if isinstance(target, (list, tuple)) and start is not None else target
                )
                chunk_positions = (
                    position[start : start + size]
                    if isinstance(position, (list, tuple)) and start is not None
                    else position
                )
                chunk_queries = (
                    query[start : start + size] if isinstance(query, (list, tuple)) and start is not None else query
                )
                with evaluation_mode(self.model):
                    problem, info = self.problem(
                        inputs, target=chunk_targets, position=chunk_positions, query=chunk_queries
                    )
                    scores, extras = fn(problem, **options)
                results.extend(
                    self._results(method, enc, chunk, problem, info, scores, extras, options, true_labels, start or 0)
                )
                bar.update(problem.batch_size)
        finally:
            bar.close()
        if merge_words:
            how = "sum" if merge_words is True else merge_words
            results = [r.to_words(how) for r in results]
        return results

    def _results(
        self,
        method: str,
        enc: Any,
        chunk: list[Any] | None,
        problem: Problem,
        info: dict[str, Any],
        scores: torch.Tensor,
        extras: Extras,
        options: dict[str, Any],
        true_labels: Sequence[Any] | None,
        start: int,
    ) -> list[TokenSaliency]:
        out = []
        ids = problem.input_ids.cpu()
        mask = problem.attention_mask.cpu()
        scores = scores.detach().double().cpu()
        for b in range(ids.shape[0]):
            real = torch.nonzero(mask[b]).flatten().tolist()
            tokens = (
                self.tokenizer.convert_ids_to_tokens(ids[b, real].tolist())
                if self.tokenizer is not None
                else [str(i) for i in ids[b, real].tolist()]
            )
            word_ids: list[int | None] | None = None
            offsets: list[tuple[int, int]] | None = None
            special: list[bool] | None = None
            if hasattr(enc, "word_ids") and getattr(enc, "is_fast", False):
                all_ids = enc.word_ids(b)
                word_ids = [all_ids[i] for i in real]
            if "offset_mapping" in enc:
                pairs = [enc["offset_mapping"][b, i].tolist() for i in real]
                offsets = [(int(lo), int(hi)) for lo, hi in pairs]
            if "special_tokens_mask" in enc:
                special = [bool(enc["special_tokens_mask"][b, i]) for i in real]
            text = None
            if chunk is not None:
                item = chunk[b]
                text = item if isinstance(item, str) else None
                if isinstance(item, (tuple, list)) and offsets is not None:
                    offsets = None  # offsets of a pair point into two texts
            target = problem.targets[b] if problem.targets is not None else None
            positions = info.get("positions")
            position = real.index(positions[b]) if positions is not None else None
            query = real.index(problem.queries[b]) if problem.queries[b] in real else None
            extra: dict[str, Any] = dict(options)
            extra.update(extras[b] if extras else {})
            if info.get("value") is not None:
                extra["value"] = info["value"][b]
            extra["task"] = self.task
            extra["output"] = self.output
            pred = info["prediction"][b]
            out.append(
                TokenSaliency(
                    tokens=tokens,
                    scores=scores[b, real].numpy(),
                    method=method,
                    target=target,
                    target_label=self._label_name(target),
                    position=position,
                    query=query,
                    prediction=pred,
                    prediction_label=self._label_name(pred),
                    probability=info["probability"][b],
                    target_probability=info["target_probability"][b],
                    true_label=true_labels[start + b] if true_labels is not None else None,
                    text=text,
                    word_ids=word_ids,
                    offsets=offsets,
                    special=special,
                    info=extra,
                )
            )
        return out

    def compare(
        self,
        texts: Texts,
        methods: Sequence[str] = ("attention", "rollout", "flow", "saliency", "integrated_gradients"),
        *,
        options: dict[str, dict[str, Any]] | None = None,
        progress: bool | None = None,
        **common: Any,
    ) -> dict[str, list[TokenSaliency]]:
        """Every method on the same inputs (the input of the ``"comparison"`` exporter).

        Args:
            texts: as for :meth:`explain`.
            methods: names of ``METHODS``.
            options: per-method options, ``{method: {option: value}}``.
            progress: as for :meth:`explain`.
            **common: passed to every :meth:`explain` call (``target=``, ``merge_words=``, ...).

        Returns:
            ``{method: [TokenSaliency per input]}``.
        """
        options = options or {}
        out = {}
        for name in methods:
            out[name] = self.explain(texts, name, progress=progress, **common, **options.get(name, {}))
        return out
