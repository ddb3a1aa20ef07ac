"""What the views put into a notebook: a static fallback for untrusted notebooks, and BertViz's
shared scripts sent once per notebook.

Untrusted notebooks: JupyterLab and Notebook 7 strip ``<script>`` and ``<style>`` from the HTML
outputs of a notebook they did not run themselves (executed elsewhere, shared, on GitHub). Every
view therefore starts with a plain note (:func:`fallback_html`, inline styles only) that says what to
do (run the cell, or ``jupyter trust NOTEBOOK.ipynb``); the view's script removes it as its first
step, so it shows only where the script did not run.

Shared scripts: require.js, jQuery and d3 (about 500 KB) used to be inlined in every BertViz view.
In a notebook the first view's output now carries them, as a function on ``window``
(``window.attnPluginsBertvizLibs``, which builds a private loader each time it is called, so views
still do not share modules); later views only call it, waiting for it (the
``attn-plugins-bertviz-libs`` event) when their output is drawn before the carrier's. A reopened
(trusted) notebook draws every view since outputs run in document order and the waiting covers a
carrier further down. Which output carries them: the first view shown in this kernel, and again
every view shown in the same cell as that one (a cell run again replaces its output, so its new
output must carry them again). A cell is known by the front end's cell id (JupyterLab, Notebook 7
and VS Code send it) or, failing that, by its source text. If the carrier's output is later deleted
or cleared, the other views say so in place of the drawing: call :func:`carry_scripts_again` and
show a view again. Saved pages (``save()``) and the report always inline everything.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import zlib
from typing import Any

from .html_page import escape, safe_json

LIBS_GLOBAL = "attnPluginsBertvizLibs"
LIBS_EVENT = "attn-plugins-bertviz-libs"
UNTRUSTED_NOTE = (
    "This attention view needs its script, which did not run: the notebook is not trusted "
    "(opened from disk, shared or executed elsewhere), so Jupyter left out the view's scripts and "
    "styles. Run this cell, or trust the notebook (File > Trust Notebook, or "
    "`jupyter trust NOTEBOOK.ipynb`) and reopen it."
)
_STATE: dict[str, str | None] = {"owner": None}


def fallback_html(element_id: str, what: str, picture: str = "") -> str:
    """A note shown where the view's script did not run.

    Args:
        element_id: the note's element id (the view's script removes it).
        what: the view's name, in bold.
        picture: static HTML shown with the note.

    Returns:
        The note's HTML.
    """
    return (
        f'<div id="{escape(element_id)}" class="attn-plugins-fallback" style="border:1px solid #d0a000;'
        'background:#fff8e0;color:#333;padding:6px 10px;margin:4px 0;font:13px sans-serif">'
        f"<b>{escape(what)}</b>: {escape(UNTRUSTED_NOTE)}{picture}</div>\n"
    )


PICTURE_CELLS = 128  # the fallback picture's matrix: at most this many rows and columns (block means past it)
PICTURE_SIDE = 240  # CSS pixels of its longer side


def png_rgb(pixels: Any) -> bytes:
    """A PNG of ``pixels`` (``uint8`` array ``[height, width, 3]``), written with zlib alone (no
    plotting library: the fallback picture must cost little next to the view)."""
    import numpy as np

    height, width, _ = pixels.shape
    rows = np.concatenate([np.zeros((height, 1), np.uint8), pixels.reshape(height, width * 3)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )


def mean_picture(attn: Any, what: str = "the mean of the heads") -> str:
    """A static picture for a view's fallback: the mean of the heads ``attn`` (``[heads, query, key]``,
    padding already removed) as a small inline PNG on the fixed 0..1 scale (white 0, dark blue 1;
    block means past :data:`PICTURE_CELLS` rows or columns), with a line saying what it shows."""
    import numpy as np
    import torch

    attn = torch.as_tensor(attn)
    matrix = torch.zeros(attn.shape[-2:], dtype=torch.float32)
    heads = attn.reshape(-1, *attn.shape[-2:])
    for head in heads:  # summed head by head in float32: a half-precision reduction is slow on CPUs
        matrix.add_(head)
    matrix = torch.nan_to_num(matrix / max(1, len(heads)))
    q, k = matrix.shape
    if q == 0 or k == 0:
        return ""
    if max(q, k) > PICTURE_CELLS:
        size = (min(q, PICTURE_CELLS), min(k, PICTURE_CELLS))
        matrix = torch.nn.functional.adaptive_avg_pool2d(matrix[None, None], size)[0, 0]
    value = matrix.clamp(0, 1).numpy()[..., None]
    dark = [8, 48, 107]  # matplotlib's "Blues" at 1
    pixels = (255 - value * (255 - np.array(dark, dtype=np.float32))).round().astype(np.uint8)
    data = base64.b64encode(png_rgb(pixels)).decode("ascii")
    rows, cols = matrix.shape
    scale = PICTURE_SIDE / max(rows, cols)
    return (
        f'<div class="attn-plugins-fallback-picture" style="margin-top:6px"><img alt="{escape(what)}" '
        f'src="data:image/png;base64,{data}" width="{round(cols * scale)}" height="{round(rows * scale)}" '
        'style="image-rendering:pixelated;border:1px solid #ccc"><div style="font-size:12px">'
        f"Meanwhile, a static picture: {escape(what)} ({q} queries as rows x {k} keys as columns; white 0, "
        "dark blue 1).</div></div>"
    )


def hide_fallback_js(element_id: str) -> str:
    """JavaScript that removes the fallback note (the first thing a view's script does).

    Args:
        element_id: the note's element id.

    Returns:
        The script text.
    """
    return (
        f"(function () {{ var n = document.getElementById({safe_json(element_id)}); "
        "if (n && n.parentNode) { n.parentNode.removeChild(n); } })();\n"
    )


def current_cell() -> str | None:
    """The id of the notebook cell being run.

    Returns:
        ``"id:"`` and the front end's cell id, else ``"src:"`` and a hash of the cell's source;
        None outside a kernel.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None:
        return None
    kernel = getattr(shell, "kernel", None)
    parent: Any = {}
    if kernel is not None:
        try:
            parent = kernel.get_parent() if hasattr(kernel, "get_parent") else getattr(kernel, "_parent_header", {})
        except Exception:  # noqa: BLE001 - an unusual kernel: fall back to the source
            parent = {}
    cell_id = (parent or {}).get("metadata", {}).get("cellId")
    if cell_id:
        return f"id:{cell_id}"
    source = (parent or {}).get("content", {}).get("code")
    if source is None:
        history = shell.user_ns.get("_ih") or []
        source = history[-1] if history else None
    if source is None:
        return None
    return "src:" + hashlib.sha256(str(source).encode("utf-8", "replace")).hexdigest()


def carries_scripts() -> bool:
    """Whether the view being displayed now must carry the shared scripts (see the module docstring).

    Returns:
        True for the first view of the kernel and views of the same cell; always outside a kernel.
    """
    cell = current_cell()
    if cell is None:
        return True
    if _STATE["owner"] is None or _STATE["owner"] == cell:
        _STATE["owner"] = cell
        return True
    return False


def carry_scripts_again() -> None:
    """Let the next view shown carry the shared scripts (after the output that carried them was deleted)."""
    _STATE["owner"] = None


def view_script(run_body: str, libs: str | None, fallback_id: str, root_id: str) -> str:
    """The script of one BertViz view: remove the fallback, then run ``run_body`` (which reads
    ``require``/``requirejs``/``define`` from the loader it is given) with a fresh private loader.

    ``libs``: the loader's source (require.js, jQuery, d3 as :func:`assets.amd_prelude` gives
    them) to define on ``window`` first; None to use the one an earlier output defined.

    Args:
        run_body: the view's own script.
        libs: the loader's source, or None.
        fallback_id: the fallback note's element id.
        root_id: the view's root element id (where a missing-scripts message goes).

    Returns:
        The script text.
    """
    run = (
        "function __attnPluginsRun(__libs) {\nvar require = __libs.require, requirejs = __libs.requirejs, "
        f"define = __libs.define;\n{run_body}\n}}\n"
    )
    start = hide_fallback_js(fallback_id) + run
    if libs is not None:
        return (
            start
            + "var __make = function () {\n"
            + libs
            + "\nreturn {require: require, requirejs: requirejs, define: define};\n};\n"
            f"if (!window.{LIBS_GLOBAL}) {{ window.{LIBS_GLOBAL} = __make; "
            f"window.dispatchEvent(new Event({safe_json(LIBS_EVENT)})); }}\n"
            "__attnPluginsRun(__make());\n"
        )
    note = (
        "this view uses the scripts carried by the first attn-plugins view of this notebook, whose output is "
        "not there: run attn_plugins.notebook.carry_scripts_again() and this cell again"
    )
    return (
        start + f"if (window.{LIBS_GLOBAL}) {{ __attnPluginsRun(window.{LIBS_GLOBAL}()); }} else {{\n"
        f"  var __done = false;\n  window.addEventListener({safe_json(LIBS_EVENT)}, function () {{ if (!__done) "
        f"{{ __done = true; __attnPluginsRun(window.{LIBS_GLOBAL}()); }} }});\n"
        f"  setTimeout(function () {{ var root = document.getElementById({safe_json(root_id)}); "
        "if (__done || !root) { return; } var p = document.createElement('p'); "
        "p.className = 'attn-plugins-missing-scripts'; p.style.color = '#a00'; "
        f"p.textContent = {safe_json('This ' + 'view could not draw: ' + note)}; "
        "root.appendChild(p); }, 8000);\n}\n"
    )
