"""The public modules type-check under ``mypy --strict`` (the files and settings in pyproject.toml's
[tool.mypy]), and the typing marker ships so that users' type checkers read our annotations."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from ._build import ROOT

pytestmark = pytest.mark.release


def _mypy() -> list[str]:
    # the mypy of the interpreter running the tests (the project's venv), not one found elsewhere on PATH
    beside = os.path.join(os.path.dirname(sys.executable), "mypy")
    if os.path.exists(beside):
        return [beside]
    if shutil.which("mypy") is None:  # the set-up script installs it (the test extra)
        pytest.fail("mypy is not installed: run `make setup` (or pip install -e '.[test]')")
    return [sys.executable, "-m", "mypy"]


def test_public_modules_pass_mypy_strict():
    # the cache lives in the gitignored .cache/mypy (pyproject.toml): a repeat run reads torch's and
    # transformers' types from it instead of analysing them again
    # no PYTHONPATH: mypy treats folders on it as installed packages and silences their errors
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}
    done = subprocess.run([*_mypy()], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "Success: no issues found" in done.stdout, done.stdout


def test_typing_marker_is_packaged():
    assert os.path.isfile(os.path.join(ROOT, "attn_plugins", "py.typed"))
    setup = open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read()
    assert '"py.typed"' in setup
