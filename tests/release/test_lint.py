"""The whole tree (package, tests, benchmarks, scripts, notebooks) passes ``ruff check`` with the rules
and exceptions in pyproject.toml's [tool.ruff], so a change that brings back an unused import, a
loop-variable closure or a zip() that silently drops a tail fails the test command; and it is
formatted as ``ruff format`` leaves it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from ._build import ROOT

pytestmark = pytest.mark.release


def _ruff() -> list[str]:
    # the ruff of the interpreter running the tests (the project's venv), not one found elsewhere on PATH
    beside = os.path.join(os.path.dirname(sys.executable), "ruff")
    if os.path.exists(beside):
        return [beside]
    if shutil.which("ruff") is None:  # the set-up script installs it (the test extra)
        pytest.fail("ruff is not installed: run `make setup` (or pip install -e '.[test]')")
    return [sys.executable, "-m", "ruff"]


def test_tree_passes_ruff_check():
    done = subprocess.run(
        [*_ruff(), "check", "--output-format", "concise", "."], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


def test_tree_is_formatted():
    done = subprocess.run([*_ruff(), "format", "--check", "."], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, "run `ruff format .`:\n" + done.stdout[-6000:] + done.stderr[-2000:]


def test_ruff_is_pinned_where_the_other_tools_are():
    """The test extra allows only the pinned minor version: a new ruff minor release adds rules and
    changes fixes, so the lint result would otherwise depend on the day of the install."""
    constraints = open(os.path.join(ROOT, "requirements", "constraints.txt"), encoding="utf-8").read().split()
    pinned = [line for line in constraints if line.startswith("ruff==")]
    assert len(pinned) == 1
    version = pinned[0].split("==")[1]
    setup = open(os.path.join(ROOT, "setup.py"), encoding="utf-8").read()
    major, minor = version.split(".")[:2]
    assert f'"ruff>={major}.{minor},<{major}.{int(minor) + 1}"' in setup
