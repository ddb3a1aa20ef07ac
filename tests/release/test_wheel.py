"""The built wheel (and the sdist it is built from) carries everything an exported page needs:
installed away from the checkout, with only site-packages beside it, it exports a BertViz view that
draws in headless Chromium with the network off."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import numpy
import pytest

from .. import _browser
from . import _build

VENDOR = "attn_plugins/integrations/static/vendor/"
pytestmark = pytest.mark.release


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return _build.artifacts(tmp_path_factory.mktemp("release-build"))


def test_wheel_and_sdist_carry_every_static_file(built):
    expected = _build.shipped_static_files()
    assert {VENDOR + n for n in ("require.js", "d3.min.js", "jquery.min.js", "manifest.json")} <= set(expected)
    wheel = set(_build.wheel_names(built["wheel"]))
    sdist = set(_build.sdist_names(built["sdist"]))
    assert [p for p in expected if p not in wheel] == []
    assert [p for p in expected if p not in sdist] == []
    # what setup.py reads at build time is in the sdist
    assert {"setup.py", "pyproject.toml", "README.md", "MANIFEST.in", "requirements/allennlp.txt"} <= sdist
    assert not [p for p in wheel if "/_assets/" in p or p.startswith("tests/")]


def test_wheel_carries_the_manifests_bytes(built):
    import hashlib

    with zipfile.ZipFile(built["wheel"]) as archive:
        manifest = json.loads(archive.read(VENDOR + "manifest.json"))
        assert sorted(manifest) == ["d3.min.js", "jquery.min.js", "require.js"]
        for name, entry in manifest.items():
            assert hashlib.sha256(archive.read(VENDOR + name)).hexdigest() == entry["sha256"], name
            assert hashlib.sha256(archive.read(VENDOR + entry["license_file"])).hexdigest() == entry["license_sha256"]


def test_wheel_metadata_declares_ranges(built):
    with zipfile.ZipFile(built["wheel"]) as archive:
        (meta,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [
            line.split(":", 1)[1].strip()
            for line in archive.read(meta).decode().splitlines()
            if line.startswith("Requires-Dist:") and "extra ==" not in line
        ]
    from packaging.requirements import Requirement

    from attn_plugins import _version

    assert f"Version: {_version.__version__}" in archive_text(built["wheel"], meta)
    by_name = {Requirement(r).name: Requirement(r).specifier for r in requires}
    assert by_name["torch"] == Requirement("torch>=2.5,<3").specifier
    assert by_name["transformers"] == Requirement(_version.TRANSFORMERS_REQUIREMENT).specifier
    assert "5.24.0" in by_name["transformers"] and "5.14.1" not in by_name["transformers"]
    assert not [r for r in requires if "==" in r], requires


def archive_text(wheel: pathlib.Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(name).decode()


@pytest.fixture(scope="module")
def browser():
    with _browser.Browser() as b:
        yield b


def test_installed_wheel_exports_a_page_that_draws_offline(built, browser, tmp_path):
    work = tmp_path / "elsewhere"  # cwd away from the checkout
    work.mkdir()
    script = work / "export_page.py"
    shutil.copy(pathlib.Path(__file__).with_name("_export_page.py"), script)
    # -S: no site processing, so the development checkout's editable install (a .pth file) is not
    # seen; the wheel's install folder first, then site-packages for torch, transformers, bertviz
    site_packages = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ATTN_PLUGINS_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(built["site"]), *sorted(site_packages)]),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONNOUSERSITE="1",
    )
    done = subprocess.run(
        [sys.executable, "-S", str(script), str(work)], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout.strip().splitlines()[-1])
    checkout = str(_build.ROOT)
    assert info["package"].startswith(str(built["site"])), info["package"]
    assert info["asset_dir"].startswith(str(built["site"])), info["asset_dir"]
    assert not [p for p in info["path"] if p and os.path.realpath(p) == os.path.realpath(checkout)]

    root, n, heads = info["root_id"], len(info["tokens"]), info["heads"]
    page = browser.open(work / "head.html", wait_for=f"document.querySelectorAll('#{root} #attention line').length")
    assert page.console_errors() == []
    assert page.network_requests() == []
    assert page.count(f"#{root} #attention line") == heads * n * n
    assert page.text(f"#{root} #left text") == info["tokens"]
    value = page.js(f"return document.querySelector('#{root} #attention').children[1].children[2].children[3].__data__")
    assert numpy.float32(value) == numpy.float32(info["weight"])  # the record's float32, exactly
