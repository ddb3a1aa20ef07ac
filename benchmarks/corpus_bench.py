"""Throughput of ``attn-plugins corpus`` (texts/s): the local engine and the Ray Data engine, same run.

The texts are short sentences put together from fixed word lists (deterministic); the model is
the bundled MiniLM. Each engine computes the job twice, on the first fifth of the texts and on
all of them, each time into a fresh directory and with its own start-up (model loading; for Ray
also the local instance and the actor pool). The script prints, per engine:

* texts/s of the full run, start-up included (what a user of a short job sees);
* the marginal rate, (N - N/5) / (time of the full run - time of the short run): start-up cancels
  out, so this is the rate a long job settles at;

plus the load average, and the largest difference between the two engines' statistics.

    python benchmarks/corpus_bench.py                 # 300 texts, both engines
    python benchmarks/corpus_bench.py --texts 500 --workers 2 --threads 1
    python benchmarks/corpus_bench.py --engines local
    python benchmarks/corpus_bench.py --quick         # 40 texts: checks the script, not the figures
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SUBJECTS = [
    "The cat",
    "A tired dog",
    "My neighbour",
    "The old man",
    "A small child",
    "The teacher",
    "Our team",
    "The bird",
    "Every student",
    "The new manager",
]
VERBS = [
    "sat on",
    "looked at",
    "walked past",
    "talked about",
    "painted",
    "found",
    "lost",
    "watched",
    "followed",
    "ignored",
]
OBJECTS = [
    "the mat.",
    "the red car, slowly!",
    "a quiet river in the morning.",
    "the long and narrow street?",
    "two green apples.",
    "the city lights at night.",
    "an empty house.",
    "the garden gate, again.",
]


def texts(n: int) -> list[str]:
    combos = itertools.product(SUBJECTS, VERBS, OBJECTS)
    return [f"{s} {v} {o}" for s, v, o in itertools.islice(itertools.cycle(combos), n)]


def write(path: str, n: int) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps({"id": f"t{i}", "text": text}) + "\n" for i, text in enumerate(texts(n)))
    return path


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="a CI-sized run: 40 texts")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--chunk-size", type=int, default=64)
    parser.add_argument("--workers", type=int, help="Ray actors (default: the engine's default)")
    parser.add_argument("--threads", type=int, help="torch threads of the local engine (default: torch's)")
    parser.add_argument("--engines", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    args = parser.parse_args(argv)
    if args.quick:
        args.texts = min(args.texts, 40)

    import numpy as np
    import torch

    from attn_plugins.corpus import run_corpus
    from attn_plugins.corpus.job import stat_columns

    if args.threads:
        torch.set_num_threads(args.threads)
    small = max(1, args.texts // 5)
    full_runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = {n: write(os.path.join(tmp, f"texts{n}.jsonl"), n) for n in (small, args.texts)}
        print(
            f"{args.texts} texts (5-12 words), bundled MiniLM, batch size {args.batch_size}, chunk size "
            f"{args.chunk_size}, {os.cpu_count()} CPUs, local torch threads {torch.get_num_threads()}; "
            f"load average before: {load()}"
        )
        # one-off costs of the first run in a process (imports, tokenizer set-up) are paid here
        run_corpus(write(os.path.join(tmp, "warm.jsonl"), 2), os.path.join(tmp, "warm"), progress=False)
        for engine in args.engines:
            options = {"workers": args.workers} if engine == "ray" else {}
            seconds = {}
            for n in (small, args.texts):
                start = time.perf_counter()
                result = run_corpus(
                    data[n],
                    os.path.join(tmp, f"{engine}{n}"),
                    engine=engine,
                    batch_size=args.batch_size,
                    chunk_size=args.chunk_size,
                    progress=False,
                    **options,
                )
                seconds[n] = time.perf_counter() - start
            full_runs[engine] = result
            marginal = (args.texts - small) / (seconds[args.texts] - seconds[small])
            extra = (
                f", {result.details['workers']} actor(s) x {result.details['threads_per_worker'] or 'GPU'} thread(s)"
                if engine == "ray"
                else ""
            )
            print(
                f"{engine:>5}: {args.texts / seconds[args.texts]:6.1f} texts/s start-up included "
                f"({seconds[args.texts]:.1f} s for {args.texts}, {seconds[small]:.1f} s for {small}); "
                f"marginal {marginal:6.1f} texts/s{extra}"
            )
        if len(full_runs) == 2:
            a, b = full_runs["local"].rows(), full_runs["ray"].rows()
            worst = max(float(np.nanmax(np.abs(np.asarray(a[c]) - np.asarray(b[c])))) for c in stat_columns())
            print(f"largest difference between the engines' statistics: {worst:.3g}")
    print(f"load average after: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
