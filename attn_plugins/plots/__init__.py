"""Static, paper-ready figures of attention (matplotlib; PNG, SVG or PDF by the file extension).

Every function returns a :class:`matplotlib.figure.Figure` and, given ``path=``, also saves it
(PNG at 300 dpi, SVG with text as paths, PDF with embedded TrueType fonts). Figures are drawn on
their own Agg canvas: importing this package or plotting never changes matplotlib's backend, and
in a notebook a returned figure displays itself. Needs the ``plots`` extra (matplotlib, scipy).
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "heatmap": ".heatmaps",
    "head_grid": ".heatmaps",
    "alignment": ".heatmaps",
    "head_stats_plot": ".heads",
    "similarity_plot": ".head_similarity",
    "layer_similarity_plot": ".head_similarity",
    "generation_plot": ".evolution",
    "checkpoint_plot": ".evolution",
    "checkpoint_stats_plot": ".evolution",
    "animate_generation": ".evolution",
    "animate_checkpoints": ".evolution",
    "vit_rollout": ".vision",
    "caption_attention": ".captions",
    "caption_gif": ".captions",
    "caption_maps": ".captions",
    "whisper_cross_attention": ".speech",
    "save": ".canvas",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # Lazy: `import attn_plugins.plots` must not import matplotlib until a plot is drawn.
    if name in _EXPORTS:
        import importlib

        module = importlib.import_module(_EXPORTS[name], __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
