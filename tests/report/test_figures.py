"""The report's figures render in forked children beside the sections, and give the page what
rendering them in the report's own process gives; the similarity saliency shares its work across
methods without changing a number."""

from __future__ import annotations

import base64
import os

import numpy as np
import pytest

from attn_plugins.report.figures import FigureRenderer, default_workers, png_size

pytest.importorskip("matplotlib")

needs_fork = pytest.mark.skipif(default_workers() == 0, reason="figures render in children only where fork is safe")


def _figure(title="a figure"):
    from attn_plugins.plots.canvas import new_figure

    fig = new_figure(3, 2)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(np.arange(12.0).reshape(3, 4), cmap="Blues")
    ax.set_title(title)
    return fig


def _children() -> set[int]:
    """This process's child processes, zombies included (from /proc: other tests' children may exist
    too, so a test compares the set before and after its renderer instead of asking "any child?")."""
    found: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as handle:
            found.update(int(pid) for pid in handle.read().split())
    return found


@needs_fork
def test_forked_rendering_gives_the_same_page_as_in_process(tmp_path):
    before = _children()
    here, forked = FigureRenderer(str(tmp_path / "a"), workers=0), FigureRenderer(str(tmp_path / "b"), workers=2)
    pages = []
    for renderer in (here, forked):
        html = "".join(
            f"<p>{i}</p>"
            + renderer.submit(
                f"fig{i}", (lambda i=i: _figure(f"figure {i}")) if i % 2 else _figure(f"figure {i}"), f"caption {i}"
            )
            for i in range(5)
        )
        assert html.count("<!--ap-figure:") == 5
        pages.append(renderer.fill(html))
        renderer.close()
    assert pages[0] == pages[1]
    assert pages[1].count('<img src="data:image/png;base64,') == 5 and "<!--ap-figure:" not in pages[1]
    assert _children() <= before  # every child the renderer forked was reaped


@needs_fork
def test_a_figure_that_cannot_be_drawn_raises_when_the_page_is_filled(tmp_path):
    before = _children()
    renderer = FigureRenderer(str(tmp_path), workers=2)

    def broken():
        raise RuntimeError("no figure today")

    good = renderer.submit("good", _figure, "fine")
    bad = renderer.submit("bad", broken, "broken")
    assert "data:image/png" in renderer.fill(good)
    with pytest.raises(RuntimeError, match="no figure today"):
        renderer.fill(bad)
    renderer.close()
    assert _children() <= before  # every child the renderer forked was reaped


def test_print_versions_are_written_by_the_renderer(tmp_path):
    for workers in (0, default_workers()):
        out = tmp_path / f"w{workers}"
        (out / "plots").mkdir(parents=True)
        renderer = FigureRenderer(str(out), formats=("png", "svg"), workers=workers)
        html = renderer.fill(renderer.submit("grid", _figure, "a grid"))
        renderer.close()
        assert sorted(os.listdir(out / "plots")) == ["grid.png", "grid.svg"]
        assert renderer.files == [os.path.join("plots", "grid.png"), os.path.join("plots", "grid.svg")]
        assert 'href="plots/grid.svg"' in html
        big = (out / "plots" / "grid.png").read_bytes()
        screen = base64.b64decode(html.split("base64,")[1].split('"')[0])
        assert png_size(big)[0] > 2.5 * png_size(screen)[0] > 0  # 300 dpi against the page's 100


def test_similarity_methods_together_equal_each_alone(minilm, minilm_tokenizer):
    """``explain_methods`` (one encoding, one problem and one record per side for every method, as
    the report uses it) gives exactly what ``explain`` gives method by method."""
    from attn_plugins.saliency import SimilarityExplainer

    pytest.importorskip("captum")
    pairs = [("A man is playing a guitar.", "Someone plays an instrument."), ("A cat sleeps.", "The market fell.")]
    methods = ["attention", "rollout", "grad_attention", "saliency", "integrated_gradients"]
    options = {"integrated_gradients": {"n_steps": 4}}
    explainer = SimilarityExplainer(minilm, minilm_tokenizer)
    together = explainer.explain_methods(pairs, methods, progress=False, options=options)
    assert list(together) == methods
    for method in methods:
        alone = explainer.explain(pairs, method, progress=False, **options.get(method, {}))
        assert len(alone) == len(together[method]) == 2
        for pair_alone, pair_together in zip(alone, together[method], strict=True):
            for a, b in zip(pair_alone, pair_together, strict=True):
                assert a.tokens == b.tokens and a.field == b.field and a.method == b.method == method
                np.testing.assert_array_equal(a.scores, b.scores)
                assert a.info == b.info


@needs_fork
def test_a_figure_doing_parallel_torch_maths_in_its_child_finishes(tmp_path):
    """The parent's OpenMP team does not survive the fork: a child's parallel torch op once waited
    for it forever (the report hung whenever OMP_NUM_THREADS was unset)."""
    import subprocess
    import sys

    script = f"""
import torch
from attn_plugins.plots.canvas import new_figure
from attn_plugins.report.figures import FigureRenderer
torch.set_num_threads(2)
big = torch.rand(2_000_000) + 0.5
torch.log(big).sum()  # the parent's thread team exists now

def figure():
    fig = new_figure(2, 2)
    fig.add_subplot(1, 1, 1).plot(torch.log(big)[:100].numpy())  # a parallel op in the child
    return fig

renderer = FigureRenderer({str(tmp_path)!r}, workers=1)
html = renderer.fill(renderer.submit("f", figure, "c"))
renderer.close()
print("drawn" if "data:image/png" in html else "missing")
"""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert done.returncode == 0 and done.stdout.strip() == "drawn", done.stderr[-2000:]


def test_build_report_in_process_or_forked_gives_the_same_figures(minilm, minilm_tokenizer, tmp_path):
    """``figure_workers=0`` (e.g. a multi-threaded server) renders in the report's own process: the
    page's figures are the same bytes as those the forked children render."""
    import re

    from attn_plugins.report import build_report

    pages = []
    for workers in (0, None):
        path = build_report(
            minilm,
            minilm_tokenizer,
            ["The cat sat on the mat."],
            out_dir=str(tmp_path / f"w{workers}"),
            sections=["heatmaps", "statistics"],
            progress=False,
            figure_workers=workers,
        )
        pages.append(re.findall(r'src="data:image/png;base64,([^"]+)"', open(path, encoding="utf-8").read()))
    assert len(pages[0]) >= 2 and pages[0] == pages[1]


def test_print_only_figures_write_files_and_links_but_no_image(tmp_path):
    """A figure whose content the page shows otherwise (a shaded table) is only drawn when print
    versions were asked for, then written and linked, never put in the page as an image."""
    for workers in (0, default_workers()):
        out = tmp_path / f"w{workers}"
        (out / "plots").mkdir(parents=True)
        none = FigureRenderer(str(out), workers=workers)
        drawn: list[int] = []
        assert none.submit("stats", lambda drawn=drawn: drawn.append(1) or _figure(), "stats", screen=False) == ""
        none.close()
        assert drawn == [] and os.listdir(out / "plots") == []
        renderer = FigureRenderer(str(out), formats=("png",), workers=workers)
        html = renderer.fill(renderer.submit("stats", _figure, "The statistics as a figure", screen=False))
        renderer.close()
        assert "<img" not in html and 'href="plots/stats.png"' in html and "The statistics as a figure" in html
        assert png_size((out / "plots" / "stats.png").read_bytes())[0] > 500


@needs_fork
def test_torch_runs_on_the_cores_the_children_leave_and_gets_its_threads_back(tmp_path):
    import torch

    from attn_plugins.report.figures import usable_cpus

    def slow():
        import time

        time.sleep(3)
        return _figure()

    before = torch.get_num_threads()
    renderer = FigureRenderer(str(tmp_path), workers=2)
    with renderer.sharing_cores():  # no child running yet: untouched
        assert torch.get_num_threads() == before
    placeholders = renderer.submit("a", slow, "a") + renderer.submit("b", slow, "b")
    with renderer.sharing_cores():  # two children drawing
        assert torch.get_num_threads() == max(1, min(before, usable_cpus() - 2))
    assert torch.get_num_threads() == before
    renderer.fill(placeholders)
    with renderer.sharing_cores():  # every child done: all threads again
        assert torch.get_num_threads() == before
    renderer.close()
    with FigureRenderer(str(tmp_path), workers=0).sharing_cores():  # nothing renders beside: untouched
        assert torch.get_num_threads() == before
    with pytest.raises(KeyError):
        with renderer.sharing_cores():
            raise KeyError("a section failed")
    assert torch.get_num_threads() == before


def test_the_clustering_text_names_the_colour_its_figure_gives_small_distances(minilm, minilm_tokenizer, tmp_path):
    """The report says similar heads form light blocks: the colour of distance 0 in the figure is light."""
    import attn_plugins as ap
    from attn_plugins.analysis.head_similarity import head_distances
    from attn_plugins.plots import similarity_plot
    from attn_plugins.report import build_report

    enc = minilm_tokenizer(["The cat sat on the mat."], return_tensors="pt")
    with ap.capture(minilm) as cap:
        minilm(**enc)
    fig = similarity_plot(head_distances(cap.record))
    image = max((im for ax in fig.axes for im in ax.images), key=lambda im: im.get_array().size)
    assert image.get_array().shape == (72, 72)

    def luminance(value):
        red, green, blue, _ = image.cmap(image.norm(value))
        return 0.299 * red + 0.587 * green + 0.114 * blue

    assert luminance(0.0) > 0.6 and luminance(0.8) < 0.4
    page = build_report(
        minilm, minilm_tokenizer, "The cat sat on the mat.", out_dir=tmp_path, sections=["clustering"], progress=False
    )
    text = open(page, encoding="utf-8").read()
    assert "Small distances are light" in text and "Dark blocks" not in text
