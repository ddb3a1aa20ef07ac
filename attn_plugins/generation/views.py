"""Views of a :class:`~.result.SequenceAttribution`: an alignment heatmap per method (drawn by the
alignment plot's own :func:`~attn_plugins.plots.heatmaps.draw_matrix`) and an HTML page where each
target token is clickable and shows its source (and prefix) attributions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..integrations.html_page import HtmlExport, escape, safe_json
from ..integrations.saliency_html import shade

if TYPE_CHECKING:
    import os

    from matplotlib.figure import Figure

    from .result import SequenceAttribution


def heatmap(
    result: SequenceAttribution,
    method: str | None = None,
    *,
    include_prefix: bool = False,
    annotate: Any = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Target tokens (rows) x source tokens (columns) for one method, rows normalised (|values| sum 1),
    the peak of each row boxed as in the cross-attention alignment plot.

    Args:
        result: a :class:`SequenceAttribution`.
        method: one of ``result.methods`` (default: the first).
        include_prefix: also draw the target-prefix columns after the source.
        path: where to save the figure (PNG/SVG/PDF by extension).

    Returns:
        The matplotlib ``Figure``.
    """
    from matplotlib.patches import Rectangle

    from ..plots.canvas import new_figure, save
    from ..plots.heatmaps import draw_matrix

    method = method or result.methods[0]
    if method not in result.source:
        raise KeyError(f"no method {method!r} in this result; it has {result.methods}")
    matrix = result.normalized(method, include_prefix=include_prefix)
    columns = list(result.source_tokens) + (list(result.prefix_tokens) if include_prefix else [])
    q, k = matrix.shape
    width, height = min(10.0, max(3.0, 0.3 * k + 1.8)), min(10.0, max(2.4, 0.3 * q + 1.2))
    fig: Figure = new_figure(width, height, dpi=110, layout=None)
    ax = fig.add_subplot(1, 1, 1)
    image = draw_matrix(
        ax,
        matrix,
        query_labels=list(result.target_tokens),
        key_labels=columns,
        cmap="Greys",
        annotate=annotate,
        xlabel="source" + (" | target prefix" if include_prefix else ""),
        ylabel="target",
    )
    for i, j in enumerate(np.argmax(matrix[:, : len(result.source_tokens)], axis=1).tolist() if q else []):
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#d62728", linewidth=0.9))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03).set_label("share of |attribution| (row sums to 1)")
    ax.set_title(f"{method}", loc="left")
    fig.tight_layout()
    if path is not None:
        save(fig, path)  # atomic, format by extension
    return fig


_SCRIPT = """
<script>(function(){
var root=document.getElementById(%(id)s),
 data=JSON.parse(root.querySelector('script[type="application/json"]').textContent);
function show(m,t){
 root.querySelectorAll('.gen-t').forEach(function(b){b.classList.toggle('gen-on',+b.dataset.t===t);});
 root.querySelectorAll('.gen-s').forEach(function(s){
  var v=data.shades[m][t][+s.dataset.s];s.style.background=v[0];s.title=v[1];});}
var sel=root.querySelector('select');
root.querySelectorAll('.gen-t').forEach(function(b){
 b.addEventListener('click',function(){show(sel.value,+b.dataset.t);});});
sel.addEventListener('change',function(){var on=root.querySelector('.gen-on');show(sel.value,on?+on.dataset.t:0);});
show(sel.value,0);})();</script>
"""


def export_generation(
    result: SequenceAttribution, *, element_id: str = "attn-generation", include_prefix: bool = True
) -> HtmlExport:
    """The generation saliency page: a method selector, the target tokens as buttons, and the source
    (and prefix) tokens shaded by the clicked target token's attribution; values on hover.

    Args:
        result: a :class:`SequenceAttribution`.
        element_id: the page element's id (several pages in one notebook need different ids).
        include_prefix: also shade the target prefix.

    Returns:
        An :class:`~attn_plugins.integrations.html_page.HtmlExport`.
    """
    columns = list(result.source_tokens) + (list(result.prefix_tokens) if include_prefix else [])
    shades = {}
    for method in result.methods:
        raw = (
            np.concatenate([result.source[method], result.prefix[method]], axis=1)
            if include_prefix
            else result.source[method]
        )
        norm = result.normalized(method, include_prefix=include_prefix)
        shades[method] = [
            [[shade(n / row.max() if row.max() > 0 else 0.0), f"{v:.4g}"] for n, v in zip(row, vals, strict=True)]
            for row, vals in zip(norm, raw, strict=True)
        ]
    options = "".join(f'<option value="{escape(m)}">{escape(m)}</option>' for m in result.methods)
    targets = "".join(
        f'<button class="gen-t" data-t="{i}" title="p={p:.3g}">{escape(tok)}</button> '
        for i, (tok, p) in enumerate(
            zip(result.target_tokens, result.step_scores.get("probability", np.full(len(result), np.nan)), strict=True)
        )
    )
    sources = "".join(
        f'<span class="gen-s" data-s="{j}">{escape(tok)}</span> '
        for j, tok in enumerate(columns[: len(result.source_tokens)])
    )
    prefix = "".join(
        f'<span class="gen-s" data-s="{len(result.source_tokens) + j}">{escape(tok)}</span> '
        for j, tok in enumerate(columns[len(result.source_tokens) :])
    )
    style = (
        "<style>.gen-t{margin:1px;border:1px solid #bbb;background:#fff;cursor:pointer}"
        ".gen-on{border-color:#d62728;font-weight:bold}.gen-s{padding:1px 2px;border-radius:2px}</style>"
    )
    body = (
        f'<div id="{escape(element_id)}">{style}<p>method: <select>{options}</select></p>'
        f"<p>target (click a token): {targets}</p><p>source: {sources}</p>"
        + (f"<p>target prefix: {prefix}</p>" if include_prefix else "")
        + f'<script type="application/json">{safe_json({"shades": shades})}</script>'
        + _SCRIPT % {"id": safe_json(element_id)}
        + "</div>"
    )
    return HtmlExport(body, title="generation attribution")
