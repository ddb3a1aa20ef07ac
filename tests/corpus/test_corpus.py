"""``attn-plugins corpus`` on the bundled real MiniLM: the rows against head_stats of each text
captured alone, resumption after a SIGKILL, refusals, bad input, and the Ray engine against the
local one on a real local Ray instance (loopback)."""

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import attn_plugins as ap
from attn_plugins.analysis.stats import head_stats
from attn_plugins.cli import main
from attn_plugins.corpus import CorpusError, read_rows, read_summary, run_corpus
from attn_plugins.corpus.job import group_column, stat_columns

pa = pytest.importorskip("pyarrow")

SUBJECTS = ["The cat", "A tired dog", "My neighbour", "The old man", "A child", "The teacher"]
VERBS = ["sat on", "looked at", "walked past", "talked about", "painted"]
OBJECTS = ["the mat.", "the red car, slowly!", "a quiet river.", "the long and narrow street?", "two apples."]


def sentences(n):
    return [f"{s} {v} {o}" for s, v, o in itertools.islice(itertools.product(SUBJECTS, VERBS, OBJECTS), n)]


def write_jsonl(path, texts, ids=None):
    with open(path, "w", encoding="utf-8") as handle:
        for i, text in enumerate(texts):
            obj = {"text": text} if ids is None else {"id": ids[i], "text": text}
            handle.write(json.dumps(obj) + "\n")
    return str(path)


def cli(*args):
    exe = shutil.which("attn-plugins", path=os.path.dirname(sys.executable))
    command = [exe, *args] if exe else [sys.executable, "-m", "attn_plugins.cli", *args]
    return command


def rows_by_text(table):
    """{text_id: {column: np.array over (layer, head) in order}}."""
    out = {}
    for text_id in dict.fromkeys(table["text_id"].to_pylist()):
        part = table.filter(pa.compute.equal(table["text_id"], text_id))
        part = part.sort_by([("layer", "ascending"), ("head", "ascending")])
        out[text_id] = {
            name: np.asarray(part[name].to_pylist(), dtype=float)
            for name in part.column_names
            if name not in ("text_id", "stack", "kind", "truncated")
        }
    return out


def test_rows_are_head_stats_of_each_text_captured_alone(tmp_path, minilm, minilm_tokenizer):
    import torch

    texts = ["Hi.", *sentences(4), "The quick brown fox, it seems, jumps over the lazy dog again and again."]
    data = write_jsonl(tmp_path / "t.jsonl", texts, ids=["a", "b", "c", "d", "e", "f"])
    result = run_corpus(data, tmp_path / "out", batch_size=3, chunk_size=4, progress=False)
    assert (result.num_texts, result.num_chunks, result.chunks_computed, result.chunks_reused) == (6, 2, 2, 0)
    rows = read_rows(tmp_path / "out")
    assert rows.num_rows == 6 * 6 * 12
    assert rows["text_id"].to_pylist()[::72] == ["a", "b", "c", "d", "e", "f"]
    assert rows["line"].to_pylist()[::72] == [0, 1, 2, 3, 4, 5]
    got = rows_by_text(rows)
    for text_id, text in (("a", texts[0]), ("f", texts[5]), ("c", texts[2])):
        enc = minilm_tokenizer([text], return_tensors="pt")
        with torch.no_grad(), ap.capture(minilm, tokenizer=minilm_tokenizer) as cap:
            minilm(**enc)
        reference = head_stats(cap.record)
        row = got[text_id]
        assert (row["n_tokens"] == enc["input_ids"].shape[1]).all()
        assert row["layer"].tolist() == [li for li in range(6) for _ in range(12)]
        assert row["head"].tolist() == list(range(12)) * 6
        for name in (
            "entropy",
            "normalized_entropy",
            "uniform_entropy",
            "distance",
            "special",
            "previous",
            "next",
            "self",
        ):
            np.testing.assert_allclose(
                row[name],
                getattr(reference, name).reshape(-1).numpy(),
                rtol=1e-5,
                atol=1e-6,
                err_msg=f"{text_id} {name}",
            )
        assert reference.groups
        for name, values in reference.groups.items():
            np.testing.assert_allclose(row[group_column(name)], values.reshape(-1).numpy(), rtol=1e-5, atol=1e-6)

    # the summary, recomputed from the rows
    summary = read_summary(tmp_path / "out")
    assert summary.num_rows == 72 and set(summary["n_texts"].to_pylist()) == {6}
    layer, head, tokens = (np.asarray(rows[c]) for c in ("layer", "head", "n_tokens"))
    for i, (li, hi) in enumerate(zip(summary["layer"].to_pylist(), summary["head"].to_pylist(), strict=True)):
        pick = (layer == li) & (head == hi)
        assert summary["n_tokens"][i].as_py() == tokens[pick].sum()
        for name in stat_columns():
            x = np.asarray(rows[name])[pick]
            assert summary[f"{name}_mean"][i].as_py() == pytest.approx(x.mean(), rel=1e-12)
            assert summary[f"{name}_token_mean"][i].as_py() == pytest.approx(
                (x * tokens[pick]).sum() / tokens[pick].sum(), rel=1e-12
            )
    with open(result.manifest_path, encoding="utf-8") as handle:
        manifest = json.load(handle)
    assert manifest["status"] == "complete" and manifest["num_chunks"] == 2
    assert manifest["identity"]["attn_plugins_version"] == ap.__version__


def test_resume_after_kill_counts_nothing_twice(tmp_path):
    data = write_jsonl(tmp_path / "t.jsonl", sentences(60))
    out = tmp_path / "out"
    args = ["corpus", "--data", data, "--out", str(out), "--chunk-size", "2", "--batch-size", "2", "-q"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(cli(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    parts = out / "parts"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if parts.is_dir() and any(p.suffix == ".parquet" for p in parts.iterdir()):
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, ("the run ended before it could be killed", process.stderr.read())
    written = len(list(parts.glob("part-*.parquet")))
    assert 1 <= written < 30
    assert not (out / "summary.parquet").exists()
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"

    resumed = subprocess.run(cli(*args), env=env, capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr
    reused = written
    assert f"60 texts in 30 chunks: {30 - reused} computed, {reused} reused" in resumed.stdout
    assert "texts/s" in resumed.stdout

    rows = read_rows(out)
    first_head = pa.compute.and_(pa.compute.equal(rows["layer"], 0), pa.compute.equal(rows["head"], 0))
    ids = rows.filter(first_head)["text_id"].to_pylist()
    assert rows.num_rows == 60 * 72
    assert sorted(ids, key=int) == [str(i) for i in range(60)]  # every text exactly once
    clean = run_corpus(data, tmp_path / "clean", chunk_size=2, batch_size=2, progress=False)
    assert rows.equals(clean.rows())
    assert read_summary(out).equals(clean.summary())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert [(r["chunks_reused"], r["chunks_computed"]) for r in manifest["runs"]] == [(0, 30), (reused, 30 - reused)]


def test_reruns_reuse_refuse_changed_parameters_and_recompute_damaged_parts(tmp_path):
    data = write_jsonl(tmp_path / "t.jsonl", sentences(6))
    out = tmp_path / "out"
    first = run_corpus(data, out, chunk_size=2, batch_size=2, progress=False)
    before = first.rows()
    again = run_corpus(data, out, chunk_size=2, batch_size=5, progress=False)  # batch size: not a parameter
    assert (again.chunks_computed, again.chunks_reused, again.texts_computed) == (0, 3, 0)

    for change, message in (
        ({"layers": [0]}, "job.layers: was None, now [0]"),
        ({"chunk_size": 3}, "job.chunk_size: was 2, now 3"),
        ({"max_tokens": 64}, "job.max_tokens"),
        ({"truncate": True}, "job.truncate"),
    ):
        with pytest.raises(CorpusError, match="different parameters") as info:
            run_corpus(data, out, **{"chunk_size": 2, "batch_size": 2, "progress": False, **change})
        assert message in str(info.value) and "--overwrite" in str(info.value)
    with open(data, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"text": "One more text."}) + "\n")
    with pytest.raises(CorpusError, match=r"data\.sha256"):
        run_corpus(data, out, chunk_size=2, batch_size=2, progress=False)
    rc = main(["corpus", "--data", data, "--out", str(out), "--chunk-size", "2", "-q"])
    assert rc == 2

    # a damaged part is computed again, the others are reused
    write_jsonl(data, sentences(6))
    (out / "parts" / "part-00001.parquet").write_bytes(b"not parquet")
    with pytest.warns(UserWarning, match="unreadable"):
        repaired = run_corpus(data, out, chunk_size=2, batch_size=2, progress=False, overwrite=False)
    assert (repaired.chunks_computed, repaired.chunks_reused) == (1, 2)
    assert repaired.rows().equals(before)

    narrowed = run_corpus(
        data, out, chunk_size=2, batch_size=2, layers=[-1], heads=[0, 3], overwrite=True, progress=False
    )
    assert narrowed.chunks_computed == 3
    rows = narrowed.rows()
    assert set(rows["layer"].to_pylist()) == {5} and set(rows["head"].to_pylist()) == {0, 3}
    assert rows.num_rows == 6 * 2


@pytest.mark.parametrize(
    "lines, extra, message",
    [
        (['{"text": "fine"}', '{"body": "no text field"}'], [], "t.jsonl:2: no 'text' field (fields: 'body')"),
        (['{"text": "fine"}', "", '{"text": "   "}'], [], "t.jsonl:3: the text is empty"),
        (['{"text": "fine"}', '{"text": "broken'], [], "t.jsonl:2: not valid JSON"),
        (['["a list"]'], [], "t.jsonl:1: expected a JSON object"),
        (['{"id": 7, "text": "a"}', '{"id": "7", "text": "b"}'], [], "t.jsonl:2: id '7' was already used on line 1"),
        ([], [], "holds no texts"),
        (
            ['{"body": "x"}'],
            ["--text-field", "body", "--engine", "spark"],
            "unknown corpus engine 'spark'; available: 'local', 'ray'",
        ),
        (['{"text": "x"}'], ["--workers", "2"], "--workers only apply to --engine ray"),
        (['{"text": "x"}'], ["--layers", "6"], "layer 6 does not exist: the model has 6 layers"),
        (['{"text": "x"}'], ["--heads", "12"], "head 12 does not exist"),
        (['{"text": "x"}'], ["--model", "/nonexistent"], "is not a directory with a saved model"),
        (
            ['{"text": "short"}', '{"text": "' + "word " * 40 + '"}', '{"text": "' + "x, " * 30 + '"}'],
            ["--max-tokens", "16"],
            "2 text(s) are over the limit of 16 tokens for this model: line 2 (42 tokens), line 3 (62 tokens)",
        ),
    ],
)
def test_bad_input_is_an_error_naming_the_line(tmp_path, capsys, lines, extra, message):
    data = tmp_path / "t.jsonl"
    data.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    rc = main(["corpus", "--data", str(data), "--out", str(tmp_path / "out"), "-q", *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and message in err, err
    assert not (tmp_path / "out" / "parts").exists()


def test_missing_data_file_and_truncation(tmp_path, capsys):
    assert main(["corpus", "--data", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "no data file at" in capsys.readouterr().err
    data = write_jsonl(tmp_path / "t.jsonl", ["short", "word " * 40])
    rc = main(["corpus", "--data", data, "--out", str(tmp_path / "out"), "--max-tokens", "16", "--truncate", "-q"])
    assert rc == 0
    assert "1 texts were truncated" in capsys.readouterr().out
    rows = read_rows(tmp_path / "out")
    assert rows["n_tokens"].to_pylist()[::72] == [3, 16] and rows["truncated"].to_pylist()[::72] == [False, True]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["truncate"] is True and manifest["truncated_texts"] == 1 and manifest["token_limit"] == 16


def test_ray_engine_gives_the_local_engine_statistics(tmp_path):
    ray = pytest.importorskip("ray")
    data = write_jsonl(tmp_path / "t.jsonl", sentences(11) + ["Hi."])
    local = run_corpus(data, tmp_path / "local", chunk_size=4, batch_size=3, progress=False)
    on_ray = run_corpus(data, tmp_path / "ray", engine="ray", workers=1, chunk_size=4, batch_size=3, progress=False)
    assert not ray.is_initialized()  # the job started its own loopback instance and shut it down
    assert on_ray.details["workers"] == 1 and on_ray.details["ray_started_here"]
    assert (on_ray.num_chunks, on_ray.chunks_computed, on_ray.texts_computed) == (3, 3, 12)
    a, b = local.rows(), on_ray.rows()
    for name in ("text_id", "line", "chunk", "n_tokens", "layer", "head"):
        assert a[name].equals(b[name]), name
    for name in stat_columns():
        # the engines run the same planned batches; a different thread count could move the float32
        # attention by ~1e-7, hence the tolerance
        np.testing.assert_allclose(np.asarray(b[name]), np.asarray(a[name]), rtol=1e-5, atol=1e-6, err_msg=name)
    sa, sb = local.summary(), on_ray.summary()
    assert sa.select(["layer", "head", "n_texts", "n_tokens"]).equals(
        sb.select(["layer", "head", "n_texts", "n_tokens"])
    )
    for name in sa.column_names[6:]:
        np.testing.assert_allclose(np.asarray(sb[name]), np.asarray(sa[name]), rtol=1e-5, atol=1e-6, err_msg=name)
    # and a Ray run resumes a local one: nothing left to compute
    resumed = run_corpus(data, tmp_path / "local", engine="ray", chunk_size=4, batch_size=8, progress=False)
    assert (resumed.chunks_computed, resumed.chunks_reused) == (0, 3)


def test_missing_optional_dependencies_name_the_extra(tmp_path, monkeypatch):
    data = write_jsonl(tmp_path / "t.jsonl", ["A text."])
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(CorpusError, match=r'pip install "attn-plugins\[ray\]"'):
        run_corpus(data, tmp_path / "out", engine="ray", progress=False)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(CorpusError, match=r'pip install "attn-plugins\[corpus\]"'):
        run_corpus(data, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_summary_skips_undefined_values_and_weights_by_tokens(tmp_path):
    from attn_plugins.corpus.job import rows_schema
    from attn_plugins.corpus.store import CorpusStore

    store = CorpusStore(tmp_path)
    nan = float("nan")

    def part(chunk, lines, n_tokens, previous):
        columns = {
            "text_id": [str(i) for i in lines],
            "line": lines,
            "chunk": [chunk] * len(lines),
            "n_tokens": n_tokens,
            "truncated": [False] * len(lines),
            "stack": [None] * len(lines),
            "kind": ["self"] * len(lines),
            "layer": [0] * len(lines),
            "head": [0] * len(lines),
        }
        for name in stat_columns():
            columns[name] = [float(i) for i in lines]
        columns["previous"] = previous
        store.write_part(chunk, pa.Table.from_pydict(columns, schema=rows_schema()), "job", len(lines))

    part(0, [0, 1], [2, 6], [0.5, nan])
    part(1, [2], [4], [0.25])
    summary = pq_row(store)
    assert (summary["n_texts"], summary["n_tokens"]) == (3, 12)
    assert summary["entropy_mean"] == pytest.approx(1.0)  # (0 + 1 + 2) / 3
    assert summary["entropy_token_mean"] == pytest.approx((0 * 2 + 1 * 6 + 2 * 4) / 12)
    assert summary["previous_mean"] == pytest.approx(0.375)  # the undefined value is left out
    assert summary["previous_token_mean"] == pytest.approx((0.5 * 2 + 0.25 * 4) / 6)


def pq_row(store):
    import pyarrow.parquet as pq

    table = pq.read_table(store.build_summary())
    assert table.num_rows == 1
    return table.to_pylist()[0]
