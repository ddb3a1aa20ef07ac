"""The "bertviz" exporter without a browser: what it feeds BertViz, its options and its errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

import attn_plugins as ap
from attn_plugins.integrations import EXPORTERS, assets
from attn_plugins.integrations.bertviz import bertviz_inputs, fit_logit_scale
from attn_plugins.integrations.html_page import safe_json
from attn_plugins.integrations.panels import panels

from . import _bertviz_records as bertviz_records

pytest.importorskip("bertviz")


def test_registered_without_importing_bertviz():
    code = (
        "import sys, attn_plugins as ap; from attn_plugins.integrations import EXPORTERS; "
        "assert 'bertviz' in EXPORTERS.names(); "
        "assert 'bertviz' not in sys.modules and 'attn_plugins.integrations.bertviz' not in sys.modules; "
        "print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    )
    assert out.returncode == 0, out.stderr
    assert "bertviz" in EXPORTERS


def test_unknown_view_and_item_errors():
    record, _ = bertviz_records.minilm()
    with pytest.raises(ValueError, match="head, model, neuron, long"):
        ap.export(record, "bertviz", view="attention")
    with pytest.raises(IndexError, match="batch of 2"):
        ap.export(record, "bertviz", item=2)
    with pytest.raises(ValueError, match="display_mode"):
        ap.export(record, "bertviz", view="model", display_mode="blue")


def test_panels_equal_the_record_and_trim_padding():
    record, _ = bertviz_records.minilm()
    (p0,) = panels(record, item=0)
    assert p0.layers == list(range(6)) and p0.heads == list(range(12))
    assert p0.left == record.tokens[0] and p0.right == record.tokens[0]
    expected = torch.stack([layer.weights[0] for layer in record.layers])
    assert torch.equal(p0.attn, expected)
    # item 1 is padded: padding positions are left out of both sides
    (p1,) = panels(record, item=1)
    mask = record.inputs["attention_mask"][1].bool()
    assert len(p1.left) == int(mask.sum()) < mask.numel()
    assert "[PAD]" not in p1.left
    keep = mask.nonzero().squeeze(1)
    assert torch.equal(p1.attn[2, 5], record.layers[2].weights[1, 5][keep][:, keep])
    (untrimmed,) = panels(record, item=1, trim_padding=False)
    assert len(untrimmed.left) == mask.numel()
    # sentence B starts where token_type_ids turn to 1
    types = record.inputs["token_type_ids"][0]
    assert p0.sentence_b_start == int(types.nonzero()[0])


def test_layer_and_head_selection():
    record, _ = bertviz_records.minilm()
    (p,) = panels(record, include_layers=[4, 1], include_heads=[7, 2])
    assert p.layers == [4, 1] and p.heads == [7, 2]
    assert torch.equal(p.attn[0, 1], record.layer(4).weights[0, 2])
    with pytest.raises(ValueError, match="not captured"):
        panels(record, include_layers=[9])
    with pytest.raises(ValueError, match="not captured"):
        panels(record, include_heads=[12])


def test_encoder_decoder_sides():
    record = bertviz_records.bart()
    enc, dec, cross = panels(record)
    assert [p.name for p in (enc, dec, cross)] == ["Encoder", "Decoder", "Cross"]
    assert enc.left == enc.right == record.tokens[0]
    assert dec.left == dec.right == record.decoder_tokens[0]
    # cross-attention: decoder tokens attend (left), encoder tokens are attended to (right)
    assert cross.left == record.decoder_tokens[0] and cross.right == record.tokens[0]
    assert cross.attn.shape == (2, 4, len(cross.left), len(cross.right))
    assert torch.equal(cross.attn[1], record.layer(1, stack="decoder", kind="cross").weights[0])
    (only,) = panels(record, stack="cross")
    assert only.name == "Cross"
    with pytest.raises(ValueError, match="'encoder', 'decoder' or 'cross'"):
        panels(record, stack="middle")


def _html(result) -> str:
    return result.data if hasattr(result, "data") else str(result)


def test_stock_bertviz_self_attention_pair_and_padding():
    import bertviz

    record, _ = bertviz_records.minilm()
    args = bertviz_inputs(record)
    assert len(args["attention"]) == 6 and args["attention"][0].shape == (1, 12, 25, 25)
    assert args["sentence_b_start"] == int(record.inputs["token_type_ids"][0].nonzero()[0])
    assert torch.equal(args["attention"][3][0], record.layers[3].weights[0])
    html = _html(bertviz.head_view(**args, html_action="return"))
    assert "bertviz-" in html and "Sentence A -> Sentence B" in html
    html = _html(bertviz.model_view(**args, html_action="return"))
    assert "bertviz-" in html
    padded = bertviz_inputs(record, item=1)
    n = int(record.inputs["attention_mask"][1].sum())
    assert padded["attention"][0].shape == (1, 12, n, n) and len(padded["tokens"]) == n
    assert _html(bertviz.head_view(**padded, html_action="return"))


def test_stock_bertviz_partial_capture_keeps_model_numbers():
    import bertviz

    tok, model = bertviz_records.minilm_tokenizer(), bertviz_records.minilm_model()
    enc = tok("Layers and heads keep their numbers.", return_tensors="pt")
    with torch.no_grad(), ap.capture(model, tok, layers=[1, 3], heads=[0, 5]) as cap:
        model(**enc)
    args = bertviz_inputs(cap.record, view="model")
    assert args["include_layers"] == [1, 3] and args["include_heads"] == [0, 5]
    assert len(args["attention"]) == 4 and args["attention"][1].shape[1] == 6
    assert torch.equal(args["attention"][3][0, 5], cap.record.layer(3).weights[0, 1])
    assert _html(bertviz.model_view(**args, html_action="return"))
    head_args = bertviz_inputs(cap.record, view="head")
    assert head_args["include_layers"] == [1, 3] and head_args["attention"][1].shape[1] == 2
    assert _html(bertviz.head_view(**head_args, layer=3, html_action="return"))


def test_stock_bertviz_encoder_decoder_generate():
    import bertviz

    record = bertviz_records.bart()
    args = bertviz_inputs(record)
    assert set(args) >= {
        "encoder_attention",
        "decoder_attention",
        "cross_attention",
        "encoder_tokens",
        "decoder_tokens",
    }
    assert args["cross_attention"][0].shape == (1, 4, len(args["decoder_tokens"]), len(args["encoder_tokens"]))
    for view in (bertviz.head_view, bertviz.model_view):
        html = _html(view(**args, html_action="return"))
        assert "Cross" in html


def test_stock_bertviz_decoder_only_generate():
    import bertviz

    record = bertviz_records.gpt2()
    for item in (0, 1):  # item 1 is left-padded
        args = bertviz_inputs(record, item=item)
        n = int(record.inputs["attention_mask"][item].sum())
        assert args["attention"][0].shape == (1, 4, n, n) and len(args["tokens"]) == n
        # causal: nothing above the diagonal
        assert float(torch.triu(args["attention"][1][0], diagonal=1).abs().max()) == 0.0
        assert _html(bertviz.head_view(**args, html_action="return"))
        assert _html(bertviz.model_view(**args, html_action="return"))


def test_pages_are_offline_and_safe_as_text(tmp_path):
    record = bertviz_records.hostile_minilm()
    for view in ("head", "model", "neuron"):
        path = tmp_path / f"{view}.html"
        result = ap.export(record, "bertviz", view=view, include_layers=[0, 1], path=path)
        text = path.read_text(encoding="utf-8")
        assert result.view == view
        assert "cdnjs" not in text and "<script src" not in text.lower()
        assert bertviz_records.HOSTILE not in text  # the token only appears escaped inside the JSON
        assert "\\u003c/script\\u003e\\u003cimg src=x onerror=alert(1)\\u003e" in text
        # one script element per view, ended once: no token or library text closes it early
        assert text.count('<script type="text/javascript">') == 1 and text.lower().count("</script") == 1
        assert "<!--" not in text


def test_safe_json_round_trips_hostile_text():
    value = {"tokens": [bertviz_records.HOSTILE, bertviz_records.QUOTES, "\u2028line", "<!--", "]]>"]}
    text = safe_json(value)
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == value


def test_missing_assets_say_how_to_fetch_them(tmp_path, monkeypatch):
    record, _ = bertviz_records.minilm()
    monkeypatch.setenv("ATTN_PLUGINS_ASSETS_DIR", str(tmp_path))
    assert sorted(assets.missing()) == sorted(assets.LIBRARIES)
    with pytest.raises(assets.AssetsMissingError, match="fetch_js_assets.sh"):
        ap.export(record, "bertviz", view="head")


def test_assets_come_from_the_fetch_script():
    assert assets.missing() == [], "run scripts/fetch_js_assets.sh"
    manifest = assets.manifest()
    assert {entry["package"] for entry in manifest.values()} == {spec for spec, _ in assets.LIBRARIES.values()}
    assert "d3.min.js" in manifest and "5.7.0" in assets.load("d3.min.js")[:200]


def test_exact_numbers_in_the_page():
    record, _ = bertviz_records.minilm()
    result = ap.export(record, "bertviz", view="head", item=1, sentence_b_start=None)
    start = result.body.index("var __attnPluginsParams = ") + len("var __attnPluginsParams = ")
    params = json.loads(result.body[start : result.body.index(";\n", start)])
    attn = torch.tensor(params["attention"][0]["attn"], dtype=torch.float32)
    keep = record.inputs["attention_mask"][1].bool().nonzero().squeeze(1)
    expected = torch.stack([layer.weights[1][:, keep][:, :, keep] for layer in record.layers])
    assert torch.equal(attn, expected)  # 9 significant digits read back as the very same float32
    rounded = ap.export(record, "bertviz", view="head", item=1, decimals=3)
    assert len(rounded.body) < len(result.body)


def test_neuron_view_needs_queries_and_keys():
    tok, model = bertviz_records.minilm_tokenizer(), bertviz_records.minilm_model()
    with torch.no_grad(), ap.capture(model, tok) as cap:
        model(**tok("no queries kept", return_tensors="pt"))
    with pytest.raises(ValueError, match="keep_queries_keys=True"):
        ap.export(cap.record, "bertviz", view="neuron")


def test_logit_scale_fit_recovers_the_model_scaling():
    record, _ = bertviz_records.minilm()
    layer = record.layers[2]
    d = layer.queries.shape[-1]
    scale, resid = fit_logit_scale(layer.queries[0], layer.keys[0], layer.weights[0])
    assert torch.allclose(scale, torch.full_like(scale, 1 / math.sqrt(d)), rtol=1e-4)
    assert float(resid.max()) < 1e-3
    # a score with a position term is reported as not a plain scaled dot product
    q, k = layer.queries[0], layer.keys[0]
    n = q.shape[1]
    bias = torch.arange(n)[None, :].float() * 0.3
    probs = torch.softmax(q @ k.transpose(-1, -2) * 0.2 + bias, dim=-1)
    _, resid = fit_logit_scale(q, k, probs)
    assert float(resid.min()) > 1e-2


def test_long_inputs_switch_to_the_canvas_view():
    record, _ = bertviz_records.minilm()
    result = ap.export(record, "bertviz", view="head", long_threshold=10)
    assert result.view == "long" and "apl-root" in result.body
    forced = ap.export(record, "bertviz", view="head", long=False, long_threshold=10)
    assert forced.view == "head"
    with pytest.raises(TypeError, match="budget_mb"):
        ap.export(record, "bertviz", view="head", budget_mb=1)
