"""The vendored JavaScript libraries are exactly the files the manifest names (SHA-256, computed
here independently), each with its licence text, and the package reads them from its own folder."""

from __future__ import annotations

import hashlib
import json
import pathlib

import pytest

from attn_plugins.integrations import assets

VENDOR = pathlib.Path(assets.__file__).parent / "static" / "vendor"
# what each file's own header says it is
HEADERS = {"require.js": "RequireJS 2.3.6", "d3.min.js": "d3js.org v5.7.0", "jquery.min.js": "jQuery v2.2.4"}
LICENCES = {"MIT": "Permission is hereby granted, free of charge", "BSD-3-Clause": "Redistribution and use in source"}


def sha256(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest() -> dict:
    return json.loads((VENDOR / "manifest.json").read_text(encoding="utf-8"))


def test_every_file_matches_its_checksum():
    entries = manifest()
    assert sorted(entries) == sorted(assets.LIBRARIES)
    for name, entry in entries.items():
        assert sha256(VENDOR / name) == entry["sha256"], (
            f"{name} differs from the manifest: run scripts/fetch_js_assets.sh"
        )
        assert entry["package"] == assets.LIBRARIES[name][0]
        assert HEADERS[name] in (VENDOR / name).read_text(encoding="utf-8")[:300]


def test_every_file_has_its_licence():
    for name, entry in manifest().items():
        licence = VENDOR / entry["license_file"]
        assert sha256(licence) == entry["license_sha256"]
        assert LICENCES[entry["license"]] in licence.read_text(encoding="utf-8"), name


def test_nothing_unlisted_in_the_vendor_folder():
    entries = manifest()
    listed = {"manifest.json"} | set(entries) | {e["license_file"] for e in entries.values()}
    present = {p.relative_to(VENDOR).as_posix() for p in VENDOR.rglob("*") if p.is_file()}
    assert present == listed


def test_package_reads_its_own_copy(monkeypatch):
    monkeypatch.delenv("ATTN_PLUGINS_ASSETS_DIR", raising=False)
    assert pathlib.Path(str(assets.asset_dir())) == VENDOR
    assert assets.missing() == []
    assert assets.load("d3.min.js") == (VENDOR / "d3.min.js").read_text(encoding="utf-8")
    assert assets.manifest() == manifest()


def test_missing_copy_says_to_reinstall(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTN_PLUGINS_ASSETS_DIR", str(tmp_path))
    assert sorted(assets.missing()) == sorted(assets.LIBRARIES)
    with pytest.raises(assets.AssetsMissingError, match="reinstall"):
        assets.load("require.js")
