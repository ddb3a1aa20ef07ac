"""Faithfulness on the corpus engines: the local engine (chunk by chunk in this process) and Ray
(a real loopback instance, two actors, through the command line) give the numbers of one in-process
``evaluate`` of all the texts."""

import os
import subprocess
import sys

import numpy as np
import pytest

import attn_plugins as ap
from attn_plugins.corpus.data import read_texts
from attn_plugins.errors import InputError
from attn_plugins.faithfulness import FaithfulnessResult
from attn_plugins.faithfulness.corpus import FaithfulnessJob, evaluate_corpus
from tests.faithfulness.saved import save_classifier, words

TEXTS = [
    "a fine and moving film",
    "dull, clumsy and far too long",
    "the cast is wonderful",
    "not funny at all",
    "a warm story, well told",
]
METHODS = ["attention", "saliency"]
METRICS = ("comprehensiveness", "sufficiency", "deletion_auc", "insertion_auc", "loo_tau", "token_f1", "auprc")


@pytest.fixture(scope="module")
def saved(tmp_path_factory, minilm_tokenizer):
    return save_classifier(tmp_path_factory.mktemp("faith_engines"), minilm_tokenizer, TEXTS)


@pytest.fixture(scope="module")
def in_process(saved):
    from attn_plugins.loading import load_model_dir

    model, tok = load_model_dir(saved / "model")
    return ap.evaluate(model, tok, TEXTS, METHODS, rationales=[words(t) for t in TEXTS], randomization=True)


def assert_same(result, reference):
    assert result.methods == reference.methods
    for method in reference.methods:
        assert [r["text"] for r in result.instances[method]] == TEXTS
        assert [r["index"] for r in result.instances[method]] == list(range(len(TEXTS)))
        for metric in METRICS:
            assert result.values(method, metric) == pytest.approx(
                reference.values(method, metric), abs=1e-6, nan_ok=True
            ), (method, metric)
        for curve in ("deletion", "insertion", "loo"):
            for a, b in zip(result.instances[method], reference.instances[method], strict=True):
                np.testing.assert_allclose(a[curve], b[curve], atol=1e-6)
        got, ref = result.randomization[method], reference.randomization[method]
        assert got["steps"] == ref["steps"]
        np.testing.assert_allclose(got["correlation"], ref["correlation"], atol=1e-6)
    summary, ref_summary = result.summary(), reference.summary()
    for method in reference.methods:
        for metric, stats in ref_summary[method].items():
            for key in ("mean", "low", "high"):
                assert summary[method][metric][key] == pytest.approx(stats[key], abs=1e-6, nan_ok=True)


def test_local_engine_chunks_give_the_in_process_numbers(saved, in_process):
    job = FaithfulnessJob(
        str(saved / "model"),
        tuple(METHODS),
        ("comprehensiveness", "sufficiency", "deletion", "insertion", "loo"),
        randomization=True,
        rationales={i: words(t) for i, t in enumerate(TEXTS)},
    )
    result = evaluate_corpus(job, read_texts(saved / "texts.jsonl"), engine="local", chunk_size=2, progress=False)
    assert_same(result, in_process)
    assert result.settings["engine"] == "local" and result.settings["forward_passes"] > 0
    with pytest.raises(InputError, match="chunk_size must be an integer >= 1"):
        evaluate_corpus(job, read_texts(saved / "texts.jsonl"), chunk_size=0)
    with pytest.raises(InputError, match="unknown corpus engine 'spark'"):
        evaluate_corpus(job, read_texts(saved / "texts.jsonl"), engine="spark")


def test_ray_engine_with_two_workers_on_the_command_line(saved, in_process, tmp_path):
    ray = pytest.importorskip("ray")
    out = tmp_path / "res"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "attn_plugins.cli",
            "faithfulness",
            "--data",
            str(saved / "texts.jsonl"),
            "--model",
            str(saved / "model"),
            "--methods",
            *METHODS,
            "--rationale-field",
            "words",
            "--randomization",
            "--engine",
            "ray",
            "--workers",
            "2",
            "--chunk-size",
            "2",
            "--progress",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "faithfulness (ray)" in done.stderr and "5/5" in done.stderr  # the progress bar over the texts
    assert not ray.is_initialized()
    result = FaithfulnessResult.load(out / "faithfulness.json")
    assert_same(result, in_process)
    assert result.settings["engine"] == "ray" and result.settings["chunk_size"] == 2


def test_engine_options_need_an_engine(saved):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "attn_plugins.cli",
            "faithfulness",
            "--data",
            str(saved / "texts.jsonl"),
            "--model",
            str(saved / "model"),
            "--workers",
            "2",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode != 0 and "--workers and --address apply to --engine ray" in done.stderr
