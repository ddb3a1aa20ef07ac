"""The state one report is built from: the model, its inputs and the captured record, the results
several sections share (head statistics, head distances), and writing figures."""

from __future__ import annotations

import base64
import functools
import io
import logging
import os
import struct
import time

from .. import inputs
from ..errors import CaptureError, InputError, ReportError
from .markup import esc

log = logging.getLogger(__name__)

PLOT_DIR = "plots"
NEURON_MAX_TOKENS = 64  # the neuron view draws every query and key vector: keep it small
SCREEN_DPI = 100  # figures in the page: one CSS pixel per pixel
FIGURE_FORMATS = ("png", "svg", "pdf")  # print versions written to plots/ when asked for


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of PNG bytes, from the header; (0, 0) for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    return (0, 0)


class ReportContext:
    """Everything the sections of one report read; every figure goes inline into the page (and to ``plots/``
    in the print formats asked for)."""

    def __init__(self, model, tokenizer, texts, out_dir, source, max_tokens, figures=(), image=None, layers=None,
                 heads=None) -> None:
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

    # ----- capture ----------------------------------------------------------------------------
    def capture(self) -> None:
        """Capture the record of all texts in one batch (queries and keys too when short enough
        for the neuron view)."""
        import torch

        from ..capturing import capture

        if self.image is not None:
            from .vision import capture_caption, is_captioner

            if not is_captioner(self.model):
                raise ReportError(f"an image needs a VisionEncoderDecoder (captioning) model, got "
                                  f"{type(self.model).__name__}")
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
        try:
            with torch.no_grad(), capture(self.model, tokenizer=self.tokenizer, keep_queries_keys=keep_qk,
                                          layers=self.layers_wanted, heads=self.heads_wanted) as cap:
                self.model(**enc)
        except (CaptureError, IndexError, ValueError) as exc:
            raise ReportError(f"cannot capture attention from {type(self.model).__name__}: {exc} (the report needs a "
                              "model with attention layers)") from None
        record = cap.record if cap.records else None
        if record is None or not record.layers:
            raise ReportError(f"{type(self.model).__name__} has no attention layers: nothing was captured "
                              "(the report needs a model with attention)")
        self.record = record
        self.capture_seconds = time.perf_counter() - start

    def save_record(self) -> None:
        try:
            self.files.append(os.path.relpath(self.record.save(os.path.join(self.out_dir, "record.safetensors")),
                                              self.out_dir))
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
    def figure(self, name: str, fig, caption: str, alt: str | None = None) -> str:
        """The HTML that shows ``fig`` inline, rendered once for the screen (PNG at
        :data:`SCREEN_DPI`, in memory); print versions (``plots/NAME.png`` at 300 dpi, ``.svg``,
        ``.pdf``) are written only in the formats asked for (``figures=``), since saving each
        figure at print quality was most of the report's time."""
        from ..plots import save
        from ..plots.canvas import style

        links = []
        for fmt in self.figures:
            path = save(fig, os.path.join(self.plot_dir, f"{name}.{fmt}"))
            self.files.append(os.path.relpath(path, self.out_dir))
            links.append(f'<a href="{esc(PLOT_DIR)}/{esc(name)}.{esc(fmt)}">{esc(fmt.upper())}</a>')
        buffer = io.BytesIO()
        with style():
            fig.savefig(buffer, format="png", dpi=SCREEN_DPI, bbox_inches="tight", pad_inches=0.02,
                        facecolor="white")
        data = buffer.getvalue()
        width, _ = png_size(data)
        css_width = f' width="{width}"' if width else ""
        encoded = base64.b64encode(data).decode("ascii")
        files = f' <span class="ap-files">({", ".join(links)})</span>' if links else ""
        return (f'<figure class="ap-fig" data-plot="{esc(name)}"><img src="data:image/png;base64,{encoded}"'
                f'{css_width} alt="{esc(alt or caption)}"><figcaption>{esc(caption)}{files}</figcaption></figure>')
