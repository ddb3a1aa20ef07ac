"""The in-process engine: one model, the chunks one after the other (the default engine)."""

from __future__ import annotations

from .errors import CorpusError
from .job import chunk_columns


class LocalEngine:
    """Computes the chunks in this process (on the GPU when torch sees one)."""

    name = "local"

    def __init__(self, **options) -> None:
        given = [name for name, value in options.items() if value is not None]
        if given:
            raise CorpusError(f"{', '.join('--' + g.replace('_', '-') for g in given)} only apply to --engine ray")

    def run(self, job, chunks, sink, progress) -> dict:
        """``sink(chunk, table)`` gets each chunk's rows when it is done; ``progress(n)`` after each batch.
        ``job`` is a :class:`~attn_plugins.corpus.job.CorpusJob` or any job with its ``load``/``compute``."""
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        state = job.load(device if device != "cpu" else None)
        for chunk in chunks:
            sink(chunk, job.compute(state, chunk_columns(chunk), progress))
        return {"device": device, "threads": torch.get_num_threads()}
