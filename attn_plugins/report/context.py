"""The state one report is built from: the model, its inputs and the captured record, the results
several sections share (head statistics, head distances), and writing figures."""

from __future__ import annotations

import base64
import functools
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


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of PNG bytes, from the header; (0, 0) for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    return (0, 0)


class ReportContext:
    """Everything the sections of one report read; every figure goes to ``plots/`` and inline into the page."""

    def __init__(self, model, tokenizer, texts, out_dir, source, max_tokens, layers=None, heads=None) -> None:
        self.model = model
        self.layers_wanted = layers  # capture(layers=..., heads=...): None keeps every layer / head
        self.heads_wanted = heads
        self.tokenizer = tokenizer
        self.texts = texts
        self.out_dir = out_dir
        self.plot_dir = os.path.join(out_dir, PLOT_DIR)
        self.source = source
        self.max_tokens = max_tokens
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
        """What uniform attention would score on the same rows (:func:`~attn_plugins.analysis.stats.uniform_baseline`)."""
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
        """Save ``fig`` as plots/NAME.png and .svg; the HTML that shows it inline."""
        from ..plots import save

        png = save(fig, os.path.join(self.plot_dir, f"{name}.png"))
        svg = save(fig, os.path.join(self.plot_dir, f"{name}.svg"))
        self.files += [os.path.relpath(png, self.out_dir), os.path.relpath(svg, self.out_dir)]
        with open(png, "rb") as handle:
            data = handle.read()
        width, _ = png_size(data)
        css_width = f' width="{max(1, round(width / 3))}"' if width else ""  # 300 dpi shown at 100 px per inch
        encoded = base64.b64encode(data).decode("ascii")
        return (f'<figure class="ap-fig" data-plot="{esc(name)}"><img src="data:image/png;base64,{encoded}"'
                f'{css_width} alt="{esc(alt or caption)}"><figcaption>{esc(caption)} '
                f'<span class="ap-files">(<a href="{esc(PLOT_DIR)}/{esc(name)}.png">PNG</a>, '
                f'<a href="{esc(PLOT_DIR)}/{esc(name)}.svg">SVG</a>)</span></figcaption></figure>')
