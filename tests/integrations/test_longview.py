"""The long-input canvas view: its encoding, and the page in headless Chromium at 1,024 tokens."""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import pytest
import torch

import attn_plugins as ap
from attn_plugins.integrations.sparse_weights import QUANT_LEVELS, encode

from .. import _browser
from . import _bertviz_records as bertviz_records

N_LONG = 1024


def own_requests(page) -> list[str]:
    """What the page loaded besides its fallback's inline picture (a data: URI, not a request anywhere)."""
    return [u for u in page.requests() if not u.startswith("data:image/png;base64,")]


def decode(data: np.ndarray, offsets: list[dict], rows: int) -> list[dict]:
    """Python twin of the page's decoder: ``{(row, col): weight}`` per block."""
    out = []
    for off in offsets:
        counts = np.frombuffer(data, "<u2", rows, off["counts"])
        cols = np.frombuffer(data, "<u2", off["entries"], off["cols"])
        vals = np.frombuffer(data, "<u2", off["entries"], off["vals"])
        block, e = {}, 0
        for r in range(rows):
            c = 0
            for j in range(int(counts[r])):
                c = int(cols[e]) if j == 0 else c + int(cols[e])
                block[(r, c)] = (int(vals[e]) / QUANT_LEVELS) ** 2
                e += 1
        out.append(block)
    return out


def test_encoding_keeps_every_weight_above_the_threshold():
    torch.manual_seed(0)
    blocks = [torch.softmax(torch.randn(40, 40) * 3, dim=-1) for _ in range(3)]
    data, offsets, stats = encode(blocks, budget_bytes=10**9, min_weight=1e-3)
    assert stats["threshold"] == pytest.approx(1e-3)
    for w, got in zip(blocks, decode(data, offsets, 40), strict=True):
        wanted = {(r, c) for r, c in (w >= 1e-3).nonzero().tolist()}
        wanted |= {(r, int(w[r].argmax())) for r in range(40)}
        assert set(got) == wanted
        for (r, c), v in got.items():
            true = float(w[r, c])
            assert abs(v - true) <= math.sqrt(true) / QUANT_LEVELS + 1e-9  # 16-bit square-root steps
    # a small budget raises the threshold; each row keeps at least its largest weight
    data, offsets, stats = encode(blocks, budget_bytes=2000, min_weight=1e-4)
    assert stats["threshold"] > 1e-3
    assert 120 <= stats["entries"] <= 2000 // 4 * 1.2
    for w, got in zip(blocks, decode(data, offsets, 40), strict=True):
        assert all((r, int(w[r].argmax())) in got for r in range(40))
        assert all(float(w[r, c]) >= stats["threshold"] or c == int(w[r].argmax()) for r, c in got)
    assert 0 < stats["coverage_min"] <= stats["coverage_mean"] <= 1


def test_long_is_its_own_exporter():
    """``export(record, "long")`` is the view ``export(record, "bertviz", view="long")`` gives: same stored weights."""
    record = bertviz_records.hostile_minilm()
    own = ap.export(record, "long", include_layers=[2])
    via = ap.export(record, "bertviz", view="long", include_layers=[2])
    assert own.view == via.view == "long" and own.stats == via.stats and own.stats["entries"] > 0

    def payload(result):
        return re.search(r'class="apl-data">([^<]*)</script>', result.body).group(1)

    assert payload(own) == payload(via)
    with pytest.raises(ValueError, match="not captured"):
        ap.export(record, "long", include_layers=[99])


@functools.cache
def long_record():
    """MiniLM on 1,024 tokens of text (position ids modulo 512), layers 0 and 5."""
    tok, model = bertviz_records.minilm_tokenizer(), bertviz_records.minilm_model()
    words = (bertviz_records.TEXT_A + " " + bertviz_records.TEXT_B + " ") * 80
    ids = tok(words, add_special_tokens=False)["input_ids"][: N_LONG - 2]
    ids = torch.tensor([[tok.cls_token_id] + ids + [tok.sep_token_id]])
    positions = torch.arange(N_LONG)[None, :] % model.config.max_position_embeddings
    with torch.no_grad(), ap.capture(model, tok, layers=[0, 5]) as cap:
        model(input_ids=ids, attention_mask=torch.ones_like(ids), position_ids=positions)
    record = cap.record
    record.tokens = [list(record.tokens[0])]
    record.tokens[0][7] = bertviz_records.HOSTILE
    record.tokens[0][8] = bertviz_records.QUOTES
    return record


@pytest.fixture(scope="module")
def browser():
    with _browser.Browser(width=1100, height=1300) as b:
        yield b


@pytest.fixture(scope="module")
def long_page(browser, tmp_path_factory):
    record = long_record()
    result = ap.export(record, "bertviz", view="head")  # long input: the canvas view is chosen by itself
    assert result.view == "long"
    path = tmp_path_factory.mktemp("longview") / "long.html"
    result.save(path)
    page = browser.open(path, wait_for="document.querySelector('.apl-root[data-ready]')")
    return record, result, page


def pixels(page) -> str:
    """A digest of what the main canvas shows."""
    return page.js(
        "var c = document.querySelector('.apl-main'); var d = c.getContext('2d')"
        ".getImageData(0, 0, c.width, c.height).data; var h = 0, ink = 0, dark = 0;"
        "for (var i = 0; i < d.length; i += 4) { h = (h * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) | 0;"
        " dark += 765 - d[i] - d[i + 1] - d[i + 2];"
        " if (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250) { ink++; } }"
        " return h + ':' + ink + ':' + dark;"
    )


def ink(digest: str) -> int:
    """How many pixels are not white."""
    return int(digest.split(":")[1])


def darkness(digest: str) -> int:
    return int(digest.split(":")[2])


def test_long_page_draws_offline(long_page):
    record, result, page = long_page
    assert page.console_errors() == []
    assert page.network_requests() == [] and own_requests(page) == [page.url]
    assert page.count(".apl-root canvas") == 2
    root = page.query(".apl-root")[0]
    assert root.get_attribute("data-layer") == "0"
    assert root.get_attribute("data-heads") == ",".join(str(h) for h in range(12))
    assert root.get_attribute("data-window") == f"0,{N_LONG},0,{N_LONG}"
    assert float(root.get_attribute("data-first-draw-ms")) > 0
    assert ink(pixels(page)) > 10_000
    assert page.text(".apl-layer option") == ["0", "5"]
    assert page.count(".apl-head") == 12
    status = page.text(".apl-status")[0]
    assert f"{N_LONG} \u00d7 {N_LONG} tokens" in status
    assert len(result.body) < 12_000_000


def test_heads_and_layers_change_the_drawing(long_page):
    _, _, page = long_page
    first = pixels(page)
    page.double_click(".apl-head[data-head='3']")  # only head 3
    root = page.query(".apl-root")[0]
    if root.get_attribute("data-heads") != "3":
        # on a loaded machine the two clicks can arrive slower than the system's double-click interval, so the
        # browser sends two clicks (head 3 off and on again) and no dblclick: send the dblclick the user made
        page.js(
            "document.querySelector(\".apl-head[data-head='3']\").dispatchEvent("
            "new MouseEvent('dblclick', {bubbles: true}))"
        )
    assert root.get_attribute("data-heads") == "3"
    only3 = pixels(page)
    assert only3 != first
    page.click(".apl-head[data-head='7']")  # add head 7
    assert root.get_attribute("data-heads") == "3,7"
    assert pixels(page) not in (first, only3)
    page.js("var s = document.querySelector('.apl-layer'); s.value = '1'; s.dispatchEvent(new Event('change'))")
    assert root.get_attribute("data-layer") == "5"
    page.js("document.querySelector('.apl-root').attnLongView.setLayer(0)")
    page.js("document.querySelector('.apl-root').attnLongView.setHeads([3])")
    assert pixels(page) == only3
    page.js("var s = document.querySelector('.apl-contrast'); s.value = '100'; s.dispatchEvent(new Event('input'))")
    assert darkness(pixels(page)) > darkness(only3)  # more contrast: faint weights show
    page.js("var s = document.querySelector('.apl-contrast'); s.value = '63'; s.dispatchEvent(new Event('input'))")
    assert page.console_errors() == []


def test_zoom_into_a_token_window_and_hover_values(long_page):
    record, result, page = long_page
    root = page.query(".apl-root")[0]
    page.js("document.querySelector('.apl-root').attnLongView.setHeads([3])")
    # type a window: queries and keys 0-29
    for cls, value in (("apl-r0", "0"), ("apl-r1", "29"), ("apl-c0", "0"), ("apl-c1", "29")):
        box = page.query(f".{cls}")[0]
        box.clear()
        box.send_keys(value)
    page.click(".apl-go")
    assert root.get_attribute("data-window") == "0,30,0,30"
    page.scroll_into_view(".apl-main")
    weights = record.layer(0).weights[0, 3]
    threshold = result.stats["threshold"]
    checked = 0
    for r, c in [(7, 0), (12, 11), (20, 3), (29, 29), (5, 21)]:
        at = page.js(f"return document.querySelector('.apl-root').attnLongView.cellCenter({r}, {c})")
        page.move_to(at["x"], at["y"])
        lines = page.text(".apl-tip div")
        assert lines[0].startswith(f"query {r} ") and lines[1].startswith(f"key   {c} ")
        shown = lines[2].split(": ", 1)[1]
        true = float(weights[r, c])
        if shown.startswith("<"):
            assert true < threshold
        else:
            assert float(shown) == pytest.approx(true, abs=6e-5, rel=1e-3)
            checked += 1
        if r == 7:  # the hostile token is shown as text, quoted, never run
            assert bertviz_records.HOSTILE in lines[0]
    assert checked >= 2
    # zoom buttons and the wheel narrow or widen the window around the pointer
    page.click(".apl-zoom-out")
    assert root.get_attribute("data-window") == "0,60,0,60"
    at = page.js("return document.querySelector('.apl-root').attnLongView.cellCenter(30, 30)")
    page.js(
        "var c = document.querySelector('.apl-main');"
        f"c.dispatchEvent(new WheelEvent('wheel', {{deltaY: -100, clientX: {at['x']}, clientY: {at['y']}, "
        "bubbles: true, cancelable: true}))"
    )
    r0, r1, c0, c1 = map(int, root.get_attribute("data-window").split(","))
    assert r1 - r0 == 48 and r0 <= 30 <= r1
    page.click(".apl-reset")
    assert root.get_attribute("data-window") == f"0,{N_LONG},0,{N_LONG}"
    assert page.alerts() == 0 and page.count("img") == 0
    assert page.console_errors() == [] and page.network_requests() == []


def test_hostile_tokens_in_a_small_long_view(browser, tmp_path):
    record = bertviz_records.hostile_minilm()
    ap.export(record, "bertviz", view="long", include_layers=[2], path=tmp_path / "small.html")
    text = (tmp_path / "small.html").read_text(encoding="utf-8")
    assert bertviz_records.HOSTILE not in text and text.lower().count("</script") == 3  # meta, data, code
    page = browser.open(tmp_path / "small.html", wait_for="document.querySelector('.apl-root[data-ready]')")
    page.scroll_into_view(".apl-main")
    at = page.js("return document.querySelector('.apl-root').attnLongView.cellCenter(3, 2)")
    page.move_to(at["x"], at["y"])
    lines = page.text(".apl-tip div")
    assert bertviz_records.QUOTES.replace("\\", "\\\\").replace('"', '\\"') in lines[0]
    assert bertviz_records.HOSTILE in lines[1]
    value = re.search(r"head 0: ([0-9.e-]+)", " ".join(lines))
    assert value and float(value.group(1)) == pytest.approx(float(record.layer(2).weights[0, 0, 3, 2]), abs=6e-5)
    assert page.alerts() == 0 and page.count("img") == 0
    assert page.console_errors() == [] and own_requests(page) == [page.url]
    # encoder-decoder records get an attention selector (encoder, decoder, cross)
    bart = ap.export(bertviz_records.bart(), "bertviz", view="long", path=tmp_path / "bart.html")
    assert bart.view == "long"
    page = browser.open(tmp_path / "bart.html", wait_for="document.querySelector('.apl-root[data-ready]')")
    assert page.text(".apl-panel option") == ["Encoder", "Decoder", "Cross"]
    page.js("var s = document.querySelector('.apl-panel'); s.value = '2'; s.dispatchEvent(new Event('change'))")
    enc_n, dec_n = len(bertviz_records.bart().tokens[0]), len(bertviz_records.bart().decoder_tokens[0])
    assert page.query(".apl-root")[0].get_attribute("data-window") == f"0,{dec_n},0,{enc_n}"
    assert page.console_errors() == [] and page.alerts() == 0


@pytest.mark.parametrize("size", [0, 1000, (1 << 21) - 1, 7 * (1 << 20) + 12345])
def test_parallel_huffman_deflate_is_one_zlib_stream(size):
    """Empty, one-piece and many-piece data: what the page's DecompressionStream("deflate") gets is
    a single zlib stream (checked with zlib itself; the page tests decode it in Chromium)."""
    import zlib

    from attn_plugins.integrations.sparse_weights import deflate

    rng = torch.Generator().manual_seed(size)
    data = (torch.randint(0, 40, (size,), generator=rng, dtype=torch.uint8)).numpy().tobytes()
    packed = deflate(data)
    assert zlib.decompress(packed) == data
    if size > 1000:
        assert len(packed) < 0.8 * size  # 40 symbols: Huffman coding alone packs them
        assert zlib.decompress(deflate(data, strategy=zlib.Z_DEFAULT_STRATEGY)) == data
