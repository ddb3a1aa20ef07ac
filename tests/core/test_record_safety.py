"""Record files and directories are untrusted input; every file we write is atomic.

Hostile or damaged records (path traversal in metadata, symlinks out of the record, deep JSON,
damaged layer entries, contradicting tensors, oversized headers) give RecordFormatError for the
file and directory layouts, lazy or not; a fuzz test (Hypothesis) checks that nothing else comes out.
Writes are checked under a real file-size limit (RLIMIT_FSIZE in a subprocess: the kernel refuses
the write as on a full disk) and for the user's umask.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import attn_plugins as ap
from attn_plugins.atomic import atomic_path, write_text
from attn_plugins.errors import RecordFormatError
from attn_plugins.record.format import MAX_LAYERS, MAX_METADATA_BYTES

from .test_record import _same

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _record(stack_a="encoder", stack_b="decoder", name="enc.layer.0.attn") -> ap.AttentionRecord:
    g = torch.Generator().manual_seed(0)
    return ap.AttentionRecord(
        layers=[
            ap.LayerAttention(name, stack_a, "self", 0, torch.rand(2, 2, 3, 3, generator=g), heads=[0, 2]),
            ap.LayerAttention("dec.layer.0.self", stack_b, "self", 0, torch.rand(2, 4, 2, 2, generator=g)),
            ap.LayerAttention(
                "dec.layer.0.cross",
                stack_b,
                "cross",
                0,
                torch.rand(2, 4, 2, 3, generator=g),
                queries=torch.rand(2, 4, 2, 8, generator=g),
                keys=torch.rand(2, 4, 3, 8, generator=g),
            ),
        ],
        tokens=[["a", "b", "c"], ["d", "e", "f"]],
        decoder_tokens=[["x", "y"], ["z", "w"]],
        inputs={"input_ids": torch.arange(6).reshape(2, 3), "attention_mask": torch.ones(2, 3, dtype=torch.long)},
        model_class="Toy",
        model_name="toy",
        metadata={"note": {"nested": [1, 2]}},
    )


def _read_file_meta(path):
    raw = open(path, "rb").read()
    (size,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + size])
    return raw, size, header


def _write_header(dst, header, data: bytes):
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    with open(dst, "wb") as handle:
        handle.write(struct.pack("<Q", len(new)) + new + data)


def _file_with_meta(src, dst, meta_text: str):
    """A copy of single-file record ``src`` whose attn-plugins metadata is ``meta_text``."""
    raw, size, header = _read_file_meta(src)
    header["__metadata__"]["attn_plugins"] = meta_text
    _write_header(dst, header, raw[8 + size :])
    return dst


def _change_file(src, dst, change):
    raw, size, header = _read_file_meta(src)
    meta = json.loads(header["__metadata__"]["attn_plugins"])
    change(meta)
    return _file_with_meta(src, dst, json.dumps(meta))


def _change_dir(good, dst, change):
    shutil.copytree(good, dst, symlinks=True)
    meta = json.loads((dst / "record.json").read_text())
    change(meta)
    (dst / "record.json").write_text(json.dumps(meta))
    return dst


def _refused(path, match=None, *, lazy_too=True):
    """Loading ``path`` every way it can be loaded raises RecordFormatError (matching ``match``)."""
    ways = [{}] + ([{"lazy": True}] if lazy_too and os.path.isfile(path) else [])
    for kwargs in ways:
        with pytest.raises(RecordFormatError, match=match):
            ap.AttentionRecord.load(path, **kwargs)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    base = tmp_path_factory.mktemp("good")
    record = _record()
    record.save(base / "one.safetensors")
    record.save(base / "dir", sharded=True)
    return base


# ----- 1. metadata that would become a path -------------------------------------------------------------
HOSTILE = [
    "../../../x",
    "/etc/passwd",
    "..",
    "a/b",
    "encoder/../../x",
    "x\x00y",
    "",
    " encoder",
    "a..b",
    "decoder\\..\\x",
    "~",
    ".hidden",
    "a.",
    ".",
    "self/../../x",
    "x" * 300,
]
GOOD_STACKS = [
    None,
    "encoder",
    "decoder",
    "language_model",
    "text_model",
    "vlm.language_model",
    "model.vision_tower",
    "towers.0",
]


@pytest.mark.parametrize("field", ["stack", "kind"])
@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_path_fields_are_refused_at_load(tmp_path, good, field, value):
    change = lambda m: m["layers"][1].update({field: value})  # noqa: E731
    _refused(_change_file(good / "one.safetensors", tmp_path / "bad.safetensors", change), f"layer 1's {field}")
    _refused(_change_dir(good / "dir", tmp_path / "bad", change), f"layer 1's {field}")


@pytest.mark.parametrize("stack", GOOD_STACKS)
def test_stacks_the_adapters_produce_round_trip(tmp_path, stack):
    record = _record(stack_a=stack, stack_b=stack)
    _same(record, ap.AttentionRecord.load(record.save(tmp_path / "one.safetensors")))
    _same(record, ap.AttentionRecord.load(record.save(tmp_path / "dir", sharded=True)))
    files = os.listdir(tmp_path / "dir" / "layers")
    assert all(f.endswith(".safetensors") and "/" not in f for f in files) and len(files) == 3


@pytest.mark.parametrize("value", HOSTILE)
def test_sharded_save_never_writes_outside_its_directory(tmp_path, value):
    before = sorted(p for p in os.listdir(tmp_path))
    record = _record(stack_b=value)
    with pytest.raises(RecordFormatError, match="cannot be saved.*stack"):
        record.save(tmp_path / "out", sharded=True)
    assert sorted(os.listdir(tmp_path)) == before  # nothing written, not even the directory
    record = _record(stack_b="decoder")
    record.layers[1].kind = value
    with pytest.raises(RecordFormatError, match="cannot be saved.*kind"):
        record.save(tmp_path / "out", sharded=True)
    assert sorted(os.listdir(tmp_path)) == before


@pytest.mark.parametrize("name", ["../../../escape", "/etc/passwd", "a/b/c", "x\x00", "<script>"])
def test_names_are_data_only(tmp_path, good, name):
    """A hostile layer *name* loads (it is data) and a sharded save of it stays inside the directory."""
    path = _change_file(
        good / "one.safetensors", tmp_path / "n.safetensors", lambda m: m["layers"][0].update(name=name)
    )
    record = ap.AttentionRecord.load(path)
    assert record.layers[0].name == name
    (tmp_path / "inner").mkdir()
    record.save(tmp_path / "inner" / "out", sharded=True)
    assert sorted(os.listdir(tmp_path)) == ["inner", "n.safetensors"]
    assert ap.AttentionRecord.load(tmp_path / "inner" / "out").layers[0].name == name


def test_layer_file_outside_layers_folder_is_refused(tmp_path, good):
    for value in [
        "../../etc/passwd",
        "/etc/passwd",
        "layers/../../x.safetensors",
        "inputs.safetensors",
        "layers/sub/x.safetensors",
        "layers/.steps.safetensors",
        "record.json",
        5,
        None,
    ]:
        bad = tmp_path / f"b{abs(hash(str(value)))}"
        _refused(_change_dir(good / "dir", bad, lambda m, value=value: m["layers"][0].update(file=value)), "file")


# ----- 2. symlinks out of the record directory ------------------------------------------------------------
def _linked_copy(good_dir, bad, name, target):
    """A copy of record directory ``good_dir`` at ``bad`` whose ``name`` is a symlink to ``target``."""
    shutil.copytree(good_dir, bad)
    if os.path.isdir(bad / name):
        shutil.rmtree(bad / name)
    else:
        os.remove(bad / name)
    os.symlink(target, bad / name)
    return bad


def test_shard_linked_outside_is_refused(tmp_path, good):
    first = json.loads((good / "dir" / "record.json").read_text())["layers"][0]["file"]
    other = tmp_path / "other"
    _record().save(other, sharded=True)
    targets = ["/etc/passwd", str(other / first), str(good / "one.safetensors"), "../../other/" + first]
    for n, target in enumerate(targets):
        _refused(_linked_copy(good / "dir", tmp_path / f"bad{n}", first, target), "leads outside the record directory")
    # the inputs file too, and the whole layers folder
    _refused(
        _linked_copy(good / "dir", tmp_path / "bad_inputs", "inputs.safetensors", other / "inputs.safetensors"),
        "leads outside",
    )
    _refused(_linked_copy(good / "dir", tmp_path / "bad_layers", "layers", other / "layers"), "leads outside")


def test_shard_linked_to_another_record_of_the_same_stream_is_refused(tmp_path, good):
    root = tmp_path / "stream"
    root.mkdir()
    shutil.copytree(good / "dir", root / "record-0001")
    first = json.loads((good / "dir" / "record.json").read_text())["layers"][0]["file"]
    _linked_copy(good / "dir", root / "record-0000", first, root / "record-0001" / first)
    _refused(root / "record-0000", "leads outside the record directory")
    _refused(root, "holds 2 records")


def test_symlinked_record_json_and_record_folder_are_refused(tmp_path, good):
    other = tmp_path / "other"
    _record().save(other, sharded=True)
    _refused(_linked_copy(good / "dir", tmp_path / "bad_json", "record.json", other / "record.json"), "leads outside")
    root = tmp_path / "stream"
    root.mkdir()
    os.symlink(other, root / "record-0000")
    _refused(root, "leads outside")


def test_fifo_and_folder_in_place_of_a_file_never_block(tmp_path, good):
    first = json.loads((good / "dir" / "record.json").read_text())["layers"][0]["file"]
    cases = []
    for what in ("record.json", first, "inputs.safetensors"):
        for make in (os.mkfifo, os.mkdir):
            bad = tmp_path / f"b{len(cases)}"
            shutil.copytree(good / "dir", bad)
            os.remove(bad / what)
            make(bad / what)
            cases.append(bad)
    outcome = {}

    def run():
        for bad in cases:
            try:
                ap.AttentionRecord.load(bad)
                outcome[bad] = "loaded"
            except RecordFormatError as exc:
                outcome[bad] = exc
            except BaseException as exc:  # noqa: BLE001 - reported below
                outcome[bad] = repr(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "loading a record with a FIFO in it blocked"
    assert all(isinstance(v, RecordFormatError) for v in outcome.values()), outcome


def test_save_into_a_directory_whose_layers_folder_leaves_it_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(outside, target / "layers")
    with pytest.raises(RecordFormatError, match="leads outside"):
        _record().save(target, sharded=True)
    assert os.listdir(outside) == []


# ----- 3. deep JSON, damaged entries, contradicting tensors, sizes -------------------------------------------
def test_deeply_nested_json_everywhere(tmp_path, good):
    deep = "[" * 100_000 + "]" * 100_000
    _refused(_file_with_meta(good / "one.safetensors", tmp_path / "a.safetensors", deep), "nested too deeply")
    bad = tmp_path / "d"
    shutil.copytree(good / "dir", bad)
    (bad / "record.json").write_text(deep)
    _refused(bad, "nested too deeply")
    # nested within the limits of Python but past the format's
    nested = "1"
    for _ in range(200):
        nested = "[" + nested + "]"
    for change in (
        lambda m: m.update(metadata={"x": json.loads(nested)}),
        lambda m: m.update(tokens=json.loads(nested)),
    ):
        _refused(_change_file(good / "one.safetensors", tmp_path / "b.safetensors", change))
        shutil.rmtree(tmp_path / "c", ignore_errors=True)
        _refused(_change_dir(good / "dir", tmp_path / "c", change))
    # the safetensors header itself
    raw, size, header = _read_file_meta(good / "one.safetensors")
    header["junk"] = json.loads(nested)
    _write_header(tmp_path / "h.safetensors", header, raw[8 + size :])
    _refused(tmp_path / "h.safetensors")
    with open(tmp_path / "h2.safetensors", "wb") as handle:
        handle.write(struct.pack("<Q", len(deep)) + deep.encode())
    _refused(tmp_path / "h2.safetensors")
    shard_dir = tmp_path / "s"
    shutil.copytree(good / "dir", shard_dir)
    shutil.copy(tmp_path / "h2.safetensors", shard_dir / "inputs.safetensors")
    _refused(shard_dir)


DAMAGED_ENTRIES = [
    ("name", 5, "name must be a string"),
    ("stack", 3, "stack"),
    ("kind", None, "kind"),
    ("index", "1", "index"),
    ("index", -1, "index"),
    ("index", True, "index"),
    ("index", 1.5, "index"),
    ("index", "HUGE", "not readable JSON"),
    ("heads", "x", "heads"),
    ("heads", [1, 1], "repeat"),
    ("heads", [-1, 0], "head index"),
    ("heads", [0.5, 1], "head index"),
    ("heads", {"a": 1}, "heads"),
    ("queries", "yes", "queries"),
    ("dtype", 3, "dtype"),
    ("dtype", "int8", "says its weights are"),
]


@pytest.mark.parametrize("key, value, message", DAMAGED_ENTRIES)
def test_damaged_layer_entries(tmp_path, good, key, value, message):
    if value == "HUGE":  # an integer too long for Python's int(): written into the JSON text itself
        edit = lambda text: text.replace('"index": 0', '"index": ' + "9" * 5000, 1)  # noqa: E731
        meta = json.loads(_read_file_meta(good / "one.safetensors")[2]["__metadata__"]["attn_plugins"])
        path = _file_with_meta(good / "one.safetensors", tmp_path / "x.safetensors", edit(json.dumps(meta)))
        _refused(path, message)
        bad = tmp_path / "d"
        shutil.copytree(good / "dir", bad)
        (bad / "record.json").write_text(edit((bad / "record.json").read_text()))
        _refused(bad, message)
        return
    change = lambda m: m["layers"][0].update({key: value})  # noqa: E731
    _refused(_change_file(good / "one.safetensors", tmp_path / "x.safetensors", change), message)
    _refused(_change_dir(good / "dir", tmp_path / "d", change), message)


@pytest.mark.parametrize("key", ["name", "stack", "kind", "index"])
def test_missing_layer_keys(tmp_path, good, key):
    change = lambda m: m["layers"][2].pop(key)  # noqa: E731
    _refused(_change_file(good / "one.safetensors", tmp_path / "x.safetensors", change), f"has no '{key}'")
    _refused(_change_dir(good / "dir", tmp_path / "d", change), f"has no '{key}'")


TOP_LEVEL = [
    ("layers", {"a": 1}, "no layer list"),
    ("layers", [None], "layer entry 0"),
    ("layers", ["x"], "layer entry 0"),
    ("layers", [[1, 2]], "layer entry 0"),
    ("tokens", "abc", "tokens"),
    ("tokens", [["a", 1]], "tokens"),
    ("decoder_tokens", [1], "decoder_tokens"),
    ("inputs", "input_ids", "inputs"),
    ("inputs", [1], "inputs"),
    ("inputs", ["../x"], "input name"),
    ("inputs", ["input_ids", "input_ids"], "twice"),
    ("metadata", [1], "metadata"),
    ("model_class", 3, "model_class"),
    ("attn_implementation", [], "attn_impl"),
    ("format_version", "1", "format version"),
    ("format_version", True, "format version"),
    ("format", None, "not an attn-plugins record"),
]


@pytest.mark.parametrize("key, value, message", TOP_LEVEL)
def test_damaged_top_level_fields(tmp_path, good, key, value, message):
    change = lambda m: m.update({key: value})  # noqa: E731
    _refused(_change_file(good / "one.safetensors", tmp_path / "x.safetensors", change), message)
    _refused(_change_dir(good / "dir", tmp_path / "d", change), message)


def test_metadata_that_is_not_an_object(tmp_path, good):
    for n, text in enumerate(["[]", "null", "3", '"text"', "{", "\udcff"]):
        _refused(_file_with_meta(good / "one.safetensors", tmp_path / f"{n}.safetensors", text))
        bad = tmp_path / f"d{n}"
        shutil.copytree(good / "dir", bad)
        (bad / "record.json").write_bytes(text.encode("utf-8", "surrogateescape"))
        _refused(bad)


def test_heads_contradicting_the_tensor(tmp_path, good):
    for heads in ([0], [0, 1, 2], list(range(40))):
        change = lambda m: m["layers"][0].update(heads=heads)  # noqa: E731, B023
        _refused(_change_file(good / "one.safetensors", tmp_path / "x.safetensors", change), "names .* heads")
        shutil.rmtree(tmp_path / "d", ignore_errors=True)
        _refused(_change_dir(good / "dir", tmp_path / "d", change), "names .* heads")


def test_tensors_of_the_wrong_shape_or_type(tmp_path, good):
    from safetensors.torch import save_file

    first = json.loads((good / "dir" / "record.json").read_text())["layers"][0]["file"]
    for n, weights in enumerate([torch.rand(2, 3, 3), torch.ones(2, 2, 3, 3, dtype=torch.long), torch.rand(2)]):
        bad = tmp_path / f"d{n}"
        shutil.copytree(good / "dir", bad)
        save_file({"weights": weights}, str(bad / first))
        meta = json.loads((bad / "record.json").read_text())
        meta["layers"][0].pop("dtype")
        (bad / "record.json").write_text(json.dumps(meta))
        _refused(bad, "layer 0's weights")


def test_thousands_of_layers_are_refused_before_any_tensor_is_read(tmp_path, good):
    many = lambda m: m.update(layers=[dict(m["layers"][0], index=i) for i in range(MAX_LAYERS + 3000)])  # noqa: E731
    _refused(_change_file(good / "one.safetensors", tmp_path / "x.safetensors", many), "over the limit")
    _refused(_change_dir(good / "dir", tmp_path / "d", many), "over the limit")


def test_huge_headers_are_refused_without_reading_them(tmp_path, good):
    """Sparse files: a 200 MB header length, a 200 MB record.json; refused from the sizes alone."""
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", 200 * 2**20) + b"{")
        handle.truncate(8 + 200 * 2**20 + 16)
    _refused(path)
    with pytest.raises(RecordFormatError, match="over the limit"):
        ap.AttentionRecord.load(path, lazy=True)
    bad = tmp_path / "d"
    shutil.copytree(good / "dir", bad)
    with open(bad / "record.json", "r+b") as handle:
        handle.truncate(200 * 2**20)
    _refused(bad, "over the limit")
    # a real header within safetensors' own limit whose record JSON is over ours
    big = tmp_path / "big.safetensors"
    _file_with_meta(good / "one.safetensors", big, json.dumps({"pad": "x" * (MAX_METADATA_BYTES + 10)}))
    _refused(big, "over the limit")
    first = json.loads((good / "dir" / "record.json").read_text())["layers"][0]["file"]
    shutil.copy(path, tmp_path / "d" / first)
    shutil.copy(good / "dir" / "record.json", bad / "record.json")
    _refused(bad, "over the limit")


# ----- 4. fuzzing: only RecordFormatError may come out ----------------------------------------------------
def _nest(inner):
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(HOSTILE + GOOD_STACKS[1:] + ["self", "cross", "layers/x.safetensors"]),
    _nest,
    max_leaves=16,
)
LAYER_KEYS = ["name", "stack", "kind", "index", "heads", "dtype", "queries", "keys", "file"]
TOP_KEYS = [
    "format",
    "format_version",
    "model_class",
    "model_name",
    "attn_implementation",
    "layers",
    "tokens",
    "decoder_tokens",
    "inputs",
    "metadata",
]
edits = st.lists(
    st.tuples(
        st.sampled_from(["layer", "top"]),
        st.integers(0, 2),
        st.sampled_from(LAYER_KEYS + TOP_KEYS),
        st.booleans(),
        json_values,
    ),
    min_size=1,
    max_size=4,
)
FUZZ = settings(
    max_examples=int(os.environ.get("ATTN_PLUGINS_FUZZ_EXAMPLES", "120")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _apply(meta, edits_):
    for where, i, key, delete, value in edits_:
        target = (
            meta
            if where == "top"
            else (
                meta["layers"][i]
                if isinstance(meta.get("layers"), list)
                and i < len(meta["layers"])
                and isinstance(meta["layers"][i], dict)
                else None
            )
        )
        if target is None:
            continue
        if delete:
            target.pop(key, None)
        else:
            target[key] = value


def _load_or_refuse(path, **kwargs):
    """Load and use the record, or get RecordFormatError; anything else fails the test."""
    try:
        record = ap.AttentionRecord.load(path, **kwargs)
    except RecordFormatError:
        return None
    record.summary()
    for layer in record.layers:
        float(layer.weights.float().sum())
    return record


@FUZZ
@given(edits=edits)
def test_fuzz_file_metadata(good, edits):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "f.safetensors")
        _change_file(good / "one.safetensors", path, lambda m: _apply(m, edits))
        _load_or_refuse(path)
        _load_or_refuse(path, lazy=True)


@FUZZ
@given(
    header=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    keep_data=st.booleans(),
    meta=st.one_of(st.none(), json_values),
)
def test_fuzz_safetensors_headers(good, header, keep_data, meta):
    raw, size, real = _read_file_meta(good / "one.safetensors")
    if meta is not None:
        header["__metadata__"] = {"attn_plugins": json.dumps(meta)} if isinstance(meta, dict) else meta
    if keep_data:  # real tensor entries with hostile neighbours
        header = {**{k: v for k, v in real.items() if k != "__metadata__"}, **header}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "h.safetensors")
        _write_header(path, header, raw[8 + size :] if keep_data else b"\0" * 64)
        _load_or_refuse(path)
        _load_or_refuse(path, lazy=True)


@FUZZ
@given(data=st.binary(max_size=300), prefix=st.booleans())
def test_fuzz_raw_bytes(good, data, prefix):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "r.safetensors")
        with open(path, "wb") as handle:
            handle.write((struct.pack("<Q", len(data)) if prefix else b"") + data)
        _load_or_refuse(path)
        _load_or_refuse(path, lazy=True)


DIR_OPS = st.lists(
    st.tuples(
        st.sampled_from(["delete", "truncate", "garbage", "link_out", "link_in", "fifo", "folder", "meta"]),
        st.sampled_from(["record.json", "inputs.safetensors", "layer0", "layer1", "layer2", "layers"]),
        st.integers(0, 400),
        st.binary(max_size=64),
        edits,
    ),
    min_size=1,
    max_size=3,
)


@FUZZ
@given(ops=DIR_OPS, stream=st.booleans())
# a FIFO in place of record.json, then an edit of it: once hung the test itself (not the loader)
@example(ops=[("fifo", "record.json", 0, b"", []), ("meta", "record.json", 0, b"", [])], stream=False)
def test_fuzz_directory_layouts(good, ops, stream):
    files = [e["file"] for e in json.loads((good / "dir" / "record.json").read_text())["layers"]]
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "run")
        record_dir = os.path.join(root, "record-0000") if stream else root
        shutil.copytree(good / "dir", record_dir)
        # links that leave the record point at a copy of their own (outside the record): ops that follow
        # such a link (a "fifo" on a file of a linked-out "layers") must never change the shared fixture
        outside = os.path.join(tmp, "outside")
        shutil.copytree(good / "dir", outside)
        for op, what, n, data, meta_edits in ops:
            name = files[int(what[-1])] if what.startswith("layer") and what != "layers" else what
            target = os.path.join(record_dir, name)
            if op == "meta":
                meta_path = os.path.join(record_dir, "record.json")
                # only a regular record.json is edited: opening one that an earlier op made a FIFO (or a
                # link to one) would block this test itself forever
                if not os.path.lexists(meta_path) or not stat.S_ISREG(os.lstat(meta_path).st_mode):
                    continue
                try:
                    with open(meta_path, encoding="utf-8") as handle:
                        meta = json.loads(handle.read())
                except (OSError, ValueError):
                    continue
                _apply(meta, meta_edits)
                with open(os.path.join(record_dir, "record.json"), "w") as handle:
                    json.dump(meta, handle)
                continue
            if not os.path.lexists(target) and op != "fifo":
                continue
            if op in ("truncate", "garbage") and os.path.isfile(target) and not os.path.islink(target):
                with open(target, "r+b") as handle:
                    if op == "truncate":
                        handle.truncate(n)
                    else:
                        handle.seek(n)
                        handle.write(data)
                continue
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            elif os.path.lexists(target):
                os.remove(target)
            if op == "link_out":
                os.symlink(os.path.join(outside, name), target)
            elif op == "link_in":
                os.symlink(os.path.join(record_dir, files[n % 3]), target)
            elif op == "fifo" and os.path.isdir(os.path.dirname(target)):
                os.mkfifo(target)
            elif op == "folder":
                os.mkdir(target)
        _load_or_refuse(root)


# ----- 5. atomic writes -------------------------------------------------------------------------------------
def _leftovers(folder):
    return sorted(f for f in os.listdir(folder) if f.endswith(".tmp") or f.startswith("."))


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    (tmp_path / "keep.txt").write_text("old")

    class BoomError(Exception):
        pass

    with pytest.raises(BoomError):
        with atomic_path(tmp_path / "keep.txt") as tmp:
            with open(tmp, "w") as handle:
                handle.write("half")
            raise BoomError
    assert (tmp_path / "keep.txt").read_text() == "old" and _leftovers(tmp_path) == []
    with pytest.raises(TypeError):
        write_text(tmp_path / "keep.txt", 12345)  # the serialization itself fails mid-write
    assert (tmp_path / "keep.txt").read_text() == "old" and _leftovers(tmp_path) == []
    with pytest.raises(TypeError):
        write_text(tmp_path / "new" / "deeper" / "page.html", object())
    assert sorted(os.listdir(tmp_path)) == ["keep.txt"]  # the folders it made are gone too


def test_record_save_with_an_unserializable_metadata_writes_nothing(tmp_path):
    record = _record()
    record.metadata["bad"] = object()
    with pytest.raises(TypeError):
        record.save(tmp_path / "r.safetensors")
    with pytest.raises(TypeError):
        record.save(tmp_path / "d", sharded=True)
    assert os.listdir(tmp_path) == []


FULL_DISK = textwrap.dedent("""
    import os, resource, sys, json, torch
    import attn_plugins as ap
    target, kind = sys.argv[1], sys.argv[2]
    g = torch.Generator().manual_seed(0)
    record = ap.AttentionRecord(layers=[ap.LayerAttention(f"l{i}", None, "self", i,
                                                          torch.rand(1, 4, 64, 64, generator=g))
                                        for i in range(6)], tokens=[["t"] * 64])
    limit = 100_000  # bytes: each file fits, the whole record does not (a full disk)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        if kind == "file":
            record.layers *= 3
            record.save(target)
        elif kind == "sharded":
            record.layers[3].weights = torch.rand(1, 4, 256, 256)
            record.save(target, sharded=True)
        elif kind == "export":
            record.tokens = [["tok%d" % i for i in range(64)]]
            ap.export(record, "bertviz", path=target, view="model")
        elif kind == "stream":
            layer = torch.nn.TransformerEncoderLayer(64, 4, 64, batch_first=True)
            model = torch.nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False).eval()
            with torch.no_grad(), ap.capture(model, stream_to=target):
                model(torch.randn(4, 150, 64))
    except (OSError, ap.AttnPluginsError) as exc:
        print("FAILED", type(exc).__name__, exc)
        sys.exit(3)
    print("WROTE")
""")


@pytest.mark.parametrize("kind", ["file", "sharded", "export", "stream"])
def test_a_full_disk_leaves_neither_target_nor_temporary_file(tmp_path, kind):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "mine.txt").write_text("keep")
    target = out_dir / {"file": "r.safetensors", "sharded": "d", "export": "page.html", "stream": "s"}[kind]
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(target), kind], capture_output=True, text=True, env=env, timeout=240
    )
    assert done.returncode == 3 and "FAILED" in done.stdout, (done.stdout, done.stderr[-2000:])
    assert "File too large" in done.stdout or "EFBIG" in done.stdout or "Errno 27" in done.stdout, done.stdout
    assert sorted(os.listdir(out_dir)) == ["mine.txt"]  # no target, no temporary file, no half record


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        record = _record()
        paths = [record.save(tmp_path / "r.safetensors"), write_text(tmp_path / "p.html", "<p>hi</p>")]
        record.save(tmp_path / "d", sharded=True)
        paths += [os.path.join(d, f) for d, _, fs in os.walk(tmp_path / "d") for f in fs]
        page = ap.export(record, "bertviz", path=tmp_path / "v.html", view="head", stack="encoder")
        paths.append(str(tmp_path / "v.html"))
    finally:
        os.umask(old)
    assert page is not None and len(paths) >= 7
    for path in paths:
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask, (path, oct(os.stat(path).st_mode))
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "d") == []
