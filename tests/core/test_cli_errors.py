"""The console script never answers a user error with a traceback: damaged and hostile record
files, an output path that is a directory, a closed stdout (``| head``), missing files and bad
option values each end with one line on stderr and a non-zero exit. Run as a user runs it (a
subprocess)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import struct
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

import attn_plugins as ap


def _command(*args) -> list[str]:
    exe = shutil.which("attn-plugins", path=os.path.dirname(sys.executable)) or shutil.which("attn-plugins")
    return [exe, *args] if exe else [sys.executable, "-m", "attn_plugins.cli", *args]


def _cli(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(_command(*args), capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def _one_line_error(result, *fragments) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _record(path) -> str:
    weights = torch.softmax(torch.randn(1, 2, 3, 3), dim=-1)
    record = ap.AttentionRecord(
        layers=[ap.LayerAttention("layer.0", None, "self", 0, weights)], tokens=[["[CLS]", "hi", "[SEP]"]]
    )
    return record.save(path)


def _meta_file(path, meta, tensors=None) -> str:
    save_file(tensors or {"x": torch.zeros(1)}, str(path), metadata={"attn_plugins": json.dumps(meta)})
    return str(path)


LAYER = {"name": "a", "stack": None, "kind": "self", "index": 0}
RECORD = {"format": "attn-plugins-record", "format_version": 1}


def _damaged(tmp_path, kind: str) -> str:
    good = _record(tmp_path / "good.safetensors")
    if kind == "text":
        (tmp_path / "r.safetensors").write_text("hello")
    elif kind == "truncated":
        (tmp_path / "r.safetensors").write_bytes(open(good, "rb").read()[:-5])
    elif kind == "huge_header":
        (tmp_path / "r.safetensors").write_bytes(struct.pack("<Q", 10**15) + b"{}")
    elif kind == "missing_tensor":
        _meta_file(tmp_path / "r.safetensors", {**RECORD, "layers": [LAYER]})
    elif kind == "metadata_not_an_object":
        _meta_file(tmp_path / "r.safetensors", [1, 2])
    elif kind == "tokens_not_strings":
        _meta_file(
            tmp_path / "r.safetensors",
            {**RECORD, "layers": [LAYER], "tokens": [[1, 2]]},
            {"layers.0.weights": torch.zeros(1, 1, 2, 2)},
        )
    elif kind == "weights_1d":
        _meta_file(tmp_path / "r.safetensors", {**RECORD, "layers": [LAYER]}, {"layers.0.weights": torch.zeros(3)})
    elif kind in ("dir_escape", "dir_bad_json"):
        os.makedirs(tmp_path / "r.safetensors")
        text = (
            "{not json"
            if kind == "dir_bad_json"
            else json.dumps({**RECORD, "layers": [{**LAYER, "file": "../../etc/passwd"}]})
        )
        (tmp_path / "r.safetensors" / "record.json").write_text(text)
    return str(tmp_path / "r.safetensors")


@pytest.mark.parametrize(
    "kind, fragment",
    [
        ("text", "not a readable attn-plugins record"),
        ("truncated", "not a readable attn-plugins record"),
        ("huge_header", "not a readable attn-plugins record"),
        ("missing_tensor", "tensor 'layers.0.weights' is missing"),
        ("metadata_not_an_object", "r.safetensors"),
        ("tokens_not_strings", "r.safetensors"),
        ("weights_1d", "r.safetensors"),
        ("dir_escape", "outside its directory"),
        ("dir_bad_json", "is not readable JSON"),
    ],
)
def test_info_on_damaged_and_hostile_files(tmp_path, kind, fragment):
    path = _damaged(tmp_path, kind)
    line = _one_line_error(_cli("info", path), fragment)
    assert line.startswith("error: ")


def test_info_into_a_closed_pipe(tmp_path):
    """``attn-plugins info rec | head -0``: the reader is gone before the summary is written."""
    path = _record(tmp_path / "rec.safetensors")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(_command("info", path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=300) != 0
    assert stderr == ""  # no traceback, no "Exception ignored ... BrokenPipeError"
    # through a real shell pipe the first line still arrives, and nothing is printed on stderr
    shell = subprocess.run(
        f"{shlex.join(_command('info', path))} | head -n 1",
        shell=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert shell.stdout.startswith("attn-plugins record") and shell.stderr == ""


def test_capture_out_is_a_directory(tmp_path):
    (tmp_path / "taken").mkdir()
    _one_line_error(_cli("capture", "--text", "hi", "--out", str(tmp_path / "taken")), "error: --out", "is a directory")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["info", "/nonexistent/rec.safetensors"], ["error: no record file at"]),
        (
            ["capture", "--text", "hi", "--max-tokens", "many", "--out", "x.safetensors"],
            ["argument --max-tokens", "expected a whole number, got 'many'"],
        ),
        (["capture", "--text", "hi", "--max-tokens", "0", "--out", "x.safetensors"], ["must be at least 1"]),
        (["capture", "--text", "hi", "--max-bytes", "lots", "--out", "x.safetensors"], ["cannot read max_bytes"]),
        (["capture", "--text", "hi", "--layers", "x", "--out", "x.safetensors"], ["argument --layers"]),
        (["report", "--max-tokens", "-3"], ["must be at least 1"]),
        (["corpus", "--data", "d.jsonl", "--out", "o", "--batch-size", "two"], ["argument --batch-size"]),
        (["frobnicate"], ["invalid choice: 'frobnicate'"]),
        (["report", "--text-file", "/nonexistent/texts.txt", "--out", "o"], ["cannot read text file"]),
        (["corpus", "--data", "/nonexistent/d.jsonl", "--out", "o"], ["no data file"]),
    ],
)
def test_bad_values_and_missing_files(tmp_path, args, fragments):
    _one_line_error(_cli(*args, cwd=tmp_path), *fragments)
