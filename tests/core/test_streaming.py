"""Streaming capture (layers written to disk as produced) and memory-mapped record directories."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors import safe_open

import attn_plugins as ap
from attn_plugins.errors import RecordFormatError
from fixtures.tiny_models import build

from .helpers import hooks_left
from .test_record import _same


def _both(model, run, tmp_path, **kwargs):
    with torch.no_grad(), ap.capture(model, **kwargs) as cap:
        run()
    memory = cap.records
    with torch.no_grad(), ap.capture(model, stream_to=tmp_path / "stream", **kwargs) as cap:
        run()
    return memory, cap.records


def _is_mapped(tensor: torch.Tensor, directory) -> bool:
    """True when the tensor's memory is a mapping of a file under ``directory`` (per /proc/self/maps)."""
    address = tensor.untyped_storage().data_ptr()
    with open("/proc/self/maps") as handle:
        for line in handle:
            parts = line.split()
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if start <= address < end:
                return len(parts) >= 6 and parts[5].startswith(str(directory))
    return False


@pytest.mark.parametrize("name", ["bert", "bart", "llama"])
def test_streamed_forward_equals_in_memory(name, tmp_path):
    model, inputs = build(name)
    memory, streamed = _both(model, lambda: model(**inputs), tmp_path, keep_queries_keys=True)
    assert len(memory) == len(streamed) == 1
    _same(memory[0], streamed[0])
    assert all(_is_mapped(layer.weights, tmp_path) for layer in streamed[0].layers)
    assert hooks_left(model) == []


@pytest.mark.parametrize("name", ["gpt2", "t5"])
def test_streamed_generation_equals_in_memory(name, tmp_path):
    model, inputs = build(name)
    memory, streamed = _both(
        model, lambda: model.generate(**inputs, max_new_tokens=5, do_sample=False), tmp_path, heads=[0, 2]
    )
    _same(memory[0], streamed[0])
    directory = tmp_path / "stream" / "record-0000"
    layer_files = sorted(os.listdir(directory / "layers"))
    assert len(layer_files) == len(streamed[0].layers)  # the steps were merged into one file per layer
    assert not any(f.startswith(".") for f in layer_files)
    # every shard is a plain safetensors file that safetensors itself reads
    with safe_open(str(directory / "layers" / layer_files[0]), framework="pt") as handle:
        weights = handle.get_tensor("weights")
    expected = next(
        layer for layer in memory[0].layers if os.path.basename(_file_of(directory, layer)) == layer_files[0]
    )
    assert torch.equal(weights, expected.weights)


def _file_of(directory, layer):
    meta = json.loads((directory / "record.json").read_text())
    return next(
        e["file"]
        for e in meta["layers"]
        if (e["stack"], e["kind"], e["index"]) == (layer.stack, layer.kind, layer.index)
    )


def test_several_forwards_stream_several_records(minilm, minilm_tokenizer, tmp_path):
    texts = ["The first text.", "A second, longer text than the first one."]
    with torch.no_grad(), ap.capture(minilm, minilm_tokenizer, stream_to=tmp_path / "run", layers=[0, -1]) as cap:
        for text in texts:
            minilm(**minilm_tokenizer(text, return_tensors="pt"))
    assert sorted(os.listdir(tmp_path / "run")) == ["record-0000", "record-0001"]
    for record, text in zip(cap.records, texts, strict=True):
        assert record.tokens == [minilm_tokenizer.convert_ids_to_tokens(minilm_tokenizer(text)["input_ids"])]
    loaded = ap.AttentionRecord.load(tmp_path / "run" / "record-0001")
    assert [layer.index for layer in loaded.layers] == [0, 5]
    with torch.no_grad(), ap.capture(minilm, minilm_tokenizer, layers=[0, -1]) as cap2:
        minilm(**minilm_tokenizer(texts[1], return_tensors="pt"))
    _same(cap2.record, loaded)
    with pytest.raises(RecordFormatError, match="holds 2 records"):
        ap.AttentionRecord.load(tmp_path / "run")


def test_error_in_the_body_removes_the_stream(tmp_path):
    model, inputs = build("bert")
    with pytest.raises(RuntimeError, match="user code"):
        with torch.no_grad(), ap.capture(model, stream_to=tmp_path / "s"):
            model(**inputs)
            raise RuntimeError("user code")
    assert not (tmp_path / "s").exists()
    assert hooks_left(model) == []


def test_stream_into_a_used_directory_is_refused(tmp_path):
    model, inputs = build("bert")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        with ap.capture(model, stream_to=tmp_path / "used"):
            model(**inputs)
    assert (tmp_path / "used" / "keep.txt").read_text() == "mine"
    assert hooks_left(model) == []


def test_streaming_budget_is_disk_space(tmp_path):
    model, inputs = build("bert")
    with pytest.raises(ap.CaptureError, match="write .* to disk"):
        with torch.no_grad(), ap.capture(model, stream_to=tmp_path / "s", max_bytes="1KB"):
            model(**inputs)
    assert not (tmp_path / "s").exists()


def test_sharded_save_round_trip_and_lazy_single_file(tmp_path):
    model, inputs = build("bart")
    with torch.no_grad(), ap.capture(model, keep_queries_keys=True) as cap:
        model(**inputs)
    record = cap.record
    record.tokens = [["</script><img src=x onerror=alert(1)>"] * inputs["input_ids"].shape[1]] * 2
    record.save(tmp_path / "dir", sharded=True)
    _same(record, ap.AttentionRecord.load(tmp_path / "dir"))
    record.save(tmp_path / "one.safetensors")
    lazy = ap.AttentionRecord.load(tmp_path / "one.safetensors", lazy=True)
    _same(record, lazy)
    assert all(_is_mapped(layer.weights, tmp_path) for layer in lazy.layers)
    # a lazily opened record saves again (to either layout) and writing into it never changes the file
    lazy.save(tmp_path / "again.safetensors")
    _same(record, ap.AttentionRecord.load(tmp_path / "again.safetensors"))
    lazy.layers[0].weights.fill_(7.0)
    _same(record, ap.AttentionRecord.load(tmp_path / "one.safetensors"))


def test_damaged_record_directories(tmp_path):
    model, inputs = build("bert")
    with torch.no_grad(), ap.capture(model) as cap:
        model(**inputs)
    good = tmp_path / "good"
    cap.record.save(good, sharded=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordFormatError, match="not an attn-plugins record"):
        ap.AttentionRecord.load(tmp_path / "empty")
    meta = json.loads((good / "record.json").read_text())
    for label, change in [
        ("outside", lambda m: m["layers"][0].update(file="../../etc/passwd")),
        ("missing", lambda m: m["layers"][0].update(file="layers/nope.safetensors")),
        ("unknown format", lambda m: m.update(format="something-else")),
        ("newer", lambda m: m.update(format_version=99)),
    ]:
        bad = json.loads(json.dumps(meta))
        change(bad)
        (good / "record.json").write_text(json.dumps(bad))
        with pytest.raises(RecordFormatError, match=label):
            ap.AttentionRecord.load(good)
    (good / "record.json").write_text(json.dumps(meta))
    shard = good / meta["layers"][0]["file"]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(RecordFormatError, match="truncated"):
        ap.AttentionRecord.load(good)
    (good / "record.json").write_text("{not json")
    with pytest.raises(RecordFormatError, match="not readable JSON"):
        ap.AttentionRecord.load(good)
    with pytest.raises(ValueError, match="memory-mapped"):
        ap.AttentionRecord.load(tmp_path / "empty", lazy=False)


def test_lazy_load_reads_only_what_is_touched(tmp_path):
    """A 400 MB record opens in a fresh process without its memory growing by the record's size."""
    heads, length = 8, 1024
    record = ap.AttentionRecord(
        layers=[
            ap.LayerAttention(
                name=f"layer{i}", stack=None, kind="self", index=i, weights=torch.rand(3, heads, length, length)
            )
            for i in range(4)
        ]
    )
    size = sum(layer.weights.numel() * 4 for layer in record.layers)
    assert size > 380e6
    record.save(tmp_path / "big", sharded=True)
    expected = record.layers[3].weights[2, 5, 700].clone()
    del record
    torch.save(expected, tmp_path / "row.pt")
    script = textwrap.dedent(f"""
        import resource, torch
        import attn_plugins as ap
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        record = ap.AttentionRecord.load({str(tmp_path / "big")!r})
        row = record.layers[3].weights[2, 5, 700]
        expected = torch.load({str(tmp_path / "row.pt")!r})
        assert torch.equal(row, expected)
        print(record.summary())
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        print("GREW", grew)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    grew = int(out.stdout.split("GREW")[1])
    assert grew < size / 10, (grew, size)
    assert "query x key 1024x1024" in out.stdout


def test_streamed_plain_torch_encoder_equals_in_memory(tmp_path):
    layer = torch.nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)
    model = torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 7, 16)
    memory, streamed = _both(model, lambda: model(x), tmp_path)
    _same(memory[0], streamed[0])
    assert len(streamed[0].layers) == 2 and hooks_left(model) == []
