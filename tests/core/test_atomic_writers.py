"""Every file a writer of ours produces arrives whole: it is written to a temporary file and renamed
over its target (``attn_plugins.atomic``), so a crash or a full disk never leaves half a file under
the final name. The check is the class, not one writer: ``os.replace`` is watched while each writer
runs, and every file that appears in the output folder must be the destination of a rename (a plain
``open(path, "w")`` fails it). A writer that fails half-way must leave the previous file untouched.
"""

from __future__ import annotations

import os

import pytest

from attn_plugins.faithfulness import FaithfulnessResult
from attn_plugins.report import build_report


@pytest.fixture
def renames(monkeypatch):
    seen: list[str] = []
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        seen.append(os.path.realpath(os.fspath(dst)))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return seen


def _files(folder) -> list[str]:
    return sorted(os.path.realpath(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs)


def _result() -> FaithfulnessResult:
    rows = [{"comprehensiveness": 0.1 * i, "sufficiency": 0.2, "text": f"t{i}"} for i in range(3)]
    return FaithfulnessResult(instances={"attention": rows}, n_boot=50)


def test_faithfulness_json_and_csv_are_renamed_into_place(tmp_path, renames):
    result = _result()
    result.save(tmp_path / "faith.json")
    result.save_csv(tmp_path / "faith.csv")
    assert _files(tmp_path) == sorted(renames) and len(renames) == 2
    assert FaithfulnessResult.load(tmp_path / "faith.json").instances["attention"][2]["comprehensiveness"] == 0.2


def test_animated_gifs_are_renamed_into_place(tmp_path, renames):
    from attn_plugins import plots
    from tests.analysis.fixtures import gpt2_checkpoint_records

    plots.animate_checkpoints(gpt2_checkpoint_records(), tmp_path / "ckpt.gif", layer=0, head=1)
    assert _files(tmp_path) == renames == [os.path.realpath(tmp_path / "ckpt.gif")]
    assert (tmp_path / "ckpt.gif").read_bytes()[:6] in (b"GIF89a", b"GIF87a")


def test_a_gif_writer_that_fails_keeps_the_old_file(tmp_path, monkeypatch):
    from matplotlib.animation import PillowWriter

    from attn_plugins import plots
    from tests.analysis.fixtures import gpt2_checkpoint_records

    target = tmp_path / "ckpt.gif"
    target.write_bytes(b"old")

    def fail(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(PillowWriter, "finish", fail)
    with pytest.raises(OSError, match="disk full"):
        plots.animate_checkpoints(gpt2_checkpoint_records(), target, layer=0, head=1)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["ckpt.gif"]


def test_report_files_are_renamed_into_place(tmp_path, renames):
    out = tmp_path / "report"
    build_report(
        texts=["The cat sat on the mat."], out_dir=out, sections=["statistics"], figures=["png"], figure_workers=0
    )
    files = _files(out)
    assert {os.path.basename(f) for f in files} >= {"report.html", "head_stats.csv", "record.safetensors"}
    assert [f for f in files if f not in renames] == []


def test_the_allennlp_start_up_hook_is_renamed_into_place(tmp_path, renames):
    from attn_plugins.compat import install_pth

    path = install_pth(str(tmp_path))
    assert _files(tmp_path) == renames == [os.path.realpath(path)]
