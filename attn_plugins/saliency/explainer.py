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

import torch

from ..model_state import evaluation_mode
from .methods import METHODS, Extras
from .model_io import ModelIO
from .problem import OUTPUTS, TASKS, Problem, detect_task
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


class Explainer(ModelIO):
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
        positions = self.explained_positions(inputs, position)
        pos_tensor = torch.tensor(positions, device=inputs["input_ids"].device) if positions is not None else None
        extra_names = [n for n in ("attention_mask", "token_type_ids") if n in inputs]
        args = tuple(inputs[n] for n in extra_names) + ((pos_tensor,) if pos_tensor is not None else ())

        def split(rest: tuple[Any, ...]) -> tuple[dict[str, Any], torch.Tensor | None]:
            kw = dict(zip(extra_names, rest[: len(extra_names)], strict=False))
            pos = rest[len(extra_names)] if pos_tensor is not None else None
            return kw, pos

        def embed_forward(embeds: torch.Tensor, *rest: Any) -> torch.Tensor:
            kw, pos = split(rest)
            return self.head_scores(model(inputs_embeds=embeds, **kw), pos)

        def ids_forward(ids: torch.Tensor, *rest: Any) -> torch.Tensor:
            kw, pos = split(rest)
            return self.head_scores(model(input_ids=ids, **kw), pos)

        with torch.no_grad():
            raw = self.prediction_scores(inputs, pos_tensor)
        targets = self.resolve_targets(target, raw)
        info = self.prediction_info(raw, targets)

        if queries is None:
            queries = self.query_positions(inputs, positions, query)
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
            scores = self.head_scores(outputs, pos_tensor)
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
                    enc, _ = self.encode(chunk or [])
                inputs = self.model_inputs(enc)
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
                    target_label=self.label_name(target),
                    position=position,
                    query=query,
                    prediction=pred,
                    prediction_label=self.label_name(pred),
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
