"""Builds the sdist from the checkout and the wheel from that sdist (as pip does for a PyPI
download), once per test session, into a temporary folder away from the checkout."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import tarfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run(cmd: list[str], cwd: pathlib.Path, timeout: float = 300, env: dict | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def shipped_static_files() -> list[str]:
    """Every non-Python file of the package in the checkout (tracked or new, not gitignored):
    what the wheel must carry."""
    out = run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "attn_plugins"], cwd=ROOT)
    return sorted(
        p
        for p in out.splitlines()
        if not p.endswith((".py", ".pyc")) and "__pycache__" not in p and (ROOT / p).is_file()
    )


def artifacts(tmp: pathlib.Path) -> dict[str, pathlib.Path]:
    """``{"sdist", "wheel", "site"}`` under ``tmp``: the built sdist and wheel, and the wheel installed
    with ``pip install --no-deps --target site``."""
    dist = tmp / "dist"
    dist.mkdir()
    # the PEP 517 hook that `python -m build --sdist` calls, run in the checkout
    name = (
        run(
            [
                sys.executable,
                "-c",
                "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))",
                str(dist),
            ],
            cwd=ROOT,
        )
        .strip()
        .splitlines()[-1]
    )
    sdist = dist / name
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp / "src", filter="data")
    (source,) = (tmp / "src").iterdir()
    run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(source)],
        cwd=tmp,
    )
    (wheel,) = dist.glob("*.whl")
    site = tmp / "site"
    run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(site), str(wheel)],
        cwd=tmp,
    )
    return {"sdist": sdist, "wheel": wheel, "site": site}


def wheel_names(wheel: pathlib.Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def sdist_names(sdist: pathlib.Path) -> list[str]:
    with tarfile.open(sdist) as archive:
        return [m.name.split("/", 1)[1] for m in archive.getmembers() if m.isfile()]
