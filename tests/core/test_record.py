"""Record files: lossless round trip, never executes code, clear errors for bad files."""

import json
import os
import pickle
import struct

import pytest
import torch
from safetensors.torch import save_file

import attn_plugins as ap
from attn_plugins.record.format import FORMAT_VERSION
from fixtures.tiny_models import build


@pytest.fixture(scope="module")
def bart_record():
    model, inputs = build("bart")
    with torch.no_grad(), ap.capture(model, heads=[1, 3], keep_queries_keys=True) as cap:
        model(**inputs)
    record = cap.record
    record.tokens = [["<s>", "</script><img src=x onerror=alert(1)>", 'quote"\\back'], ["a", "b", "c"]]
    record.metadata["note"] = {"nested": [1, 2]}
    return record


def _same(a, b):
    assert len(a.layers) == len(b.layers)
    for x, y in zip(a.layers, b.layers, strict=True):
        assert (x.name, x.stack, x.kind, x.index, x.heads) == (y.name, y.stack, y.kind, y.index, y.heads)
        assert x.weights.dtype == y.weights.dtype and torch.equal(x.weights, y.weights)
        for extra in ("queries", "keys"):
            u, v = getattr(x, extra), getattr(y, extra)
            assert (u is None) == (v is None) and (u is None or torch.equal(u, v))
    assert a.tokens == b.tokens and a.decoder_tokens == b.decoder_tokens
    assert sorted(a.inputs) == sorted(b.inputs) and all(torch.equal(a.inputs[k], b.inputs[k]) for k in a.inputs)
    assert (a.model_class, a.model_name, a.attn_implementation, a.metadata) == (
        b.model_class,
        b.model_name,
        b.attn_implementation,
        b.metadata,
    )


def test_round_trip_is_lossless(tmp_path, bart_record):
    path = bart_record.save(tmp_path / "run.safetensors")
    loaded = ap.AttentionRecord.load(path)
    _same(bart_record, loaded)
    assert sorted(loaded.as_hf_outputs()) == ["cross_attentions", "decoder_attentions", "encoder_attentions"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_round_trip_keeps_dtype(tmp_path, dtype):
    model, inputs = build("gpt2")
    with torch.no_grad(), ap.capture(model, dtype=dtype) as cap:
        model(**inputs)
    loaded = ap.AttentionRecord.load(cap.record.save(tmp_path / "r.safetensors"))
    _same(cap.record, loaded)
    assert loaded.layers[0].weights.dtype == dtype


def test_header_is_plain_json(tmp_path, bart_record):
    path = bart_record.save(tmp_path / "run.safetensors")
    raw = open(path, "rb").read()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    meta = json.loads(header["__metadata__"]["attn_plugins"])
    assert meta["format"] == "attn-plugins-record" and meta["format_version"] == FORMAT_VERSION
    assert meta["layers"][0]["stack"] == "encoder" and meta["layers"][0]["heads"] == [1, 3]
    assert meta["model_class"] == "BartForConditionalGeneration"


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/attn_plugins_pwned",))


def test_pickle_file_is_refused_without_running_it(tmp_path):
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(_Exploit()))
    if os.path.exists("/tmp/attn_plugins_pwned"):
        os.remove("/tmp/attn_plugins_pwned")
    with pytest.raises(ap.RecordFormatError, match="not a readable attn-plugins record"):
        ap.AttentionRecord.load(path)
    assert not os.path.exists("/tmp/attn_plugins_pwned")


def test_truncated_file(tmp_path, bart_record):
    path = bart_record.save(tmp_path / "run.safetensors")
    data = open(path, "rb").read()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(ap.RecordFormatError, match="corrupt, truncated"):
        ap.AttentionRecord.load(tmp_path / "cut.safetensors")
    (tmp_path / "tiny.safetensors").write_bytes(data[:5])
    with pytest.raises(ap.RecordFormatError):
        ap.AttentionRecord.load(tmp_path / "tiny.safetensors")


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"weight": torch.zeros(2)}, str(path))
    with pytest.raises(ap.RecordFormatError, match="not an attn-plugins record.*model checkpoint"):
        ap.AttentionRecord.load(path)


def _rewrite_meta(src, dst, change):
    raw = open(src, "rb").read()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    meta = json.loads(header["__metadata__"]["attn_plugins"])
    change(meta)
    header["__metadata__"]["attn_plugins"] = json.dumps(meta)
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    open(dst, "wb").write(struct.pack("<Q", len(new)) + new + raw[8 + size :])


def test_newer_format_version(tmp_path, bart_record):
    path = bart_record.save(tmp_path / "run.safetensors")
    _rewrite_meta(path, tmp_path / "new.safetensors", lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ap.RecordFormatError, match="newer than this attn-plugins reads.*upgrade"):
        ap.AttentionRecord.load(tmp_path / "new.safetensors")


def test_missing_tensor(tmp_path, bart_record):
    path = bart_record.save(tmp_path / "run.safetensors")
    _rewrite_meta(path, tmp_path / "bad.safetensors", lambda m: m["layers"].append(dict(m["layers"][0])))
    with pytest.raises(ap.RecordFormatError, match="damaged: tensor 'layers.*weights' is missing"):
        ap.AttentionRecord.load(tmp_path / "bad.safetensors")


def test_missing_and_directory_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="no record file"):
        ap.AttentionRecord.load(tmp_path / "nope.safetensors")
    with pytest.raises(ap.RecordFormatError, match="is a directory"):
        ap.AttentionRecord.load(tmp_path)


def test_repr_is_short_and_summary_readable(bart_record):
    assert repr(bart_record) == "AttentionRecord(BartForConditionalGeneration, 6 layers, batch 2)"
    text = bart_record.summary()
    assert "encoder self-attention: layers [0, 1], heads [1, 3]" in text
    assert "decoder cross-attention" in text


def test_tensors_sharing_memory_are_saved(tmp_path):
    """Inputs that alias each other (or views of one buffer) still save and load losslessly."""
    base = torch.arange(12).reshape(2, 6)
    weights = torch.rand(2, 2, 3, 3)
    record = ap.AttentionRecord(
        layers=[ap.LayerAttention("a", None, "self", 0, weights), ap.LayerAttention("b", None, "self", 1, weights[:1])],
        inputs={"token_type_ids": base, "decoder_token_type_ids": base, "input_ids": base[:, :3]},
    )
    loaded = ap.AttentionRecord.load(record.save(tmp_path / "shared.safetensors"))
    _same(record, loaded)
