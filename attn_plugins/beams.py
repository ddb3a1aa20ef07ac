"""Beam search inside ``capture``: following each returned sequence back through the live beams.

transformers' beam search runs every step on ``batch * num_beams`` rows and reorders the KV cache
between steps, so a row's history is whichever beam it continued. The attention a step computes
for a row is still a complete row over that history (its keys are the reordered cache). So the
matrices greedy decoding would give for a returned sequence are the rows named by
``beam_indices`` (which live row produced each generated token), one per step, placed where
greedy steps go. The encoder runs once, before the beams are expanded: its rows are repeated for
every returned sequence of an input.

This module decides the decoding a ``generate()`` call uses (refusing what cannot be followed),
asks transformers for ``beam_indices`` without changing what the caller gets back, and turns the
per-step blocks of every layer into per-sequence ones.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from .errors import CaptureError

_SAMPLING_KEYS = ("temperature", "top_k", "top_p", "min_p", "typical_p")


def _effective_config(model, kwargs: dict):
    """The generation config ``generate(**kwargs)`` will run with (kwargs override the config)."""
    base = kwargs.get("generation_config") or getattr(model, "generation_config", None)
    if base is None:
        return None
    config = copy.deepcopy(base)
    config.update(**{k: v for k, v in kwargs.items() if k != "generation_config" and not isinstance(v, torch.Tensor)})
    return config


def describe_decoding(model, kwargs: dict) -> dict:
    """Which decoding a ``generate(**kwargs)`` call uses, with its parameters, for ``record.metadata``.

    Args:
        model: the captured model (its ``generation_config`` is the default).
        kwargs: the keyword arguments of the ``generate()`` call.

    Returns:
        ``{"strategy": "greedy" | "sampling" | "beam_search" | "beam_sampling", ...}`` with the
        parameters that shape the result (beams: ``num_beams``, ``num_return_sequences``,
        ``early_stopping``, ``length_penalty``).

    Raises:
        CaptureError: group (diverse) or constrained beam search, whose hypotheses are not
            followed by ``beam_indices`` in this transformers version.
    """
    config = _effective_config(model, kwargs)

    def get(name, default):
        return default if getattr(config, name, None) is None else getattr(config, name)

    beams = int(get("num_beams", 1))
    groups = int(get("num_beam_groups", 1))
    if groups > 1:
        raise CaptureError(
            f"group (diverse) beam search (num_beam_groups={groups}) cannot be captured: transformers runs it "
            "from a Hub repository as custom code that returns no beam_indices to follow. Use plain beam search "
            "(num_beam_groups=1), greedy decoding or sampling"
        )
    if get("constraints", None) is not None or get("force_words_ids", None) is not None:
        raise CaptureError(
            "constrained beam search (constraints / force_words_ids) cannot be captured: transformers "
            "runs it from a Hub repository as custom code that returns no beam_indices to follow"
        )
    if beams > 1 and get("use_cache", True) is False:
        raise CaptureError(
            f"beam search (num_beams={beams}) with use_cache=False cannot be captured: every step "
            "reruns the whole sequence as a new forward, so there are no steps to follow; "
            "leave use_cache on (the default)"
        )
    sample = bool(get("do_sample", False))
    returned = int(get("num_return_sequences", 1))
    out: dict = {
        "strategy": ("beam_sampling" if sample else "beam_search")
        if beams > 1
        else ("sampling" if sample else "greedy")
    }
    if beams > 1:
        out.update(
            num_beams=beams,
            num_return_sequences=returned,
            early_stopping=get("early_stopping", False),
            length_penalty=float(get("length_penalty", 1.0)),
        )
    elif returned > 1:
        out["num_return_sequences"] = returned
    if sample:
        out.update({k: getattr(config, k) for k in _SAMPLING_KEYS if getattr(config, k, None) is not None})
    out["return_dict_in_generate"] = bool(get("return_dict_in_generate", False))
    return out


def beam_kwargs(kwargs: dict) -> dict:
    """The caller's kwargs, asking for a dict output (the only way transformers returns beam_indices)."""
    return {**kwargs, "return_dict_in_generate": True}


def caller_output(output, decoding: dict):
    """What ``generate()`` would have returned to the caller: the dict they asked for, or its sequences."""
    return output if decoding["return_dict_in_generate"] else output.sequences


@dataclass
class BeamPaths:
    """Which live row (of ``batch * num_beams``) each returned sequence came through at every step.

    ``rows[s, t]`` is transformers' ``beam_indices``: the row of step ``t``'s forward whose
    next-token scores chose sequence ``s``'s ``t``-th generated token; -1 once ``s`` had ended.
    """

    rows: torch.Tensor  # [sequences, steps] long
    sequences: torch.Tensor  # [sequences, prompt + steps] the returned ids (padded after an end)
    batch: int
    num_beams: int
    num_return_sequences: int
    encoder_decoder: bool

    @classmethod
    def from_output(cls, output, decoding: dict, encoder_decoder: bool) -> BeamPaths:
        rows = output.beam_indices.detach().long().cpu()
        returned = decoding["num_return_sequences"]
        return cls(
            rows=rows,
            sequences=output.sequences.detach(),
            batch=rows.shape[0] // returned,
            num_beams=decoding["num_beams"],
            num_return_sequences=returned,
            encoder_decoder=encoder_decoder,
        )

    @property
    def steps(self) -> int:
        return self.rows.shape[1]

    @property
    def lengths(self) -> torch.Tensor:
        """Generated tokens per returned sequence (= the decoding steps it went through)."""
        return (self.rows >= 0).sum(dim=1)

    def metadata(self) -> dict:
        """Which input and rank each record row is, and the beam rows followed (for ``record.metadata``)."""
        n = self.num_return_sequences
        return {
            "beam_rows": [
                {"input": s // n, "rank": s % n, "generated_tokens": int(length)}
                for s, length in enumerate(self.lengths.tolist())
            ],
            "beam_indices": self.rows.tolist(),
        }

    def follow(self, name: str, parts: list[torch.Tensor], q_lens: list[int]) -> tuple[list[torch.Tensor], list[int]]:
        """One layer's per-step ``parts`` (``weights``/``queries``: one per step; ``keys``: per step,
        the last is kept) as blocks of the returned sequences, with their query lengths."""
        batch = parts[0].shape[0]
        if len(parts) == 1 and batch == self.batch:  # the encoder: ran once, before the beams were expanded
            return [parts[0].repeat_interleave(self.num_return_sequences, dim=0)], q_lens
        if batch != self.batch * self.num_beams or len(parts) < self.steps:
            raise CaptureError(
                f"cannot follow the beams: a layer recorded {len(parts)} blocks of batch {batch}, expected at least "
                f"{self.steps} steps of batch {self.batch} x {self.num_beams} beams"
            )
        if name == "keys":
            return [self._last_keys(parts)], q_lens[: self.steps]
        out = []
        for t in range(self.steps):
            index = self.rows[:, t]
            block = parts[t].index_select(0, index.clamp(min=0).to(parts[t].device))
            ended = (index < 0).to(block.device)
            if bool(ended.any()):
                block[ended] = 0  # the sequence had ended: no query ran for it (a padding row)
            out.append(block)
        return out, q_lens[: self.steps]

    def _last_keys(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Each sequence's keys at its last step (left-aligned, zeros past its end)."""
        last = parts[self.steps - 1]
        out = last.new_zeros((self.rows.shape[0], *last.shape[1:]))
        for s, length in enumerate(self.lengths.tolist()):
            block = parts[length - 1][int(self.rows[s, length - 1])]
            out[s, :, : block.shape[1]] = block
        return out

    def inputs(self, inputs: dict) -> dict:
        """The record's inputs per returned sequence: its ids up to the last one fed back, and a mask
        that is 0 on padding (left padding of the prompt, and the steps after the sequence ended)."""
        prefix = "decoder_" if self.encoder_decoder else ""
        out = {}
        if self.encoder_decoder:
            for key, value in inputs.items():
                if not key.startswith("decoder_") and value.shape[0] == self.batch:
                    out[key] = value.repeat_interleave(self.num_return_sequences, dim=0)
        processed = self.sequences[:, :-1]
        prompt = self.sequences.shape[1] - self.steps
        mask = inputs.get(prefix + "attention_mask")
        if isinstance(mask, torch.Tensor) and mask.shape[0] == self.batch * self.num_beams:
            prompt_mask = mask[:: self.num_beams, :prompt].repeat_interleave(self.num_return_sequences, dim=0)
        else:
            prompt_mask = torch.ones(processed.shape[0], prompt, dtype=torch.long, device=processed.device)
        fed = torch.arange(self.steps - 1)[None, :] < (self.lengths - 1)[:, None]
        out[prefix + "input_ids"] = processed
        out[prefix + "attention_mask"] = torch.cat([prompt_mask, fed.to(prompt_mask)], dim=1)
        return out
