"""What a notebook shows of the BertViz and long views: the model view fits the output area's width,
and where the scripts did not run (an untrusted notebook strips them) the fallback note carries a
static picture of the attention, which the script hides once it runs (headless Chromium, offline)."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest

import attn_plugins as ap

from .. import _browser
from . import _bertviz_records

pytest.importorskip("bertviz")

NARROW = 640  # px: narrower than the 12 thumbnails of MiniLM's model view


@pytest.fixture(scope="module")
def browser():
    with _browser.Browser() as b:
        yield b


@pytest.fixture(scope="module")
def narrow_browser():
    with _browser.Browser(width=NARROW, height=900) as b:
        yield b


def test_model_view_fits_a_narrow_window(narrow_browser, tmp_path):
    record, _ = _bertviz_records.minilm()
    result = ap.export(record, "bertviz", view="model", display_mode="light", path=tmp_path / "model.html")
    root = f"#{result.root_id}"
    page = narrow_browser.open(
        tmp_path / "model.html", wait_for=f"document.querySelectorAll('{root} .attn_background').length"
    )
    assert page.count(f"{root} .attn_background") == 6 * 12
    width = page.js("return document.documentElement.clientWidth")
    assert width <= NARROW
    # BertViz drew it wider than the window; it is scaled to fit, so the last head is inside the viewport
    assert (
        page.js(f"return parseFloat(document.querySelector('{root} #vis > svg').getAttribute('data-ap-width'))") > width
    )
    right = page.js(
        f"var b = document.querySelectorAll('{root} .attn_background'); "
        "return b[b.length - 1].getBoundingClientRect().right"
    )
    assert 0.5 * width < right <= width
    assert page.js("return document.documentElement.scrollWidth") <= width
    # it still reacts: a click on the last thumbnail opens its detail
    page.js(
        f"var b = document.querySelectorAll('{root} .attn_background'); b[b.length - 1].parentNode.lastChild"
        ".dispatchEvent(new MouseEvent('click', {bubbles: true}))"
    )
    assert page.text(f"{root} text.detail") == ["Layer 5, Head 11"]
    assert page.console_errors() == [] and page.network_requests() == []


def _strip_scripts(html: str) -> str:
    """What JupyterLab and Notebook 7 show of an untrusted output: no scripts, no styles."""
    return re.sub(r"<(script|style)\b.*?</\1>", "", html, flags=re.S | re.I)


def _picture_pixels(html: str) -> np.ndarray:
    from PIL import Image

    data = re.search(r'class="attn-plugins-fallback-picture".*?src="data:image/png;base64,([^"]+)"', html, re.S)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data.group(1)))).convert("RGB"))


@pytest.mark.parametrize("view", ["head", "model", "long"])
def test_fallback_picture_shows_without_scripts_and_hides_with_them(browser, tmp_path, view):
    record, _ = _bertviz_records.minilm()
    result = ap.export(record, "long") if view == "long" else ap.export(record, "bertviz", view=view)
    html = result.body
    # the picture is the last layer's mean of heads on the fixed 0..1 scale (white 0, dark blue 1)
    layer = max(layer.index for layer in record.layers)
    mean = record.layer(layer).weights[0].float().mean(dim=0)
    mask = record.inputs["attention_mask"][0].bool()
    mean = mean[mask][:, mask].numpy()
    pixels = _picture_pixels(html)
    assert pixels.shape[:2] == mean.shape
    expected = np.round(255 - mean[..., None] * (255 - np.array([8, 48, 107], dtype=np.float32)))
    assert np.abs(pixels.astype(float) - expected).max() <= 1
    fallback = f"{result.root_id}-fallback"
    # untrusted: the note and its picture show
    (tmp_path / "untrusted.html").write_text(_strip_scripts(html), encoding="utf-8")
    page = browser.open(tmp_path / "untrusted.html")
    assert page.js(f"return !!document.getElementById('{fallback}')")
    shown = page.js(
        f"var i = document.querySelector('#{fallback} .attn-plugins-fallback-picture img'); "
        "return [i.complete, i.naturalWidth, i.getBoundingClientRect().width]"
    )
    assert shown[0] and shown[1] == mean.shape[1] and shown[2] >= 100
    # trusted: the script ran and removed the note with its picture
    result.save(tmp_path / "trusted.html")
    ready = (
        "document.querySelector('.apl-root[data-ready]')"
        if view == "long"
        else f"document.querySelectorAll('#{result.root_id} svg').length"
    )
    page = browser.open(tmp_path / "trusted.html", wait_for=ready)
    assert page.js(f"return document.getElementById('{fallback}') === null")
    assert page.count(".attn-plugins-fallback-picture") == 0
    assert page.console_errors() == [] and page.network_requests() == []
