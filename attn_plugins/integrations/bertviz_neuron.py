"""BertViz's neuron view from a record that holds queries and keys: the view's parameters, and the
per-head scale that makes ``softmax(q.k)`` reproduce the recorded weights."""

from __future__ import annotations

import math
import uuid
from typing import TYPE_CHECKING

import torch

from .bertviz_page import ArrayWriter, BertVizExport, build_export, stacked_attn
from .panels import FONT, Panel, caption, prettify

if TYPE_CHECKING:
    from ..record import AttentionRecord

NEURON_PAIR_KEYS = {"aa": ("a", "a"), "bb": ("b", "b"), "ab": ("a", "b"), "ba": ("b", "a")}


def fit_logit_scale(queries: torch.Tensor, keys: torch.Tensor, attn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per head, the factor ``s`` with ``attn = softmax(s * q.k + c_row)``, and the largest error of
    that fit in log-probability (small when the scores are plain scaled dot products; large when a
    position bias, ALiBi or soft-capping enters the scores).

    Args:
        queries: ``[H, q, d]``.
        keys: ``[H, k, d]``.
        attn: ``[H, q, k]`` weights.

    Returns:
        ``(scale [H], largest log-probability error [H])``.
    """
    q, k, a = queries.double(), keys.double(), attn.double()
    dots = q @ k.transpose(-1, -2)
    valid = (a > 1e-30) & torch.isfinite(a)
    loga = torch.where(valid, a.clamp_min(1e-300).log(), torch.zeros_like(a))
    count = valid.sum(-1, keepdim=True).clamp_min(1)
    dc = torch.where(valid, dots - (dots * valid).sum(-1, keepdim=True) / count, torch.zeros_like(dots))
    lc = torch.where(valid, loga - (loga * valid).sum(-1, keepdim=True) / count, torch.zeros_like(loga))
    num = (dc * lc).sum(dim=(-1, -2))
    den = (dc * dc).sum(dim=(-1, -2))
    scale = torch.where(den > 0, num / den.clamp_min(1e-300), torch.ones_like(den))
    resid = torch.where(valid, lc - scale[:, None, None] * dc, torch.zeros_like(lc)).abs().amax(dim=(-1, -2))
    return scale, resid


def neuron_view(
    record: AttentionRecord,
    found: list[Panel],
    item: int,
    layer: int | None,
    head: int | None,
    display_mode: str,
    prettify_tokens: bool,
    decimals: int | None,
    notes: list[str],
) -> BertVizExport:
    if len(found) != 1:
        raise ValueError("the neuron view draws one attention block: pass stack='encoder', 'decoder' or 'cross'")
    p = found[0]
    attn = stacked_attn(p)
    if p.queries is None or p.keys is None:
        raise ValueError("the neuron view needs the panel's queries and keys (panels(..., queries_keys=True))")
    p_queries, p_keys = p.queries, p.keys
    layers, head_ids = p.layers, p.heads
    layer_pos = 0 if layer is None else position_of(layer, layers, "layer")
    head_pos = 0 if head is None else position_of(head, head_ids, "head")
    d = p_queries.shape[-1]
    queries = p_queries.clone()
    inexact = []
    for li in range(len(layers)):
        scale, resid = fit_logit_scale(p_queries[li], p_keys[li], attn[li])
        for hi in range(len(head_ids)):
            if resid[hi] < 1e-2:
                # BertViz divides q.k by sqrt(d); scale q so its dot products are the model's scores
                queries[li, hi] = (p_queries[li, hi].double() * float(scale[hi]) * math.sqrt(d)).float()
            else:
                inexact.append(f"{layers[li]}/{head_ids[hi]}")
    if inexact:
        notes = notes + [
            f"layer/head {', '.join(inexact[:6])}{' ...' if len(inexact) > 6 else ''}: the model adds "
            "position terms to q·k, so the q·k column is the plain scaled dot product; softmax "
            "column and lines are the recorded weights"
        ]
    left, right = (prettify(p.left), prettify(p.right)) if prettify_tokens else (p.left, p.right)
    causal = p.kind == "self" and bool(torch.all(torch.triu(attn, diagonal=1 + attn.shape[-1] - attn.shape[-2]) == 0))
    arrays = ArrayWriter(decimals)
    attention = {
        "all": {
            "attn": arrays.add(attn),
            "left_text": left,
            "right_text": right,
            "queries": arrays.add(queries),
            "keys": arrays.add(p_keys),
        }
    }
    b = p.sentence_b_start
    if b is not None:
        parts = {"a": slice(0, b), "b": slice(b, len(p.left))}
        for key, (rows, cols) in NEURON_PAIR_KEYS.items():
            r, c = parts[rows], parts[cols]
            attention[key] = {
                "attn": arrays.add(attn[:, :, r, c]),
                "left_text": left[r],
                "right_text": right[c],
                "queries": arrays.add(queries[:, :, r]),
                "keys": arrays.add(p_keys[:, :, c]),
            }
    root_id = f"bertviz-{uuid.uuid4().hex}"
    params = {
        "attention": attention,
        "default_filter": "all",
        "root_div_id": root_id,
        "bidirectional": not causal,
        "display_mode": display_mode,
        "layer": layer_pos,
        "head": head_pos,
        "layer_labels": layers,
        "head_labels": head_ids,
    }
    dropdown = ""
    if b is not None:
        dropdown = (
            '<span class="dropdown-label">Attention: </span><select id="filter">'
            '<option value="all">All</option><option value="aa">Sentence A -&gt; Sentence A</option>'
            '<option value="ab">Sentence A -&gt; Sentence B</option>'
            '<option value="ba">Sentence B -&gt; Sentence A</option>'
            '<option value="bb">Sentence B -&gt; Sentence B</option></select>'
        )
    vis_html = (
        f'<div id="{root_id}" style="padding:8px;{FONT}"><span style="user-select:none">'
        '<span class="dropdown-label">Layer: </span><select id="layer"></select> '
        '<span class="dropdown-label">Head: </span> <select id="att_head"></select> '
        f'{dropdown}</span><div id="vis"></div></div>'
    )
    label = {"Encoder": "encoder", "Decoder": "decoder", "Cross": "cross"}.get(p.name or "", "")
    return build_export(
        "neuron",
        params,
        arrays,
        vis_html,
        root_id,
        caption(record, item, [f"neuron view {label}".strip()] + notes),
        "attn-plugins: BertViz neuron view",
    )


def position_of(value: int, labels: list[int], what: str) -> int:
    if value not in labels:
        raise ValueError(f"{what} {value} is not among the {what}s shown: {labels}")
    return labels.index(value)
