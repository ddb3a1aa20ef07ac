"""Which tokens drive the cosine similarity of two sentence embeddings.

A sentence-transformers style encoder (the bundled MiniLM) embeds a sentence as the mean of its
last hidden states over the real tokens; two sentences are compared by cosine similarity. To
explain sentence A, the embedding of sentence B is held fixed and the method attributes
``cos(pool(encoder(A)), pool(encoder(B)))`` to A's tokens; then the other way round.

Attention methods read the average attention row of all real tokens (what mean pooling reads)
unless ``query=`` is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .explainer import Explainer, progress_bar
from .methods import METHODS
from .problem import Problem
from .result import TokenSaliency


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' mean pooling over the real tokens."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)


def last_hidden(outputs: Any) -> torch.Tensor:
    hidden = getattr(outputs, "last_hidden_state", None)
    return hidden if hidden is not None else outputs[0]


class SimilarityExplainer:
    """Explains ``cos(embed(a), embed(b))`` of a mean-pooled encoder (``AutoModel``)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, max_length: int | None = 256) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        # an Explainer carries the shared machinery (eager copy for grad_attention, capture, ...)
        self._base = Explainer(
            model, tokenizer, task="custom", head=lambda out: last_hidden(out), max_length=max_length
        )

    def _encode(self, texts: list[str]):
        kwargs = dict(
            return_tensors="pt",
            padding=True,
            truncation=self.max_length is not None,
            max_length=self.max_length,
            return_special_tokens_mask=True,
        )
        if getattr(self.tokenizer, "is_fast", False):
            kwargs["return_offsets_mapping"] = True
        return self.tokenizer(texts, **kwargs)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Mean-pooled sentence embeddings (not normalised)."""
        enc = self._encode(list(texts))
        inputs = self._base.model_inputs(enc)
        with torch.no_grad():
            return mean_pool(last_hidden(self.model(**inputs)), inputs["attention_mask"])

    def similarity(self, a: str, b: str) -> float:
        ea, eb = self.embed([a, b])
        return float(torch.nn.functional.cosine_similarity(ea, eb, dim=0))

    def _problem(self, inputs: Any, other: torch.Tensor, query: Any) -> Problem:
        model = self.model
        names = [n for n in ("attention_mask", "token_type_ids") if n in inputs]
        args = tuple(inputs[n] for n in names) + (other,)

        def score(outputs: Any, mask: Any, fixed: Any):
            pooled = mean_pool(last_hidden(outputs), mask)
            return torch.nn.functional.cosine_similarity(pooled, fixed, dim=-1)

        def embed_forward(embeds: Any, *rest: Any):
            kw = dict(zip(names, rest[: len(names)], strict=False))
            return score(model(inputs_embeds=embeds, **kw), kw["attention_mask"], rest[len(names)])

        def ids_forward(ids: Any, *rest: Any):
            kw = dict(zip(names, rest[: len(names)], strict=False))
            return score(model(input_ids=ids, **kw), kw["attention_mask"], rest[len(names)])

        from ..analysis.rollout import resolve_query

        mask = inputs["attention_mask"]
        n = inputs["input_ids"].shape[1]
        queries = [None if query is None else resolve_query(query, n, mask[b]) for b in range(mask.shape[0])]

        def capture_record():
            from ..capturing import capture

            with torch.no_grad(), capture(model, self.tokenizer) as cap:
                model(**inputs)
            return cap.record

        def attention_gradients():
            eager = self._base.eager_model()
            with torch.enable_grad():
                outputs = eager(**inputs, output_attentions=True)
                value = score(outputs, inputs["attention_mask"], other)
                grads = torch.autograd.grad(value.sum(), list(outputs.attentions))
            return [(a.detach(), g.detach()) for a, g in zip(outputs.attentions, grads, strict=True)]

        tok = self.tokenizer
        return Problem(
            model=model,
            embedding_layer=self._base.embedding_layer,
            input_ids=inputs["input_ids"],
            attention_mask=mask,
            embeds=self._base.embedding_layer(inputs["input_ids"]).detach(),
            args=args,
            embed_forward=embed_forward,
            ids_forward=ids_forward,
            targets=None,
            queries=queries,
            special_ids=set(getattr(tok, "all_special_ids", []) or []),
            pad_id=tok.pad_token_id or 0,
            mask_id=getattr(tok, "mask_token_id", None),
            attention_function=attention_gradients,
            record_function=capture_record,
        )

    def explain(
        self,
        pairs: tuple[str, str] | Sequence[tuple[str, str]],
        method: str = "integrated_gradients",
        *,
        query: Any = None,
        merge_words: str | bool = False,
        progress: bool | None = None,
        **options: Any,
    ) -> list[tuple[TokenSaliency, TokenSaliency]]:
        """For each ``(a, b)``: ``(saliency of a's tokens, saliency of b's tokens)``.

        ``info["similarity"]`` holds the cosine similarity being explained.
        """
        return self.explain_methods(
            pairs, [method], query=query, merge_words=merge_words, progress=progress, options={method: options}
        )[method]

    def explain_methods(
        self,
        pairs: tuple[str, str] | Sequence[tuple[str, str]],
        methods: Sequence[str],
        *,
        query: Any = None,
        merge_words: str | bool = False,
        progress: bool | None = None,
        options: dict[str, dict] | None = None,
    ) -> dict[str, list[tuple[TokenSaliency, TokenSaliency]]]:
        """Several methods on the same pairs: ``{method: explain(pairs, method, **options[method])}``.

        Each pair is encoded and embedded once, and each side's problem built once for all methods,
        so the attention methods share one captured record per side (the results are those of
        :meth:`explain` called method by method).

        Args:
            pairs: a pair of texts or a list of pairs.
            methods: registered saliency method names.
            query: as in :meth:`explain`.
            merge_words: as in :meth:`explain`.
            progress: as in :meth:`explain`.
            options: per-method keyword arguments (``{"integrated_gradients": {"n_steps": 16}}``).

        Returns:
            ``{method: [(saliency of a, saliency of b), ...]}`` in the order of ``methods``.
        """
        options = options or {}
        functions = {m: METHODS.get(m) for m in methods}
        if isinstance(pairs, tuple) and len(pairs) == 2 and all(isinstance(t, str) for t in pairs):
            pairs = [pairs]
        pairs = list(pairs)
        results: dict[str, list] = {m: [] for m in methods}
        bar = progress_bar(progress, len(pairs), f"similarity {', '.join(methods)}", threshold=4)
        training = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        try:
            for a, b in pairs:
                enc = self._encode([a, b])
                inputs = self._base.model_inputs(enc)
                with torch.no_grad():
                    pooled = mean_pool(last_hidden(self.model(**inputs)), inputs["attention_mask"])
                cosine = float(torch.nn.functional.cosine_similarity(pooled[0], pooled[1], dim=0))
                sides: dict[str, list] = {m: [] for m in methods}
                for side, (text, other) in enumerate(((a, pooled[1]), (b, pooled[0]))):
                    single = {k: v[side : side + 1] for k, v in inputs.items()}
                    real = torch.nonzero(single["attention_mask"][0]).flatten().tolist()
                    single = {k: v[:, real] for k, v in single.items()}
                    problem = self._problem(single, other.unsqueeze(0), query)
                    for m, fn in functions.items():
                        opts = options.get(m, {})
                        scores, extras = fn(problem, **opts)
                        sides[m].append(
                            self._result(
                                m, enc, side, real, text, scores[0], extras[0], opts, cosine, problem.queries[0]
                            )
                        )
                for m in methods:
                    pair = sides[m]
                    if merge_words:
                        how = "sum" if merge_words is True else merge_words
                        pair = [s.to_words(how) for s in pair]
                    results[m].append(tuple(pair))
                bar.update(1)
        finally:
            bar.close()
            for module, mode in training:
                module.training = mode
        return results

    def _result(
        self,
        method: Any,
        enc: Any,
        side: Any,
        real: Any,
        text: Any,
        scores: Any,
        extra: Any,
        options: Any,
        cosine: Any,
        query: Any,
    ):
        ids = enc["input_ids"][side, real].tolist()
        info = {**options, **(extra or {}), "similarity": cosine, "task": "similarity"}
        offsets = (
            [tuple(int(v) for v in enc["offset_mapping"][side, i].tolist()) for i in real]
            if "offset_mapping" in enc
            else None
        )
        special = [bool(enc["special_tokens_mask"][side, i]) for i in real] if "special_tokens_mask" in enc else None
        word_ids = None
        if getattr(enc, "is_fast", False):
            all_ids = enc.word_ids(side)
            word_ids = [all_ids[i] for i in real]
        return TokenSaliency(
            tokens=self.tokenizer.convert_ids_to_tokens(ids),
            scores=scores.detach().double().cpu().numpy(),
            method=method,
            target=None,
            target_label="cosine similarity",
            query=query,
            text=text,
            field="sentence_a" if side == 0 else "sentence_b",
            word_ids=word_ids,
            offsets=offsets,
            special=special,
            info=info,
        )
