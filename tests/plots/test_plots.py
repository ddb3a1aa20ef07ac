"""Every plot written as PNG, SVG and PDF from real records, then read back (size, not blank, parses)."""

import os
import xml.etree.ElementTree as ET

import pytest
import torch

pytest.importorskip("matplotlib")
pytest.importorskip("scipy")

from attn_plugins import plots  # noqa: E402
from attn_plugins.analysis import evolution, stats  # noqa: E402
from attn_plugins.analysis import head_similarity as similarity  # noqa: E402

from ..analysis.fixtures import (  # noqa: E402
    bart_record,
    gpt2_checkpoint_records,
    gpt2_generate_record,
    minilm_record,
    vit_record,
    whisper_records,
)

FORMATS = ("png", "svg", "pdf")


@pytest.fixture(scope="module")
def minilm_rec(minilm, minilm_tokenizer):
    return minilm_record(minilm, minilm_tokenizer)


def check_file(path: str) -> None:
    """The file exists, is not tiny, and is a readable, non-blank image of its format."""
    size = os.path.getsize(path)
    ext = os.path.splitext(path)[1]
    if ext == ".png":
        import matplotlib.image

        assert size > 4000, size
        pixels = matplotlib.image.imread(path)
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100
        assert pixels[..., :3].var() > 1e-3, "blank PNG"
    elif ext == ".svg":
        assert size > 4000, size
        root = ET.parse(path).getroot()
        assert root.tag.endswith("svg")
        assert len(list(root.iter())) > 50  # drawn elements, not an empty canvas
    elif ext == ".pdf":
        assert size > 2000, size
        with open(path, "rb") as handle:
            data = handle.read()
        assert data.startswith(b"%PDF-") and b"%%EOF" in data[-1024:]
        assert b"/Type3" not in data  # TrueType fonts, as publishers require
    else:  # pragma: no cover
        raise AssertionError(ext)


def draw(name, minilm_rec, path):
    """One call of each plot function on a real record."""
    if name == "heatmap":
        return plots.heatmap(minilm_rec, layer=2, head=0, item=1, path=path)
    if name == "head_grid":
        return plots.head_grid(minilm_rec, layer=2, path=path)
    if name == "head_stats":
        return plots.head_stats_plot(minilm_rec, ("entropy", "distance"), path=path)
    if name == "head_stats_scatter":
        return plots.head_stats_plot(minilm_rec, ("entropy", "special"), style="scatter", path=path)
    if name == "similarity":
        return plots.similarity_plot(similarity.head_distances(minilm_rec, layers=[0, 1, 2]), path=path)
    if name == "layer_similarity":
        return plots.layer_similarity_plot(minilm_rec, path=path)
    if name == "generation":
        return plots.generation_plot(gpt2_generate_record(), layer=-1, head=0, path=path)
    if name == "checkpoints":
        return plots.checkpoint_plot(gpt2_checkpoint_records(), layer=1, head=0, labels=["e1", "e2", "e3"], path=path)
    if name == "checkpoint_stats":
        return plots.checkpoint_stats_plot(gpt2_checkpoint_records(), path=path)
    if name == "alignment":
        return plots.alignment(bart_record(), layer=-1, path=path)
    if name == "vit_rollout":
        record, image = vit_record()
        return plots.vit_rollout(record, image, path=path)
    if name == "whisper":
        generated, _, features = whisper_records()
        return plots.whisper_cross_attention(generated, features=features, path=path)
    if name == "whisper_forced":
        _, forced, _ = whisper_records()
        return plots.whisper_cross_attention(forced, layer=1, head=0, path=path)
    raise KeyError(name)


PLOTS = (
    "heatmap",
    "head_grid",
    "head_stats",
    "head_stats_scatter",
    "similarity",
    "layer_similarity",
    "generation",
    "checkpoints",
    "checkpoint_stats",
    "alignment",
    "vit_rollout",
    "whisper",
    "whisper_forced",
)


@pytest.mark.parametrize("name", PLOTS)
def test_every_plot_written_and_read_back(name, minilm_rec, tmp_path):
    """Each plot as PNG, and as one vector format (SVG and PDF in turn, to keep the suite quick;
    test_every_format_for_one_plot writes all three from one call each)."""
    from matplotlib.figure import Figure

    fig = draw(name, minilm_rec, tmp_path / f"{name}.png")
    assert isinstance(fig, Figure)
    check_file(str(tmp_path / f"{name}.png"))
    vector = ("svg", "pdf")[PLOTS.index(name) % 2]
    check_file(plots.save(fig, tmp_path / f"{name}.{vector}"))


@pytest.mark.parametrize("name", ("whisper",))
def test_every_format_for_one_plot(name, minilm_rec, tmp_path):
    for fmt in FORMATS:
        path = tmp_path / f"{name}.{fmt}"
        draw(name, minilm_rec, path)
        check_file(str(path))


def test_path_argument_writes_each_format(minilm_rec, tmp_path):
    for fmt in FORMATS:
        path = tmp_path / "sub" / f"heat.{fmt}"
        plots.heatmap(minilm_rec, layer=0, head=3, path=path)  # creates the missing folder
        check_file(str(path))


def test_plots_accept_plain_tensors_and_analysis_results(minilm_rec, tmp_path):
    layer = minilm_rec.layers[0]
    plots.heatmap(layer.weights[0, 0], path=tmp_path / "t.png")
    plots.heatmap(layer, head="mean", path=tmp_path / "l.png")
    plots.head_grid(layer.weights[:1, :4], path=tmp_path / "g.png")
    plots.head_stats_plot(stats.head_stats(minilm_rec), ("previous",), path=tmp_path / "s.png")
    evo = evolution.generation_evolution(gpt2_generate_record(), item=1)
    plots.generation_plot(evo, path=tmp_path / "e.png")
    for name in ("t", "l", "g", "s", "e"):
        check_file(str(tmp_path / f"{name}.png"))


def test_heatmap_crops_padding_and_labels_tokens(minilm_rec):
    n = int(minilm_rec.attention_mask[1].sum())
    fig = plots.heatmap(minilm_rec, layer=0, head=0, item=1)
    ax = fig.axes[0]
    assert ax.images[0].get_array().shape == (n, n)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "[CLS]" and labels[-1] == "[SEP]" and "[PAD]" not in labels
    assert _words(fig.axes[1].get_ylabel()) == "attention weight (fixed scale 0 to 1)"  # the colorbar


def test_animated_gifs(tmp_path):
    from PIL import Image

    path = tmp_path / "gen.gif"
    plots.animate_generation(gpt2_generate_record(), path)
    with Image.open(path) as gif:
        assert gif.n_frames == 5
    path = tmp_path / "ckpt.gif"
    plots.animate_checkpoints(gpt2_checkpoint_records(), path, layer=0, head=1)
    with Image.open(path) as gif:
        assert gif.n_frames == 3
    with pytest.raises(ValueError, match=".gif"):
        plots.animate_generation(gpt2_generate_record(), tmp_path / "gen.png")


def test_bad_extension_and_backend_untouched(minilm_rec, tmp_path):
    import matplotlib

    backend = matplotlib.get_backend()
    with pytest.raises(ValueError, match="png, .svg or .pdf"):
        plots.heatmap(minilm_rec, path=tmp_path / "x.jpeg")
    assert matplotlib.get_backend() == backend


def test_vit_rollout_uses_the_rollout_module():
    from attn_plugins.analysis.rollout import rollout
    from attn_plugins.plots.vision import patch_grid, rollout_map

    record, _ = vit_record()
    heat, prefix = rollout_map(record)
    assert heat.shape == (4, 4) and prefix == 1
    row = rollout(record)[0, 0, 1:]
    assert torch.allclose(heat.flatten(), row / row.sum())
    assert patch_grid(197) == (1, 14, 14) and patch_grid(196) == (0, 14, 14)
    with pytest.raises(ValueError, match="grid"):
        patch_grid(7)


def test_plots_import_without_matplotlib_side_effects():
    import subprocess
    import sys

    code = "import sys, attn_plugins.plots, attn_plugins.analysis.stats; print('matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    assert out.stdout.strip() == "False"


def _uniform_record(value_rows: int = 9):
    """A record of one layer: head 0 near-uniform over 9 tokens (0.111...), head 1 one-hot."""
    from attn_plugins.record import AttentionRecord, LayerAttention

    n = value_rows
    uniform = torch.full((n, n), 1.0 / n)
    sharp = torch.eye(n)
    weights = torch.stack([uniform, sharp])[None]
    layer = LayerAttention(name="l0", stack=None, kind="self", index=0, weights=weights)
    cross = LayerAttention(name="c0", stack="decoder", kind="cross", index=0, weights=weights[:, :, :4])
    self_enc = LayerAttention(name="e0", stack="encoder", kind="self", index=0, weights=weights)
    tokens = [[f"t{i}" for i in range(n)]]
    return (
        AttentionRecord(layers=[layer], tokens=tokens),
        AttentionRecord(layers=[self_enc, cross], tokens=tokens, decoder_tokens=[tokens[0][:4]]),
    )


def _words(label: str) -> str:
    """A colorbar label as words (a long one is broken onto lines to fit the figure)."""
    return " ".join(label.split())


def _rgb_of(fig, ax_index, value):
    image = fig.axes[ax_index].images[0]
    return image.to_rgba(value)[:3], image.norm.vmin, image.norm.vmax


@pytest.mark.parametrize("what", ["heatmap", "grid", "alignment", "layers_mean"])
def test_colour_scale_is_fixed_0_to_1_unless_asked(what):
    """A near-uniform head (1/9 everywhere) is drawn pale on the default 0..1 scale, and the
    colorbar says which scale; ``scale="relative"`` runs to the largest weight and says so."""
    record, seq2seq = _uniform_record()
    if what == "heatmap":
        fixed = plots.heatmap(record, layer=0, head=0)
        relative = plots.heatmap(record, layer=0, head=0, scale="relative")
    elif what == "grid":
        fixed = plots.head_grid(record, layer=0, heads=[0])
        relative = plots.head_grid(record, layer=0, heads=[0], scale="relative")
    elif what == "alignment":
        fixed = plots.alignment(seq2seq, layer=0, head=0, mark_peaks=False)
        relative = plots.alignment(seq2seq, layer=0, head=0, mark_peaks=False, scale="relative")
    else:
        from attn_plugins.report.heads import layers_figure

        record.layers[0].weights = record.layers[0].weights[:, :1]
        fixed, relative = layers_figure(record, 0, None), None
    rgb, vmin, vmax = _rgb_of(fixed, 0, 1.0 / 9)
    assert (vmin, vmax) == (0.0, 1.0)
    assert min(rgb) > 0.7, f"a near-uniform head must look pale on the fixed scale, got {rgb}"
    assert "fixed scale 0 to 1" in _words(fixed.axes[-1].get_ylabel())
    if relative is not None:
        rgb, _, vmax = _rgb_of(relative, 0, 1.0 / 9)
        assert vmax == pytest.approx(1.0 / 9)
        assert min(rgb) < 0.3  # darkest colour: the scale runs to this head's largest weight
        label = _words(relative.axes[-1].get_ylabel())
        assert "relative scale: 0 to 0.111" in label
    with pytest.raises(ValueError, match="fixed"):
        plots.heatmap(record, layer=0, head=0, scale="per-head")


def test_entropy_axis_has_no_offset_and_dendrogram_labels_stay_readable(minilm_rec):
    """No "+2.197" offset above the entropy axis; 72 heads get at most 24 labels per axis in a
    font of at least 5 pt (not 72 labels at 3.5 pt)."""
    fig = plots.head_stats_plot(minilm_rec, ("entropy", "distance"), style="scatter")
    fig.canvas.draw()
    for ax in fig.axes:
        assert ax.yaxis.get_offset_text().get_text() == ""
    fig = plots.similarity_plot(minilm_rec)
    fig.canvas.draw()
    matrix_ax = fig.axes[1]
    labels = [t for t in matrix_ax.get_xticklabels() if t.get_text()]
    assert 12 <= len(labels) <= 24
    assert min(t.get_fontsize() for t in labels) >= 5


def test_head_grid_labels_its_outer_panels_with_tokens_and_leaves_inner_ones_bare():
    g = torch.Generator().manual_seed(0)
    weights = torch.softmax(torch.randn(1, 6, 5, 5, generator=g), dim=-1)
    tokens = ["[CLS]", "a", "cat", "sat", "[SEP]"]
    fig = plots.head_grid(weights, 0, tokens=tokens, ncols=3)
    panels = [ax for ax in fig.axes if ax.get_title().startswith("head")]
    assert len(panels) == 6
    for idx, ax in enumerate(panels):
        row, col = divmod(idx, 3)
        xs = [t.get_text() for t in ax.get_xticklabels()]
        ys = [t.get_text() for t in ax.get_yticklabels()]
        assert xs == (tokens if row == 1 else []), (idx, xs)
        assert ys == (tokens if col == 0 else []), (idx, ys)
        torch.testing.assert_close(torch.as_tensor(ax.images[0].get_array().data).float(), weights[0, idx])
