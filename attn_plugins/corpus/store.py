"""The output directory of a corpus job::

    out/manifest.json               what was computed (job, model, data, version) and the runs so far
    out/parts/part-00012.parquet    the rows of chunk 12, one row per (text, layer, head)
    out/summary.parquet             per (layer, head): means over the texts, rebuilt from the parts

A part is written to a temporary name in ``parts/`` and renamed into place (``os.replace``), so a
part that exists is complete; a rerun computes only the chunks whose part is missing. The
summary is always rebuilt from the parts, one part per chunk, so no text is counted twice.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import time
import warnings

from ..atomic import atomic_path
from .errors import CorpusError, need_pyarrow
from .job import stat_columns

FORMAT = "attn-plugins-corpus"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PARTS = "parts"
SUMMARY = "summary.parquet"
PART_META = b"attn_plugins_corpus"
SUMMARY_KEYS = ("stack", "kind", "layer", "head")


def digest(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _flatten(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: obj}


class CorpusStore:
    """Reads and writes one output directory (see the module docstring)."""

    def __init__(self, out_dir) -> None:
        self.out_dir = os.path.abspath(os.fspath(out_dir))
        self.parts_dir = os.path.join(self.out_dir, PARTS)
        self.manifest_path = os.path.join(self.out_dir, MANIFEST)
        self.summary_path = os.path.join(self.out_dir, SUMMARY)

    def part_path(self, chunk: int) -> str:
        return os.path.join(self.parts_dir, f"part-{chunk:05d}.parquet")

    def part_paths(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.parts_dir, "part-*.parquet")))

    # ----- opening: the same job resumes, another one is refused -----------------------------------
    def read_manifest(self) -> dict | None:
        if not os.path.exists(self.manifest_path):
            return None
        try:
            with open(self.manifest_path, encoding="utf-8") as handle:
                manifest = json.load(handle)
        except (OSError, ValueError) as exc:
            raise CorpusError(
                f"{self.manifest_path!r} is not readable ({exc}); remove it or choose another --out"
            ) from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise CorpusError(f"{self.manifest_path!r} is not an attn-plugins corpus manifest; choose another --out")
        return manifest

    def open(self, identity: dict, overwrite: bool) -> dict | None:
        """Check that the directory is new or holds this same job; return the previous manifest (or None)."""
        if os.path.exists(self.out_dir) and not os.path.isdir(self.out_dir):
            raise CorpusError(f"--out {self.out_dir!r} is a file, not a directory")
        manifest = self.read_manifest()  # a foreign manifest.json is never removed, not even by overwrite
        if overwrite:
            self.clear()
            manifest = None
        if manifest is None:
            if self.part_paths() or os.path.exists(self.summary_path):
                raise CorpusError(
                    f"{self.out_dir!r} holds corpus results but no {MANIFEST}; "
                    "pass --overwrite to replace them or choose another --out"
                )
        elif manifest.get("identity") != identity:
            if self.part_paths():
                raise CorpusError(self._mismatch(manifest.get("identity") or {}, identity))
            manifest = None  # a run that wrote nothing (it failed early): nothing to keep
        os.makedirs(self.parts_dir, exist_ok=True)
        for stale in glob.glob(os.path.join(self.parts_dir, ".part-*.tmp")):  # left by a killed run
            os.remove(stale)
        return manifest

    def _mismatch(self, old: dict, new: dict) -> str:
        before, after = _flatten(old), _flatten(new)
        changed = [key for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
        shown = "; ".join(f"{key}: was {before.get(key)!r}, now {after.get(key)!r}" for key in changed[:6])
        more = f" (and {len(changed) - 6} more)" if len(changed) > 6 else ""
        return (
            f"{self.out_dir!r} holds a corpus run with different parameters ({shown}{more}); rerun with the "
            "same parameters to resume it, pass --overwrite to discard it, or choose another --out"
        )

    def clear(self) -> None:
        """Remove this job's files (only those: manifest, parts, summary)."""
        for path in [
            self.manifest_path,
            self.summary_path,
            *self.part_paths(),
            *glob.glob(os.path.join(self.parts_dir, ".part-*.tmp")),
        ]:
            if os.path.exists(path):
                os.remove(path)
        if os.path.isdir(self.parts_dir) and not os.listdir(self.parts_dir):
            os.rmdir(self.parts_dir)

    def write_manifest(self, manifest: dict) -> None:
        os.makedirs(self.out_dir, exist_ok=True)

        def write(tmp):
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(manifest, handle, indent=2, sort_keys=True)
                handle.write("\n")

        with atomic_path(self.manifest_path) as tmp:
            write(tmp)

    # ----- parts ------------------------------------------------------------------------------------
    def finished_chunks(self, expected: dict[int, int], job_digest: str) -> set[int]:
        """Chunks whose part exists and belongs to this job (``expected``: chunk -> number of texts).

        A part that cannot be read, or that another job wrote, is removed so its chunk is computed again.
        """
        import pyarrow.parquet as pq

        done = set()
        for path in self.part_paths():
            try:
                meta = json.loads((pq.read_metadata(path).metadata or {}).get(PART_META, b"{}"))
            except (OSError, ValueError) as exc:
                warnings.warn(f"{path} is unreadable ({exc}); its chunk is computed again", stacklevel=2)
                meta = {}
            chunk = meta.get("chunk")
            if (
                meta.get("job") == job_digest
                and chunk in expected
                and meta.get("texts") == expected[chunk]
                and path == self.part_path(chunk)
            ):
                done.add(chunk)
            else:
                os.remove(path)
        return done

    def write_part(self, chunk: int, table, job_digest: str, texts: int) -> str:
        """Write the rows of ``chunk`` atomically (sorted by line, layer, head, so any engine writes the same file)."""
        import pyarrow.parquet as pq

        table = table.sort_by(
            [
                ("line", "ascending"),
                ("stack", "ascending"),
                ("kind", "ascending"),
                ("layer", "ascending"),
                ("head", "ascending"),
            ]
        )
        meta = json.dumps({"chunk": chunk, "job": job_digest, "texts": texts, "written": time.time()})
        table = table.replace_schema_metadata({PART_META: meta.encode()})
        path = self.part_path(chunk)
        os.makedirs(self.parts_dir, exist_ok=True)
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return path

    # ----- reading and the summary -----------------------------------------------------------------
    def read_rows(self, columns: list[str] | None = None):
        """Every part's rows in one ``pyarrow.Table``, in file order (line, layer, head)."""
        pa = need_pyarrow()
        import pyarrow.parquet as pq

        paths = self.part_paths()
        if not paths:
            raise CorpusError(f"{self.out_dir!r} holds no corpus parts")
        tables = [pq.read_table(path, columns=columns).replace_schema_metadata(None) for path in paths]
        return pa.concat_tables(tables)

    def build_summary(self) -> str:
        """Write ``summary.parquet``: per (stack, kind, layer, head) the number of texts and tokens and,
        for each statistic, the plain mean over texts and the mean weighted by each text's tokens
        (texts where a statistic is undefined, NaN, are left out of its means)."""
        pa = need_pyarrow()
        import pyarrow.parquet as pq

        stats = stat_columns()
        totals: dict[tuple, dict[str, float]] = {}
        for path in self.part_paths():
            table = pq.read_table(path, columns=[*SUMMARY_KEYS, "n_tokens", *stats])
            for key, sums in _part_sums(table, stats).items():
                into = totals.setdefault(key, dict.fromkeys(sums, 0.0))
                for name, value in sums.items():
                    into[name] += value
        nan = float("nan")
        columns: dict[str, list] = {name: [] for name in (*SUMMARY_KEYS, "n_texts", "n_tokens")}
        for name in stats:
            columns[f"{name}_mean"], columns[f"{name}_token_mean"] = [], []
        for key in sorted(totals, key=lambda k: (k[0] or "", k[1], k[2], k[3])):
            sums = totals[key]
            for name, value in zip(SUMMARY_KEYS, key, strict=True):
                columns[name].append(value)
            columns["n_texts"].append(int(sums["n"]))
            columns["n_tokens"].append(int(sums["tokens"]))
            for name in stats:
                count, weight = sums[f"{name}:n"], sums[f"{name}:w"]
                columns[f"{name}_mean"].append(sums[f"{name}:x"] / count if count else nan)
                columns[f"{name}_token_mean"].append(sums[f"{name}:xw"] / weight if weight else nan)
        schema = pa.schema(
            [
                pa.field("stack", pa.string()),
                pa.field("kind", pa.string()),
                pa.field("layer", pa.int64()),
                pa.field("head", pa.int64()),
                pa.field("n_texts", pa.int64()),
                pa.field("n_tokens", pa.int64()),
            ]
            + [pa.field(name, pa.float64()) for name in columns if name.endswith("mean")]
        )
        table = pa.Table.from_pydict(columns, schema=schema)
        with atomic_path(self.summary_path) as tmp:
            pq.write_table(table, tmp)
        return self.summary_path


def _part_sums(table, stats: list[str]) -> dict[tuple, dict[str, float]]:
    """Per summary key of one part: texts, tokens and, per statistic, sum, count, weighted sum and weight."""
    import pyarrow as pa
    import pyarrow.compute as pc

    weight = pc.cast(table["n_tokens"], pa.float64())
    columns = {name: table[name] for name in SUMMARY_KEYS}
    columns["_tokens"] = weight
    aggregations = [("_tokens", "sum"), ("_tokens", "count")]
    for name in stats:
        x = table[name]
        valid = pc.fill_null(pc.invert(pc.is_nan(x)), False)
        columns[f"{name}:x"] = pc.if_else(valid, x, pa.scalar(None, pa.float64()))
        columns[f"{name}:xw"] = pc.multiply(columns[f"{name}:x"], weight)
        columns[f"{name}:w"] = pc.if_else(valid, weight, pa.scalar(None, pa.float64()))
        aggregations += [(f"{name}:x", "sum"), (f"{name}:x", "count"), (f"{name}:xw", "sum"), (f"{name}:w", "sum")]
    grouped = pa.table(columns).group_by(list(SUMMARY_KEYS)).aggregate(aggregations).to_pylist()
    out = {}
    for row in grouped:
        sums = {"n": row["_tokens_count"], "tokens": row["_tokens_sum"]}
        for name in stats:
            sums[f"{name}:x"] = row[f"{name}:x_sum"] or 0.0
            sums[f"{name}:n"] = row[f"{name}:x_count"]
            sums[f"{name}:xw"] = row[f"{name}:xw_sum"] or 0.0
            sums[f"{name}:w"] = row[f"{name}:w_sum"] or 0.0
        out[tuple(row[k] for k in SUMMARY_KEYS)] = sums
    return out


__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "PARTS", "SUMMARY", "CorpusStore"]
