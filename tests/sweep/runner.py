"""Runs sweep checks in worker subprocesses, so one hang or crash costs one type, not the sweep.

A worker (``python -m tests.sweep.runner``) reads model types from stdin, one a line, and answers
``STAGE <type> <stage>`` before each step and ``RESULT <json>`` after each type on its original
stdout (the models' own prints go to stderr). The parent gives each type ``timeout`` seconds; a
worker that runs over or dies is killed and replaced, and the type is recorded with the stage it
was in (a hang inside the capture is ours, a hang in eager's forward is eager's).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

_STAGE_STATUS = {"capture": "FAIL-ours"}


class Worker:
    def __init__(self, root: str) -> None:
        env = dict(
            os.environ,
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            OMP_NUM_THREADS="1",
            TOKENIZERS_PARALLELISM="false",
            PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""),
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.sweep.runner"],
            cwd=root,
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.buffer = ""

    def run(self, model_type: str, timeout: float) -> dict:
        self.proc.stdin.write(model_type + "\n")
        self.proc.stdin.flush()
        stage, deadline = "start", time.time() + timeout
        while True:
            line = self._readline(deadline)
            if line is None:
                alive = self.proc.poll() is None
                self.close()
                status = _STAGE_STATUS.get(stage, "FAIL-eager")
                cause = f"timeout-in-{stage}" if alive else f"crash-in-{stage}"
                return {
                    "type": model_type,
                    "status": status,
                    "cause": cause,
                    "detail": f"no answer within {timeout:.0f}s" if alive else "worker process died",
                }
            if line.startswith("STAGE "):
                stage = line.split(" ", 2)[2]
            elif line.startswith("RESULT "):
                return json.loads(line[len("RESULT ") :])

    def _readline(self, deadline: float) -> str | None:
        fd = self.proc.stdout.fileno()
        while "\n" not in self.buffer:
            left = deadline - time.time()
            if left <= 0 or self.proc.poll() is not None and not select.select([fd], [], [], 0)[0]:
                return None
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(fd, 65536).decode(errors="replace")
                if not chunk:
                    return None
                self.buffer += chunk
        line, self.buffer = self.buffer.split("\n", 1)
        return line

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
        self.proc.wait()


def run_all(types: list[str], root: str, timeout: float = 120.0, jobs: int = 1, progress=None) -> list[dict]:
    """Every type through ``check`` in ``jobs`` workers; results in the order of ``types``."""
    pending = list(types)
    results: dict[str, dict] = {}
    workers: list[Worker | None] = [None] * jobs
    if jobs == 1:
        for model_type in pending:
            if workers[0] is None or workers[0].proc.poll() is not None:
                workers[0] = Worker(root)
            result = workers[0].run(model_type, timeout)
            if result["cause"] and result["cause"].startswith(("timeout", "crash")):
                workers[0] = None
            results[model_type] = result
            if progress:
                progress(result)
    else:
        import threading
        from concurrent.futures import ThreadPoolExecutor

        local = threading.local()
        started: list[Worker] = []

        def one(model_type: str) -> dict:
            worker = getattr(local, "worker", None)
            if worker is None or worker.proc.poll() is not None:
                worker = local.worker = Worker(root)
                started.append(worker)
            result = worker.run(model_type, timeout)
            if progress:
                progress(result)
            return result

        with ThreadPoolExecutor(jobs) as pool:
            for result in pool.map(one, pending):
                results[result["type"]] = result
        workers = started
    for worker in workers:
        if worker is not None:
            worker.close()
    return [results[t] for t in types]


def _serve() -> None:
    """Worker side: check each type named on stdin and answer on the original stdout."""
    import warnings

    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the models print goes to stderr
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(1)
    from transformers.utils import logging

    logging.set_verbosity_error()
    from .compare import check

    for line in sys.stdin:
        model_type = line.strip()
        if not model_type:
            continue

        def stage(name: str, model_type: str = model_type) -> None:
            out.write(f"STAGE {model_type} {name}\n")
            out.flush()

        try:
            result = check(model_type, stage)
        except BaseException as exc:  # noqa: BLE001 - report, keep serving
            result = {
                "type": model_type,
                "status": "FAIL-eager",
                "cause": "harness",
                "detail": f"{type(exc).__name__}: {exc}"[:300],
            }
        out.write("RESULT " + json.dumps(result, default=str) + "\n")
        out.flush()


if __name__ == "__main__":
    _serve()
