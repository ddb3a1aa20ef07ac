"""What explain_generation costs: the time of each method over a forced target of ``n_steps`` tokens,
against ``n_steps x (forward + backward)`` of the same model on the same sequence, measured in the
same run (the cost of the naive way: one gradient call per step). A ratio under 1 means the batched
steps beat one call per step; integrated gradients runs ``n_steps`` interpolation points per step, so
its reference is the naive cost times its own ``n_steps``. Occlusion (feature_ablation) needs one forward
per source and prefix token whatever the batching (the steps share them: one batched forward per
ablated token), so it is dearer than one backward per step; its naive cost would be ``n_steps x
(S + P + 1)`` forwards.

Measured (``--quick``, 2 shared cores): the gradient methods take 0.3-0.5x of the naive per-step cost
(one batched backward for all steps), IG/LayerIG 0.05-0.10x of theirs, occlusion 2-3.5x of one
forward+backward per step.

    python benchmarks/generation_cost.py --quick      # 2 repeats, 6 target steps
    python benchmarks/generation_cost.py              # 5 repeats, 12 target steps

Models: a tiny Marian (2+2 layers, d=32) and a tiny GPT-2 (2 layers, d=32), built from configs, float32, CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from attn_plugins.generation import explain_generation  # noqa: E402

METHODS = [
    "attention",
    "rollout",
    "saliency",
    "input_x_gradient",
    ("integrated_gradients", {"n_steps": 16}),
    ("layer_integrated_gradients", {"n_steps": 16}),
    "deeplift",
    "feature_ablation",
]


def build(name: str) -> torch.nn.Module:
    import transformers as tf

    torch.manual_seed(0)
    if name == "marian":
        cfg = tf.MarianConfig(
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            vocab_size=99,
            max_position_embeddings=64,
            pad_token_id=98,
            eos_token_id=2,
            decoder_start_token_id=98,
        )
        return tf.MarianMTModel(cfg).eval()
    cfg = tf.GPT2Config(
        vocab_size=99, n_positions=64, n_embd=32, n_layer=2, n_head=4, pad_token_id=0, bos_token_id=1, eos_token_id=2
    )
    return tf.GPT2LMHeadModel(cfg).eval()


def forward_backward(model: torch.nn.Module, source: list[int], target: list[int]) -> None:
    """One forward and one backward to the input embeddings: the cost of one step done alone."""
    if model.config.is_encoder_decoder:
        embeds = model.get_encoder().get_input_embeddings()(torch.tensor([source])).detach().requires_grad_()
        dec = torch.tensor([[model.config.decoder_start_token_id] + target[:-1]])
        logits = model(inputs_embeds=embeds, decoder_input_ids=dec, use_cache=False).logits
    else:
        embeds = model.get_input_embeddings()(torch.tensor([source + target[:-1]])).detach().requires_grad_()
        logits = model(inputs_embeds=embeds, use_cache=False).logits
    torch.softmax(logits[0, -1], -1)[target[-1]].backward()


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def label(entry) -> str:
    return entry if isinstance(entry, str) else f"{entry[0]}(n_steps={entry[1]['n_steps']})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 repeats, 6 target steps")
    parser.add_argument("--steps", type=int, default=None, help="target steps (default 12, 6 with --quick)")
    args = parser.parse_args(argv)
    repeats = 2 if args.quick else 5
    n = args.steps or (6 if args.quick else 12)
    torch.set_num_threads(1)
    source = list(range(3, 15))
    target = [(7 * i) % 90 + 3 for i in range(n)]
    print(f"explain_generation: {n} target steps, {len(source)} source tokens, best of {repeats}, CPU, 1 thread\n")
    print("| model | method | ms | n_steps x (fwd + bwd) ms | ratio |")
    print("|---|---|---|---|---|")
    for name in ("marian", "gpt2"):
        model = build(name)
        naive = best_of(repeats, lambda m=model: [forward_backward(m, source, target[: t + 1]) for t in range(n)])
        for entry in METHODS:
            seconds = best_of(
                repeats,
                lambda m=model, e=entry: explain_generation(m, None, source, target, methods=[e], progress=False),
            )
            points = entry[1]["n_steps"] if isinstance(entry, tuple) else 1
            reference = naive * points
            print(
                f"| {name} | {label(entry)} | {seconds * 1e3:.1f} | {reference * 1e3:.1f}"
                f"{f' (x{points})' if points > 1 else ''} | {seconds / reference:.2f}x |"
            )
    print(
        "\nratio: explain_generation's time over the naive per-step cost of the same run (IG and LayerIG: "
        "times their interpolation points). Attention methods need no backward: one captured forward."
    )


if __name__ == "__main__":
    main()
