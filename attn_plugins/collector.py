"""Collects attention blocks during a capture and assembles them into records.

The capture session reports every call of an attention module ("target") through
:meth:`Collector.next_call` and, for selected layers, hands over the stored probabilities with
:meth:`Collector.add` (adapters talk to the session: :mod:`attn_plugins.adapters.base`). A *pass*
is one forward of the submodel that owns the target (an encoder, a decoder, a whole model); a pass
whose self-attention keys outnumber its queries continues the previous one (a generation step
with a KV cache), and its blocks are placed at their absolute rows and columns.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import torch

from .adapters.base import Target
from .errors import CaptureError
from .record import AttentionRecord, LayerAttention


@dataclass
class _Block:
    weights: torch.Tensor | None
    q_len: int
    k_len: int
    queries: torch.Tensor | None = None
    keys: torch.Tensor | None = None
    file: str | None = None  # streaming: the block's shard, relative to its record directory


@dataclass
class _Segment:
    # (stack, kind, index) -> blocks in call order, and the module name
    blocks: dict = field(default_factory=dict)
    names: dict = field(default_factory=dict)
    owners: set = field(default_factory=set)
    inputs: dict = field(default_factory=dict)
    steps: int = 0
    decoding: dict | None = None  # generate(): which decoding produced it (record.metadata["decoding"])
    beams: object = None  # beam search: attn_plugins.beams.BeamPaths, followed when assembling


class Collector:
    def __init__(self, layer_filter, heads: list[int] | None, *, budget=None, sink=None) -> None:
        self._layer_filter = layer_filter
        self.heads = heads
        self.budget = budget  # attn_plugins.budget.Budget: counts every stored byte
        self.sink = sink  # attn_plugins.record.stream.StreamSink: blocks go to disk instead of memory
        self.segments: list[_Segment] = []
        self._counters: dict[tuple, int] = {}
        self._pass_owner_state: dict[int, dict] = {}
        self._finishers: list = []
        self._stream_files: dict[int, tuple] = {}
        self._lock = threading.RLock()  # _segment_for may open an implicit pass while holding it

    def current_segment(self, owner):
        """The segment (one record in the making) that ``owner``'s current pass writes into, if any."""
        state = self._pass_owner_state.get(id(owner))
        return state.get("segment") if state else None

    def add_finisher(self, finish) -> None:
        """``finish(segment, record)`` is called on every assembled record (adapters add tokens, metadata)."""
        self._finishers.append(finish)

    def mark_generation(self, since: int, decoding: dict, beams=None) -> None:
        """Note the decoding of a generate() call on the segments it opened (from ``since``); beam
        search's ``beams`` (a :class:`~attn_plugins.beams.BeamPaths`) picks each returned sequence's rows."""
        with self._lock:
            for segment in self.segments[since:]:
                segment.decoding, segment.beams = decoding, beams

    # ----- passes --------------------------------------------------------------------------------
    def begin_pass(self, owner, inputs: dict[str, torch.Tensor]) -> None:
        """Called when an owner's forward starts: resets its layer counters."""
        with self._lock:
            state = {"inputs": inputs, "decided": False, "segment": None}
            self._pass_owner_state[id(owner)] = state
            for key in [k for k in self._counters if k[0] == id(owner)]:
                del self._counters[key]

    def _segment_for(self, target: Target, q_len: int, k_len: int) -> _Segment:
        state = self._pass_owner_state.get(id(target.owner))
        if state is None:  # the module ran without its owner (called directly): one implicit pass
            self.begin_pass(target.owner, {})
            state = self._pass_owner_state[id(target.owner)]
        if not state["decided"]:
            state["decided"] = True
            continuing = target.kind == "self" and k_len > q_len and bool(self.segments)
            current = self.segments[-1] if self.segments else None
            if continuing and current is not None and id(target.owner) in current.owners:
                current.steps += 1
                _extend_inputs(current.inputs, state["inputs"], target.stack)
            elif current is not None and id(target.owner) not in current.owners:
                # an owner that has not run in this segment joins it, even when its keys outnumber its
                # queries: it cannot continue its own earlier step (a merged self+cross attention
                # attends to the encoder's tokens beside its own: T5Gemma2's decoder)
                current.owners.add(id(target.owner))
                _extend_inputs(current.inputs, state["inputs"], target.stack)
            else:
                current = _Segment()
                current.owners.add(id(target.owner))
                _extend_inputs(current.inputs, state["inputs"], target.stack)
                self.segments.append(current)
            state["segment"] = current
        return state["segment"]

    # ----- calls -----------------------------------------------------------------------------------
    def next_call(self, target: Target, q_len: int, k_len: int) -> tuple[int, bool]:
        """Count one call of ``target``; returns its layer index and whether it is selected."""
        with self._lock:
            segment = self._segment_for(target, q_len, k_len)  # may open an implicit pass: before counting
            key = (id(target.owner), target.stack, target.kind)
            index = self._counters.get(key, 0)
            self._counters[key] = index + 1
            segment.names.setdefault((target.stack, target.kind, index), target.name)
        return index, self._layer_filter(target, index)

    def add(self, target: Target, index: int, weights, q_len: int, k_len: int, queries=None, keys=None) -> None:
        with self._lock:
            state = self._pass_owner_state[id(target.owner)]
            segment = state["segment"]
            key = (target.stack, target.kind, index)
            if self.budget is not None:
                nbytes = sum(t.numel() * t.element_size() for t in (weights, queries, keys) if t is not None)
                self.budget.charge(
                    nbytes,
                    f"{target.name}: {'x'.join(map(str, weights.shape))} {str(weights.dtype).replace('torch.', '')}",
                )
            blocks = segment.blocks.setdefault(key, [])
            if self.sink is None:
                blocks.append(_Block(weights, q_len, k_len, queries, keys))
                return
            tensors = {"weights": weights}
            tensors.update({k: v for k, v in (("queries", queries), ("keys", keys)) if v is not None})
            number = next(i for i, s in enumerate(self.segments) if s is segment)
            file = self.sink.put(number, key, len(blocks), tensors)
            blocks.append(_Block(None, q_len, k_len, file=file))

    # ----- records ---------------------------------------------------------------------------------
    def records(self) -> list[AttentionRecord]:
        """The assembled records (streaming: memory-mapped from the shards, whose files are in
        ``record.metadata["_stream"]`` until the capture writes each record's JSON)."""
        out = []
        if self.sink is not None:
            self.sink.flush()
        for number, segment in enumerate(self.segments):
            if not segment.blocks:
                continue
            record = self._assemble(segment, number)
            for finish in self._finishers:
                finish(segment, record)
            out.append(record)
        return out

    def _streamed_layer(self, number: int, key: tuple, blocks: list[_Block]) -> tuple[str, dict]:
        from .record import shards

        files = [b.file for b in blocks]
        beams = self.segments[number].beams
        if len(files) > 1 or beams is not None:
            kind = key[1]
            q_lens = [b.q_len for b in blocks]
            if beams is not None:  # each returned sequence's rows, picked from the memory-mapped steps
                picked = {}

                def follow(name, parts):
                    if name not in picked:
                        picked[name] = beams.follow(name, parts, [b.q_len for b in blocks])
                    q_lens[:] = picked[name][1]
                    return picked[name][0]
            else:

                def follow(name, parts):
                    return parts

            def shape_of(name, parts):
                parts = follow(name, parts)
                if name == "weights":
                    return _joined_shape(parts, q_lens, kind)
                if name == "queries":
                    return (*parts[0].shape[:2], sum(p.shape[2] for p in parts), parts[0].shape[3])
                return tuple(parts[-1].shape)

            def place(name, parts, out):
                parts = follow(name, parts)
                if name == "weights":
                    _place_blocks(parts, out, kind)
                elif name == "queries":
                    torch.cat(parts, dim=2, out=out)
                else:
                    out.copy_(parts[-1])

            files = [self.sink.merge(number, key, files, shape_of, place)]
        path = self.sink.record_dir(number)
        return files[0], shards.open_tensors(f"{path}/{files[0]}")

    def _assemble(self, segment: _Segment, number: int = 0) -> AttentionRecord:
        layers = []
        stream_files = []
        for (stack, kind, index), blocks in segment.blocks.items():
            if self.sink is not None:
                file, tensors = self._streamed_layer(number, (stack, kind, index), blocks)
                weights, queries, keys = tensors["weights"], tensors.get("queries"), tensors.get("keys")
            else:
                parts = {name: [getattr(b, name) for b in blocks] for name in ("weights", "queries", "keys")}
                q_lens = [b.q_len for b in blocks]
                if segment.beams is not None:  # each returned sequence's rows of every step
                    parts = {
                        name: segment.beams.follow(name, values, q_lens)[0] if values[-1] is not None else values
                        for name, values in parts.items()
                    }
                    q_lens = q_lens[: len(parts["weights"])]
                weights = _join_blocks(parts["weights"], q_lens, kind)
                queries = _cat_rows(parts["queries"])
                keys = parts["keys"][-1]
            layers.append(
                LayerAttention(
                    name=segment.names[(stack, kind, index)],
                    stack=stack,
                    kind=kind,
                    index=index,
                    weights=weights,
                    heads=list(self.heads) if self.heads is not None else None,
                    queries=queries,
                    keys=keys,
                )
            )
            if self.sink is not None:
                stream_files.append((layers[-1], file))
        order = {"encoder": 0, None: 1, "decoder": 2}
        layers.sort(key=lambda layer: (order.get(layer.stack, 3), str(layer.stack), layer.kind != "self", layer.index))
        record = AttentionRecord(layers=layers, inputs=dict(segment.inputs))
        if segment.steps:
            record.metadata["generation_steps"] = segment.steps + 1
        if segment.decoding is not None:
            record.metadata["decoding"] = dict(segment.decoding)
        if segment.beams is not None:
            record.inputs = segment.beams.inputs(record.inputs)
            record.metadata["generation_steps"] = segment.beams.steps
            record.metadata.update(segment.beams.metadata())
        if self.sink is not None:
            self._stream_files[id(record)] = (number, stream_files)
        return record

    def write_streamed(self, record: AttentionRecord) -> str:
        """Write a streamed record's JSON and inputs next to its shards; returns its directory."""
        from .record.format import layer_entry

        number, files = self._stream_files.pop(id(record))
        file_of = {id(layer): file for layer, file in files}
        entries = [{**layer_entry(layer), "file": file_of[id(layer)]} for layer in record.layers]
        return self.sink.write_record(number, record, entries)


def _cat_rows(parts):
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)


def _joined_shape(blocks, q_lens: list[int], kind: str) -> tuple[int, ...]:
    """The shape of a layer assembled from its generation steps' ``[b, h, q_t, k_t]`` blocks."""
    first = blocks[0]
    batch, heads = first.shape[:2]
    if any(b.shape[0] != batch for b in blocks):
        raise CaptureError(
            "the batch size changed between generation steps (decoding that merges or drops sequences is "
            "followed only for generate()'s beam search)"
        )
    total_q = sum(q_lens)
    if kind == "cross":
        return (batch, heads, total_q, first.shape[3])
    base = first.shape[3] - first.shape[2]  # keys cached before the first captured step
    return (batch, heads, total_q, base + total_q)


def _place_blocks(blocks, out: torch.Tensor, kind: str) -> None:
    """Write each step's block at its absolute rows and columns of ``out`` (zeros elsewhere)."""
    if kind == "cross":
        torch.cat(blocks, dim=2, out=out)
        return
    base = blocks[0].shape[3] - blocks[0].shape[2]
    row = 0
    for block in blocks:
        q_t, k_t = block.shape[2], block.shape[3]
        end = base + row + q_t  # keys known after this step
        if k_t <= end:  # growing cache, or a sliding window holding the last k_t positions
            out[:, :, row : row + q_t, end - k_t : end] = block
        else:  # a static cache: left-aligned buffer, positions past `end` are masked slots
            out[:, :, row : row + q_t, :end] = block[..., :end]
        row += q_t


def _join_blocks(blocks: list[torch.Tensor], q_lens: list[int], kind: str) -> torch.Tensor:
    """Place each step's ``[b, h, q_t, k_t]`` block at its absolute rows and columns."""
    if len(blocks) == 1:
        return blocks[0]
    out = blocks[0].new_zeros(_joined_shape(blocks, q_lens, kind))
    _place_blocks(blocks, out, kind)
    return out


def _extend_inputs(store: dict, new: dict, stack: str | None) -> None:
    """Keep the segment's model inputs: ids grow with each step, the mask is the latest one."""
    prefix = "decoder_" if stack == "decoder" else ""
    for name, value in new.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = prefix + name
        if name == "input_ids" and key in store and store[key].shape[0] == value.shape[0]:
            store[key] = torch.cat([store[key], value.to(store[key].device)], dim=1)
        else:
            store[key] = value
