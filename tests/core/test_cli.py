"""The console script, run as a user would (a subprocess), on the bundled real MiniLM."""

import os
import shutil
import subprocess
import sys

import pytest

import attn_plugins as ap


def _cli(*args, cwd=None):
    exe = shutil.which("attn-plugins", path=os.path.dirname(sys.executable)) or shutil.which("attn-plugins")
    command = [exe, *args] if exe else [sys.executable, "-m", "attn_plugins.cli", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_capture_then_info(tmp_path, minilm, minilm_tokenizer):
    import torch

    out = tmp_path / "run.safetensors"
    result = _cli("capture", "--text", "The cat sat on the mat.", "--text", "Hi", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "saved" in result.stdout
    record = ap.AttentionRecord.load(out)
    assert record.model_class == "BertModel" and len(record.layers) == 6 and record.batch_size == 2
    assert record.tokens[0][:3] == ["[CLS]", "the", "cat"]
    enc = minilm_tokenizer(["The cat sat on the mat.", "Hi"], return_tensors="pt", padding=True)
    with torch.no_grad(), ap.capture(minilm) as cap:
        minilm(**enc)
    assert torch.equal(cap.record.layers[3].weights, record.layers[3].weights)
    info = _cli("info", str(out))
    assert info.returncode == 0
    assert "self-attention: layers [0, 1, 2, 3, 4, 5], 12 heads" in info.stdout
    assert "[CLS] the cat sat on the mat . [SEP]" in info.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["capture", "--text", "", "--out", "x.safetensors"], "must not be empty"),
        (["capture", "--out", "x.safetensors"], "give at least one --text"),
        (["capture", "--text", "hi", "--model", "/nonexistent", "--out", "x.safetensors"], "is not a directory"),
        (["capture", "--text", "word " * 600, "--out", "x.safetensors"], "over the limit of 512"),
        (["capture", "--text", "hi", "--layers", "9", "--out", "x.safetensors"], "layer 9 does not exist"),
        (["capture", "--text-file", "/nonexistent.txt", "--out", "x.safetensors"], "cannot read --text-file"),
        (["info", "/nonexistent.safetensors"], "no record file"),
        (
            ["capture", "--text", "hi there", "--max-bytes", "1KB", "--out", "x.safetensors"],
            "over the budget of 1.0 KB",
        ),
        (["capture", "--text", "hi", "--max-bytes", "lots", "--out", "x.safetensors"], "cannot read max_bytes"),
    ],
)
def test_bad_input_messages(tmp_path, args, message):
    result = _cli(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_info_on_a_foreign_file(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("hello")
    result = _cli("info", str(path))
    assert result.returncode == 2 and "not a readable attn-plugins record" in result.stderr


def test_streamed_capture_then_info(tmp_path):
    out = tmp_path / "run"
    result = _cli("capture", "--text", "The cat sat on the mat.", "--layers", "0", "5", "--stream", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out / "record-0000" / "layers")) == ["self-000.safetensors", "self-005.safetensors"]
    file_record = tmp_path / "run.safetensors"
    assert (
        _cli("capture", "--text", "The cat sat on the mat.", "--layers", "0", "5", "--out", str(file_record)).returncode
        == 0
    )
    streamed, saved = ap.AttentionRecord.load(out), ap.AttentionRecord.load(file_record)
    assert streamed.tokens == saved.tokens
    assert all(a.weights.equal(b.weights) for a, b in zip(streamed.layers, saved.layers, strict=True))
    info = _cli("info", str(out))
    assert info.returncode == 0 and "layers [0, 5], 12 heads" in info.stdout
    again = _cli("capture", "--text", "x", "--stream", "--out", str(out))
    assert again.returncode != 0 and "not empty" in again.stderr and "Traceback" not in again.stderr
