"""Per-head attention statistics over a corpus: ``attn-plugins corpus`` and :func:`run_corpus`.

    result = run_corpus("texts.jsonl", "stats/")                  # the bundled MiniLM, in process
    result = run_corpus("texts.jsonl", "stats/", engine="ray")    # the same job on Ray Data
    result.summary().to_pandas()

The texts (JSONL, one object per line with a ``text`` field and an optional ``id``) are split into
chunks; each chunk's rows, one per (text, layer, head) with the statistics of
:func:`attn_plugins.analysis.stats.head_stats`, are written atomically as a Parquet part, so a
killed run restarts where it stopped. ``summary.parquet`` holds per-head means over the texts and
``manifest.json`` what was computed. Engines come from :data:`ENGINES` (``local``, ``ray``);
third parties add theirs through the entry point group ``attn_plugins.corpus_engines``: a
factory ``factory(**options)`` that checks its options and returns an object whose
``run(job, chunks, sink, progress)`` calls ``sink(chunk, rows)`` for every chunk it finishes.

Needs pyarrow (``pip install "attn-plugins[corpus]"``); the Ray engine needs Ray Data
(``pip install "attn-plugins[ray]"``).
"""

from __future__ import annotations

from ..registry import Registry
from .errors import CorpusError

ENGINES = Registry("corpus engine", "attn_plugins.corpus_engines")


def _local(**options):
    """The in-process engine (one model, the chunks in order)."""
    from .local import LocalEngine

    return LocalEngine(**options)


def _ray(**options):
    """Ray Data batch inference with an actor pool (a local loopback instance, or ``address=``)."""
    from .ray_engine import RayEngine

    return RayEngine(**options)


ENGINES.register("local", _local)
ENGINES.register("ray", _ray)


def run_corpus(data, out, model=None, **options):
    """See :func:`attn_plugins.corpus.run.run_corpus`."""
    from .run import run_corpus as _run

    return _run(data, out, model, **options)


def read_rows(out, columns=None):
    """The rows of a corpus output directory (``pyarrow.Table``, file order)."""
    from .run import read_rows as _read

    return _read(out, columns)


def read_summary(out):
    """The per-head summary of a finished corpus output directory (``pyarrow.Table``)."""
    from .run import read_summary as _read

    return _read(out)


__all__ = ["ENGINES", "CorpusError", "read_rows", "read_summary", "run_corpus"]
