"""Figure plumbing shared by the plot functions: a paper-ready style, the Agg canvas (set per
figure, never globally, so a notebook's backend is left alone), saving by file extension, and
readable token labels."""

from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ..atomic import atomic_path
from ..errors import import_optional
from ..integrations.heat_table import text_colour

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.image import AxesImage
    from matplotlib.typing import RcKeyType

    from ..record import LayerAttention

P = ParamSpec("P")
R = TypeVar("R")

FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}

# Small fonts sized for a column of a two-column paper; TrueType (42) fonts in PDF/PS, which
# publishers require (no Type 3 fonts); text kept as paths in SVG so it looks the same everywhere.
PAPER_RC: dict[RcKeyType, Any] = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "figure.titlesize": 10,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "path",
    "savefig.dpi": 300,
    "figure.dpi": 100,
    "image.interpolation": "nearest",
}


def _require_matplotlib() -> None:
    import_optional("matplotlib", "plots")  # the plots extra


def style() -> AbstractContextManager[None]:
    """The paper style (fonts, line widths, font embedding) as a context manager.

    Returns:
        ``matplotlib.rc_context`` with :data:`PAPER_RC`.
    """
    _require_matplotlib()
    import matplotlib

    return matplotlib.rc_context(PAPER_RC)


# Bounds on what any figure may cost, whatever the input: a side of at most MAX_INCHES (4,000 px on
# screen, 12,000 px at 300 dpi) and token labels of at most LABEL_CHARS characters on the canvas (the
# full text stays in the record, the page's tooltips and tables). A 1,000-character token once made an
# 18,000 x 18,000 px canvas (5.5 GB) and a 10,000-character one an allocation failure.
MAX_INCHES = 40.0
LABEL_CHARS = 24


def new_figure(width: float, height: float, **kwargs: Any) -> Figure:
    """A Figure drawn on its own Agg canvas (no pyplot, no global backend change).

    Args:
        width: width in inches (clamped to 0.5 .. ``MAX_INCHES``).
        height: height in inches (clamped the same way).
        **kwargs: passed to ``matplotlib.figure.Figure`` (``layout`` defaults to ``"constrained"``).

    Returns:
        The new figure.
    """
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    kwargs.setdefault("layout", "constrained")
    width, height = (min(max(float(v), 0.5), MAX_INCHES) for v in (width, height))
    fig = Figure(figsize=(width, height), **kwargs)
    FigureCanvasAgg(fig)
    show_figures_as_png()
    return fig


def png_bytes(figure: Figure, dpi: int = 110, pad_inches: float = 0.05) -> bytes:
    """PNG bytes of a figure as a page or notebook shows it: the paper style, white background,
    tight box.

    Args:
        figure: the figure.
        dpi: resolution.
        pad_inches: the margin around the tight box.

    Returns:
        The PNG file's bytes.
    """
    with style():
        cropped = _drawn_once(figure, dpi, pad_inches)
        if cropped is not None:
            return cropped
        buffer = io.BytesIO()  # something reaches past the figure's edge: let savefig grow the canvas
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", pad_inches=pad_inches, facecolor="white")
    return buffer.getvalue()


def _drawn_once(figure: Figure, dpi: int, pad_inches: float) -> bytes | None:
    """The PNG that ``savefig(bbox_inches="tight")`` writes, from one draw instead of two: the
    figure is drawn once at ``dpi`` on a white background and the pixels inside its tight box (plus
    ``pad_inches``) are cut out. ``None`` when the tight box reaches past the figure's edge (then
    only savefig's own path, which enlarges the canvas, shows everything)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = figure.canvas
    if not isinstance(canvas, FigureCanvasAgg):
        return None  # someone else's canvas (a pyplot window): left alone, savefig draws a copy
    old_dpi, old_face = figure.dpi, figure.get_facecolor()
    try:
        figure.set_dpi(dpi)
        figure.set_facecolor("white")
        canvas.draw()  # type: ignore[no-untyped-call]
        box = figure.get_tightbbox(canvas.get_renderer()).padded(pad_inches)  # type: ignore[no-untyped-call]
        width, height = canvas.get_width_height(physical=True)
        x0, x1 = math.floor(box.x0 * dpi), math.ceil(box.x1 * dpi)
        y0, y1 = math.floor(box.y0 * dpi), math.ceil(box.y1 * dpi)
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height or x1 <= x0 or y1 <= y0:
            return None
        pixels = np.asarray(canvas.buffer_rgba())[height - y1 : height - y0, x0:x1]  # type: ignore[no-untyped-call]
        out = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels)).save(out, format="png", dpi=(dpi, dpi))
        return out.getvalue()
    finally:
        figure.set_dpi(old_dpi)
        figure.set_facecolor(old_face)


def show_figures_as_png(shell: Any = None) -> None:
    """In an IPython kernel (``shell``, default the running one), let matplotlib Figures display as
    PNG: our figures never touch pyplot, so without this a notebook that has not imported pyplot
    shows ``<Figure size ...>`` as text. A formatter the user (or matplotlib's inline backend)
    registered is left in place.

    Args:
        shell: the IPython shell (``%load_ext`` passes it); ``None`` looks for a running one.
    """
    if shell is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    formatters = getattr(getattr(shell, "display_formatter", None), "formatters", None)
    if not formatters or "image/png" not in formatters:
        return
    png = formatters["image/png"]
    try:
        png.lookup_by_type("matplotlib.figure.Figure")
    except KeyError:
        png.for_type_by_name("matplotlib.figure", "Figure", png_bytes)


SCALES = ("fixed", "relative")


def colour_scale(
    matrices: Iterable[Any], scale: str = "fixed", vmax: float | None = None, what: str = "attention weight"
) -> tuple[float, str]:
    """The top of an attention figure's colour scale and the colorbar label that states it.

    Attention weights are probabilities, so the default scale is fixed at 0..1: a near-uniform head
    (0.11 everywhere) is drawn pale, not solid dark. ``scale="relative"`` runs the scale to the
    largest weight shown, and the label says so with its range.

    Args:
        matrices: the tensors or arrays the scale covers.
        scale: ``"fixed"`` (0..1) or ``"relative"`` (0..largest shown).
        vmax: an explicit top of the scale (overrides ``scale``).
        what: the colorbar's quantity.

    Returns:
        ``(vmax, label)``.
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be 'fixed' (0 to 1) or 'relative' (0 to the largest weight shown), got {scale!r}")
    if vmax is not None:
        return float(vmax), f"{what} (scale 0 to {float(vmax):.3g})"
    if scale == "fixed":
        return 1.0, f"{what} (fixed scale 0 to 1)"
    import numpy as np

    top = 0.0
    for m in matrices:
        data = np.asarray(m.detach().cpu().double() if hasattr(m, "detach") else m, dtype=float)
        finite = data[np.isfinite(data)]
        if finite.size:
            top = max(top, float(finite.max()))
    top = top if top > 0 else 1.0
    return top, f"{what} (relative scale: 0 to {top:.3g}, the largest shown)"


def check_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a string, refused unless its extension names a format we save.

    Args:
        path: a ``.png``, ``.svg`` or ``.pdf`` file name.

    Returns:
        The path as a string.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise ValueError(f"cannot tell the image format of {path!r}: use a .png, .svg or .pdf file name")
    return path


def save(fig: Figure, path: str | os.PathLike[str]) -> str:
    """Save ``fig`` in the format its extension names (PNG at 300 dpi, SVG, PDF), atomically.

    Args:
        fig: the figure.
        path: a ``.png``, ``.svg`` or ``.pdf`` file name.

    Returns:
        The path written, as a string.
    """
    path = check_path(path)
    with style(), atomic_path(path) as tmp:
        # "tight" on top of the constrained layout: nothing (long titles, outside legends) is ever cut off
        fig.savefig(
            tmp,
            format=FORMATS[os.path.splitext(path)[1].lower()],
            bbox_inches="tight",
            pad_inches=0.02,
            facecolor="white",
            metadata=_metadata(path),
        )
    return path


def _metadata(path: str) -> dict[str, Any]:
    ext = os.path.splitext(path)[1].lower()
    if ext == ".png":
        return {"Software": "attn-plugins"}
    if ext == ".pdf":
        return {"Creator": "attn-plugins", "CreationDate": None}
    return {"Creator": "attn-plugins", "Date": None}


def finish(fig: Figure, path: str | os.PathLike[str] | None = None) -> Figure:
    """Save when a path is given; return the figure either way.

    Args:
        fig: the figure.
        path: where to save it (``None``: not saved).

    Returns:
        ``fig``.
    """
    if path is not None:
        save(fig, path)
    return fig


def display_label(text: object) -> str:
    """``text`` cut to ``LABEL_CHARS`` characters for a figure (an ellipsis marks the cut).

    Args:
        text: a label (converted with ``str``).

    Returns:
        The label, at most ``LABEL_CHARS`` characters long.
    """
    text = str(text)
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "\u2026"


def readable(tokens: Iterable[str]) -> list[str]:
    """Tokens as figure labels: word-piece markers made readable, then cut by :func:`display_label`.

    Args:
        tokens: the record's tokens.

    Returns:
        One label per token.
    """
    from ..analysis.tokens import readable_token

    return [display_label(readable_token(t)) for t in tokens]


def set_token_ticks(
    ax: Axes, axis: str, labels: Sequence[str] | None, *, max_labels: int = 64, rotate: bool = True
) -> None:
    """Token tick labels, thinned to at most ``max_labels`` so long sequences stay legible.

    Args:
        ax: the axes.
        axis: ``"x"`` or ``"y"``.
        labels: one label per position (``None`` or empty: ticks left alone).
        max_labels: the most labels shown.
        rotate: x labels vertical (they are tokens, often long).
    """
    set_ticks = ax.set_xticks if axis == "x" else ax.set_yticks
    if not labels:
        return
    n = len(labels)
    step = max(1, math.ceil(n / max_labels))
    positions = list(range(0, n, step))
    set_ticks(positions)
    names = [display_label(labels[i]) for i in positions]
    if axis == "x":
        ax.set_xticklabels(names, rotation=90 if rotate else 0, ha="center")
    else:
        ax.set_yticklabels(names)


def annotate_cells(ax: Axes, image: AxesImage, data: Any, fmt: Callable[[Any], str], fontsize: float) -> None:
    """Write each finite value of ``data`` in its cell, black on light colours and white on dark
    ones (read from the image's own colormap, so any colormap stays legible).

    Args:
        ax: the axes the image is drawn on.
        image: the ``imshow`` image (its colormap and norm pick the text colour).
        data: the 2-D array shown.
        fmt: value -> text.
        fontsize: text size in points.
    """
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            value = data[i, j]
            if value != value:
                continue
            red, green, blue, _ = image.cmap(image.norm(value))
            colour = text_colour(red, green, blue)
            ax.text(j, i, fmt(value), ha="center", va="center", fontsize=fontsize, color=colour)


def label_bar(bar: Any, text: str, fontsize: float | None = None) -> None:
    """Label a colorbar so the label stays within the figure's height: a label longer than the
    figure is tall is broken before its parenthesis, then between words.

    Args:
        bar: the colorbar.
        text: the label.
        fontsize: its size in points (default: matplotlib's axis label size).
    """
    import textwrap

    from matplotlib import rcParams
    from matplotlib.font_manager import FontProperties

    size = fontsize if fontsize is not None else FontProperties(size=rcParams["axes.labelsize"]).get_size_in_points()
    room = int(bar.ax.figure.get_figheight() * 72 * 0.75 / (0.55 * size))  # characters that fit along the bar
    if len(text) > room:
        head, paren, tail = text.partition(" (")
        lines = [head, paren.strip() + tail] if paren else [text]
        text = "\n".join(part for line in lines for part in textwrap.wrap(line, max(room, 12)))
    bar.set_label(text, fontsize=size)


def small_multiple_ticks(ax: Axes, labelled: bool) -> None:
    """Ticks of one panel in a grid of small heatmaps: none, or small ones.

    Args:
        ax: the panel.
        labelled: keep small ticks (else none).
    """
    if labelled:
        ax.tick_params(labelsize=5, length=1.5)
    else:
        ax.set_xticks([])
        ax.set_yticks([])


def contextual(func: Callable[P, R]) -> Callable[P, R]:
    """Run a plot function inside the paper style.

    Args:
        func: a plot function.

    Returns:
        ``func`` wrapped so that it runs inside :func:`style`.
    """
    import functools

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with style():
            return func(*args, **kwargs)

    return wrapper


def pick_cross_layer(layers: list[LayerAttention], layer: int) -> tuple[list[LayerAttention], int]:
    """The captured cross-attention layer(s) numbered ``layer``, and its index.

    Args:
        layers: the record's cross-attention layers.
        layer: a layer index (negative counts from the last).

    Returns:
        ``(the layers with that index, the index)``.
    """
    n = max(captured.index for captured in layers) + 1
    index = layer % n if isinstance(layer, int) and layer < 0 else layer
    chosen = [captured for captured in layers if captured.index == index]
    if not chosen:
        raise IndexError(f"no cross-attention layer {layer}; captured: {[captured.index for captured in layers]}")
    return chosen, index
