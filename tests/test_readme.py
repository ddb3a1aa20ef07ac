"""Every Python code block of the README runs as written: the blocks are taken from README.md and
run in order (one namespace, as a reader pastes them into one session) in a fresh interpreter,
offline, in an empty working directory, on the bundled MiniLM."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import textwrap

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
RUNNER = """
import json, sys, traceback
blocks = json.load(open(sys.argv[1], encoding="utf-8"))
namespace = {"__name__": "__readme__"}
for number, (line, code) in enumerate(blocks, 1):
    try:
        exec(compile(code, f"README.md block {number} (line {line})", "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        print(f"FAILED: README.md block {number} (line {line})", flush=True)
        sys.exit(1)
    print(f"ok: block {number} (line {line})", flush=True)
"""


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line, code)`` of every fenced ``python`` block (indented ones inside lists included)."""
    out = []
    for match in re.finditer(r"^([ \t]*)```python[ \t]*\n(.*?)^\1```[ \t]*$", text, re.S | re.M):
        line = text.count("\n", 0, match.start()) + 1
        out.append((line, textwrap.dedent(match.group(2))))
    return out


def test_readme_has_the_blocks_it_documents():
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 4
    code = "\n".join(c for _, c in blocks)
    for name in ("tokenizer = ", "model = ", "enc = ", "keep_queries_keys=True", "signed=False"):
        assert name in code or name in README.read_text(encoding="utf-8"), name


def test_every_readme_python_block_runs(tmp_path):
    import json

    blocks = python_blocks(README.read_text(encoding="utf-8"))
    (tmp_path / "blocks.json").write_text(json.dumps(blocks), encoding="utf-8")
    (tmp_path / "run_readme.py").write_text(RUNNER, encoding="utf-8")
    work = tmp_path / "cwd"
    work.mkdir()
    repo = str(README.parent)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join([repo] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
    }
    result = subprocess.run(
        [sys.executable, str(tmp_path / "run_readme.py"), str(tmp_path / "blocks.json")],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert result.stdout.count("ok: block") == len(blocks)
    assert (work / "run.safetensors").is_file()
