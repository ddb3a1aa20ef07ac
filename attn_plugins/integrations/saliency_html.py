"""Exporter ``"saliency"``: a saliency view in the style of the AllenNLP demo, offline.

Each instance shows, per method, its tokens shaded by score (magnitude L1-normalised like AllenNLP
Interpret, shade relative to the largest; a signed method's negative scores in red, positive in
blue, unless ``signed=False`` asks for magnitudes only), the top-k tokens outlined (a slider picks k)
and the values on hover (normalised and raw). A score of exactly 0 is shown as 0 with no shade
(the AllenNLP demo showed such a token as fully salient). Every token and label is HTML-escaped,
the page needs no network, and its small script only toggles classes on elements rendered here.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ..saliency.collect import Instance, as_instances
from ..saliency.result import TokenSaliency
from .html_page import HtmlExport, escape
from .notebook_output import fallback_html, hide_fallback_js

_IDS = itertools.count()

CSS = """
<style>
.ap-sal { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; font-size: 14px; color: #222; }
.ap-sal h3 { font-size: 15px; margin: 14px 0 4px; }
.ap-sal .ap-method { margin: 6px 0 12px; }
.ap-sal .ap-head { font-size: 13px; color: #555; margin-bottom: 4px; }
.ap-sal .ap-head b { color: #222; }
.ap-sal .ap-toks { line-height: 2.1; }
.ap-sal .ap-tok { position: relative; padding: 2px 3px; margin: 0 1px; border-radius: 3px;
  border: 2px solid transparent; white-space: pre; cursor: default; }
.ap-sal .ap-tok.ap-top { border-color: #d62728; font-weight: 600; }
.ap-sal .ap-tok.ap-special { color: #777; }
.ap-sal .ap-tok:hover::after { content: attr(data-tip); position: absolute; left: 0; top: 100%; z-index: 10;
  background: #333; color: #fff; font-size: 12px; font-weight: normal; padding: 2px 6px; border-radius: 3px;
  white-space: pre; pointer-events: none; }
.ap-sal .ap-k { font-size: 12px; color: #555; }
.ap-sal .ap-legend { font-size: 12px; color: #555; margin: 4px 0 10px; }
.ap-sal .ap-swatch { display: inline-block; width: 14px; height: 10px; vertical-align: middle; }
</style>
"""

SCRIPT = """
<script>
(function () {
  var root = document.getElementById(%(id)s);
  if (!root) { return; }
  var sliders = root.querySelectorAll('input.ap-range');
  function apply(slider) {
    var k = parseInt(slider.value, 10);
    var group = slider.closest('.ap-method');
    group.querySelector('.ap-kval').textContent = String(k);
    var toks = group.querySelectorAll('.ap-tok');
    for (var i = 0; i < toks.length; i++) {
      var rank = parseInt(toks[i].getAttribute('data-rank'), 10);
      toks[i].classList.toggle('ap-top', rank >= 0 && rank < k);
    }
  }
  for (var i = 0; i < sliders.length; i++) {
    sliders[i].addEventListener('input', function (event) { apply(event.target); });
    apply(sliders[i]);
  }
})();
</script>
"""


def shade(value: float, signed_value: float | None = None) -> str:
    """Background colour of a normalised score in [0, 1]: transparent at 0, deep blue at 1 (red
    when ``signed_value`` is negative and the view is signed).

    Args:
        value: the score relative to the largest, in [0, 1].
        signed_value: the raw score, whose sign picks the colour (None: always blue).

    Returns:
        A CSS ``rgba(...)`` colour.
    """
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        return "rgba(0, 0, 0, 0)"
    alpha = min(1.0, value)
    if signed_value is not None and signed_value < 0:
        return f"rgba(214, 39, 40, {alpha:.3f})"
    return f"rgba(31, 119, 180, {alpha:.3f})"


def ranks(values: np.ndarray, skip: list[bool] | None = None) -> list[int]:
    """Rank of each position by value (0 = largest); zero scores and skipped positions get -1.

    Args:
        values: one score per position.
        skip: positions left out of the ranking (special tokens).

    Returns:
        One rank per position.
    """
    order = np.argsort(-values, kind="stable")
    out = [-1] * len(values)
    rank = 0
    for i in order:
        if values[i] <= 0 or (skip is not None and skip[i]):
            continue
        out[int(i)] = rank
        rank += 1
    return out


def is_signed(sal: TokenSaliency) -> bool:
    """Whether a result carries a sign worth showing: any negative score (integrated gradients,
    input x gradient, DeepLift, feature ablation); attention-based scores never are.

    Args:
        sal: one result.

    Returns:
        True when a finite score is negative.
    """
    scores = np.asarray(sal.scores, dtype=float)
    return bool(np.any(scores[np.isfinite(scores)] < 0))


def token_row(sal: TokenSaliency, *, top_k: int, signed: bool | None = None, skip_special_in_top: bool = True) -> str:
    """One method's tokens as shaded spans (the building block of this view and the comparison).

    Args:
        sal: one result.
        top_k: how many of the top tokens are outlined.
        signed: ``None`` (default) shows the sign of signed results (:func:`is_signed`: red
            negative, blue positive), ``True`` always, ``False`` shades magnitudes only.
        skip_special_in_top: special tokens are never outlined.

    Returns:
        The row's HTML (tokens escaped).
    """
    if signed is None:
        signed = is_signed(sal)
    norm = sal.normalized("l1", absolute=True)
    # the shade scale ignores special tokens ([CLS] holds most attention and would wash out the rest)
    plain = [i for i in range(len(norm)) if not (sal.special is not None and sal.special[i])] or list(range(len(norm)))
    peak = float(norm[plain].max()) if len(norm) else 0.0
    rel = np.minimum(norm / peak, 1.0) if peak > 0 else np.zeros_like(norm)
    skip = sal.special if (skip_special_in_top and sal.special is not None) else None
    rank = ranks(norm, skip)
    spans = []
    for i, token in enumerate(sal.tokens):
        tip = f"{token}\nscore {norm[i]:.4f} (share of total)\nraw {sal.scores[i]:.4g}"
        classes = ["ap-tok"]
        if 0 <= rank[i] < top_k:
            classes.append("ap-top")
        if sal.special is not None and sal.special[i]:
            classes.append("ap-special")
        colour = shade(rel[i], sal.scores[i] if signed else None)
        text_colour = "#fff" if rel[i] > 0.6 else "inherit"
        spans.append(
            f'<span class="{" ".join(classes)}" data-rank="{rank[i]}" data-score="{norm[i]:.6f}" '
            f'data-tip="{escape(tip)}" title="{escape(tip)}" '
            f'style="background-color: {colour}; color: {text_colour}">{escape(token)}</span>'
        )
    return f'<div class="ap-toks">{"".join(spans)}</div>'


def _describe(sal: TokenSaliency) -> str:
    parts = [f"<b>{escape(sal.method)}</b>"]
    if sal.field and sal.field != "tokens":
        parts.append(f"field {escape(sal.field)}")
    if sal.target_label is not None or sal.target is not None:
        parts.append(f"target {escape(sal.target_label if sal.target_label is not None else sal.target)}")
    if sal.prediction_label is not None:
        prob = f" ({sal.probability:.2f})" if sal.probability is not None else ""
        parts.append(f"predicted {escape(sal.prediction_label)}{prob}")
    if sal.true_label is not None:
        parts.append(f"true {escape(sal.true_label)}")
    if "similarity" in sal.info:
        parts.append(f"cosine similarity {float(sal.info['similarity']):.3f}")
    return " &middot; ".join(parts)


def render(
    instances_by_method: dict[str, list[Instance]],
    *,
    top_k: int = 3,
    signed: bool | None = None,
    title: str = "Saliency",
) -> tuple[str, str]:
    """The saliency view of a method table.

    Args:
        instances_by_method: ``{method: [instance]}``, each instance a list of fields.
        top_k: how many top tokens are outlined at first (a slider changes it).
        signed: see :func:`token_row`.
        title: the view's heading.

    Returns:
        ``(body, head)``: the view's HTML and the CSS it needs.
    """
    view_id = f"ap-sal-{next(_IDS)}"
    names = list(instances_by_method)
    count = len(instances_by_method[names[0]]) if names else 0
    any_signed = signed is True or (
        signed is None
        and any(is_signed(sal) for instances in instances_by_method.values() for inst in instances for sal in inst)
    )
    blocks = [
        f'<div class="ap-sal" id="{view_id}">',
        f'<h2 style="font-size:17px">{escape(title)}</h2>',
        '<div class="ap-legend">shade: share of the total absolute score, relative to the largest '
        "(special tokens aside) "
        '<span class="ap-swatch" style="background: rgba(31,119,180,0.15)"></span>'
        '<span class="ap-swatch" style="background: rgba(31,119,180,0.5)"></span>'
        '<span class="ap-swatch" style="background: rgba(31,119,180,1)"></span>'
        + (
            ' &middot; <span class="ap-swatch" style="background: rgba(214,39,40,0.5)"></span> red: negative '
            "scores (signed methods; signed=False shades magnitudes only)"
            if any_signed
            else ""
        )
        + " &middot; outlined: top-k &middot; "
        "hover a token for its values</div>",
    ]
    for i in range(count):
        texts = [f.text for f in instances_by_method[names[0]][i] if f.text]
        heading = f"Instance {i + 1}"
        if texts:
            heading += ": " + " &harr; ".join(escape(t) for t in texts)
        blocks.append(f"<h3>{heading}</h3>")
        for name in names:
            for sal in instances_by_method[name][i]:
                n = len(sal.tokens)
                k = min(top_k, n)
                blocks.append(
                    '<div class="ap-method">'
                    f'<div class="ap-head">{_describe(sal)} &middot; <span class="ap-k">top '
                    f'<input class="ap-range" type="range" min="0" max="{n}" value="{k}" aria-label="top k"> '
                    f'<span class="ap-kval">{k}</span></span></div>'
                    f"{token_row(sal, top_k=k, signed=signed)}</div>"
                )
    blocks.append("</div>")
    fallback_id = f"{view_id}-fallback"  # the note an untrusted notebook shows (its script removes it)
    body = (
        fallback_html(fallback_id, "saliency view (layout lost; shading and values kept)")
        + "\n".join(blocks)
        + f"<script>{hide_fallback_js(fallback_id)}</script>"
        + SCRIPT % {"id": repr(view_id).replace("'", '"')}
    )
    return body, CSS


def export_saliency(
    obj: Any,
    *,
    method: str | None = None,
    query: Any = 0,
    top_k: int = 3,
    signed: bool | None = None,
    merge_words: bool | str = False,
    title: str = "Saliency",
    **options: Any,
) -> HtmlExport:
    """A page of shaded tokens for saliency results (a list, ``{method: list}``, or a record).

    Args:
        obj: saliency results (see :mod:`attn_plugins.saliency.collect`) or a record.
        method: the method to pick from a ``{method: list}`` table (None: all of them), or to run
            on a record.
        query: the attention row, for a record.
        top_k: how many top tokens are outlined at first.
        signed: ``None`` (default) shows signed methods' negative scores in red and positive in
            blue; ``False`` shades magnitudes only; ``True`` always colours by sign.
        merge_words: ``True``/``"sum"``/``"mean"``/``"max"`` merges word pieces into words.
        title: the page's heading.
        **options: passed to the attention method, for a record.

    Returns:
        The page (``save(path)``, notebook display).
    """
    from collections.abc import Mapping

    if isinstance(obj, Mapping) and method is None:
        from ..saliency.collect import as_method_table

        table = as_method_table(obj, merge_words=merge_words)
    else:
        instances = as_instances(obj, method=method, query=query, merge_words=merge_words, **options)
        table = {instances[0][0].method if instances else "saliency": instances}
    body, head = render(table, top_k=top_k, signed=signed, title=title)
    return HtmlExport(body, title=f"attn-plugins: {title}", head=head)
