#!/usr/bin/env python3
"""The transformers version matrix: the core capture tests over the same torch with several
transformers releases, and the import-time refusal of an unsupported one.

    python scripts/version_matrix.py                    # the default matrix (5.15.0, 5.18.0, 5.24.0) + refusals
    python scripts/version_matrix.py 5.3.0 5.20.2       # other releases
    python scripts/version_matrix.py --newest           # also the newest 5.x on PyPI (needs the network)
    python scripts/version_matrix.py --json out.json    # results as JSON (tests/release/test_version_matrix.py)

transformers is pure Python, so each release is installed once with ``pip install --no-deps
--target`` into ``.cache/version-matrix/transformers-X`` (gitignored; ``ATTN_PLUGINS_MATRIX_CACHE``
moves it), together with those of its requirements that the running environment does not satisfy
(huggingface_hub and tokenizers differ between 5.x releases). Tests then run with
``PYTHONPATH=<target>:<checkout>``, so that release shadows the environment's transformers while
torch and everything else stay the same. The release the environment already has runs without a
target. Reruns use the cache and need no network; a first run without PyPI fails with a clear message.
Exit status: 0 when every release passes and the refusal holds, 1 when not, 2 when an install failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("ATTN_PLUGINS_MATRIX_CACHE", ROOT / ".cache" / "version-matrix"))
# the supported range, from the one place that holds it
REQUIREMENT = runpy.run_path(str(ROOT / "attn_plugins" / "_version.py"))["TRANSFORMERS_REQUIREMENT"]
# the oldest supported, one in the middle, the newest at release time
DEFAULT_VERSIONS = ("5.15.0", "5.18.0", "5.24.0")
# refused at import with the supported range: the last 4.x, and the last release below the range
REFUSED = ("4.57.6", "5.14.1")
# the core capture suite's sample: exactness against eager on the main families (encoder,
# decoder, encoder-decoder, vision, legacy output_attentions path), generate(), selection.
# (the flex-attention tests are left out: torch.compile alone takes minutes on a busy CPU)
TESTS = (
    "tests/core/test_architectures.py",
    "tests/core/test_generation.py",
    "tests/core/test_selection.py",
)
SELECT = (
    "(test_capture_matches_eager_and_keeps_outputs and (bert or gpt2 or llama or gemma2 or t5 or bart or vit))"
    " or (test_other_architectures and (qwen3 or deberta or modernbert))"
    " or test_models_outside_the_attention_interface or test_real_minilm"
    " or (test_decoder_only_generation and greedy and (gpt2 or llama))"
    " or (test_encoder_decoder_generation and greedy)"
    " or test_manual_decoding_loop or test_beam_search"
    " or test_layer_and_head_selection or test_encoder_decoder_selection or test_keep_queries_keys_for_gqa"
)
# the architecture sweep (tests/sweep) on a slice of its CI sample, one or two types per family:
# text encoder/decoder/encoder-decoder, vision (Swin: blocks inside stages), speech, dual encoder, VLMs
SWEEP_TYPES = ("bert", "gpt2", "t5", "vit", "swin", "wav2vec2", "whisper", "clip", "llava", "qwen2_vl")
ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


class InstallError(RuntimeError):
    pass


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise InstallError(f"`{' '.join(cmd)}` failed:\n{done.stderr.strip()[-2000:]}")


def installed(name: str, target: Path) -> str | None:
    """The version of ``name`` that ``PYTHONPATH=target`` would import (target first, then this env)."""
    want = canonicalize_name(name)
    for path in (str(target), *sys.path):
        for dist in metadata.distributions(path=[path]):
            if canonicalize_name(dist.metadata["Name"] or "") == want:
                return dist.version
    return None


def unmet(dist_name: str, target: Path) -> list[Requirement]:
    """The requirements of ``dist_name`` (as installed in ``target``) not met by target + this env."""
    (dist,) = [
        d
        for d in metadata.distributions(path=[str(target)])
        if canonicalize_name(d.metadata["Name"]) == canonicalize_name(dist_name)
    ]
    env = default_environment()
    missing = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
            continue
        have = installed(req.name, target)
        if have is None or not req.specifier.contains(have, prereleases=True):
            missing.append(req)
    return missing


def ensure(version: str) -> Path | None:
    """The ``--target`` folder holding transformers ``version`` and what it needs beyond this
    environment (installed once, then cached); ``None`` when this environment already has it."""
    if metadata.version("transformers") == version:
        return None
    target = CACHE / f"transformers-{version}"
    if (target / ".complete").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    try:
        pip("install", "-q", "--no-deps", "--no-compile", "--target", str(target), f"transformers=={version}")
        todo, seen = ["transformers"], set()
        while todo:  # follow the requirements of whatever had to be installed into the target
            name = todo.pop()
            for req in unmet(name, target):
                if canonicalize_name(req.name) in seen:
                    raise InstallError(f"cannot satisfy {req} for transformers {version} beside this environment")
                seen.add(canonicalize_name(req.name))
                pip("install", "-q", "--no-deps", "--no-compile", "--target", str(target), f"{req.name}{req.specifier}")
                todo.append(req.name)
    except (InstallError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise InstallError(
            f"version matrix: could not install transformers {version} into {target} (is PyPI reachable? "
            f"the first run needs it; later runs use the cache).\n{exc}"
        ) from exc
    (target / ".complete").write_text(version)
    return target


def environment(target: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONPATH")}
    env.update(ENV)
    env["PYTHONPATH"] = os.pathsep.join([*([str(target)] if target else []), str(ROOT)])
    return env


def versions_seen(target: Path | None) -> dict[str, str]:
    """What the test processes import: checks that the target really shadows the environment."""
    code = (
        "import json, transformers, tokenizers, huggingface_hub, torch, attn_plugins; print(json.dumps({"
        "'transformers': transformers.__version__, 'tokenizers': tokenizers.__version__, "
        "'huggingface_hub': huggingface_hub.__version__, 'torch': torch.__version__, "
        "'attn_plugins': attn_plugins.__file__}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=environment(target), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "import failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_tests(version: str, target: Path | None, tests: tuple[str, ...], select: str) -> dict:
    seen = versions_seen(target)
    started = time.monotonic()
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-W",
        "ignore::DeprecationWarning",
        "-W",
        "ignore::FutureWarning",
        *tests,
        *(["-k", select] if select else []),
    ]
    done = subprocess.run(cmd, env=environment(target), cwd=ROOT, capture_output=True, text=True, timeout=1800)
    summary = next(
        (line for line in reversed(done.stdout.splitlines()) if re.search(r"\d+ (passed|failed)", line)),
        done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr.strip()[-500:],
    )
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|failed|error|skipped)", summary)}
    failures = [line[len("FAILED ") :] for line in done.stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    ok = (
        done.returncode == 0
        and seen.get("transformers") == version
        and str(seen.get("attn_plugins", "")).startswith(str(ROOT))
    )
    return {
        "version": version,
        "ok": ok,
        "imported": seen,
        "summary": summary.strip("= "),
        "counts": counts,
        "failures": failures,
        "seconds": round(time.monotonic() - started, 1),
        "output_tail": "" if ok else (done.stdout[-4000:] + done.stderr[-2000:]),
    }


def run_sweep(target: Path | None, types: tuple[str, ...]) -> dict:
    """The sweep's capture-vs-eager check for ``types`` with this release: ``{type: status}`` and
    whether every one passed."""
    if not types:
        return {"ok": True, "status": {}}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sweep.json"
        cmd = [sys.executable, "-m", "tests.sweep", "--types", ",".join(types), "--jobs", "2", "--timeout", "120"]
        done = subprocess.run(
            [*cmd, "--out", str(out)], env=environment(target), cwd=ROOT, capture_output=True, text=True, timeout=1800
        )
        found = json.loads(out.read_text()) if out.exists() else []
    rows = found.get("results", found) if isinstance(found, dict) else found
    status = {r["type"]: r["status"] + (f" ({r.get('detail', '')})" if r["status"] != "PASS" else "") for r in rows}
    ok = done.returncode == 0 and set(status) == set(types) and all(v == "PASS" for v in status.values())
    return {"ok": ok, "status": status, "output_tail": "" if ok else (done.stdout[-3000:] + done.stderr[-2000:])}


def check_refused(version: str) -> dict:
    """``import attn_plugins`` with an unsupported transformers must fail, naming the supported range."""
    target = ensure(version)
    code = (
        "import sys\ntry:\n    import attn_plugins\nexcept ImportError as exc:\n"
        "    print(type(exc).__name__ + ': ' + str(exc)); sys.exit(3)\nprint('imported')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=environment(target), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    message = done.stdout.strip()
    ok = done.returncode == 3 and "MissingDependencyError" in message and REQUIREMENT in message and version in message
    return {"version": version, "ok": ok, "message": message or done.stderr.strip()[-1000:]}


def newest_5x() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", "transformers"], capture_output=True, text=True, timeout=120
    )
    found = re.search(r"Available versions: (.*)", done.stdout)
    if not found:
        raise InstallError(
            f"version matrix: `pip index versions transformers` failed (PyPI unreachable?)\n{done.stderr}"
        )
    versions = [Version(v.strip()) for v in found.group(1).split(",")]
    return str(max(v for v in versions if v.major == 5 and not v.is_prerelease))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="*", default=list(DEFAULT_VERSIONS))
    parser.add_argument("--newest", action="store_true", help="also the newest 5.x release on PyPI")
    parser.add_argument(
        "--refused",
        nargs="*",
        default=list(REFUSED),
        help="unsupported releases that import must refuse (none: --refused with no value)",
    )
    parser.add_argument("--tests", nargs="*", default=list(TESTS))
    parser.add_argument("-k", dest="select", default=SELECT, help="pytest -k expression ('' runs every test)")
    parser.add_argument("--sweep", nargs="*", default=list(SWEEP_TYPES), help="sweep types ('--sweep' alone: none)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    versions = list(dict.fromkeys(args.versions))
    try:
        if args.newest and (newest := newest_5x()) not in versions:
            versions.append(newest)
        targets = {version: ensure(version) for version in versions}
        refused = [check_refused(version) for version in args.refused if version]
    except InstallError as exc:
        print(exc, file=sys.stderr)
        return 2
    results = []
    for version in versions:
        result = run_tests(version, targets[version], tuple(args.tests), args.select)
        result["sweep"] = run_sweep(targets[version], tuple(args.sweep))
        result["ok"] = result["ok"] and result["sweep"]["ok"]
        results.append(result)
        imported = result["imported"]
        print(
            f"transformers {version:8s} {'PASS' if result['ok'] else 'FAIL'}  {result['summary']}  "
            f"(tokenizers {imported.get('tokenizers')}, huggingface_hub {imported.get('huggingface_hub')}, "
            f"torch {imported.get('torch')}; {result['seconds']} s)",
            flush=True,
        )
        sweep = result["sweep"]["status"]
        print(f"    sweep: {sum(v == 'PASS' for v in sweep.values())} / {len(sweep)} PASS", flush=True)
        for name, status in sweep.items():
            if status != "PASS":
                print(f"    sweep {name}: {status}")
        for failure in result["failures"]:
            print(f"    {failure}")
        if not result["ok"] and not result["failures"]:
            print(result["output_tail"])
    for check in refused:
        print(f"transformers {check['version']:8s} {'REFUSED' if check['ok'] else 'NOT REFUSED'}  {check['message']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "refused": refused}, indent=2))
    return 0 if all(r["ok"] for r in results + refused) else 1


if __name__ == "__main__":
    sys.exit(main())
