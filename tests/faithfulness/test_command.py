"""``attn-plugins faithfulness``: real subprocess runs on a tiny saved classifier."""

import csv
import os
import subprocess
import sys

import pytest

import attn_plugins as ap
from attn_plugins.faithfulness import FaithfulnessResult
from tests.faithfulness.saved import save_classifier

TEXTS = ["a fine and moving film", "dull, clumsy and far too long", "the cast is wonderful"]


def run_cli(*args, cwd=None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "attn_plugins.cli", "faithfulness", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory, minilm_tokenizer):
    return save_classifier(tmp_path_factory.mktemp("faith_cli"), minilm_tokenizer, TEXTS)


def test_writes_the_table_the_csv_and_the_curves(saved, tmp_path):
    out = tmp_path / "res"
    done = run_cli(
        "--data",
        str(saved / "texts.jsonl"),
        "--model",
        str(saved / "model"),
        "--methods",
        "attention",
        "saliency",
        "--rationale-field",
        "words",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "comp" in done.stdout and "attention" in done.stdout and "wrote" in done.stdout
    assert done.stderr.strip() == "" or "%|" not in done.stderr  # no bar: stderr is not a terminal
    result = FaithfulnessResult.load(out / "faithfulness.json")
    assert result.methods == ["attention", "saliency"] and len(result.instances["attention"]) == 3
    # the same numbers as the library call on the same saved model
    from attn_plugins.loading import load_model_dir

    model, tok = load_model_dir(saved / "model")
    rationales = [t.replace(",", "").split()[:2] for t in TEXTS]
    ref = ap.evaluate(model, tok, TEXTS, ["attention", "saliency"], rationales=rationales)
    for method in ref.methods:
        for metric in ("comprehensiveness", "sufficiency", "deletion_auc", "insertion_auc", "loo_tau", "token_f1"):
            assert result.values(method, metric) == pytest.approx(ref.values(method, metric), abs=1e-6, nan_ok=True)
    with open(out / "faithfulness.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    row = next(r for r in rows if r["method"] == "saliency" and r["metric"] == "comprehensiveness")
    assert float(row["mean"]) == pytest.approx(ref.summary()["saliency"]["comprehensiveness"]["mean"], abs=1e-9)
    markdown = (out / "faithfulness.md").read_text()
    assert markdown.startswith("| method | comp |") and "| saliency |" in markdown
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_bar_on_request(saved, tmp_path):
    done = run_cli(
        "--data",
        str(saved / "texts.jsonl"),
        "--model",
        str(saved / "model"),
        "--methods",
        "attention",
        "--metrics",
        "loo",
        "--progress",
        "--out",
        str(tmp_path / "p"),
    )
    assert done.returncode == 0, done.stderr
    assert "%|" in done.stderr  # tqdm's bar, forced on
    assert not (tmp_path / "p" / "curves.png").exists()  # no deletion/insertion: no curves


@pytest.mark.parametrize(
    "args, message",
    [
        ((), "bundled MiniLM has no classifier head: pass --model"),
        (("--model", "{model}", "--methods", "nonsense"), "unknown methods ['nonsense']"),
        (("--model", "{missing}"), "is not a directory with a saved model"),
    ],
)
def test_user_errors_are_one_line(saved, tmp_path, args, message):
    args = [a.format(model=saved / "model", missing=tmp_path / "none") for a in args]
    done = run_cli("--data", str(saved / "texts.jsonl"), *args, "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_model_without_a_classifier_head_is_refused(minilm_path, saved, tmp_path):
    done = run_cli("--data", str(saved / "texts.jsonl"), "--model", str(minilm_path), "--out", str(tmp_path / "o"))
    assert done.returncode == 2 and "not a sequence classifier" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
