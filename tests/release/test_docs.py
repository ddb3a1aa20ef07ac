"""The docs site builds with --strict offline (every reference resolves, no warning), and the record
schema it publishes describes the files attn-plugins writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import attn_plugins as ap

from ._build import ROOT

pytestmark = pytest.mark.release


def test_docs_build_strict_offline(tmp_path):
    pytest.importorskip("mkdocstrings", reason='pip install "attn-plugins[docs]"')
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    site = tmp_path / "site"
    for page in (
        "index.html",
        "record-format/index.html",
        "api/capture/index.html",
        "changelog/index.html",
        "img/head-view.png",
        "img/comparison.png",
    ):
        assert (site / page).is_file(), page
    # the API reference is generated from the docstrings, the changelog from CHANGELOG.md
    assert 'id="attn_plugins.capturing.capture"' in (site / "api/capture/index.html").read_text(encoding="utf-8")
    assert "Keep a Changelog" in (site / "changelog/index.html").read_text(encoding="utf-8")
    assert json.loads((site / "record.schema.json").read_text())["title"].startswith("attn-plugins record")


def _tiny_record():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=37, vocab_size=99, num_hidden_layers=2)
    model = BertModel(config).eval()
    inputs = {
        "input_ids": torch.tensor([[2, 5, 7, 3], [2, 9, 3, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
    }
    with torch.no_grad(), ap.capture(model, heads=[0, 2], keep_queries_keys=True) as cap:
        model(**inputs)
    return cap.record


def test_saved_records_follow_the_published_schema(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    from safetensors import safe_open

    schema = json.loads((ROOT / "docs" / "record.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    record = _tiny_record()
    path = record.save(tmp_path / "run.safetensors")
    with safe_open(path, framework="pt") as handle:
        meta = json.loads(handle.metadata()["attn_plugins"])
        names = set(handle.keys())
    jsonschema.validate(meta, schema)
    assert {f"layers.{i}.weights" for i in range(len(meta["layers"]))} <= names
    assert {f"inputs.{n}" for n in meta["inputs"]} <= names
    directory = record.save(tmp_path / "run-dir", sharded=True)
    jsonschema.validate(json.loads((tmp_path / "run-dir" / "record.json").read_text()), schema)
    # the schema is not vacuous: a damaged file is rejected
    broken = dict(meta, layers=[{**meta["layers"][0], "kind": "sideways"}])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    assert directory
