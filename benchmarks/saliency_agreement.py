"""Agreement of attention-based and gradient-based saliency on the fixture sentiment data set.

The fixture classifier (frozen MiniLM + trained head, ``fixtures/minilm_head``) explains its own
prediction for each held-out sentence with every registered method; the script prints the
averaged agreement (Kendall tau, Spearman rho, top-k overlap, Jensen-Shannon divergence) of
every attention method against every gradient method, the analysis of Jain & Wallace (2019), and
writes the comparison page.

    python benchmarks/saliency_agreement.py             # the 40 held-out sentences
    python benchmarks/saliency_agreement.py --all       # all 200 sentences
    python benchmarks/saliency_agreement.py --quick     # 8 sentences, fewer IG steps
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

ATTENTION = ["attention", "rollout", "flow", "grad_attention"]
GRADIENT = [
    "saliency",
    "input_x_gradient",
    "integrated_gradients",
    "layer_integrated_gradients",
    "smoothgrad",
    "deeplift",
    "feature_ablation",
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="all 200 sentences instead of the 40 held out")
    parser.add_argument("--quick", action="store_true", help="8 sentences and 16 IG steps")
    parser.add_argument("--k", type=int, default=3, help="k of the top-k overlap")
    parser.add_argument("--out", default=os.path.join(ROOT, "out", "saliency_agreement.html"))
    args = parser.parse_args(argv)

    import attn_plugins as ap
    from attn_plugins.saliency import Explainer
    from fixtures.minilm_head import load_classifier, load_dataset, split

    model, tokenizer = load_classifier()
    texts, labels = load_dataset() if args.all else split()["test"]
    if args.quick:
        texts, labels = texts[:8], labels[:8]
    steps = 16 if args.quick else 50
    options = {"integrated_gradients": {"n_steps": steps}, "layer_integrated_gradients": {"n_steps": steps}}
    explainer = Explainer(model, tokenizer)
    table, timings = {}, {}
    for name in ATTENTION + GRADIENT:
        start = time.perf_counter()
        table[name] = explainer.explain(
            texts,
            name,
            true_labels=[("negative", "positive")[label] for label in labels],
            progress=None,
            **options.get(name, {}),
        )
        timings[name] = time.perf_counter() - start
    correct = sum(r.prediction == label for r, label in zip(table["saliency"], labels, strict=True))
    page = ap.export(table, "comparison", k=args.k, path=args.out, max_instances=20)
    print(f"{len(texts)} sentences, classifier accuracy {correct / len(texts):.3f}; target: the predicted class")
    print("seconds per method: " + ", ".join(f"{n} {t:.1f}" for n, t in timings.items()))
    print()
    print(page.agreement.summary())
    print(f"\ncomparison page: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
