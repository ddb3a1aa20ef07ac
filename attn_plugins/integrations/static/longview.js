/*
 * attn-plugins long-input attention view: a heat map on a <canvas>, no third-party code.
 *
 * attnPluginsLongView(root) reads the view's metadata (script.apl-meta, JSON) and its weights
 * (script.apl-data, base64 of deflate-compressed sparse rows), builds the controls and draws.
 * Rows are queries (attending tokens), columns keys (attended-to tokens). All text from the data
 * (tokens) is put into the page with textContent or drawn on the canvas, never parsed as HTML.
 *
 * Opacity is weight^gamma (gamma 0.5 by default, set with the contrast slider); where several heads
 * are selected a cell takes the largest weight's opacity and the heads' colours mixed by weight^2.
 *
 * After each draw the root element carries data-draws, data-layer, data-heads, data-window and,
 * after the first, data-first-draw-ms; root.attnLongView offers value(), cellCenter(),
 * setWindow(), setLayer(), setHeads() and draw() for scripts and tests.
 */
function attnPluginsLongView(root) {
  "use strict";
  var COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                "#bcbd22", "#17becf"];  // d3.schemeCategory10, BertViz's head colours
  var ML = 130, MT = 104, PAD = 10;      // margins (CSS px) for token labels
  var LABEL_MIN = 11;                    // a cell this high (CSS px) or more gets its token label
  var meta, buffer, cache = {}, st = null, draws = 0;
  var canvas, overlay, ctx, octx, tip, status, controls, dpr, S, Sd, grid = null, img = null, acc = null;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) { for (var key in attrs) { node.setAttribute(key, attrs[key]); } }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function fail(err) {
    var box = root.querySelector(".apl-status") || root.appendChild(el("div", {"class": "apl-status"}));
    box.textContent = "";
    box.appendChild(el("span", {"class": "apl-error"}, "attention view could not be drawn: " + (err && err.message ? err.message : err)));
    root.setAttribute("data-error", String(err && err.message ? err.message : err));
    if (window.console) { console.error("attn-plugins long view:", err); }
  }

  function bytesFromBase64(text) {
    var bin = atob(text.replace(/\s+/g, ""));
    var out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) { out[i] = bin.charCodeAt(i); }
    return out;
  }

  function inflate(bytes) {
    if (!meta.compressed) { return Promise.resolve(bytes.buffer); }
    if (typeof DecompressionStream === "undefined") {
      return Promise.reject(new Error("this browser has no DecompressionStream; export with compress=False"));
    }
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer();
  }

  // ----- data --------------------------------------------------------------------------------
  function block(p, l, h) {
    var key = p + "/" + l + "/" + h;
    if (cache[key]) { return cache[key]; }
    var P = meta.panels[p], off = P.blocks[l][h], q = P.q, n = off.entries;
    var counts = new Uint16Array(buffer, off.counts, q);
    var cols16 = new Uint16Array(buffer, off.cols, n);
    var vals16 = new Uint16Array(buffer, off.vals, n);
    var start = new Uint32Array(q + 1), cols = new Uint32Array(n), vals = new Float32Array(n);
    var rowMin = new Float32Array(q), rowSum = new Float32Array(q);
    var e = 0, levels = meta.quant;
    for (var r = 0; r < q; r++) {
      start[r] = e;
      var c = 0, lo = Infinity, sum = 0;
      for (var j = 0; j < counts[r]; j++, e++) {
        c = j === 0 ? cols16[e] : c + cols16[e];
        cols[e] = c;
        var s = vals16[e] / levels, v = s * s;
        vals[e] = v;
        sum += v;
        if (v < lo) { lo = v; }
      }
      rowMin[r] = lo === Infinity ? 0 : lo;
      rowSum[r] = sum;
    }
    start[q] = e;
    cache[key] = {start: start, cols: cols, vals: vals, rowMin: rowMin, rowSum: rowSum};
    return cache[key];
  }

  function lookup(B, r, c) {
    var lo = B.start[r], hi = B.start[r + 1] - 1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1, v = B.cols[mid];
      if (v === c) { return B.vals[mid]; }
      if (v < c) { lo = mid + 1; } else { hi = mid - 1; }
    }
    return null;
  }

  function panel() { return meta.panels[st.panel]; }
  function selectedHeads() {
    var out = [];
    for (var i = 0; i < st.heads.length; i++) { if (st.heads[i]) { out.push(i); } }
    return out;
  }
  function rgb(i) {
    var hex = COLORS[i % COLORS.length];
    return [parseInt(hex.substr(1, 2), 16), parseInt(hex.substr(3, 2), 16), parseInt(hex.substr(5, 2), 16)];
  }
  function fmt(v) {
    if (v === 0) { return "0"; }
    return v >= 0.001 ? v.toFixed(4) : v.toExponential(2);
  }
  function clip(text, max) {
    text = String(text);
    return text.length > max ? text.substr(0, max - 1) + "\u2026" : text;
  }

  // ----- window ------------------------------------------------------------------------------
  function clampWindow() {
    var P = panel();
    function fix(a, b, n) {
      var w = Math.min(n, Math.max(Math.min(2, n), b - a));
      if (a < 0) { a = 0; }
      if (a + w > n) { a = n - w; }
      return [a, a + w];
    }
    var r = fix(st.r0, st.r1, P.q), c = fix(st.c0, st.c1, P.k);
    st.r0 = r[0]; st.r1 = r[1]; st.c0 = c[0]; st.c1 = c[1];
  }
  function resetWindow() {
    var P = panel();
    st.r0 = 0; st.r1 = P.q; st.c0 = 0; st.c1 = P.k;
  }
  function zoomAt(fr, fc, factor) {
    st.r0 = fr - (fr - st.r0) * factor; st.r1 = fr + (st.r1 - fr) * factor;
    st.c0 = fc - (fc - st.c0) * factor; st.c1 = fc + (st.c1 - fc) * factor;
    clampWindow();
  }

  // ----- drawing -----------------------------------------------------------------------------
  function draw() {
    var P = panel(), heads = selectedHeads();
    var sy = Sd / (st.r1 - st.r0), sx = Sd / (st.c1 - st.c0);
    var rA = Math.max(0, Math.floor(st.r0)), rB = Math.min(P.q, Math.ceil(st.r1));
    var cA = Math.max(0, Math.floor(st.c0)), cB = Math.min(P.k, Math.ceil(st.c1));
    var px = img.data, total = Sd * Sd, i, gamma = st.gamma;
    // per pixel: the largest weight of any selected head (opacity) and the heads' colours mixed
    // by squared weight, so the head that dominates a cell gives it its colour
    acc.max.fill(0); acc.w2.fill(0); acc.r.fill(0); acc.g.fill(0); acc.b.fill(0);
    for (var hi = 0; hi < heads.length; hi++) {
      var h = heads[hi], B = block(st.panel, st.layer, h), color = rgb(h);
      grid.fill(0);
      for (var r = rA; r < rB; r++) {
        var y0 = Math.floor((r - st.r0) * sy), y1 = Math.floor((r + 1 - st.r0) * sy);
        if (y1 <= y0) { y1 = y0 + 1; }
        if (y0 < 0) { y0 = 0; }
        if (y1 > Sd) { y1 = Sd; }
        for (var e = B.start[r], end = B.start[r + 1]; e < end; e++) {
          var c = B.cols[e];
          if (c < cA) { continue; }
          if (c >= cB) { break; }
          var x0 = Math.floor((c - st.c0) * sx), x1 = Math.floor((c + 1 - st.c0) * sx);
          if (x1 <= x0) { x1 = x0 + 1; }
          if (x0 < 0) { x0 = 0; }
          if (x1 > Sd) { x1 = Sd; }
          var v = B.vals[e];
          for (var yy = y0; yy < y1; yy++) {
            var base = yy * Sd;
            for (var xx = x0; xx < x1; xx++) { if (grid[base + xx] < v) { grid[base + xx] = v; } }
          }
        }
      }
      for (i = 0; i < total; i++) {
        var w = grid[i];
        if (w > 0) {
          var w2 = w * w;
          acc.w2[i] += w2;
          acc.r[i] += w2 * color[0]; acc.g[i] += w2 * color[1]; acc.b[i] += w2 * color[2];
          if (w > acc.max[i]) { acc.max[i] = w; }
        }
      }
    }
    for (i = 0; i < total; i++) {
      var k = i * 4, s2 = acc.w2[i];
      if (s2 > 0) {
        var a = Math.min(1, gamma === 0.5 ? Math.sqrt(acc.max[i]) : Math.pow(acc.max[i], gamma));
        px[k] = 255 + (acc.r[i] / s2 - 255) * a;
        px[k + 1] = 255 + (acc.g[i] / s2 - 255) * a;
        px[k + 2] = 255 + (acc.b[i] / s2 - 255) * a;
      } else {
        px[k] = 255; px[k + 1] = 255; px[k + 2] = 255;
      }
      px[k + 3] = 255;
    }
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.putImageData(img, Math.round(ML * dpr), Math.round(MT * dpr));
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    drawGridAndLabels(P, rA, rB, cA, cB);
    draws += 1;
    root.setAttribute("data-draws", String(draws));
    root.setAttribute("data-layer", String(P.layers[st.layer]));
    root.setAttribute("data-heads", heads.map(function (x) { return P.heads[x]; }).join(","));
    root.setAttribute("data-window", [st.r0, st.r1, st.c0, st.c1].map(function (x) { return Math.round(x); }).join(","));
    if (draws === 1) { root.setAttribute("data-first-draw-ms", performance.now().toFixed(1)); }
    syncInputs();
    updateStatus(P, heads);
  }

  function drawGridAndLabels(P, rA, rB, cA, cB) {
    var cellH = S / (st.r1 - st.r0), cellW = S / (st.c1 - st.c0), r, c, y, x;
    ctx.save();
    ctx.beginPath();
    ctx.rect(ML, MT, S, S);
    ctx.clip();
    if (cellH >= 6 && cellW >= 6) {
      ctx.strokeStyle = "rgba(0,0,0,0.08)";
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (r = rA; r <= rB; r++) { y = MT + (r - st.r0) * cellH; ctx.moveTo(ML, y); ctx.lineTo(ML + S, y); }
      for (c = cA; c <= cB; c++) { x = ML + (c - st.c0) * cellW; ctx.moveTo(x, MT); ctx.lineTo(x, MT + S); }
      ctx.stroke();
    }
    ctx.restore();
    ctx.strokeStyle = "#999";
    ctx.strokeRect(ML - 0.5, MT - 0.5, S + 1, S + 1);
    ctx.fillStyle = "#222";
    ctx.font = "11px 'Helvetica Neue', Helvetica, Arial, sans-serif";
    // query labels (left)
    ctx.save();
    ctx.beginPath();
    ctx.rect(0, MT - 6, ML - 2, S + 12);
    ctx.clip();
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    if (cellH >= LABEL_MIN) {
      for (r = rA; r < rB; r++) { ctx.fillText(clip(P.left[r], 18), ML - 5, MT + (r + 0.5 - st.r0) * cellH); }
    } else {
      var rs = niceStep((st.r1 - st.r0) / 12);
      for (r = Math.ceil(st.r0 / rs) * rs; r < st.r1; r += rs) { ctx.fillText(String(r), ML - 5, MT + (r + 0.5 - st.r0) * cellH); }
    }
    ctx.restore();
    // key labels (top, vertical)
    ctx.save();
    ctx.beginPath();
    ctx.rect(ML - 6, 0, S + 12, MT - 2);
    ctx.clip();
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    var keys = [];
    if (cellW >= LABEL_MIN) {
      for (c = cA; c < cB; c++) { keys.push([c, clip(P.right[c], 16)]); }
    } else {
      var cs = niceStep((st.c1 - st.c0) / 12);
      for (c = Math.ceil(st.c0 / cs) * cs; c < st.c1; c += cs) { keys.push([c, String(c)]); }
    }
    for (var i = 0; i < keys.length; i++) {
      ctx.save();
      ctx.translate(ML + (keys[i][0] + 0.5 - st.c0) * cellW, MT - 5);
      ctx.rotate(-Math.PI / 2);
      ctx.fillText(keys[i][1], 0, 0);
      ctx.restore();
    }
    ctx.restore();
    ctx.fillStyle = "#888";
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillText("query \u2193  key \u2192", 4, 4);
  }

  function niceStep(raw) {
    if (raw <= 1) { return 1; }
    var p = Math.pow(10, Math.floor(Math.log10(raw))), m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }

  function updateStatus(P, heads) {
    var cov = meta.coverage;
    status.textContent = P.q + " \u00d7 " + P.k + " tokens \u00b7 layer " + P.layers[st.layer] + " \u00b7 heads " +
      heads.map(function (x) { return P.heads[x]; }).join(", ") + " \u00b7 queries " + Math.round(st.r0) + "\u2013" +
      (Math.round(st.r1) - 1) + ", keys " + Math.round(st.c0) + "\u2013" + (Math.round(st.c1) - 1) +
      " \u00b7 stored: weights \u2265 " + fmt(meta.threshold) + " and each row's largest, holding \u2265 " +
      (100 * cov.min).toFixed(1) + "% of every row's attention (mean " + (100 * cov.mean).toFixed(1) + "%)" +
      " \u00b7 wheel: zoom, drag: pan, click a head: toggle, double-click: only that head";
  }

  // ----- hover -------------------------------------------------------------------------------
  function cellAt(ev) {
    var rect = canvas.getBoundingClientRect();
    var x = ev.clientX - rect.left - ML, y = ev.clientY - rect.top - MT;
    if (x < 0 || y < 0 || x >= S || y >= S) { return null; }
    return {r: Math.floor(st.r0 + y * (st.r1 - st.r0) / S), c: Math.floor(st.c0 + x * (st.c1 - st.c0) / S),
            fr: st.r0 + y * (st.r1 - st.r0) / S, fc: st.c0 + x * (st.c1 - st.c0) / S, x: x + ML, y: y + MT};
  }

  function hover(cell) {
    octx.setTransform(1, 0, 0, 1, 0, 0);
    octx.clearRect(0, 0, overlay.width, overlay.height);
    if (!cell) { tip.hidden = true; return; }
    var P = panel(), heads = selectedHeads();
    if (cell.r >= P.q || cell.c >= P.k) { tip.hidden = true; return; }
    octx.setTransform(dpr, 0, 0, dpr, 0, 0);
    var cellH = S / (st.r1 - st.r0), cellW = S / (st.c1 - st.c0);
    var y = MT + (cell.r - st.r0) * cellH, x = ML + (cell.c - st.c0) * cellW;
    octx.strokeStyle = "rgba(0,0,0,0.35)";
    octx.setLineDash([3, 3]);
    octx.beginPath();
    octx.moveTo(ML, y + cellH / 2); octx.lineTo(ML + S, y + cellH / 2);
    octx.moveTo(x + cellW / 2, MT); octx.lineTo(x + cellW / 2, MT + S);
    octx.stroke();
    octx.setLineDash([]);
    octx.strokeStyle = "#000";
    octx.strokeRect(x - 0.5, y - 0.5, Math.max(cellW, 2) + 1, Math.max(cellH, 2) + 1);
    tip.textContent = "";
    tip.appendChild(el("div", {"class": "apl-tip-query"}, "query " + cell.r + "  " + JSON.stringify(String(P.left[cell.r]))));
    tip.appendChild(el("div", {"class": "apl-tip-key"}, "key   " + cell.c + "  " + JSON.stringify(String(P.right[cell.c]))));
    for (var i = 0; i < heads.length; i++) {
      var B = block(st.panel, st.layer, heads[i]), v = lookup(B, cell.r, cell.c), text;
      if (v !== null) {
        text = fmt(v);
      } else if (B.start[cell.r + 1] > B.start[cell.r]) {
        text = "< " + fmt(meta.threshold) + " (not stored)";
      } else {
        text = "0";
      }
      var line = el("div", {"class": "apl-tip-value", "data-head": String(P.heads[heads[i]])},
                    "layer " + P.layers[st.layer] + " head " + P.heads[heads[i]] + ": " + text);
      line.style.color = COLORS[heads[i] % COLORS.length];
      tip.appendChild(line);
    }
    tip.hidden = false;
    var left = cell.x + 14, top = cell.y + 14;
    if (left + tip.offsetWidth > ML + S + PAD) { left = cell.x - tip.offsetWidth - 10; }
    if (top + tip.offsetHeight > MT + S + PAD) { top = cell.y - tip.offsetHeight - 10; }
    tip.style.left = Math.max(0, left) + "px";
    tip.style.top = Math.max(0, top) + "px";
  }

  // ----- controls ----------------------------------------------------------------------------
  var layerSelect, headBox, inputs = {};

  function buildControls() {
    controls = el("div", {"class": "apl-controls"});
    if (meta.panels.length > 1) {
      var pl = el("label", null, "Attention ");
      var ps = el("select", {"class": "apl-panel"});
      meta.panels.forEach(function (P, i) { ps.appendChild(el("option", {"value": String(i)}, P.name || ("block " + i))); });
      ps.addEventListener("change", function () { setPanel(+ps.value); });
      pl.appendChild(ps);
      controls.appendChild(pl);
    }
    var ll = el("label", null, "Layer ");
    layerSelect = el("select", {"class": "apl-layer"});
    layerSelect.addEventListener("change", function () { st.layer = +layerSelect.value; draw(); });
    ll.appendChild(layerSelect);
    controls.appendChild(ll);
    var hl = el("span", null, "Heads ");
    headBox = el("span", {"class": "apl-heads"});
    hl.appendChild(headBox);
    controls.appendChild(hl);
    var win = el("span", {"class": "apl-window"});
    [["Queries", "r"], ["keys", "c"]].forEach(function (pair) {
      win.appendChild(document.createTextNode(" " + pair[0] + " "));
      inputs[pair[1] + "0"] = win.appendChild(el("input", {"type": "number", "class": "apl-" + pair[1] + "0", "min": "0", "step": "1"}));
      win.appendChild(document.createTextNode("\u2013"));
      inputs[pair[1] + "1"] = win.appendChild(el("input", {"type": "number", "class": "apl-" + pair[1] + "1", "min": "0", "step": "1"}));
    });
    var go = win.appendChild(el("button", {"type": "button", "class": "apl-go"}, "Show"));
    go.addEventListener("click", function () {
      setWindow(+inputs.r0.value, +inputs.r1.value + 1, +inputs.c0.value, +inputs.c1.value + 1);
    });
    Object.keys(inputs).forEach(function (k) {
      inputs[k].addEventListener("keydown", function (ev) { if (ev.key === "Enter") { go.click(); } });
    });
    controls.appendChild(win);
    var zoom = el("span", {"class": "apl-zoom"});
    var zin = zoom.appendChild(el("button", {"type": "button", "class": "apl-zoom-in", "title": "zoom in"}, "+"));
    var zout = zoom.appendChild(el("button", {"type": "button", "class": "apl-zoom-out", "title": "zoom out"}, "\u2212"));
    var zreset = zoom.appendChild(el("button", {"type": "button", "class": "apl-reset", "title": "whole input"}, "Reset"));
    zin.addEventListener("click", function () { zoomAt((st.r0 + st.r1) / 2, (st.c0 + st.c1) / 2, 0.5); draw(); });
    zout.addEventListener("click", function () { zoomAt((st.r0 + st.r1) / 2, (st.c0 + st.c1) / 2, 2); draw(); });
    zreset.addEventListener("click", function () { resetWindow(); draw(); });
    controls.appendChild(zoom);
    // opacity = weight ^ gamma; more contrast shows faint (diffuse) attention better
    var cl = el("label", {"title": "opacity = weight^\u03b3; more contrast brings out small weights"}, "Contrast ");
    var contrast = cl.appendChild(el("input", {"type": "range", "class": "apl-contrast", "min": "0", "max": "100",
                                               "step": "1", "value": String(Math.round((1 - st.gamma) / 0.008))}));
    contrast.addEventListener("input", function () { st.gamma = Math.max(0.2, 1 - 0.008 * (+contrast.value)); draw(); });
    controls.appendChild(cl);
    return controls;
  }

  function fillPanelControls() {
    var P = panel();
    layerSelect.textContent = "";
    P.layers.forEach(function (label, i) { layerSelect.appendChild(el("option", {"value": String(i)}, label)); });
    layerSelect.value = String(st.layer);
    headBox.textContent = "";
    P.heads.forEach(function (label, i) {
      var b = el("button", {"type": "button", "class": "apl-head", "data-head": String(label),
                            "aria-pressed": st.heads[i] ? "true" : "false", "title": "head " + label}, label);
      b.style.background = COLORS[i % COLORS.length];
      b.addEventListener("click", function () {
        if (st.heads[i] && selectedHeads().length === 1) { return; }
        st.heads[i] = !st.heads[i];
        refreshHeads();
        draw();
      });
      b.addEventListener("dblclick", function () {
        var only = st.heads[i] && selectedHeads().length === 1;
        for (var j = 0; j < st.heads.length; j++) { st.heads[j] = only ? true : j === i; }
        refreshHeads();
        draw();
      });
      headBox.appendChild(b);
    });
  }

  function refreshHeads() {
    var buttons = headBox.querySelectorAll(".apl-head");
    for (var i = 0; i < buttons.length; i++) { buttons[i].setAttribute("aria-pressed", st.heads[i] ? "true" : "false"); }
  }

  function syncInputs() {
    inputs.r0.value = Math.round(st.r0); inputs.r1.value = Math.round(st.r1) - 1;
    inputs.c0.value = Math.round(st.c0); inputs.c1.value = Math.round(st.c1) - 1;
  }

  function setPanel(p) {
    st.panel = p;
    st.layer = Math.min(st.layer, meta.panels[p].layers.length - 1);
    st.heads = meta.panels[p].heads.map(function () { return true; });
    resetWindow();
    fillPanelControls();
    draw();
  }

  function setWindow(r0, r1, c0, c1) {
    if (!(r1 > r0) || !(c1 > c0)) { return; }
    st.r0 = r0; st.r1 = r1; st.c0 = c0; st.c1 = c1;
    clampWindow();
    draw();
  }

  // ----- set-up ------------------------------------------------------------------------------
  function init() {
    S = meta.size;
    dpr = window.devicePixelRatio || 1;
    Sd = Math.round(S * dpr);
    grid = new Float32Array(Sd * Sd);
    acc = {max: new Float32Array(Sd * Sd), w2: new Float32Array(Sd * Sd), r: new Float32Array(Sd * Sd),
           g: new Float32Array(Sd * Sd), b: new Float32Array(Sd * Sd)};
    var init0 = meta.initial, P0 = meta.panels[init0.panel];
    st = {panel: init0.panel, layer: init0.layer, heads: P0.heads.map(function (_, i) { return init0.heads.indexOf(i) >= 0; }),
          r0: 0, r1: P0.q, c0: 0, c1: P0.k, drag: null, gamma: 0.5};
    var caption = root.querySelector(".attn-plugins-caption");
    var anchor = caption ? caption.nextSibling : root.firstChild;
    root.insertBefore(buildControls(), anchor);
    var stage = el("div", {"class": "apl-stage"});
    var cssW = ML + S + PAD, cssH = MT + S + PAD;
    canvas = el("canvas", {"class": "apl-main", "width": String(Math.round(cssW * dpr)), "height": String(Math.round(cssH * dpr))});
    overlay = el("canvas", {"class": "apl-overlay", "width": canvas.getAttribute("width"), "height": canvas.getAttribute("height")});
    canvas.style.width = overlay.style.width = cssW + "px";
    canvas.style.height = overlay.style.height = cssH + "px";
    tip = el("div", {"class": "apl-tip"});
    tip.hidden = true;
    stage.appendChild(canvas);
    stage.appendChild(overlay);
    stage.appendChild(tip);
    root.insertBefore(stage, controls.nextSibling);
    status = root.appendChild(el("div", {"class": "apl-status"}));
    ctx = canvas.getContext("2d");
    octx = overlay.getContext("2d");
    img = ctx.createImageData(Sd, Sd);
    fillPanelControls();

    canvas.addEventListener("wheel", function (ev) {
      var cell = cellAt(ev);
      if (!cell) { return; }
      ev.preventDefault();
      zoomAt(cell.fr, cell.fc, ev.deltaY > 0 ? 1.25 : 0.8);
      draw();
      hover(cellAt(ev));
    }, {passive: false});
    canvas.addEventListener("mousedown", function (ev) {
      if (!cellAt(ev)) { return; }
      st.drag = {x: ev.clientX, y: ev.clientY, r0: st.r0, r1: st.r1, c0: st.c0, c1: st.c1};
      ev.preventDefault();
    });
    window.addEventListener("mouseup", function () { st.drag = null; });
    canvas.addEventListener("mousemove", function (ev) {
      if (st.drag && ev.buttons) {
        var d = st.drag;
        var dr = -(ev.clientY - d.y) * (d.r1 - d.r0) / S, dc = -(ev.clientX - d.x) * (d.c1 - d.c0) / S;
        st.r0 = d.r0 + dr; st.r1 = d.r1 + dr; st.c0 = d.c0 + dc; st.c1 = d.c1 + dc;
        clampWindow();
        draw();
      }
      hover(cellAt(ev));
    });
    canvas.addEventListener("mouseleave", function () { hover(null); });
    canvas.addEventListener("dblclick", function (ev) {
      var cell = cellAt(ev);
      if (cell) { zoomAt(cell.fr, cell.fc, 0.5); draw(); }
    });

    root.attnLongView = {
      draw: draw,
      state: st,
      meta: meta,
      value: function (headPos, r, c) { return lookup(block(st.panel, st.layer, headPos), r, c); },
      cellCenter: function (r, c) {
        var rect = canvas.getBoundingClientRect();
        return {x: rect.left + ML + (c + 0.5 - st.c0) * S / (st.c1 - st.c0),
                y: rect.top + MT + (r + 0.5 - st.r0) * S / (st.r1 - st.r0)};
      },
      setWindow: setWindow,
      setLayer: function (pos) { st.layer = pos; layerSelect.value = String(pos); draw(); },
      setHeads: function (positions) {
        for (var j = 0; j < st.heads.length; j++) { st.heads[j] = positions.indexOf(j) >= 0; }
        refreshHeads();
        draw();
      },
      setPanel: setPanel
    };
    draw();
    root.setAttribute("data-ready", "1");
  }

  try {
    meta = JSON.parse(root.querySelector("script.apl-meta").textContent);
    var bytes = bytesFromBase64(root.querySelector("script.apl-data").textContent);
    inflate(bytes).then(function (buf) {
      // the stored bytes are two planes (all low bytes, then all high bytes) of 16-bit fields
      var planes = new Uint8Array(buf), half = planes.length >> 1, words = new Uint16Array(half);
      for (var i = 0; i < half; i++) { words[i] = planes[i] | (planes[half + i] << 8); }
      buffer = words.buffer;
      init();
    }).catch(fail);
  } catch (err) {
    fail(err);
  }
}
