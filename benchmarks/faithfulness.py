"""Faithfulness of every saliency method, and the head-pruning curve, on the MiniLM sentiment head.

The fixture classifier (frozen MiniLM + trained head, ``fixtures/minilm_head``) explains its own
prediction on its held-out sentences with every registered method; ``ap.evaluate`` measures
comprehensiveness and sufficiency (AOPC over 1/5/10/20/50%, tokens deleted), deletion and insertion
areas, leave-one-out Kendall tau, plausibility against the hand-annotated rationales
(``fixtures/minilm_head/RATIONALES.md``) and the cascading randomization check (Spearman rho of each
method's saliency with the original once every layer is random). Then Michel et al.'s head
importance (from the training sentences, the model's own loss) orders the 72 heads, and the held-out
accuracy is printed as heads are removed least important first, against three random orders.

    python benchmarks/faithfulness.py            # 40 held-out sentences, every method
    python benchmarks/faithfulness.py --quick    # 6 sentences, 3 methods, 16 IG steps, coarse curve
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

METHODS = [
    "attention",
    "rollout",
    "flow",
    "grad_attention",
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "layer_integrated_gradients",
    "smoothgrad",
    "deeplift",
    "feature_ablation",
]
QUICK = ["attention", "rollout", "integrated_gradients"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="6 sentences, 3 methods, coarse pruning curve")
    parser.add_argument("--sentences", type=int, default=None, help="only the first N held-out sentences (profiling)")
    parser.add_argument("--no-randomization", action="store_true", help="skip the randomization check")
    parser.add_argument("--removal", default="delete", choices=["delete", "mask", "pad"])
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args(argv)

    import torch

    import attn_plugins as ap
    from fixtures.minilm_head import accuracy, load_classifier, split

    torch.manual_seed(0)
    model, tokenizer = load_classifier()
    data = split()
    texts, labels = data["test"]
    with open(os.path.join(ROOT, "fixtures", "minilm_head", "rationales.jsonl"), encoding="utf-8") as handle:
        rationales = [json.loads(line)["rationale"] for line in handle if line.strip()]
    methods = QUICK if args.quick else METHODS
    if args.quick:
        texts, labels, rationales = texts[:6], labels[:6], rationales[:6]
    if args.sentences:
        texts, labels, rationales = texts[: args.sentences], labels[: args.sentences], rationales[: args.sentences]
    steps = 16 if args.quick else 50
    options = {"integrated_gradients": {"n_steps": steps}, "layer_integrated_gradients": {"n_steps": steps}}

    began = start = time.perf_counter()

    def log(line: str) -> None:  # progress per stage, on stderr (the tables go to stdout)
        print(f"[{time.perf_counter() - began:7.1f} s] {line}", file=sys.stderr, flush=True)

    result = ap.evaluate(
        model,
        tokenizer,
        texts,
        methods,
        rationales=rationales,
        removal=args.removal,
        randomization=not args.no_randomization,
        method_options=options,
        progress=False,
        log=log,
    )
    took = time.perf_counter() - start
    print(f"## Faithfulness on {len(texts)} held-out sentences (removal: {args.removal}; {took:.0f} s)\n")
    print(result.table())
    if result.randomization:
        print("\nCascading randomization: mean Spearman rho with the original saliency after each step")
        steps_names = next(iter(result.randomization.values()))["steps"]
        print("method".ljust(28) + "  ".join(s.rjust(10) for s in steps_names))
        for method, data_ in result.randomization.items():
            means = [sum(v for v in c if v == v) / max(1, sum(1 for v in c if v == v)) for c in data_["correlation"]]
            print(method.ljust(28) + "  ".join(f"{m:10.3f}" for m in means))

    train_texts, train_labels = data["train"]
    batches = []
    for i in range(0, len(train_texts), 32):
        enc = tokenizer(train_texts[i : i + 32], return_tensors="pt", padding=True)
        batches.append({**enc, "labels": torch.tensor(train_labels[i : i + 32])})
    test_texts, test_labels = data["test"]
    start = time.perf_counter()
    importance = ap.head_importance(model, batches)
    log(f"head importance on {len(train_texts)} training sentences")
    curve = ap.pruning_curve(
        model,
        lambda m: accuracy(m, tokenizer, test_texts, test_labels),
        importance=importance,
        steps=4 if args.quick else 12,
        n_random=1 if args.quick else 3,
    )
    log("pruning curve")
    took = time.perf_counter() - start
    print(f"\n## Head pruning (Michel et al. 2019): held-out accuracy as heads are removed ({took:.0f} s)\n")
    print("| heads removed | fraction | by importance (least first) | random (mean) |")
    print("|---|---|---|---|")
    for k, f, a, r in zip(curve.removed, curve.fraction, curve.by_importance, curve.random_mean, strict=True):
        print(f"| {k} | {f:.2f} | {a:.3f} | {r:.3f} |")
    if args.out:
        payload = {"faithfulness": result.to_dict(), "importance": importance.to_dict(), "pruning": curve.to_dict()}
        with open(args.out, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=1)
        print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
