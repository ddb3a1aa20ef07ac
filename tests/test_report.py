"""The report, run as a user runs it (``attn-plugins report`` in a subprocess on the real MiniLM),
opened in headless Chromium with the network cut off; its numbers checked against eager
attention; its failure modes (bad inputs, a section that breaks, a model without attention)."""

from __future__ import annotations

import base64
import csv
import importlib.util
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import torch

import attn_plugins as ap
from attn_plugins import report
from attn_plugins.report import heads as report_heads

from . import _browser

pytest.importorskip("matplotlib")
pytest.importorskip("scipy")

HOSTILE = '<script>alert("x")</script> & <b>bold</b>'
TEXTS = ["The cat sat on the mat because it was tired.", f"A tired cat {HOSTILE} rests."]
HAS_BERTVIZ = importlib.util.find_spec("bertviz") is not None and "bertviz" in ap.integrations.EXPORTERS.names()
HAS_SALIENCY = (
    importlib.util.find_spec("attn_plugins.saliency") is not None and "comparison" in ap.integrations.EXPORTERS.names()
)


def _cli(*args, cwd=None, timeout=600):
    exe = shutil.which("attn-plugins", path=os.path.dirname(sys.executable)) or shutil.which("attn-plugins")
    command = [exe, *args] if exe else [sys.executable, "-m", "attn_plugins.cli", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The CLI report on MiniLM with two short texts (one of them hostile markup)."""
    out = tmp_path_factory.mktemp("report")
    args = ["report", "--out", str(out), "--figures", "png,svg"]
    for text in TEXTS:
        args += ["--text", text]
    result = _cli(*args)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


@pytest.fixture(scope="module")
def page_html(built):
    out, _ = built
    with open(out / "report.html", encoding="utf-8") as handle:
        return handle.read()


@pytest.fixture(scope="module")
def browser():
    with _browser.Browser() as b:
        yield b


def check_png(data: bytes) -> None:
    import matplotlib.image

    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 4000
    pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100
    assert pixels[..., :3].var() > 1e-3, "blank PNG"


def check_svg(path) -> None:
    assert os.path.getsize(path) > 4000
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    assert len(list(root.iter())) > 50


# ---------------------------------------------------------------------------------------------
# the CLI run and its files
# ---------------------------------------------------------------------------------------------
def test_cli_writes_the_page_plots_stats_and_record(built):
    out, result = built
    assert f"wrote {out / 'report.html'}" in result.stdout
    assert "Traceback" not in result.stderr and "failed" not in result.stderr
    assert "%|" not in result.stderr  # stderr is a pipe, not a terminal: no progress bar in the log
    assert os.stat(out / "record.safetensors").st_mode & 0o777 == 0o666 & ~_umask()
    pngs = sorted((out / "plots").glob("*.png"))
    names = {p.stem for p in pngs}
    assert {
        "layers_mean",
        "head_stats",
        "head_shares",
        "head_stats_by_layer",
        "head_similarity",
        "layer_similarity",
    } <= names
    assert any(n.startswith("head_grid_L") for n in names) and any(n.startswith("notable_previous") for n in names)
    for png in pngs:
        check_png(png.read_bytes())
        check_svg(png.with_suffix(".svg"))
    record = ap.AttentionRecord.load(out / "record.safetensors")
    assert record.model_class == "BertModel" and record.batch_size == 2 and len(record.layers) == 6


def test_page_is_self_contained_and_escaped(page_html, built):
    out, _ = built
    assert "Content-Security-Policy" in page_html and "default-src 'none'" in page_html
    # nothing is loaded from anywhere: no external src/href, every image inline
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page_html, re.I)
    images = re.findall(r'<img src="([^"]+)"', page_html)
    assert len(images) >= 7 and all(src.startswith("data:image/png;base64,") for src in images)
    for src in images[:3]:
        check_png(base64.b64decode(src.split(",", 1)[1]))
    # the hostile text never appears as markup, only escaped
    assert HOSTILE not in page_html and "<b>bold</b>" not in page_html
    assert html_escape(HOSTILE) in page_html
    # links point at the files written beside the page
    for href in re.findall(r'href="(plots/[^"]+)"', page_html):
        assert (out / href).is_file(), href


def test_statistics_tables_show_the_csv_values(page_html, built):
    """Each shaded cell of the statistics tables is the head's value in head_stats.csv (itself
    checked against the model's eager attention below), on the stated colour scale."""
    out, _ = built
    with open(out / "head_stats.csv", encoding="utf-8", newline="") as handle:
        rows = {(r["layer"], int(r["head"])): r for r in csv.DictReader(handle)}
    for name in ("previous", "self", "normalized_entropy"):
        title = {"previous": "share to previous token", "self": "share to itself"}.get(name, "entropy / uniform")
        table = re.search(
            rf'<table class="ap-heat"><caption>{re.escape(title)} <span class="ap-scale">\(colour scale 0.00 to '
            r"1.00\)</span></caption>(.*?)</table>",
            page_html,
        )
        assert table, name
        cells = re.findall(r'title="(L\d+) head (\d+): [^"]*">([^<]*)</td>', table.group(1))
        assert len(cells) == 72
        for layer, head, shown in cells:
            assert float(shown) == pytest.approx(float(rows[(layer, int(head))][name]), abs=0.006)


def html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_statistics_match_eager_attention(built, minilm_path, minilm_tokenizer):
    """head_stats.csv holds previous-token and self shares computed from the model's own eager
    weights by hand (token-weighted mean over the real rows of both inputs)."""
    from transformers import AutoModel

    out, _ = built
    with open(out / "head_stats.csv", encoding="utf-8", newline="") as handle:
        rows = {(r["layer"], int(r["head"])): r for r in csv.DictReader(handle)}
    assert len(rows) == 72
    eager = AutoModel.from_pretrained(minilm_path, attn_implementation="eager").eval()
    enc = minilm_tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        attentions = eager(**enc, output_attentions=True).attentions
    mask = enc["attention_mask"].bool()
    for layer, a in enumerate(attentions):
        a = a.double()
        for head in range(a.shape[1]):
            prev, prev_n, own, own_n = 0.0, 0, 0.0, 0
            for b in range(a.shape[0]):
                n = int(mask[b].sum())
                for i in range(n):
                    own += float(a[b, head, i, i])
                    own_n += 1
                    if i >= 1:
                        prev += float(a[b, head, i, i - 1])
                        prev_n += 1
            row = rows[(f"L{layer}", head)]
            assert float(row["previous"]) == pytest.approx(prev / prev_n, abs=1e-4)
            assert float(row["self"]) == pytest.approx(own / own_n, abs=1e-4)
    # MiniLM's layer-0 head 2 is a previous-token head (Clark et al. find such heads in BERT)
    assert float(rows[("L0", 2)]["previous"]) > 0.9


# ---------------------------------------------------------------------------------------------
# in the browser, offline
# ---------------------------------------------------------------------------------------------
def test_page_in_headless_chromium(built, browser, tmp_path):
    out, _ = built
    page = browser.open(out / "report.html", wait_for="document.readyState === 'complete'", timeout=60)
    statuses = dict(
        page.js("return Array.from(document.querySelectorAll('section.ap-section')).map(s => [s.id, s.dataset.status])")
    )
    assert list(statuses) == [sid for sid, _ in report.SECTIONS]
    for sid in ("summary", "heatmaps", "statistics", "clustering", "diagnostics"):
        assert statuses[sid] == "ok", sid
    assert statuses["generation"] == "unavailable"  # MiniLM does not generate
    assert "does not generate" in page.text("#generation .ap-note")[0]
    if HAS_BERTVIZ:
        assert statuses["bertviz"] == "ok"
        page.wait_for("document.querySelectorAll('#bertviz .ap-view[data-view=head] svg line').length > 0", 60)
        page.wait_for("document.querySelectorAll('#bertviz .ap-view[data-view=model] svg').length > 0", 60)
        assert page.count("#bertviz .ap-view[data-view=head]") == 2  # one head view per input
        assert page.count("#bertviz .ap-view[data-view=neuron]") == 1
        # BertViz drew the tokens as text: the hostile input is there, as characters
        left = page.text("#bertviz .ap-view[data-view=head][data-item='1'] #left text")
        assert "<" in left and "script" in left
    if HAS_SALIENCY:
        assert statuses["saliency"] == "ok" and statuses["comparison"] == "ok"
        assert page.count("#saliency .ap-tok") > 20 and page.count("#comparison table") >= 1
    # every inline image decoded and has a size
    sizes = page.js("return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(sizes) >= 7 and all(done and w > 100 and h > 100 for done, w, h in sizes)
    # the per-head statistics are shaded tables: 6 statistics x 6 layers x 12 heads, each cell coloured
    assert page.count("#statistics table.ap-heat") == 6 and page.count("#statistics table.ap-heat td") == 432
    shades = page.js(
        "return Array.from(document.querySelectorAll('#statistics table.ap-heat td'))"
        ".map(c => getComputedStyle(c).backgroundColor)"
    )
    assert len(set(shades)) > 20 and "rgba(0, 0, 0, 0)" not in shades
    # the hostile text is text, not markup: no extra <b>, no script ran
    assert HOSTILE in page.text("#summary .ap-text")[1]
    assert page.count("#summary .ap-text b") == 0
    assert page.alerts() == 0
    # the navigation links jump to their sections, and the sticky navigation leaves the heading visible
    page.click("nav.ap-nav a[href='#clustering']")
    assert page.js("return location.hash") == "#clustering"
    page.wait_for("window.scrollY > 0", 10)
    nav_bottom, heading_top = page.js(
        "return [document.querySelector('nav.ap-nav').getBoundingClientRect().bottom, "
        "document.querySelector('#clustering h2').getBoundingClientRect().top]"
    )
    assert heading_top >= nav_bottom, (heading_top, nav_bottom)
    assert page.console_errors() == []
    assert page.network_requests() == []
    assert all(u.startswith(("file:", "data:")) for u in page.requests())
    page.screenshot(tmp_path / "report.png")
    check_png((tmp_path / "report.png").read_bytes())


# ---------------------------------------------------------------------------------------------
# failures: clear messages, and a broken section never breaks the report
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "/nonexistent/model"], "is not a directory with a saved model"),
        (["--text-file", "/nonexistent.txt"], "cannot read text file"),
        (["--text", "   "], "a text is empty"),
        (["--figures", "png,jpg"], "expected a comma-separated list of png, svg, pdf"),
    ],
)
def test_bad_input_messages(tmp_path, args, message):
    result = _cli("report", "--out", str(tmp_path / "out"), "-q", *args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "report.html").exists()


def test_unreadable_and_empty_text_files(tmp_path):
    binary = tmp_path / "latin1.txt"
    binary.write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    with pytest.raises(report.ReportError, match="cannot read text file .*latin1.txt"):
        report.read_text_file(binary)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    with pytest.raises(report.ReportError, match="holds no text"):
        report.read_text_file(blank)
    assert report.read_text_file(report.FIXTURE_SENTENCES) == list(report.DEFAULT_SENTENCES) == report.default_texts()


def test_a_model_without_attention(tmp_path, minilm_path):
    """A saved Mamba (no attention at all) gets a clear error, from Python and from the CLI."""
    from transformers import MambaConfig, MambaModel

    torch.manual_seed(0)
    model = MambaModel(
        MambaConfig(vocab_size=30522, hidden_size=16, state_size=4, num_hidden_layers=1, expand=2, conv_kernel=2)
    ).eval()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    with pytest.raises(
        report.ReportError, match="cannot capture attention from MambaModel.*needs a model with attention"
    ):
        report.build_report(model, tokenizer, ["hello there"], out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    model.save_pretrained(tmp_path / "mamba")
    tokenizer.save_pretrained(tmp_path / "mamba")
    result = _cli("report", "--model", str(tmp_path / "mamba"), "--text", "hi", "--out", str(tmp_path / "o"), "-q")
    assert result.returncode != 0 and "needs a model with attention" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_failing_section_becomes_a_note(tmp_path, minilm, minilm_tokenizer, monkeypatch, caplog):
    """A section that raises is replaced by a note (and logged); the others still render."""

    def broken(*args, **kwargs):
        raise RuntimeError("the grid is broken today")

    monkeypatch.setattr(report_heads, "layers_figure", broken)
    with caplog.at_level(logging.WARNING, logger="attn_plugins.report"):
        path = report.build_report(
            minilm,
            minilm_tokenizer,
            "Short text.",
            out_dir=tmp_path,
            sections=["summary", "heatmaps", "diagnostics"],
            progress=False,
        )
    html = open(path, encoding="utf-8").read()
    sections = dict(re.findall(r'<section id="(\w+)" class="[^"]*" data-status="(\w+)"', html))
    assert sections == {"summary": "ok", "heatmaps": "failed", "diagnostics": "ok"}
    assert "This section could not be built: RuntimeError: the grid is broken today" in html
    assert any("heatmaps" in r.getMessage() and "the grid is broken today" in r.getMessage() for r in caplog.records)
    assert "Every head is checked" in html  # the diagnostics section rendered after the failed one


def test_generation_section_on_a_tiny_gpt2(tmp_path, minilm_path):
    """A generative model gets the attention-over-steps plot; an untrained one is flagged as
    near-uniform by the diagnostics."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    # a GPT-style tokenizer: no pad token, an end-of-text token
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    tokenizer.pad_token = None
    tokenizer.eos_token = "[SEP]"
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=tokenizer.vocab_size,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    model = GPT2LMHeadModel(config).eval()
    path = report.build_report(
        model,
        tokenizer,
        ["the cat sat on the mat", "a dog"],
        out_dir=tmp_path,
        sections=["summary", "generation", "diagnostics"],
        progress=False,
        figures=["png"],
    )
    html = open(path, encoding="utf-8").read()
    sections = dict(re.findall(r'<section id="(\w+)" class="[^"]*" data-status="(\w+)"', html))
    assert sections == {"summary": "ok", "generation": "ok", "diagnostics": "ok"}
    check_png((tmp_path / "plots" / "generation.png").read_bytes())
    assert f"{report.GENERATION_STEPS} step(s)" in html
    diagnostics = re.search(r'<section id="diagnostics".*?</section>', html, re.S).group(0)
    assert diagnostics.count("<td>uniform</td>") >= 1 and "near-uniform: entropy is" in diagnostics
    assert tokenizer.pad_token is None  # the batch was padded with the end-of-text token, then put back


# ---------------------------------------------------------------------------------------------
# issue 14: layer/head selection, every input's head view, notable heads against uniform attention,
# grouped diagnostics, progress bars only on a terminal, demo --help
# ---------------------------------------------------------------------------------------------
FOUR = ["The cat sat on the mat.", "Dogs bark at night.", "She reads a book.", "Rain fell all day."]


def test_report_layers_heads_and_a_head_view_per_input(tmp_path, minilm, minilm_tokenizer, capsys):
    sections = ["summary", "statistics", "diagnostics"] + (["bertviz"] if HAS_BERTVIZ else [])
    path = report.build_report(
        minilm, minilm_tokenizer, FOUR, out_dir=tmp_path, sections=sections, layers=[0, -1], heads=[0, 2, 5]
    )
    assert "%|" not in capsys.readouterr().err  # progress=None and stderr is not a terminal: no bar
    record = ap.AttentionRecord.load(tmp_path / "record.safetensors")
    assert [layer.index for layer in record.layers] == [0, 5]
    assert all(layer.head_indices == [0, 2, 5] for layer in record.layers)
    html = open(path, encoding="utf-8").read()
    if HAS_BERTVIZ:
        assert len(re.findall(r'class="ap-view" data-view="head"', html)) == 4  # every input, none left out
    with pytest.raises(report.ReportError, match="layer"):
        report.build_report(
            minilm,
            minilm_tokenizer,
            FOUR[:1],
            out_dir=tmp_path / "bad",
            sections=["summary"],
            layers=[17],
            progress=False,
        )


def test_progress_bar_only_when_asked_or_on_a_terminal(tmp_path, minilm, minilm_tokenizer, capsys):
    report.build_report(minilm, minilm_tokenizer, FOUR[:1], out_dir=tmp_path, sections=["summary"], progress=True)
    assert "%|" in capsys.readouterr().err


def test_demo_help_says_where_it_writes():
    result = _cli("demo", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "./out" in text and "report.html" in text and "record.safetensors" in text and "--progress" in text
    result = _cli("report", "--help")
    assert "--layers" in result.stdout and "--heads" in result.stdout


def _record(weights, tokens):
    from attn_plugins.record import AttentionRecord, LayerAttention

    return AttentionRecord(
        layers=[LayerAttention(name="l0", stack=None, kind="self", index=0, weights=weights)], tokens=[tokens]
    )


def test_notable_heads_must_beat_uniform_attention():
    """Over 9 tokens uniform attention puts 0.111 on the previous token; a uniform head is no
    finding, a previous-token head is, and the uniform value is reported beside it."""
    from types import SimpleNamespace

    from attn_plugins.analysis.stats import head_stats, uniform_baseline

    n = 9
    uniform = torch.full((n, n), 1.0 / n)
    previous = torch.zeros(n, n)
    previous[0, 0] = 1.0
    previous[torch.arange(1, n), torch.arange(0, n - 1)] = 1.0
    tokens = [f"w{i}" for i in range(n)]
    for weights, expect in (
        (torch.stack([uniform, uniform])[None], []),
        (torch.stack([uniform, previous])[None], ["previous"]),
    ):
        record = _record(weights, tokens)
        ctx = SimpleNamespace(stats=head_stats(record), baseline=uniform_baseline(record))
        found = report_heads.notable_heads(ctx)
        assert [name for _, name, *_ in found if name in ("previous", "next", "self", "special")] == expect
        for _, name, _, head, value, base in found:
            if name == "previous":
                # rows with a previous token put all on it; uniform attention would put 1/9 there
                assert head == 1 and value == pytest.approx(1.0) and base == pytest.approx(1 / n)
    baseline = uniform_baseline(_record(torch.stack([uniform, previous])[None], tokens))
    assert float(baseline.previous[0, 0]) == pytest.approx(1 / n) == float(baseline.previous[0, 1])


def test_diagnostics_are_grouped_by_problem():
    from types import SimpleNamespace

    from attn_plugins.report.overview import section_diagnostics

    n = 6
    weights = torch.full((1, 24, n, n), 1.0 / n)
    html = section_diagnostics(SimpleNamespace(record=_record(weights, [f"w{i}" for i in range(n)])))
    rows = re.findall(r"<tr><td>uniform</td><td>24</td>", html)
    assert len(rows) == 1  # one line for the 24 near-uniform heads
    assert html.count("near-uniform: entropy is") == 1
    assert "L0 head 23" in html or "head 23" in html


def test_print_figures_only_when_asked(tmp_path, minilm, minilm_tokenizer):
    """By default the page shows each figure at screen resolution and writes no plot files;
    ``figures=`` adds the print versions (PNG at 300 dpi, PDF) and links them."""
    import base64 as b64

    from attn_plugins.report.context import png_size

    path = report.build_report(
        minilm, minilm_tokenizer, "Short text.", out_dir=tmp_path / "screen", sections=["heatmaps"], progress=False
    )
    html = open(path, encoding="utf-8").read()
    assert not (tmp_path / "screen" / "plots").exists() and 'href="plots/' not in html
    images = [b64.b64decode(src) for src in re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)]
    assert images
    for data in images:
        check_png(data)
        width, _ = png_size(data)
        assert 200 < width < 1400 and f'width="{width}"' in html  # shown one pixel per CSS pixel
    path = report.build_report(
        minilm,
        minilm_tokenizer,
        "Short text.",
        out_dir=tmp_path / "print",
        sections=["heatmaps"],
        progress=False,
        figures=("png", "pdf"),
    )
    html = open(path, encoding="utf-8").read()
    written = sorted(p.name for p in (tmp_path / "print" / "plots").iterdir())
    assert written and all(name.endswith((".png", ".pdf")) for name in written)
    for href in re.findall(r'href="(plots/[^"]+)"', html):
        assert (tmp_path / "print" / href).is_file()
    shown = dict(re.findall(r'data-plot="([^"]+)"><img src="data:image/png;base64,([^"]+)"', html))
    for name in (n for n in written if n.endswith(".png")):
        big = (tmp_path / "print" / "plots" / name).read_bytes()
        small = b64.b64decode(shown[name[:-4]])
        assert png_size(big)[0] > 2.5 * png_size(small)[0]  # 300 dpi against 100
    with pytest.raises(ap.errors.ReportError, match="unknown figure formats"):
        report.build_report(minilm, minilm_tokenizer, "x", out_dir=tmp_path / "bad", figures=["gif"], progress=False)
