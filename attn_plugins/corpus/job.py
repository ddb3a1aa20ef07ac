"""The corpus job: what is computed (model, token limit, layers, heads, chunking) and the per-batch
computation ``texts -> rows`` that every engine runs.

A job splits the texts, in file order, into chunks of ``chunk_size``; a chunk is the unit that is
written (one Parquet part) and resumed. Within a chunk (or an engine's batch) the texts are sorted
by length and run through the model in batches of at most ``batch_size`` texts whose captured
attention stays under :data:`ATTENTION_BUDGET_BYTES`. Each text then gets
:func:`attn_plugins.analysis.stats.head_stats` of its own attention (the padding cut away), one row
per (layer, head).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from ..errors import InputError
from ..inputs import check_length
from .data import Text
from .errors import CorpusError, need_pyarrow

ATTENTION_BUDGET_BYTES = 1 << 30  # captured float32 attention of one model batch
STATS = ("entropy", "normalized_entropy", "uniform_entropy", "distance", "special", "previous", "next", "self")


def group_column(name: str) -> str:
    """Column name of a token group share: ``"[CLS]/BOS"`` -> ``"group_cls_bos"``."""
    return "group_" + re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def stat_columns() -> list[str]:
    from ..analysis.stats import DEFAULT_GROUPS

    return list(STATS) + [group_column(name) for name in DEFAULT_GROUPS]


def rows_schema():
    """The Parquet schema of the per-(text, layer, head) rows."""
    pa = need_pyarrow()
    fields = [
        pa.field("text_id", pa.string(), nullable=False),
        pa.field("line", pa.int64(), nullable=False),  # 0-based line in the data file
        pa.field("chunk", pa.int64(), nullable=False),
        pa.field("n_tokens", pa.int64(), nullable=False),  # tokens the model saw (special tokens included)
        pa.field("truncated", pa.bool_(), nullable=False),
        pa.field("stack", pa.string()),  # null for single-stack models
        pa.field("kind", pa.string(), nullable=False),
        pa.field("layer", pa.int64(), nullable=False),
        pa.field("head", pa.int64(), nullable=False),
    ]
    fields += [pa.field(name, pa.float64()) for name in stat_columns()]
    return pa.schema(fields)


@dataclass(frozen=True)
class CorpusJob:
    """What a corpus run computes. Everything but ``batch_size`` (and ``attention_bytes``, derived
    from the model) is part of the job's identity: a resumed run must match it (``batch_size`` and
    the engine only change how fast it runs)."""

    model_dir: str
    max_tokens: int
    limit: int  # the token limit applied: min(max_tokens, the model's max_position_embeddings)
    truncate: bool
    layers: tuple[int, ...] | None  # non-negative, sorted (None: all)
    heads: tuple[int, ...] | None
    chunk_size: int
    batch_size: int
    text_field: str = "text"
    attention_bytes: int = 4  # captured float32 attention per squared token (4 x layers x heads)

    def identity(self) -> dict:
        out = asdict(self)
        out.pop("batch_size")
        out.pop("attention_bytes")
        out["layers"] = list(self.layers) if self.layers is not None else None
        out["heads"] = list(self.heads) if self.heads is not None else None
        out["columns"] = stat_columns()
        return out

    def plan(self, lengths: Sequence[int]) -> list[list[int]]:
        """The model batches (lists of indices into ``lengths``) for texts of these token lengths."""
        return plan_batches(lengths, self.batch_size, self.attention_bytes)

    # What an engine calls (any job with these three methods runs on every engine: the faithfulness
    # command's job is the other one): ``state = job.load(device)`` once per process or actor, then
    # ``job.compute(state, columns, progress)`` per batch of :func:`chunk_columns`-like columns,
    # returning a ``pyarrow.Table`` with at least the ``chunk`` and ``line`` columns.
    def load(self, device=None):
        """The model and its padding tokenizer (see :func:`load_for_job`)."""
        return load_for_job(self, device)

    def compute(self, state, batch: dict, progress: Callable[[int], None] | None = None):
        """The statistics rows of ``batch`` (see :func:`compute_rows`)."""
        model, tokenizer = state
        return compute_rows(model, tokenizer, self, batch, progress)


@dataclass
class Chunk:
    """``texts`` (in file order) with their token counts (after truncation) and whether they were cut."""

    index: int
    texts: list[Text]
    n_tokens: list[int]
    truncated: list[bool]

    def __len__(self) -> int:
        return len(self.texts)


def chunk_columns(chunk: Chunk) -> dict[str, list]:
    """The columns :func:`compute_rows` reads, for the texts of ``chunk``."""
    return {
        "chunk": [chunk.index] * len(chunk),
        "line": [t.line for t in chunk.texts],
        "text_id": [t.text_id for t in chunk.texts],
        "text": [t.text for t in chunk.texts],
        "truncated": list(chunk.truncated),
    }


def split_chunks(
    texts: Sequence[Text], n_tokens: Sequence[int], truncated: Sequence[bool], chunk_size: int
) -> list[Chunk]:
    """Consecutive chunks of ``chunk_size`` texts: the same data and size always give the same chunks."""
    return [
        Chunk(
            i // chunk_size,
            list(texts[i : i + chunk_size]),
            list(n_tokens[i : i + chunk_size]),
            list(truncated[i : i + chunk_size]),
        )
        for i in range(0, len(texts), chunk_size)
    ]


# ---------------------------------------------------------------------------------------------
# model, tokenizer and the token limit
# ---------------------------------------------------------------------------------------------
def config_sizes(config) -> tuple[int, int]:
    """(number of layers, number of heads) from a transformers config (0 when it does not say)."""
    layers = next(
        (
            v
            for a in ("num_hidden_layers", "num_layers", "n_layer", "n_layers")
            if isinstance(v := getattr(config, a, None), int)
        ),
        0,
    )
    heads = next(
        (
            v
            for a in ("num_attention_heads", "num_heads", "n_head", "n_heads")
            if isinstance(v := getattr(config, a, None), int)
        ),
        0,
    )
    return layers, heads


def attention_bytes(config, layers, heads) -> int:
    """Bytes of captured float32 attention per squared token for this model and selection."""
    n_layers, n_heads = config_sizes(config)
    return 4 * max(1, len(layers) if layers else n_layers) * max(1, len(heads) if heads else n_heads)


def check_selection(config, layers, heads) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """Layer and head selections checked against the model and normalised (negative layers counted from the end)."""
    n_layers, n_heads = config_sizes(config)
    if layers is not None:
        if not layers:
            raise CorpusError("--layers selects nothing; leave it out for all layers")
        if n_layers:
            bad = [v for v in layers if not -n_layers <= v < n_layers]
            if bad:
                raise CorpusError(
                    f"layer {bad[0]} does not exist: the model has {n_layers} layers "
                    f"(valid: 0..{n_layers - 1} or negative from the end)"
                )
            layers = [v % n_layers for v in layers]
        layers = tuple(sorted(set(layers)))
    if heads is not None:
        if not heads:
            raise CorpusError("--heads selects nothing; leave it out for all heads")
        bad = [v for v in heads if v < 0 or (n_heads and v >= n_heads)]
        if bad:
            raise CorpusError(
                f"head {bad[0]} does not exist: the model has {n_heads} heads per layer (valid: 0..{n_heads - 1})"
            )
        heads = tuple(sorted(set(heads)))
    return layers, heads


def token_lengths(
    tokenizer, texts: Sequence[str], limit: int, truncate: bool, block: int = 1024
) -> tuple[list[int], list[int]]:
    """(tokens each text gives the model after truncation, tokens each text has in full)."""
    full: list[int] = []
    for start in range(0, len(texts), block):
        ids = tokenizer(list(texts[start : start + block]), truncation=False, verbose=False)["input_ids"]
        full.extend(len(row) for row in ids)
    used = [min(n, limit) for n in full] if truncate else list(full)
    return used, full


def load_for_job(job: CorpusJob, device=None):
    """The job's model (eval mode, on ``device``) and a tokenizer that pads."""
    from ..inputs import ensure_pad_token
    from ..loading import load_model_dir

    try:
        model, tokenizer = load_model_dir(job.model_dir)
        tokenizer = ensure_pad_token(tokenizer)
    except InputError as exc:
        raise CorpusError(str(exc)) from None
    if device is not None:
        model = model.to(device)
    return model, tokenizer


# ---------------------------------------------------------------------------------------------
# the computation
# ---------------------------------------------------------------------------------------------
def plan_batches(
    lengths: Sequence[int], batch_size: int, per_token_square: int, budget: int = ATTENTION_BUDGET_BYTES
) -> list[list[int]]:
    """Indices grouped into model batches: sorted by length (less padding), at most ``batch_size``
    texts, and at most ``budget`` bytes of captured attention (``per_token_square * len**2`` each)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = lengths[i]  # sorted: the newest text is the longest of the batch
        if current and (len(current) >= batch_size or (len(current) + 1) * per_token_square * longest**2 > budget):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def compute_rows(model, tokenizer, job: CorpusJob, batch: dict, progress: Callable[[int], None] | None = None):
    """The statistics rows (a ``pyarrow.Table`` of :func:`rows_schema`) of the texts in ``batch``.

    ``batch`` has the columns ``chunk``, ``line``, ``text_id``, ``text``, ``truncated`` (lists).
    ``progress(n)`` is called after every model batch with the number of texts it held.
    """
    pa = need_pyarrow()
    texts = list(batch["text"])
    lengths, _ = token_lengths(tokenizer, texts, job.limit, job.truncate)
    columns: dict[str, list] = {name: [] for name in rows_schema().names}
    per_text: list[dict | None] = [None] * len(texts)
    for group in job.plan(lengths):
        encoded = tokenizer(
            [texts[i] for i in group],
            return_tensors="pt",
            padding=True,
            truncation=job.truncate,
            max_length=job.limit if job.truncate else None,
        )
        check_length(model, encoded, job.limit)
        encoded = encoded.to(model.device)
        for pos, stats in zip(group, _batch_stats(model, tokenizer, job, encoded), strict=True):
            per_text[pos] = stats
        if progress is not None:
            progress(len(group))
    for pos, stats in enumerate(per_text):
        n = len(stats["layer"])
        columns["text_id"] += [str(batch["text_id"][pos])] * n
        columns["line"] += [int(batch["line"][pos])] * n
        columns["chunk"] += [int(batch["chunk"][pos])] * n
        columns["truncated"] += [bool(batch["truncated"][pos])] * n
        for name, values in stats.items():
            columns[name] += values
    return pa.Table.from_pydict(columns, schema=rows_schema())


def _cut(weights, item: int, keep):
    """Batch item ``item`` of ``[batch, heads, q, k]`` weights, on the real positions ``keep`` only."""
    n = int(keep.numel())
    if n and int(keep[-1] - keep[0]) + 1 == n:  # contiguous (right or left padding): a slice
        start = int(keep[0])
        return weights[item : item + 1, :, start : start + n, start : start + n]
    return weights[item : item + 1][:, :, keep][:, :, :, keep]


def _batch_stats(model, tokenizer, job: CorpusJob, encoded) -> list[dict]:
    """Per text of one model batch: the row columns (``n_tokens``, ``stack``, ..., statistics) as lists."""
    import torch

    from ..analysis.stats import head_stats
    from ..capturing import capture
    from ..record import AttentionRecord, LayerAttention

    with (
        torch.no_grad(),
        capture(
            model,
            tokenizer=tokenizer,
            layers=list(job.layers) if job.layers else None,
            heads=list(job.heads) if job.heads else None,
            device="cpu",
        ) as cap,
    ):
        model(**encoded)
    record = cap.record
    layers = [layer for layer in record.layers if layer.kind == "self"]
    if not layers:
        raise CorpusError(f"{type(model).__name__} gave no self-attention to capture")
    mask = encoded["attention_mask"].to("cpu").bool()
    out = []
    for item in range(mask.shape[0]):
        keep = mask[item].nonzero().squeeze(1)
        n = int(keep.numel())
        tokens = [record.tokens[item][j] for j in keep.tolist()] if record.tokens else None
        single = AttentionRecord(
            layers=[
                LayerAttention(
                    layer.name, layer.stack, layer.kind, layer.index, _cut(layer.weights, item, keep), heads=layer.heads
                )
                for layer in layers
            ],
            tokens=[tokens] if tokens is not None else None,
            inputs={"attention_mask": torch.ones(1, n, dtype=torch.long)},
        )
        stats = head_stats(single)
        values = {name: getattr(stats, name) for name in STATS}
        values.update({group_column(name): t for name, t in stats.groups.items()})
        row: dict[str, list] = {"n_tokens": [], "stack": [], "kind": [], "layer": [], "head": []}
        row.update({name: [] for name in stat_columns()})
        for li, layer in enumerate(layers):
            heads = stats.heads[li]
            row["n_tokens"] += [n] * len(heads)
            row["stack"] += [layer.stack] * len(heads)
            row["kind"] += [layer.kind] * len(heads)
            row["layer"] += [layer.index] * len(heads)
            row["head"] += list(heads)
            for name in stat_columns():
                values_li = values.get(name)
                row[name] += (
                    values_li[li, : len(heads)].tolist() if values_li is not None else [float("nan")] * len(heads)
                )
        out.append(row)
    return out
