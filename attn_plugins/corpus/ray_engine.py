"""The Ray Data engine: the same job as batch inference on a Ray cluster.

The pending texts become a Ray Data dataset; ``map_batches`` runs :class:`RowsWorker` in an actor
pool (each actor loads the model once; one GPU per actor when the cluster has GPUs) and the rows
stream back to the driver, which writes a chunk's part as soon as all its texts are in, with the
same writer as the local engine (so a killed Ray run resumes like a local one).

Without ``address`` a private Ray instance is started on this machine, bound to loopback
(127.0.0.1), and shut down at the end. With ``address`` (or when Ray is already initialised in
this process) the existing cluster is used; its nodes must be able to import attn-plugins and read
the model directory at the same path (or pass ``runtime_env=``).
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict

from .errors import CorpusError, need_pyarrow

# The default pool on CPUs: one single-threaded actor per CPU, at most MAX_CPU_WORKERS (then the CPUs
# are shared out as threads). The statistics after the forward pass are many small tensor operations
# that one thread runs, so processes scale better than threads (benchmarks/corpus_bench.py).
MAX_CPU_WORKERS = 8


class RowsWorker:
    """A Ray Data actor: loads the job's model once (``job.load``), then turns batches of texts into
    rows (``job.compute``): the statistics of a :class:`~attn_plugins.corpus.job.CorpusJob`, or
    whatever another job with those two methods computes (the faithfulness command's).

    A model that cannot be loaded is reported by the first batch (Ray keeps a batch's exception,
    while an actor that dies in ``__init__`` comes back as a bare "actor died")."""

    def __init__(self, job, threads: int | None = None, use_gpu: bool = False) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.job = job
        self.error = None
        try:
            self.state = job.load("cuda" if use_gpu and torch.cuda.is_available() else None)
        except CorpusError as exc:
            self.error = str(exc)

    def __call__(self, batch):
        if self.error is not None:
            raise CorpusError(self.error)
        return self.job.compute(self.state, batch.to_pydict())


def _need_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise CorpusError('--engine ray needs Ray Data: pip install "attn-plugins[ray]"') from None
    return ray


def _start_local(ray, runtime_env: dict | None) -> None:
    """A private Ray instance on loopback with this machine's CPUs; workers import this very attn_plugins."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    env = dict(runtime_env or {})
    env["env_vars"] = {"PYTHONPATH": path, **_worker_env(), **env.get("env_vars", {})}
    ray.init(
        address="local",
        num_cpus=os.cpu_count() or 1,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        runtime_env=env,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )


def _worker_env() -> dict:
    return {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def pool_size(ray, workers: int | None) -> tuple[int, dict, int | None]:
    """(actors, resources per actor, torch threads per actor) for the cluster Ray is connected to."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
    node_cpus = max([int(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")] or [cpus])
    if gpus:
        size = workers or gpus
        return size, {"num_gpus": 1}, None
    size = workers or min(cpus, MAX_CPU_WORKERS)
    per = max(1, min(node_cpus, cpus // size))
    return size, {"num_cpus": per}, per


def _connect(ray, address: str | None, runtime_env: dict | None) -> bool:
    """Make sure Ray is initialised; True when this call started (and so must shut down) the connection."""
    if ray.is_initialized():
        if address:
            raise CorpusError("Ray is already initialised in this process; leave out --address to use it")
        return False
    if not address:
        _start_local(ray, runtime_env)
        return True
    env = dict(runtime_env or {})
    env["env_vars"] = {**_worker_env(), **env.get("env_vars", {})}
    try:
        ray.init(address=address, runtime_env=env, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise CorpusError(f"cannot connect to the Ray cluster at {address!r}: {exc}") from None
    return True


def _input_blocks(job, chunks) -> list:
    """One Arrow block per model batch, planned exactly as the local engine plans them (so both
    engines run the same batches and give the same numbers)."""
    pa = need_pyarrow()
    blocks = []
    for chunk in chunks:
        for group in job.plan(chunk.n_tokens):
            blocks.append(
                pa.table(
                    {
                        "chunk": [chunk.index] * len(group),
                        "line": [chunk.texts[i].line for i in group],
                        "text_id": [chunk.texts[i].text_id for i in group],
                        "text": [chunk.texts[i].text for i in group],
                        "truncated": [chunk.truncated[i] for i in group],
                    }
                )
            )
    return blocks


class RayEngine:
    """Computes the chunks on Ray Data (see the module docstring)."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None, runtime_env: dict | None = None) -> None:
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise CorpusError(f"--workers must be an integer >= 1, got {workers!r}")
        self.workers, self.address, self.runtime_env = workers, address, runtime_env
        _need_ray()

    def run(self, job, chunks, sink, progress) -> dict:
        """``sink(chunk, table)`` gets each chunk's rows once all its texts are in; ``progress(n)`` per batch."""
        pa = need_pyarrow()
        import pyarrow.compute as pc

        ray = _need_ray()
        started = _connect(ray, self.address, self.runtime_env)
        data_logger, bars_logger = logging.getLogger("ray.data"), logging.getLogger("ray.data._internal.progress")
        levels = data_logger.level, bars_logger.level
        context = ray.data.DataContext.get_current()
        bars = context.enable_progress_bars
        try:
            data_logger.setLevel(logging.WARNING)  # Ray Data's INFO lines would bury the progress bar
            bars_logger.setLevel(logging.ERROR)  # "progress bars disabled": the job shows its own
            context.enable_progress_bars = False
            size, resources, threads = pool_size(ray, self.workers)
            dataset = ray.data.from_arrow(_input_blocks(job, chunks)).map_batches(
                RowsWorker,
                fn_constructor_kwargs={"job": job, "threads": threads, "use_gpu": "num_gpus" in resources},
                batch_size=None,
                batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=size),
                **resources,
            )
            by_index = {chunk.index: chunk for chunk in chunks}
            pieces, seen = defaultdict(list), defaultdict(set)
            try:
                for table in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
                    for index in pc.unique(table["chunk"]).to_pylist():
                        piece = table.filter(pc.equal(table["chunk"], index))
                        pieces[index].append(piece)
                        lines = set(piece["line"].to_pylist())
                        progress(len(lines - seen[index]))
                        seen[index] |= lines
                        if len(seen[index]) == len(by_index[index]):
                            sink(by_index.pop(index), pa.concat_tables(pieces.pop(index)))
            except Exception as exc:  # a worker's CorpusError comes back wrapped by Ray
                message = _corpus_message(exc)
                if message is not None:
                    raise CorpusError(message) from None
                raise
            if by_index:
                raise CorpusError(f"Ray returned no rows for {len(by_index)} chunk(s) (first: {min(by_index)})")
            return {
                "workers": size,
                "resources_per_worker": resources,
                "threads_per_worker": threads,
                "ray_started_here": started,
            }
        finally:
            context.enable_progress_bars = bars
            data_logger.setLevel(levels[0])
            bars_logger.setLevel(levels[1])
            if started:
                ray.shutdown()


def _corpus_cause(exc: BaseException) -> CorpusError | None:
    """The CorpusError a worker raised, from the error Ray hands back (the worker's exception is
    kept as ``.cause`` by Ray Core; Ray Data wraps it again and keeps only its text)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)
        if type(cause) is CorpusError:
            return cause
        exc = exc.__cause__ or exc.__context__ or (cause if isinstance(cause, BaseException) else None)
    return None


def _corpus_message(exc: BaseException) -> str | None:
    cause = _corpus_cause(exc)
    if cause is not None:
        return str(cause)
    marker = f"{CorpusError.__module__}.{CorpusError.__name__}: "
    lines = [line for line in str(exc).splitlines() if line.startswith(marker)]
    return lines[-1][len(marker) :] if lines else None
