"""SequenceAttribution saves and loads (safetensors + JSON, no pickle), draws its heatmap and exports its page."""

from __future__ import annotations

import numpy as np
import pytest

import attn_plugins as ap
from attn_plugins.generation import SequenceAttribution, explain_generation
from attn_plugins.generation.views import heatmap

from .models import SOURCE, tiny


@pytest.fixture(scope="module")
def result():
    return explain_generation(
        tiny("bart"), None, SOURCE, [11, 12, 13], methods=["attention", "input_x_gradient"], contrast=7, progress=False
    )


def test_save_load_round_trip(result, tmp_path):
    path = result.save(tmp_path / "gen.safetensors")
    with open(path, "rb") as handle:
        assert b"pickle" not in handle.read(64)
    back = SequenceAttribution.load(path)
    assert back.methods == result.methods and back.target_ids == result.target_ids
    assert back.source_tokens == result.source_tokens and back.prefix_tokens == result.prefix_tokens
    for m in result.methods:
        assert np.array_equal(back.source[m], result.source[m]) and np.array_equal(back.prefix[m], result.prefix[m])
    for k, v in result.step_scores.items():
        assert np.array_equal(back.step_scores[k], v)
    assert back.info["methods"] == {k: list(v) for k, v in result.info["methods"].items()}


def test_load_refuses_foreign_and_damaged_files(result, tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ap.RecordFormatError):
        SequenceAttribution.load(tmp_path / "model.safetensors")
    path = result.save(tmp_path / "gen.safetensors")
    data = open(path, "rb").read()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ap.RecordFormatError):
        SequenceAttribution.load(tmp_path / "cut.safetensors")


def test_shapes_are_checked():
    with pytest.raises(ValueError):
        SequenceAttribution(["a", "b"], ["x"], ["<s>"], {"m": np.zeros((1, 3))}, {"m": np.zeros((1, 1))})


def test_heatmap_draws_the_normalised_rows(result, tmp_path):
    fig = heatmap(result, "input_x_gradient", path=tmp_path / "h.png")
    image = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(np.asarray(image), result.normalized("input_x_gradient"))
    assert (tmp_path / "h.png").stat().st_size > 0


def test_page_escapes_tokens_and_holds_every_method(result, tmp_path):
    hostile = SequenceAttribution(
        ["<b>x</b>", "&"],
        ["</script>"],
        ["<s>"],
        {"m": np.ones((1, 2))},
        {"m": np.zeros((1, 1))},
        step_scores={"probability": np.ones(1)},
    )
    page = ap.export(hostile, "generation")
    html = page._repr_html_()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html and html.count("</script>") == 2
    path = tmp_path / "p.html"
    ap.export(result, "generation", path=path)
    text = path.read_text()
    assert all(f'value="{m}"' in text for m in result.methods)
    assert text.count('class="gen-t"') == len(result.target_tokens)
