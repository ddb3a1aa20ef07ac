"""The ``attn-plugins faithfulness`` subcommand: :func:`evaluate` over the texts of a JSONL file.

It needs a sequence classifier: the bundled MiniLM is a sentence encoder without a task head, and
the trained sentiment head of the tests (``fixtures/minilm_head``) is not part of the installed
package, so ``--model`` is required. The output directory receives the result as JSON (every
instance, reloadable with ``FaithfulnessResult.load``), the summary table as CSV and Markdown, and
the deletion/insertion curves as a PNG; the table is also printed.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..atomic import write_text
from ..errors import InputError
from .evaluate import DEFAULT_METHODS, METRIC_GROUPS

NO_MODEL = (
    "faithfulness needs a sequence classifier and the bundled MiniLM has no classifier head: "
    "pass --model DIR (a save_pretrained() directory of a ...ForSequenceClassification model)"
)
FILES = ("faithfulness.json", "faithfulness.csv", "faithfulness.md", "curves.png")


def add_parser(sub: Any) -> None:
    """Add ``faithfulness`` to the subparsers ``sub`` of the ``attn-plugins`` command line."""
    cmd = sub.add_parser(
        "faithfulness",
        help="faithfulness of saliency methods (comprehensiveness, sufficiency, deletion/insertion, "
        "leave-one-out) for a text classifier over a JSONL file",
        description="Explain every text of a JSONL file with each method and measure how faithful the "
        "explanations are (DeYoung et al. 2020; Jain & Wallace 2019). Writes OUT/faithfulness.json, "
        "OUT/faithfulness.csv, OUT/faithfulness.md and OUT/curves.png.",
    )
    cmd.add_argument("--data", required=True, help="JSONL file: one object per line with a text field")
    cmd.add_argument(
        "--model",
        help="a local save_pretrained() directory of a sequence classifier (required: the "
        "bundled MiniLM has no classifier head)",
    )
    cmd.add_argument(
        "--methods",
        nargs="+",
        default=list(DEFAULT_METHODS),
        help=f"saliency methods (default: {' '.join(DEFAULT_METHODS)})",
    )
    cmd.add_argument(
        "--metrics", nargs="+", default=list(METRIC_GROUPS), choices=METRIC_GROUPS, help="metric groups (default: all)"
    )
    cmd.add_argument("--out", default="faithfulness", help="output directory (default: faithfulness)")
    cmd.add_argument(
        "--removal",
        default="delete",
        choices=["delete", "mask", "pad"],
        help="delete removed tokens, or replace them with the mask/pad token (default: delete)",
    )
    cmd.add_argument(
        "--randomization", action="store_true", help="also run the cascading model-parameter randomization check"
    )
    cmd.add_argument("--text-field", default="text", help="the JSON field holding the text (default: text)")
    cmd.add_argument(
        "--rationale-field",
        help="a JSON field holding a human rationale (a list of words): adds token F1, IOU and AUPRC",
    )
    cmd.add_argument("--batch-size", type=int, default=32, help="perturbed inputs per forward pass (default: 32)")
    cmd.add_argument(
        "--engine",
        help="run on a corpus engine: local (this process, chunk by chunk) or ray (a Ray "
        "Data actor pool); default: one evaluation in this process",
    )
    cmd.add_argument("--chunk-size", type=int, default=16, help="with --engine: texts per engine task (default: 16)")
    cmd.add_argument(
        "--workers", type=int, help="--engine ray: actors in the pool (default: one per GPU, else one per CPU up to 8)"
    )
    cmd.add_argument(
        "--address",
        help="--engine ray: address of an existing cluster (default: a private local instance on 127.0.0.1)",
    )
    cmd.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    cmd.add_argument(
        "--progress",
        action="store_true",
        help="show the progress bar even when stderr is not a terminal (default: only on a terminal)",
    )
    cmd.set_defaults(func=run_command)


def _rationales(path: str, field: str, count: int) -> list[list[Any]]:
    """The ``field`` of every line of the JSONL file (a list of words, or of 0/1 flags, per text)."""
    import json

    out = []
    with open(path, encoding="utf-8") as handle:
        for line, raw in enumerate(handle):
            if not raw.strip():
                continue
            value = json.loads(raw).get(field)
            if not isinstance(value, list):
                raise InputError(f"{path}:{line + 1}: {field!r} must be a list of words or of 0/1 flags")
            out.append(value)
    if len(out) != count:
        raise InputError(f"{path}: {len(out)} rationales for {count} texts")
    return out


def run_command(args: argparse.Namespace) -> int:
    """Run :func:`evaluate` as the command line asked and write its files (see :data:`FILES`)."""
    from ..corpus.data import read_texts
    from ..loading import load_model_dir
    from ..saliency import METHODS
    from ..saliency.problem import detect_task
    from .evaluate import evaluate
    from .plot import curves_plot

    if args.model is None:
        raise InputError(NO_MODEL)
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, got {args.batch_size}")
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise InputError(f"unknown methods {unknown}; choose from {', '.join(METHODS.names())}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise InputError(f"--out {args.out!r} exists and is not a directory")
    corpus = read_texts(args.data, args.text_field)
    texts = [t.text for t in corpus]
    if not texts:
        raise InputError(f"{args.data!r} holds no texts")
    if args.engine is None and (args.workers is not None or args.address is not None):
        raise InputError("--workers and --address apply to --engine ray")
    rationales = _rationales(args.data, args.rationale_field, len(texts)) if args.rationale_field else None
    model, tokenizer = load_model_dir(args.model)
    if detect_task(model) != "sequence-classification":
        raise InputError(
            f"{args.model!r} holds a {type(model).__name__}, not a sequence classifier; "
            "faithfulness removes tokens and watches the predicted class's probability"
        )
    progress = False if args.quiet else (True if args.progress else None)
    if args.engine is None:
        result = evaluate(
            model,
            tokenizer,
            texts,
            args.methods,
            metrics=args.metrics,
            removal=args.removal,
            rationales=rationales,
            randomization=args.randomization,
            batch_size=args.batch_size,
            progress=progress,
        )
    else:
        from .corpus import FaithfulnessJob, evaluate_corpus

        del model
        job = FaithfulnessJob(
            os.path.realpath(args.model),
            tuple(args.methods),
            tuple(args.metrics),
            removal=args.removal,
            randomization=args.randomization,
            batch_size=args.batch_size,
            rationales=None if rationales is None else {t.line: r for t, r in zip(corpus, rationales, strict=True)},
        )
        options = {"workers": args.workers, "address": args.address} if args.engine == "ray" else {}
        result = evaluate_corpus(
            job, corpus, engine=args.engine, chunk_size=args.chunk_size, progress=progress, **options
        )
    os.makedirs(args.out, exist_ok=True)
    result.save(os.path.join(args.out, FILES[0]))
    result.save_csv(os.path.join(args.out, FILES[1]))
    write_text(os.path.join(args.out, FILES[2]), result.table(markdown=True) + "\n")
    written = list(FILES[:3])
    if {"deletion", "insertion"} <= set(args.metrics):
        curves_plot(result, path=os.path.join(args.out, FILES[3]))
        written.append(FILES[3])
    print(result.table())
    print(f"\n{len(texts)} texts, {len(args.methods)} methods; wrote {', '.join(written)} to {args.out}")
    return 0
