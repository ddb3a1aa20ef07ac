"""``run_corpus``: read the texts, check the output directory, compute the missing chunks with an
engine, rebuild the summary, and say what was done."""

from __future__ import annotations

import datetime
import os
import sys
import time
from dataclasses import dataclass, field

from ..errors import InputError
from ..inputs import MAX_TOKENS_DEFAULT, ensure_pad_token, token_limit
from .data import file_fingerprint, read_texts
from .errors import CorpusError, need_pyarrow
from .job import (
    CorpusJob,
    attention_bytes,
    check_selection,
    split_chunks,
    stat_columns,
    token_lengths,
)
from .store import FORMAT, FORMAT_VERSION, CorpusStore, digest

SHOWN_LINES = 10


@dataclass
class CorpusResult:
    """What a run did; ``rows()`` and ``summary()`` read its tables back (``pyarrow.Table``)."""

    out_dir: str
    summary_path: str
    manifest_path: str
    parts_dir: str
    engine: str
    num_texts: int
    num_chunks: int
    chunks_computed: int
    chunks_reused: int
    texts_computed: int
    seconds: float
    truncated_texts: int = 0
    details: dict = field(default_factory=dict)

    @property
    def texts_per_second(self) -> float | None:
        return self.texts_computed / self.seconds if self.texts_computed and self.seconds > 0 else None

    def rows(self, columns: list[str] | None = None):
        return CorpusStore(self.out_dir).read_rows(columns)

    def summary(self):
        import pyarrow.parquet as pq

        return pq.read_table(self.summary_path)

    def message(self) -> str:
        lines = [
            (
                f"{self.num_texts} texts in {self.num_chunks} chunks: {self.chunks_computed} computed, "
                f"{self.chunks_reused} reused"
            )
        ]
        if self.texts_computed:
            rate = self.texts_per_second
            lines.append(
                f"computed {self.texts_computed} texts in {self.seconds:.1f} s with the {self.engine} engine "
                f"({rate:.1f} texts/s, start-up included)"
            )
        if self.truncated_texts:
            lines.append(f"{self.truncated_texts} texts were truncated to the token limit")
        lines.append(f"rows: {self.parts_dir}{os.sep}part-*.parquet")
        lines.append(f"summary: {self.summary_path}")
        return "\n".join(lines)


def _model_fingerprint(path: str) -> dict:
    files = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isfile(full):
            st = os.stat(full)
            files[name] = [st.st_size, st.st_mtime_ns]
    return {"path": path, "files": files}


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CorpusError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _model_config(model) -> tuple:
    """(real path, config, padding tokenizer) of a local model directory (default: the bundled MiniLM)."""
    from ..loading import bundled_model_path, load_config_dir

    try:
        model_dir = os.path.realpath(os.fspath(model) if model is not None else bundled_model_path())
        config, tokenizer = load_config_dir(model_dir)
        tokenizer = ensure_pad_token(tokenizer)
    except InputError as exc:
        raise CorpusError(str(exc)) from None
    if getattr(config, "is_encoder_decoder", False):
        raise CorpusError(
            f"{model_dir!r} is an encoder-decoder model; the corpus statistics need an encoder-only "
            "or decoder-only model (one input sequence)"
        )
    return model_dir, config, tokenizer


def _check_lengths(tokenizer, texts, limit: int, truncate: bool) -> tuple[list[int], list[bool]]:
    """(tokens each text gives the model, whether it is cut); over-long texts are refused unless ``truncate``."""
    used, full = token_lengths(tokenizer, [t.text for t in texts], limit, truncate)
    over = [(t.line, n) for t, n in zip(texts, full, strict=True) if n > limit]
    if over and not truncate:
        shown = ", ".join(f"line {line + 1} ({n} tokens)" for line, n in over[:SHOWN_LINES])
        more = f" and {len(over) - SHOWN_LINES} more" if len(over) > SHOWN_LINES else ""
        raise CorpusError(
            f"{len(over)} text(s) are over the limit of {limit} tokens for this model: {shown}{more}; "
            "shorten them, raise --max-tokens (up to the model's max_position_embeddings) or pass "
            "--truncate to cut them to the limit"
        )
    return used, [n > limit for n in full]


def run_corpus(
    data,
    out,
    model=None,
    *,
    engine: str = "local",
    batch_size: int = 16,
    chunk_size: int = 256,
    max_tokens: int = MAX_TOKENS_DEFAULT,
    truncate: bool = False,
    layers=None,
    heads=None,
    text_field: str = "text",
    overwrite: bool = False,
    progress: bool | None = None,
    **engine_options,
) -> CorpusResult:
    """Per-head statistics of every text of the JSONL file ``data``, written under ``out``.

    ``model``: a local model directory (default: the bundled MiniLM). ``engine``: ``"local"`` (this
    process) or ``"ray"`` (Ray Data; ``workers=``, ``address=``, ``runtime_env=``). A rerun with
    the same arguments resumes: chunks already written are reused. See :mod:`attn_plugins.corpus`.
    """
    from .. import __version__
    from ..registry import UnknownNameError
    from . import ENGINES

    try:
        factory = ENGINES.get(engine)
    except UnknownNameError as exc:
        raise CorpusError(str(exc)) from None
    runner = factory(**engine_options)  # checks its options before anything is read or written
    _check_int("batch_size", batch_size)
    _check_int("chunk_size", chunk_size)
    _check_int("max_tokens", max_tokens)
    need_pyarrow()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data = os.path.abspath(os.fspath(data))
    texts = read_texts(data, text_field)

    model_dir, config, tokenizer = _model_config(model)
    layers, heads = check_selection(config, layers, heads)
    limit = token_limit(config, max_tokens)
    used, truncated = _check_lengths(tokenizer, texts, limit, truncate)

    job = CorpusJob(
        model_dir=model_dir,
        max_tokens=max_tokens,
        limit=limit,
        truncate=bool(truncate),
        layers=layers,
        heads=heads,
        chunk_size=chunk_size,
        batch_size=batch_size,
        text_field=text_field,
        attention_bytes=attention_bytes(config, layers, heads),
    )
    identity = {
        "format_version": FORMAT_VERSION,
        "attn_plugins_version": __version__,
        "job": job.identity(),
        "model": _model_fingerprint(model_dir),
        "data": file_fingerprint(data),
        "num_texts": len(texts),
    }
    job_digest = digest(identity)
    store = CorpusStore(out)
    previous = store.open(identity, overwrite)
    chunks = split_chunks(texts, used, truncated, chunk_size)
    done = store.finished_chunks({c.index: len(c) for c in chunks}, job_digest)
    pending = [c for c in chunks if c.index not in done]

    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    run_entry = {
        "started": now,
        "engine": engine,
        "batch_size": batch_size,
        "options": {k: v for k, v in engine_options.items() if v is not None and k != "runtime_env"},
        "chunks_reused": len(done),
        "chunks_computed": len(pending),
        "texts_computed": sum(len(c) for c in pending),
    }
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "identity": identity,
        "job_digest": job_digest,
        "attn_plugins_version": __version__,
        "model_path": model_dir,
        "data": {"path": data, **identity["data"], "mtime": os.path.getmtime(data)},
        "num_texts": len(texts),
        "num_chunks": len(chunks),
        "chunk_size": chunk_size,
        "token_limit": limit,
        "truncate": bool(truncate),
        "truncated_texts": sum(truncated),
        "statistics": stat_columns(),
        "created": (previous or {}).get("created", now),
        "status": "running",
        "runs": list((previous or {}).get("runs", [])) + [run_entry],
    }
    store.write_manifest(manifest)

    from tqdm import tqdm

    bar = tqdm(
        total=run_entry["texts_computed"],
        desc=f"corpus ({engine})",
        unit="text",
        file=sys.stderr,
        disable=True if not pending else (None if progress is None else not progress),  # None: a TTY only
        dynamic_ncols=True,
    )

    def sink(chunk, table) -> None:
        store.write_part(chunk.index, table, job_digest, len(chunk))

    start = time.perf_counter()
    try:
        details = runner.run(job, pending, sink, bar.update) if pending else {}
    finally:
        bar.close()
    seconds = time.perf_counter() - start

    store.build_summary()
    counted = sum(len(c) for c in chunks if os.path.exists(store.part_path(c.index)))
    if counted != len(texts) or len(store.part_paths()) != len(chunks):
        raise CorpusError(f"the parts in {store.parts_dir!r} hold {counted} of {len(texts)} texts; rerun to finish")
    result = CorpusResult(
        out_dir=store.out_dir,
        summary_path=store.summary_path,
        manifest_path=store.manifest_path,
        parts_dir=store.parts_dir,
        engine=engine,
        num_texts=len(texts),
        num_chunks=len(chunks),
        chunks_computed=len(pending),
        chunks_reused=len(done),
        texts_computed=run_entry["texts_computed"],
        seconds=seconds,
        truncated_texts=sum(truncated),
        details=details or {},
    )
    run_entry.update(
        {
            "seconds": round(seconds, 3),
            "texts_per_second": result.texts_per_second,
            "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "details": {k: v for k, v in (details or {}).items()},
        }
    )
    manifest["status"] = "complete"
    store.write_manifest(manifest)
    return result


def read_rows(out, columns: list[str] | None = None):
    """The rows of a corpus output directory as one ``pyarrow.Table`` (file order)."""
    return CorpusStore(out).read_rows(columns)


def read_summary(out):
    """The summary table of a finished corpus output directory (``pyarrow.Table``)."""
    need_pyarrow()
    import pyarrow.parquet as pq

    store = CorpusStore(out)
    if not os.path.exists(store.summary_path):
        raise CorpusError(f"{store.out_dir!r} has no summary yet: the run did not finish (rerun it to resume)")
    return pq.read_table(store.summary_path)
