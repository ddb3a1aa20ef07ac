"""``build_report``: load the model, capture the texts, build each section (a section that fails
becomes a note), write the page and its files."""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback

from .. import loading
from ..atomic import write_text
from ..errors import InputError, ReportError
from ..inputs import MAX_TOKENS_DEFAULT
from . import explanations, faithfulness, generation, heads, importance, overview, vision
from .context import FIGURE_FORMATS, PLOT_DIR, ReportContext
from .inputs import report_texts
from .markup import Section, SectionUnavailableError, esc
from .page import REPORT_FILE, render_page

log = logging.getLogger(__name__)

# The order and titles of the sections.
SECTIONS = (
    ("summary", "Model and inputs"),
    ("bertviz", "BertViz views"),
    ("heatmaps", "Heatmaps"),
    ("statistics", "Head statistics"),
    ("clustering", "Head similarity and clustering"),
    ("diagnostics", "Diagnostics"),
    ("generation", "Attention over generation steps"),
    ("generation_attribution", "Generation attribution: what each generated token rests on"),
    ("captioning", "Captioning: where each generated token looks"),
    ("saliency", "Saliency"),
    ("comparison", "Saliency methods compared"),
    ("faithfulness", "Faithfulness of the saliency methods"),
    ("head_importance", "Head importance"),
)

# section id -> the module whose ``section_<id>(ctx)`` builds it (looked up when the section runs)
SECTION_MODULES = {
    "summary": overview,
    "bertviz": overview,
    "diagnostics": overview,
    "heatmaps": heads,
    "statistics": heads,
    "clustering": heads,
    "generation": generation,
    "generation_attribution": generation,
    "captioning": vision,
    "saliency": explanations,
    "comparison": explanations,
    "faithfulness": faithfulness,
    "head_importance": importance,
}


def run_section(ctx: ReportContext, sid: str, title: str) -> Section:
    """Build one section; a missing part makes it ``unavailable``, any other error ``failed``
    (with the traceback folded away on the page), and the report goes on."""
    start = time.perf_counter()
    section = Section(sid, title)
    try:
        section.body = getattr(SECTION_MODULES[sid], f"section_{sid}")(ctx)
    except Exception as exc:  # noqa: BLE001 - the report never breaks: the section becomes a note
        section_error(section, exc)
    section.seconds = time.perf_counter() - start
    return section


def finish_section(ctx: ReportContext, section: Section) -> None:
    """Put the section's figures (drawn beside the sections that followed) in place; a figure that
    cannot be drawn fails its section as an error while building it would have."""
    start = time.perf_counter()
    try:
        section.body = ctx.finish_figures(section.body)
    except Exception as exc:  # noqa: BLE001 - as in run_section
        section_error(section, exc)
    section.seconds += time.perf_counter() - start


def section_error(section: Section, exc: Exception) -> None:
    """Turn ``section`` into a note on ``exc``: ``unavailable`` for a missing part, else ``failed``."""
    sid = section.id
    if isinstance(exc, SectionUnavailableError):
        section.status, section.note = "unavailable", str(exc)
    elif isinstance(exc, ImportError):
        section.status = "unavailable"
        section.note = f"This section needs a package that is not installed: {exc}"
        log.warning("report: section %r unavailable: %s", sid, exc)
    else:
        section.status = "failed"
        section.note = f"This section could not be built: {type(exc).__name__}: {exc}"
        section.body = f"<details><summary>details</summary><pre>{esc(traceback.format_exc())}</pre></details>"
        log.warning("report: section %r failed: %s: %s", sid, type(exc).__name__, exc)
        log.debug("report: section %r traceback", sid, exc_info=True)


def _resolve(model, tokenizer, model_dir) -> tuple:
    """(model, tokenizer, source) as :func:`attn_plugins.loading.resolve_model`, its errors as ReportError."""
    if model is not None:
        try:
            model, tokenizer = loading.unpack_model(model, tokenizer)
        except TypeError:
            raise ReportError(
                f"model must be a torch model, a transformers pipeline or None, got {type(model).__name__}"
            ) from None
    try:
        return loading.resolve_model(model, tokenizer, model_dir)
    except InputError as exc:
        raise ReportError(str(exc)) from None


def build_report(
    model=None,
    tokenizer=None,
    texts=None,
    out_dir="out",
    model_dir=None,
    progress: bool | None = None,
    *,
    text_file=None,
    max_tokens: int = MAX_TOKENS_DEFAULT,
    sections=None,
    layers=None,
    heads=None,
    figures=(),
    image=None,
    figure_workers: int | None = None,
) -> str:
    """Write the report into ``out_dir`` and return the path of its page (``report.html``).

    Args:
        model: a transformers model (or any model attn-plugins captures), a transformers
            ``pipeline`` (its model and tokenizer are used) or ``None``: loaded from
            ``model_dir``, or the bundled MiniLM.
        tokenizer: the model's tokenizer (default: the pipeline's, or loaded from ``model_dir``).
        texts: a text or a list of texts (default: the fixture sentences).
        out_dir: where ``report.html``, ``plots/`` (the ``figures`` asked for), ``head_stats.csv`` and
            ``record.safetensors`` are written.
        model_dir: a local ``save_pretrained()`` directory.
        progress: show a progress bar on stderr: ``True``, ``False`` or ``None`` (tqdm's convention:
            only when stderr is a terminal, so logs and CI output stay clean).
        text_file: a UTF-8 file with one text per line (added after ``texts``).
        max_tokens: refuse inputs longer than this (or the model's maximum).
        sections: the section ids to build (default: all; see :data:`SECTIONS`).
        layers, heads: capture only these layers / heads (``capture(layers=..., heads=...)``; model
            numbering, negative layers from the end); default: all.
        image: an image (``pixel_values`` tensor, or a PIL image with the image processor saved beside
            the model) for a ``VisionEncoderDecoderModel``: the report captures a greedy caption
            of it and adds the captioning section (each generated token's attention over the image).
        figures: print versions of the figures to write to ``plots/``: any of ``"png"`` (300 dpi),
            ``"svg"``, ``"pdf"`` (default none: the page shows every figure at screen resolution).
        figure_workers: child processes that render figures beside the following sections (default:
            up to 4 on Linux, where ``fork`` is safe; 0 renders every figure in this process, e.g. inside
            a multi-threaded server). The page is the same either way. During a section that runs
            while children render, torch runs on the cores they leave (``torch.set_num_threads``,
            restored after the section).

    Returns:
        The path of ``report.html``.

    Raises:
        ReportError: a bad model path, an unreadable text file, empty text, an input that is too
            long, or a model without attention. Anything that goes wrong inside a section only
            replaces that section by a note.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    texts = report_texts(texts, text_file)
    chosen = [(sid, title) for sid, title in SECTIONS if sections is None or sid in sections]
    if sections is not None:
        unknown = set(sections) - {sid for sid, _ in SECTIONS}
        if unknown:
            raise ReportError(f"unknown sections {sorted(unknown)}; available: {', '.join(s for s, _ in SECTIONS)}")
    figures = tuple(dict.fromkeys([figures] if isinstance(figures, str) else (figures or ())))
    wrong = [f for f in figures if f not in FIGURE_FORMATS]
    if wrong:
        raise ReportError(f"unknown figure formats {wrong}; choose from {', '.join(FIGURE_FORMATS)}")
    out_dir = os.fspath(out_dir)
    ctx = None
    bar = tqdm(
        total=len(chosen) + 2,
        desc="report",
        unit="step",
        disable=None if progress is None else not progress,
        file=sys.stderr,
        leave=True,
        dynamic_ncols=True,
    )
    try:
        bar.set_postfix_str("loading the model")
        load_start = time.perf_counter()
        model, tokenizer, source = _resolve(model, tokenizer, model_dir)
        ctx = ReportContext(
            model,
            tokenizer,
            texts,
            out_dir,
            source,
            max_tokens,
            figures,
            image,
            layers=layers,
            heads=heads,
            figure_workers=figure_workers,
        )
        ctx.load_seconds = time.perf_counter() - load_start
        bar.update(1)
        bar.set_postfix_str("capture")
        ctx.capture()
        try:
            os.makedirs(os.path.join(out_dir, PLOT_DIR) if figures else out_dir, exist_ok=True)
        except OSError as exc:
            raise ReportError(f"cannot write the report to {out_dir!r}: {exc}") from None
        ctx.save_record()
        bar.update(1)
        built = []
        for sid, title in chosen:
            bar.set_postfix_str(title)
            with ctx.renderer.sharing_cores():
                built.append(run_section(ctx, sid, title))
            bar.update(1)
        bar.set_postfix_str("writing the page")
        for section in built:  # the figures rendered beside the sections
            finish_section(ctx, section)
        page = render_page(ctx, built, time.perf_counter() - started)
        path = os.path.join(out_dir, REPORT_FILE)
        try:
            write_text(path, page)
        except OSError as exc:
            raise ReportError(f"cannot write {path!r}: {exc}") from None
        bar.set_postfix_str("done")
    finally:
        if ctx is not None:
            ctx.renderer.close()
        bar.close()
    return path
