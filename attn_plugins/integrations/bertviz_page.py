"""The offline page of a BertViz view: BertViz's own view script read from the installed package
and made to run offline, the numeric arrays written into the page's JSON, and the export object
(a page with require.js, jQuery and d3 inlined, and a notebook twin that reuses them)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import uuid
from typing import Any

import torch

from . import assets
from .html_page import HtmlExport, safe_json, script_text
from .notebook_output import carries_scripts, fallback_html, view_script
from .panels import Panel


def bertviz_dir() -> str:
    spec = importlib.util.find_spec("bertviz")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the BertViz views need the bertviz package: pip install 'attn-plugins[bertviz]'")
    return list(spec.submodule_search_locations)[0]


def stacked_attn(p: Panel) -> torch.Tensor:
    """``p.attn`` as one ``[layers, heads, q, k]`` tensor (a list of layers is stacked)."""
    return p.attn if isinstance(p.attn, torch.Tensor) else torch.stack(p.attn)


def bertviz_script(view: str) -> str:
    """BertViz's own view script for ``view`` from the installed package, made to run offline:
    its ``require.config`` (CDN paths) removed and its parameters read from a local variable.

    Args:
        view: ``"head"``, ``"model"`` or ``"neuron"``.

    Returns:
        The script's text.
    """
    path = os.path.join(bertviz_dir(), f"{view}_view.js")
    if not os.path.isfile(path):
        raise ImportError(f"the installed bertviz package has no {view}_view.js")
    with open(path, encoding="utf-8") as handle:
        js = handle.read()
    js = re.sub(r"require\.config\(\{.*?\}\);", "", js, count=1, flags=re.S)
    if view == "neuron":
        js = js.replace("window.bertviz_params", "__attnPluginsParams")
        # label the layer and head menus with the model's numbers (BertViz shows positions)
        js = js.replace(
            'layerSelect.append($("<option />").val(i).text(i));',
            'layerSelect.append($("<option />").val(i).text(params.layer_labels ? params.layer_labels[i] : i));',
        )
        js = js.replace(
            'headSelect.append($("<option />").val(i).text(i));',
            'headSelect.append($("<option />").val(i).text(params.head_labels ? params.head_labels[i] : i));',
        )
        # BertViz selects the first #vis of the page here; scope it to this view
        js = js.replace('var svg = d3.select("#vis");', "var svg = d3.select(`#${config.rootDivId} #vis`);")
    else:
        js = js.replace("PYTHON_PARAMS", "__attnPluginsParams")
    return js


class ArrayWriter:
    """Numeric arrays written into the page's JSON as text: every float32 value with 9 significant
    digits (it reads back as exactly the recorded float32), or rounded to ``decimals``.

    ``add`` returns a placeholder carrying a random nonce (no token text can forge it) that
    :meth:`dumps` replaces by the array text.
    """

    def __init__(self, decimals: int | None = None) -> None:
        self.decimals = decimals
        self.nonce = uuid.uuid4().hex
        self.texts: list[str] = []

    def add(self, t: torch.Tensor) -> str:
        self.texts.append(array_text(t, self.decimals))
        return f"@@array-{self.nonce}-{len(self.texts) - 1}@@"

    def dumps(self, params: dict[str, Any]) -> str:
        text = safe_json(params)
        return re.sub(f'"@@array-{self.nonce}-(\\d+)@@"', lambda m: self.texts[int(m.group(1))], text)


def array_text(t: torch.Tensor, decimals: int | None) -> str:
    a = t.detach().to("cpu", torch.float32)
    if a.numel() == 0 or a.dim() == 0:
        return json.dumps(a.tolist())
    if decimals is None:
        words = [f"{v:.9g}" for v in a.double().reshape(-1).tolist()]
    else:
        fmt = "%." + str(int(decimals)) + "f"
        words = [
            (fmt % v).rstrip("0").rstrip(".") or "0"
            for v in torch.round(a.double(), decimals=decimals).reshape(-1).tolist()
        ]
    if not bool(torch.isfinite(a).all()):
        special = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
        words = [special.get(w, w) for w in words]
    shape = list(a.shape)
    last = shape[-1]
    rows = ["[" + ",".join(words[i : i + last]) + "]" for i in range(0, len(words), last)]
    for size in reversed(shape[:-1]):
        rows = ["[" + ",".join(rows[i : i + size]) + "]" for i in range(0, len(rows), size)]
    return rows[0]


class BertVizExport(HtmlExport):
    """An offline BertViz page: ``save(path)``, notebook display (``_repr_html_``), the view name,
    the id of its root element and the parameters it hands BertViz's script (numeric arrays appear
    there as placeholders; the page holds their values)."""

    def __init__(
        self, body: str, title: str, view: str, params: dict[str, Any], root_id: str, light_body: str | None = None
    ) -> None:
        super().__init__(body, title=title)
        self.view = view
        self.params = params
        self.root_id = root_id
        self.light_body = light_body  # the same view without the shared scripts (a notebook's later views)

    def _repr_html_(self) -> str:
        """In a notebook, the shared scripts go out once (see :mod:`.notebook_output`)."""
        if self.light_body is None or carries_scripts():
            return self.head + self.body
        return self.head + self.light_body

    def __repr__(self) -> str:
        return f"BertVizExport({self.view} view, {len(self.body)} characters)"


# The model view draws one thumbnail per head in a row, wider than a notebook's output area for 12
# heads: once drawn (and whenever it redraws or the window resizes) its SVG is scaled down to the
# width of its root element (a viewBox keeps d3's pointer coordinates right).
FIT_WIDTH_JS = """(function () {
  var root = document.getElementById(%s);
  if (!root) { return; }
  function fit() {
    var svg = root.querySelector('#vis > svg');
    if (!svg) { return; }
    var w = parseFloat(svg.getAttribute('width')), h = parseFloat(svg.getAttribute('height'));
    if (String(w) !== svg.getAttribute('data-ap-set')) {  // drawn by BertViz: its own size
      svg.setAttribute('data-ap-width', w); svg.setAttribute('data-ap-height', h);
      svg.setAttribute('viewBox', '0 0 ' + w + ' ' + h);
    }
    var fullW = parseFloat(svg.getAttribute('data-ap-width')), fullH = parseFloat(svg.getAttribute('data-ap-height'));
    var avail = root.clientWidth, scale = avail > 0 && fullW > avail ? avail / fullW : 1;
    var newW = fullW * scale;
    svg.setAttribute('data-ap-set', String(newW));
    svg.setAttribute('width', newW); svg.setAttribute('height', fullH * scale);
  }
  new MutationObserver(fit).observe(root, {childList: true, subtree: true});
  window.addEventListener('resize', fit);
  fit();
})();
"""


def page_html(
    view: str, run: str, vis_html: str, root_id: str, caption: str, shared: bool = True, picture: str = ""
) -> str:
    """The view's HTML: the untrusted-notebook note (with ``picture``), the view and its script ``run``
    (with require.js, jQuery and d3 inlined when ``shared``, else using those an earlier output defined)."""
    fallback_id = f"{root_id}-fallback"
    script = view_script(run, assets.amd_prelude() if shared else None, fallback_id, root_id)
    if view == "model":
        script += FIT_WIDTH_JS % safe_json(root_id)
    return (
        fallback_html(fallback_id, f"BertViz {view} view", picture)
        + f'<div class="attn-plugins-bertviz" data-view="{view}" data-root="{root_id}">\n{caption}{vis_html}\n'
        f'</div>\n<script type="text/javascript">\n(function () {{\n{script_text(script)}\n}})();\n</script>\n'
    )


def build_export(
    view: str,
    params: dict[str, Any],
    arrays: ArrayWriter,
    vis_html: str,
    root_id: str,
    caption: str,
    title: str,
    picture: str = "",
) -> BertVizExport:
    """The export: the page with the scripts inlined, and the notebook's lighter twin."""
    run = "var __attnPluginsParams = " + arrays.dumps(params) + ";\n" + bertviz_script(view)
    body = page_html(view, run, vis_html, root_id, caption, picture=picture)
    light = page_html(view, run, vis_html, root_id, caption, shared=False, picture=picture)
    return BertVizExport(body, title, view, params, root_id, light_body=light)
