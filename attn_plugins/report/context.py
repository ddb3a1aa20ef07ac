"""The state one report is built from: the model, its inputs and the captured record, the results
several sections share (head statistics, head distances), and writing figures."""

from __future__ import annotations

import functools
import logging
import os
import time

from .. import inputs
from ..errors import CaptureError, InputError, ReportError
from .figures import FIGURE_FORMATS, PLOT_DIR, SCREEN_DPI, FigureRenderer, png_size

log = logging.getLogger(__name__)

__all__ = ["FIGURE_FORMATS", "NEURON_MAX_TOKENS", "PLOT_DIR", "SCREEN_DPI", "ReportContext", "png_size"]

NEURON_MAX_TOKENS = 64  # the neuron view draws every query and key vector: keep it small


DECODER_TOKENS = 16  # tokens an encoder-decoder model generates for the report's decoder side


def decoder_inputs(model, enc: dict) -> dict:
    """The decoder's side for an encoder-decoder model given only texts: the model's own greedy output
    (at most :data:`DECODER_TOKENS` tokens, read back in one forward, so the record holds the encoder,
    the decoder and the cross-attention of what the model says), or its start token alone for a model
    that cannot generate. Returns ``decoder_input_ids`` and ``decoder_attention_mask`` (the padding
    after each sequence's end token masked).

    Raises:
        ReportError: the model's config names no decoder start token.
    """
    import torch

    config = model.config
    generation = getattr(model, "generation_config", None)
    start = getattr(config, "decoder_start_token_id", None)
    if start is None:
        start = getattr(generation, "decoder_start_token_id", None)
    if start is None:
        raise ReportError(
            f"{type(model).__name__} is an encoder-decoder model whose config names no "
            "decoder_start_token_id: the report cannot start its decoder"
        )
    batch = int(enc["input_ids"].shape[0])
    can = getattr(model, "can_generate", None)
    if callable(can) and can():
        source = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        with torch.no_grad():
            out = model.generate(
                **source, max_new_tokens=DECODER_TOKENS, do_sample=False, num_beams=1, decoder_start_token_id=start
            )
        ids = getattr(out, "sequences", out)
    else:
        ids = torch.full((batch, 1), int(start), dtype=torch.long, device=enc["input_ids"].device)
    ends = getattr(generation, "eos_token_id", None)
    if ends is None:
        ends = getattr(config, "eos_token_id", None)
    ends = [ends] if isinstance(ends, int) else list(ends or [])
    mask = torch.ones_like(ids)
    for end in ends:
        hit = ids == end
        hit[:, 0] = False  # the start token may share an id with the end or padding token
        # every position after a row's first end token is padding
        mask = mask * ((torch.cumsum(hit.long(), dim=1) - hit.long()) == 0).long()
    return {"decoder_input_ids": ids, "decoder_attention_mask": mask}


class ReportContext:
    """Everything the sections of one report read; every figure goes inline into the page (and to ``plots/``
    in the print formats asked for)."""

    def __init__(
        self,
        model,
        tokenizer,
        texts,
        out_dir,
        source,
        max_tokens,
        figures=(),
        image=None,
        layers=None,
        heads=None,
        figure_workers: int | None = None,
    ) -> None:
        self.model = model
        self.layers_wanted = layers  # capture(layers=..., heads=...): None keeps every layer / head
        self.heads_wanted = heads
        self.tokenizer = tokenizer
        self.texts = texts
        self.out_dir = out_dir
        self.plot_dir = os.path.join(out_dir, PLOT_DIR)
        self.source = source
        self.max_tokens = max_tokens
        self.figures = tuple(figures)
        self.image = image
        self.caption = None  # (record, pixel_values, generated tokens) of a captioning model
        self.record = None
        self.files: list[str] = []
        self.capture_seconds = 0.0
        self.load_seconds = 0.0
        self.shared: dict = {}  # results a section computes once for others (the saliency table)
        self.renderer = FigureRenderer(out_dir, self.figures, workers=figure_workers)

    # ----- capture ----------------------------------------------------------------------------
    def capture(self) -> None:
        """Capture the record of all texts in one batch (queries and keys too when short enough
        for the neuron view)."""
        import torch

        from ..capturing import capture

        if self.image is not None:
            from .vision import capture_caption, is_captioner

            if not is_captioner(self.model):
                raise ReportError(
                    f"an image needs a VisionEncoderDecoder (captioning) model, got {type(self.model).__name__}"
                )
            start = time.perf_counter()
            self.caption = capture_caption(self.model, self.tokenizer, self.image)
            self.record = self.caption[0]
            self.capture_seconds = time.perf_counter() - start
            return
        try:
            enc = inputs.model_inputs(self.model, self.tokenizer, self.texts, self.max_tokens)
        except InputError as exc:
            raise ReportError(str(exc)) from None
        keep_qk = int(enc["input_ids"].shape[1]) <= NEURON_MAX_TOKENS
        start = time.perf_counter()
        seq2seq = getattr(getattr(self.model, "config", None), "is_encoder_decoder", False)
        if seq2seq and "decoder_input_ids" not in enc:  # texts alone: the decoder reads the model's own output
            enc.update(inputs.forward_inputs(self.model, decoder_inputs(self.model, enc)))
        try:
            with (
                torch.no_grad(),
                capture(
                    self.model,
                    tokenizer=self.tokenizer,
                    keep_queries_keys=keep_qk,
                    layers=self.layers_wanted,
                    heads=self.heads_wanted,
                ) as cap,
            ):
                self.model(**enc)
        except (CaptureError, IndexError, ValueError) as exc:
            raise ReportError(
                f"cannot capture attention from {type(self.model).__name__}: {exc} (the report needs a "
                "model with attention layers)"
            ) from None
        record = cap.record if cap.records else None
        if record is None or not record.layers:
            raise ReportError(
                f"{type(self.model).__name__} has no attention layers: nothing was captured "
                "(the report needs a model with attention)"
            )
        self.record = record
        self.capture_seconds = time.perf_counter() - start

    def save_record(self) -> None:
        try:
            self.files.append(
                os.path.relpath(self.record.save(os.path.join(self.out_dir, "record.safetensors")), self.out_dir)
            )
        except Exception as exc:  # noqa: BLE001 - the record file is a bonus
            log.warning("report: could not save the record: %s", exc)

    # ----- shared results ------------------------------------------------------------------------
    @property
    def stack(self):
        return "encoder" if self.record.is_encoder_decoder else ...

    @functools.cached_property
    def self_layers(self):
        from ..analysis.blocks import select_layers

        return select_layers(self.record, None, self.stack, "self")

    @functools.cached_property
    def stats(self):
        from ..analysis.stats import head_stats

        return head_stats(self.record, stack=self.stack)

    @functools.cached_property
    def baseline(self):
        """What uniform attention would score on the same rows
        (:func:`~attn_plugins.analysis.stats.uniform_baseline`)."""
        from ..analysis.stats import uniform_baseline

        return uniform_baseline(self.record, stack=self.stack)

    @functools.cached_property
    def distances(self):
        from ..analysis.head_similarity import head_distances

        return head_distances(self.record, stack=self.stack)

    def layer_of(self, label: str):
        """The captured self-attention layer with this label ("L3", "encoder L3")."""
        from ..analysis.blocks import layer_label

        return next(layer for layer in self.self_layers if layer_label(layer) == label)

    def widest_layer(self) -> int:
        """The layer whose heads differ most from one another (mean Jensen-Shannon distance)."""
        try:
            d = self.distances
            best, best_value = self.self_layers[-1].index, -1.0
            for label in dict.fromkeys(lab for lab, _ in d.heads):
                idx = [i for i, (lab, _) in enumerate(d.heads) if lab == label]
                if len(idx) < 2:
                    continue
                block = d.values[idx][:, idx]
                value = float(block.sum() / (len(idx) * (len(idx) - 1)))
                if value > best_value:
                    best, best_value = self.layer_of(label).index, value
            return best
        except Exception:  # noqa: BLE001 - fall back to the last layer
            return self.self_layers[-1].index

    # ----- figures ----------------------------------------------------------------------------------
    def figure(self, name: str, fig, caption: str, alt: str | None = None, *, screen: bool = True) -> str:
        """The HTML that shows ``fig`` inline, rendered once for the screen (PNG at
        :data:`SCREEN_DPI`) by :class:`~attn_plugins.report.figures.FigureRenderer`, beside the
        sections that follow (a placeholder until :meth:`finish_figures`); print versions
        (``plots/NAME.png`` at 300 dpi, ``.svg``, ``.pdf``) only in the formats asked for (``figures=``).
        ``fig`` may be a function that makes the figure: it then runs where the figure renders.
        ``screen=False``: only the print versions (if any were asked for), linked under ``caption``."""
        html = self.renderer.submit(name, fig, caption, alt, screen=screen)
        self.files.extend(f for f in self.renderer.files if f not in self.files)
        return html

    def finish_figures(self, html: str) -> str:
        """``html`` with its figures in place (waits for the ones still rendering)."""
        return self.renderer.fill(html)
