"""Faithfulness over a corpus on the corpus engines (``attn-plugins faithfulness --engine local|ray``).

The texts are split into chunks of ``chunk_size``; an engine (:data:`attn_plugins.corpus.ENGINES`:
this process, or a Ray Data actor pool) runs :func:`~attn_plugins.faithfulness.evaluate` on each
chunk with the job's settings, and each text's metrics come back as one JSON row. Every metric of
an instance depends on that instance alone (its own perturbed inputs; the randomization check
re-draws the same parameters from the same seed in every chunk), so the merged result equals one
in-process evaluation of all the texts, up to the float rounding of different padding in the
batched forward passes; the confidence intervals are then bootstrapped over all the instances.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import CorpusError, InputError
from .evaluate import evaluate
from .metrics import DEFAULT_BINS
from .result import FaithfulnessResult

EVALUATE_OPTIONS = ("bins", "only_positive", "target", "method_options", "explain_batch_size", "seed")


@dataclass(frozen=True)
class FaithfulnessJob:
    """What every engine worker evaluates: the model directory, the methods and the settings of
    :func:`evaluate` (``options``: any of :data:`EVALUATE_OPTIONS`), and the rationales by line."""

    model_dir: str
    methods: tuple[str, ...]
    metrics: tuple[str, ...]
    removal: str = "delete"
    randomization: bool = False
    batch_size: int = 32
    rationales: Mapping[int, list[Any]] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def plan(self, lengths: Sequence[int]) -> list[list[int]]:
        """One engine batch per chunk (the chunk is the unit of work: ``--chunk-size`` texts)."""
        return [list(range(len(lengths)))]

    def load(self, device: str | None = None) -> tuple[Any, Any]:
        """The classifier (eval mode, on ``device``) and its tokenizer, once per process or actor."""
        from ..loading import load_model_dir

        try:
            model, tokenizer = load_model_dir(self.model_dir)
        except InputError as exc:
            raise CorpusError(str(exc)) from None
        if device is not None:
            model = model.to(device)
        return model, tokenizer

    def compute(
        self, state: tuple[Any, Any], batch: Mapping[str, list[Any]], progress: Callable[[int], None] | None = None
    ) -> Any:
        """Evaluate the texts of ``batch`` (columns ``chunk``, ``line``, ``text``); one row per text:
        ``chunk``, ``line``, ``forwards`` (the batch's forward passes, on its first row) and
        ``result`` (JSON: the text's row of each method and its randomization correlations)."""
        from ..corpus.errors import need_pyarrow

        pa = need_pyarrow()
        model, tokenizer = state
        texts = [str(t) for t in batch["text"]]
        lines = [int(v) for v in batch["line"]]
        rationales = [self.rationales[line] for line in lines] if self.rationales is not None else None
        result = evaluate(
            model,
            tokenizer,
            texts,
            self.methods,
            metrics=self.metrics,
            removal=self.removal,
            rationales=rationales,
            randomization=self.randomization,
            batch_size=self.batch_size,
            progress=False,
            **dict(self.options),
        )
        payload = []
        for i in range(len(texts)):
            rows = {m: result.instances[m][i] for m in result.methods}
            rand = None
            if result.randomization is not None:
                rand = {
                    m: {"steps": r["steps"], "correlation": [step[i] for step in r["correlation"]]}
                    for m, r in result.randomization.items()
                }
            payload.append(json.dumps({"instances": rows, "randomization": rand}))
        forwards = [int(result.settings["forward_passes"])] + [0] * (len(texts) - 1)
        if progress is not None:
            progress(len(texts))
        return pa.table(
            {"chunk": [int(v) for v in batch["chunk"]], "line": lines, "forwards": forwards, "result": payload}
        )


def merge(
    tables: Sequence[Any], settings: dict[str, Any], *, confidence: float = 0.95, n_boot: int = 1000, seed: int = 0
) -> FaithfulnessResult:
    """One :class:`FaithfulnessResult` from the engines' rows, in file order (``index`` renumbered)."""
    rows = sorted(
        (
            (line, forwards, text)
            for table in tables
            for line, forwards, text in zip(
                table["line"].to_pylist(), table["forwards"].to_pylist(), table["result"].to_pylist(), strict=True
            )
        ),
        key=lambda r: r[0],
    )
    instances: dict[str, list[dict[str, Any]]] = {}
    randomization: dict[str, dict[str, Any]] | None = None
    for index, (_, _, text) in enumerate(rows):
        data = json.loads(text)
        for method, row in data["instances"].items():
            instances.setdefault(method, []).append({**row, "index": index})
        if data["randomization"] is not None:
            randomization = randomization if randomization is not None else {}
            for method, r in data["randomization"].items():
                into = randomization.setdefault(method, {"steps": r["steps"], "correlation": [[] for _ in r["steps"]]})
                for step, value in zip(into["correlation"], r["correlation"], strict=True):
                    step.append(value)
    settings = {**settings, "forward_passes": sum(int(r[1]) for r in rows)}
    return FaithfulnessResult(instances, settings, randomization, confidence=confidence, n_boot=n_boot, seed=seed)


def evaluate_corpus(
    job: FaithfulnessJob,
    texts: Sequence[Any],
    *,
    engine: str = "local",
    chunk_size: int = 16,
    progress: bool | None = None,
    **engine_options: Any,
) -> FaithfulnessResult:
    """Run ``job`` over ``texts`` (:class:`attn_plugins.corpus.data.Text`) on a corpus engine.

    Args:
        job: the model directory and the :func:`evaluate` settings.
        texts: the corpus (``read_texts(path)``).
        engine: a name of :data:`attn_plugins.corpus.ENGINES` (``"local"``, ``"ray"``).
        chunk_size: texts per engine task (one :func:`evaluate` call each).
        progress: a progress bar over the texts (None: only on a terminal).
        engine_options: the engine's own (``workers=``, ``address=`` for Ray).

    Returns:
        The merged :class:`FaithfulnessResult`, its instances in file order.
    """
    from tqdm import tqdm

    from ..corpus import ENGINES
    from ..corpus.job import split_chunks
    from ..errors import UnknownNameError

    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InputError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    if not texts:
        raise InputError("no texts to evaluate")
    try:
        runner = ENGINES.get(engine)(**engine_options)
    except UnknownNameError as exc:
        raise CorpusError(str(exc)) from None
    chunks = split_chunks(list(texts), [0] * len(texts), [False] * len(texts), chunk_size)
    tables: list[Any] = []
    bar = tqdm(
        total=len(texts),
        desc=f"faithfulness ({engine})",
        unit="text",
        file=sys.stderr,
        disable=None if progress is None else not progress,
        dynamic_ncols=True,
    )
    try:
        runner.run(job, chunks, lambda chunk, table: tables.append(table), bar.update)
    finally:
        bar.close()
    options = dict(job.options)
    settings = {
        "removal": job.removal,
        "bins": [float(b) for b in options.get("bins", DEFAULT_BINS)],
        "only_positive": bool(options.get("only_positive", True)),
        "metrics": list(job.metrics),
        "batch_size": job.batch_size,
        "engine": engine,
        "chunk_size": chunk_size,
    }
    return merge(tables, settings, seed=int(options.get("seed", 0)))
