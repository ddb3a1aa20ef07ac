"""``benchmarks/generation_cost.py --quick`` runs as a user runs it and prints its table (no speed asserted)."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_generation_cost_prints_a_ratio_per_model_and_method():
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)  # the script finds the package beside it
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "generation_cost.py"), "--quick", "--steps", "3"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [
        line.strip("|").split("|")
        for line in done.stdout.splitlines()
        if line.startswith("| marian") or line.startswith("| gpt2")
    ]
    assert len(rows) == 16
    for row in rows:
        ms, ratio = float(row[2]), float(row[4].strip().rstrip("x"))
        assert ms > 0 and ratio > 0
