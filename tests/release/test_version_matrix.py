"""The transformers version matrix (scripts/version_matrix.py): the core capture sample and a slice
of the architecture sweep (one or two types per family) pass with
the oldest supported, a middle and the newest 5.x release over the same torch, and import refuses
an unsupported release with the supported range. The first run installs each release once into
.cache/version-matrix/ (PyPI needed); reruns are offline."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ._build import ROOT

pytestmark = pytest.mark.release


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    out = tmp_path_factory.mktemp("matrix") / "matrix.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "version_matrix.py"), "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode == 2:
        pytest.fail(f"the version matrix could not install a transformers release:\n{done.stderr}", pytrace=False)
    print(done.stdout)
    return json.loads(out.read_text())


def test_every_release_passes_the_core_sample(matrix):
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import version_matrix
    finally:
        sys.path.pop(0)
    results = {r["version"]: r for r in matrix["results"]}
    assert list(results) == list(version_matrix.DEFAULT_VERSIONS)
    for version, result in results.items():
        # the release under test is the one imported, beside the checkout's attn_plugins
        assert result["imported"]["transformers"] == version
        assert result["imported"]["attn_plugins"].startswith(str(ROOT))
        # the sweep slice: capture == eager (weights, keys, outputs) for each family with this release
        assert result["sweep"]["status"] == dict.fromkeys(version_matrix.SWEEP_TYPES, "PASS"), (
            version,
            result["sweep"],
        )
        assert result["counts"].get("passed", 0) >= 20 and result["ok"], (
            version,
            result["summary"],
            result["failures"],
        )


def test_unsupported_releases_are_refused_at_import(matrix):
    assert [r["version"] for r in matrix["refused"]] == ["4.57.6", "5.14.1"]
    for refused in matrix["refused"]:
        assert refused["ok"], refused["message"]
        assert "transformers>=" in refused["message"] and "pip install" in refused["message"]
