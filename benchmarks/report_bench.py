"""The report against the capture it is built on, as a user runs both (process start and model load
included).

    python benchmarks/report_bench.py            # 3 interleaved runs of each command
    python benchmarks/report_bench.py --quick    # 1 run of each (a smoke test)

Runs ``attn-plugins capture`` on the report's four default sentences and ``attn-plugins report``
(which uses them by default) one after the other, ``--runs`` times, on the bundled MiniLM, offline;
the medians of the interleaved runs make the ratio (a noisy machine slows both alike). Without
``--quick`` it also times ``report --figures png,svg`` (the print versions written as well).
The goal: report <= 2x capture.

Beside the wall-clock seconds it gives the CPU seconds of each command (its process and the children
that render the report's figures) and the load average, since on a shared machine the wall clock
mostly measures the other users: the report renders its figures in parallel with its sections, so
its wall-clock ratio is below its CPU ratio only when a second core is free.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "attn_plugins.cli", *args]


def children_cpu() -> float:
    """CPU seconds (user + system) of every finished child of this process and their children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds) of one command."""
    cpu = children_cpu()
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, children_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one run of each command, no --figures run")
    parser.add_argument("--runs", type=int, help="runs of each command (median reported; default 3, --quick 1)")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 3)

    from attn_plugins.report.inputs import default_texts

    texts = default_texts()
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    )
    cases = {
        "capture": lambda d: command(
            "capture", *[a for t in texts for a in ("--text", t)], "--out", os.path.join(d, "record.safetensors")
        ),
        "report": lambda d: command("report", "-q", "--out", os.path.join(d, "report")),
    }
    if not args.quick:
        cases["report --figures png,svg"] = lambda d: command(
            "report", "-q", "--figures", "png,svg", "--out", os.path.join(d, "report_print")
        )
    times: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="attn-report-bench-") as work:
        for run in range(runs):
            for name, make in cases.items():
                out = os.path.join(work, f"{run}")
                os.makedirs(out, exist_ok=True)
                wall, used = timed(make(out), env)
                times[name].append(wall)
                cpu[name].append(used)
    load_after = os.getloadavg()
    base, base_cpu = statistics.median(times["capture"]), statistics.median(cpu["capture"])
    print()
    print(
        f"{len(texts)} sentences, bundled MiniLM; median of {runs} interleaved run(s), process start and model "
        f"load included; {os.cpu_count()} CPUs, load average (1 min) {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after"
    )
    print("| command | seconds (median) | runs | vs capture | CPU seconds (median) | CPU vs capture |")
    print("|---|---:|---|---:|---:|---:|")
    for name, values in times.items():
        median, median_cpu = statistics.median(values), statistics.median(cpu[name])
        print(
            f"| attn-plugins {name} | {median:.2f} | {' '.join(f'{v:.2f}' for v in values)} | "
            f"{median / base:.2f}x | {median_cpu:.2f} | {median_cpu / base_cpu:.2f}x |"
        )


if __name__ == "__main__":
    main()
