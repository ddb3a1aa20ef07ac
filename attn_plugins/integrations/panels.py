"""The panel model: a record's attention for one batch item as the blocks BertViz-style views draw.

A :class:`Panel` is one attention block (encoder self, decoder self or cross attention) of one
batch item: ``[layers, heads, query, key]`` weights with the token labels of both sides, padding
trimmed, word pieces optionally merged into words, and (for the neuron view) the queries and keys.
:func:`panels` builds them from a record; the BertViz views (:mod:`attn_plugins.integrations.bertviz`)
and the long-input view (:mod:`attn_plugins.integrations.longview`) draw them. :func:`caption`
and :func:`prettify` are the caption line and the token clean-up both views share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .html_page import escape

if TYPE_CHECKING:
    from ..record import AttentionRecord

FONT = "font-family:'Helvetica Neue', Helvetica, Arial, sans-serif;"


@dataclass
class Panel:
    """One attention block as BertViz draws it: ``attn`` is ``[layers, heads, query, key]``.

    ``left`` labels the query (attending) side, ``right`` the key (attended-to) side. ``attn`` is a
    list of per-layer ``[heads, query, key]`` tensors when :func:`panels` ran with ``stacked=False``.
    """

    name: str | None
    stack: str | None
    kind: str
    layers: list[int]
    heads: list[int]
    attn: torch.Tensor | list[torch.Tensor]
    left: list[str]
    right: list[str]
    queries: torch.Tensor | None = None  # [layers, heads, query, dim]
    keys: torch.Tensor | None = None  # [layers, heads, key, dim]
    sentence_b_start: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def length(self) -> int:
        """The longer side's token count."""
        return max(len(self.left), len(self.right))


def _item_tokens(
    tokens: Sequence[Sequence[Any] | None] | None, item: int, n: int, ids: torch.Tensor | None
) -> list[str]:
    row = tokens[item] if tokens is not None and len(tokens) > item else None
    if row is not None:
        return [str(t) for t in row]
    if ids is not None and ids.dim() == 2 and ids.shape[0] > item:
        return [str(int(i)) for i in ids[item].tolist()]
    return [str(i) for i in range(n)]


def _as_groups(kept: list[int], words: list[list[int]] | None) -> list[list[int]]:
    if words is None:
        return [[p] for p in kept]
    keep = set(kept)
    out = []
    for group in words:
        g = [p for p in group if p in keep]
        if g:
            out.append(g)
    return out


def _labels(groups: list[list[int]], tokens: list[str], offsets: Any, text: str | None) -> list[str]:
    if all(len(g) == 1 for g in groups) and offsets is None:
        return [tokens[g[0]] if g[0] < len(tokens) else str(g[0]) for g in groups]
    from ..analysis.words import word_labels

    return word_labels(groups, offsets, text, tokens)


def _merge(x: torch.Tensor, row_groups: list[list[int]], col_groups: list[list[int]]) -> torch.Tensor:
    """``[..., q, k]``: rows averaged over each group, columns summed (plain selection for singletons)."""
    if all(len(g) == 1 for g in row_groups) and all(len(g) == 1 for g in col_groups):
        rows = torch.tensor([g[0] for g in row_groups], dtype=torch.long)
        cols = torch.tensor([g[0] for g in col_groups], dtype=torch.long)
        return x.index_select(-2, rows).index_select(-1, cols)
    from ..analysis.words import merge_attention

    return merge_attention(x, row_groups, col_groups)


def _rows(x: torch.Tensor, groups: list[list[int]]) -> torch.Tensor:
    return x.index_select(-2, torch.tensor([g[0] for g in groups], dtype=torch.long))


def _mask_positions(record: AttentionRecord, name: str, item: int, n: int) -> list[int] | None:
    mask = record.inputs.get(name)
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2 or mask.shape[0] <= item or mask.shape[1] != n:
        return None
    return [i for i, v in enumerate(mask[item].tolist()) if v]


def _groups_of(record: AttentionRecord, stack: str | None) -> list[tuple[str | None, str, str | None]]:
    """The (stack, kind, BertViz name) groups a record holds, in BertViz's order."""
    if record.is_encoder_decoder:
        order = [("encoder", "self", "Encoder"), ("decoder", "self", "Decoder"), ("decoder", "cross", "Cross")]
        if stack is not None:
            choice = {"encoder": 0, "decoder": 1, "cross": 2}
            if stack not in choice:
                raise ValueError(
                    f"stack must be 'encoder', 'decoder' or 'cross' for an encoder-decoder record, got {stack!r}"
                )
            order = [order[choice[stack]]]
        found: list[tuple[str | None, str, str | None]] = [(s, k, n) for s, k, n in order if record.select(s, k)]
        if not found:
            raise ValueError(f"the record holds no {stack or 'attention'} layers")
        return found
    stacks = record.stacks
    if stack is None:
        if len(stacks) > 1:
            raise ValueError(f"the record holds several attention stacks {stacks}; pick one with stack=")
        stack = stacks[0] if stacks else None
    elif stack not in stacks:
        raise ValueError(f"stack {stack!r} is not in the record; it holds {stacks}")
    has_self, has_cross = bool(record.select(stack, "self")), bool(record.select(stack, "cross"))
    if not has_self:
        # only cross-attention (a Luong/Bahdanau seq2seq, a declared attention layer): target x source
        return [(stack, "cross", "Cross")] if has_cross else []
    found = [(stack, "self", None)]
    if has_cross:
        found.append((stack, "cross", "Cross"))
        found[0] = (stack, "self", "Self")
    return found


def panels(
    record: AttentionRecord,
    *,
    item: int = 0,
    stack: str | None = None,
    include_layers: int | Sequence[int] | None = None,
    include_heads: int | Sequence[int] | None = None,
    trim_padding: bool = True,
    words: bool = False,
    offsets: Any = None,
    text: str | None = None,
    decoder_offsets: Any = None,
    decoder_text: str | None = None,
    queries_keys: bool = False,
    sentence_b_start: int | str | None = "auto",
    stacked: bool = True,
) -> list[Panel]:
    """The record's attention for batch item ``item`` as BertViz panels (see :class:`Panel`).

    ``include_layers``/``include_heads`` are the model's layer and head numbers (they must have
    been captured). Padding positions (``attention_mask`` 0) are left out unless ``trim_padding``
    is false. With ``words=True``, ``offsets`` (the tokenizer's ``offset_mapping`` for this item, or
    the whole batch) and optionally ``text`` merge word pieces into words
    (:mod:`attn_plugins.analysis.words`). ``sentence_b_start``: the token position where sentence B
    starts (``"auto"``: from ``token_type_ids``). ``stacked=False`` leaves ``Panel.attn`` a list of
    per-layer ``[heads, q, k]`` tensors (no copy of long inputs' weights when nothing is trimmed).

    Args:
        record: the record.
        item: the batch item.
        stack: ``"encoder"``, ``"decoder"`` or ``"cross"`` for encoder-decoder records; for composite
            models the stack to show (default: the only one).
        include_layers: the model's layer numbers to include (default: all captured).
        include_heads: the model's head numbers to include (default: all captured).
        trim_padding: leave out padding positions.
        words: merge word pieces into words.
        offsets: the tokenizer's ``offset_mapping`` (item or batch) for the encoder side.
        text: the encoder side's text (word labels from it).
        decoder_offsets: the same for the decoder side.
        decoder_text: the decoder side's text.
        queries_keys: fill ``Panel.queries``/``keys`` (the neuron view; needs a record that holds them).
        sentence_b_start: where sentence B starts, ``"auto"`` (``token_type_ids``) or ``None``.
        stacked: ``attn`` as one tensor (else a list per layer).

    Returns:
        One panel per attention block, in BertViz's order (encoder, decoder, cross).
    """
    if not record.layers:
        raise ValueError("the record holds no attention layers")
    batch = record.batch_size
    if not isinstance(item, int) or not 0 <= item < batch:
        raise IndexError(f"item {item!r} is out of range: the record holds a batch of {batch}")
    if words and queries_keys:
        raise ValueError("the neuron view shows token-level queries and keys; words=True is not available for it")
    out: list[Panel] = []
    for stack_name, kind, name in _groups_of(record, stack):
        layers = record.select(stack_name, kind)
        if include_layers is not None:
            wanted = [int(i) for i in ([include_layers] if isinstance(include_layers, int) else include_layers)]
            have = [layer.index for layer in layers]
            absent = [i for i in wanted if i not in have]
            if absent:
                raise ValueError(f"layers {absent} were not captured ({stack_name or ''} {kind}); captured: {have}")
            layers = [layer for i in wanted for layer in layers if layer.index == i]
        heads = layers[0].head_indices
        if any(layer.head_indices != heads for layer in layers):
            raise ValueError("the selected layers hold different heads; choose layers with include_layers=")
        positions: list[int] | None = None
        if include_heads is not None:
            wanted = [int(h) for h in ([include_heads] if isinstance(include_heads, int) else include_heads)]
            absent = [h for h in wanted if h not in heads]
            if absent:
                raise ValueError(f"heads {absent} were not captured; captured heads: {heads}")
            positions = [heads.index(h) for h in wanted]
            heads = wanted
        shapes = {tuple(layer.weights.shape[2:]) for layer in layers}
        if len(shapes) != 1:
            raise ValueError(f"the selected layers have different query/key lengths {sorted(shapes)}")
        q_len, k_len = shapes.pop()

        def pick(t: torch.Tensor, positions: list[int] | None = positions) -> torch.Tensor:
            t = t[item].detach().to("cpu", torch.float32)
            return t if positions is None else t[positions]

        per_layer = [pick(layer.weights) for layer in layers]

        # token sides and the positions kept on each
        enc_side = stack_name != "decoder"
        q_source = "decoder" if stack_name == "decoder" or kind == "cross" else "encoder"
        k_source = "encoder" if kind == "cross" else q_source
        side: dict[str, tuple[Any, Any, str, Any, str | None]] = {
            "encoder": (record.tokens, record.inputs.get("input_ids"), "attention_mask", offsets, text),
            "decoder": (
                record.decoder_tokens,
                record.inputs.get("decoder_input_ids"),
                "decoder_attention_mask",
                decoder_offsets,
                decoder_text,
            ),
        }
        if not record.is_encoder_decoder and enc_side:
            side["decoder"] = side["encoder"]
            if kind == "cross" and record.decoder_tokens is None and not record.select(stack_name, "self"):
                # a cross-only record of a hand-written decoder: its steps have no token strings
                side["decoder"] = (
                    [[f"step {i}" for i in range(q_len)]] * batch,
                    None,
                    "decoder_attention_mask",
                    decoder_offsets,
                    decoder_text,
                )
            elif kind == "cross" and record.decoder_tokens is not None:
                side["decoder"] = (
                    record.decoder_tokens,
                    record.inputs.get("decoder_input_ids"),
                    "decoder_attention_mask",
                    decoder_offsets,
                    decoder_text,
                )

        def tokens_for(
            source: str, n: int, side: dict[str, tuple[Any, Any, str, Any, str | None]] = side
        ) -> tuple[list[str], list[int], Any, str | None]:
            toks, ids, mask_name, offs, txt = side[source]
            toks = _item_tokens(toks, item, n, ids)
            if offs is not None and hasattr(offs, "keys") and "offset_mapping" in offs:
                offs = offs["offset_mapping"]
            if offs is not None:
                offs_t = offs if isinstance(offs, torch.Tensor) else torch.as_tensor(offs)
                if offs_t.dim() == 3:
                    offs_t = offs_t[item]
                offs = offs_t
            kept = _mask_positions(record, mask_name, item, len(toks)) if trim_padding else None
            return toks, (kept if kept is not None else list(range(len(toks)))), offs, txt

        k_tokens, k_kept, k_offs, k_text = tokens_for(k_source, k_len)
        if len(k_tokens) != k_len:
            if len(k_tokens) > k_len and kind == "self":
                k_tokens, k_kept = k_tokens[:k_len], [p for p in k_kept if p < k_len]
            else:
                raise ValueError(
                    f"{name or 'self'}-attention has {k_len} key positions but item {item} has {len(k_tokens)} tokens"
                )
        if kind == "self":
            shift = k_len - q_len  # rows of a forward that continued a cache are the last q positions
            if shift < 0:
                raise ValueError(f"attention has more queries ({q_len}) than keys ({k_len})")
            q_tokens = k_tokens[shift:]
            q_kept = [p - shift for p in k_kept if p >= shift]
            q_offs = k_offs[shift:] if k_offs is not None else None
            q_text = k_text
        else:
            q_tokens, q_kept, q_offs, q_text = tokens_for(q_source, q_len)
            if len(q_tokens) > q_len:
                q_tokens, q_kept = q_tokens[:q_len], [p for p in q_kept if p < q_len]
            if len(q_tokens) != q_len:
                raise ValueError(
                    f"cross-attention has {q_len} query positions but item {item} has {len(q_tokens)} decoder tokens"
                )

        q_words: list[list[int]] | None = None
        k_words: list[list[int]] | None = None
        if words:
            from ..analysis.words import word_groups

            if _has_pair(record, item):
                k_text = q_text = None  # offsets of a sentence pair point into two texts

            def groups_for(source: str, offs: Any, txt: str | None, toks: list[str]) -> list[list[int]]:
                if offs is not None:
                    return word_groups(offs, txt, tokens=toks)
                return _stored_word_groups(record, source, item, toks)

            k_words = groups_for(k_source, k_offs, k_text, k_tokens)
            q_words = (
                groups_for(q_source, q_offs, q_text, q_tokens)
                if kind == "cross"
                else [[p - shift for p in g if p >= shift] for g in k_words if any(p >= shift for p in g)]
            )
        q_groups = _as_groups(q_kept, q_words)
        k_groups = _as_groups(k_kept, k_words)
        if not (q_groups == [[i] for i in range(q_len)] and k_groups == [[i] for i in range(k_len)]):
            per_layer = [_merge(t, q_groups, k_groups) for t in per_layer]
        attn: torch.Tensor | list[torch.Tensor] = torch.stack(per_layer) if stacked else per_layer
        left = _labels(q_groups, q_tokens, q_offs if words else None, q_text)
        right = _labels(k_groups, k_tokens, k_offs if words else None, k_text)
        panel = Panel(
            name=name,
            stack=stack_name,
            kind=kind,
            layers=[layer.index for layer in layers],
            heads=list(heads),
            attn=attn,
            left=left,
            right=right,
        )
        if words:
            panel.notes.append(
                "word pieces merged into words (attention to a word: sum over its pieces; "
                "from a word: mean over its pieces)"
            )
        if queries_keys:
            missing = [layer.index for layer in layers if layer.queries is None or layer.keys is None]
            if missing:
                raise ValueError(
                    f"the neuron view needs queries and keys, which this record does not hold (layers {missing}); "
                    "capture with attn_plugins.capture(model, tokenizer, keep_queries_keys=True) on a model whose "
                    "attention runs through transformers' attention functions (sdpa, the default)"
                )
            qs = torch.stack([pick(layer.queries) for layer in layers if layer.queries is not None])
            ks = torch.stack([pick(layer.keys) for layer in layers if layer.keys is not None])
            panel.queries = _rows(qs, q_groups)
            panel.keys = _rows(ks, k_groups)
        if kind == "self" and stack_name != "decoder":
            panel.sentence_b_start = _sentence_b(record, item, sentence_b_start, q_groups, q_len == k_len)
        out.append(panel)
    return out


def _stored_word_groups(record: AttentionRecord, source: str, item: int, tokens: list[str]) -> list[list[int]]:
    """Word groups without offsets: the word ids the capture stored (``record.metadata["word_ids"]``,
    from the tokenizer), else the token strings' ``##``/``Ġ``/``▁`` markers."""
    from ..analysis.words import groups_from_markers, groups_from_word_ids

    key = "decoder_word_ids" if source == "decoder" and record.is_encoder_decoder else "word_ids"
    stored = record.metadata.get(key)
    if (
        isinstance(stored, list)
        and len(stored) > item
        and isinstance(stored[item], list)
        and len(stored[item]) == len(tokens)
    ):
        return groups_from_word_ids(stored[item])
    if record.tokens is None and record.decoder_tokens is None:
        raise ValueError(
            "words=True needs the token strings or the tokenizer's offsets: capture with a tokenizer "
            "(capture(model, tokenizer)) or pass offsets= (and decoder_offsets= for a decoder), e.g. "
            "tokenizer(text, return_offsets_mapping=True)['offset_mapping']"
        )
    return groups_from_markers(tokens)


def _has_pair(record: AttentionRecord, item: int) -> bool:
    types = record.inputs.get("token_type_ids")
    return isinstance(types, torch.Tensor) and types.dim() == 2 and types.shape[0] > item and bool(types[item].any())


def _sentence_b(
    record: AttentionRecord, item: int, value: int | str | None, groups: list[list[int]], square: bool
) -> int | None:
    if value is None or not square:
        return None
    if value == "auto":
        types = record.inputs.get("token_type_ids")
        if not isinstance(types, torch.Tensor) or types.dim() != 2 or types.shape[0] <= item:
            return None
        row = types[item].tolist()
        starts = [i for i, t in enumerate(row) if t]
        mask = record.inputs.get("attention_mask")
        if mask is not None and mask.shape == types.shape:
            starts = [i for i in starts if mask[item, i]]
        if not starts:
            return None
        value = starts[0]
    if not isinstance(value, int):
        raise TypeError(f"sentence_b_start must be a token position, 'auto' or None, got {value!r}")
    shown = sum(1 for g in groups if g[0] < value)
    if not 0 < shown < len(groups):
        return None
    return shown


def prettify(tokens: list[str]) -> list[str]:
    """Tokens as BertViz shows them: ``Ġ``/``▁`` word markers as spaces, ``</w>`` dropped.

    Args:
        tokens: token strings.

    Returns:
        The cleaned tokens.
    """
    return [t.replace("Ġ", " ").replace("▁", " ").replace("</w>", "") for t in tokens]


def caption(record: AttentionRecord, item: int, extra: list[str]) -> str:
    """The grey line above a view: model class, batch item and notes (escaped).

    Args:
        record: the record shown.
        item: the batch item shown.
        extra: notes appended to the line.

    Returns:
        The caption's HTML.
    """
    parts = [record.model_class or "model"]
    if record.batch_size > 1:
        parts.append(f"item {item} of {record.batch_size}")
    parts.extend(extra)
    return (
        f'<div class="attn-plugins-caption" style="{FONT}font-size:12px;color:#888;margin:2px 0 6px 0">'
        f"{escape(' · '.join(parts))}</div>"
    )
