"""Head-similarity matrix with its dendrogram (Clark et al. 2019), and layer-to-layer similarity."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from ..analysis.blocks import ANY
from ..analysis.head_similarity import PairwiseMatrix, cluster, head_distances, layer_similarity
from .canvas import contextual, finish, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@contextual
def similarity_plot(
    attn: Any,
    *,
    method: str = "average",
    measure: str = "distance",
    item: int | None = None,
    stack: Any = ANY,
    kind: str = "self",
    cmap: str = "viridis_r",
    max_labels: int = 24,
    title: str | None = None,
    importance: Any = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """The head-distance matrix reordered by hierarchical clustering, with the dendrogram above.

    At most ``max_labels`` heads are labelled on each axis (every second or third head of a big
    model, in a font that stays readable); the report lists every cluster's members in a table.

    ``attn`` is a record/tensor (distances from
    :func:`~attn_plugins.analysis.head_similarity.head_distances`) or a ready
    :class:`~attn_plugins.analysis.head_similarity.PairwiseMatrix` (a layer similarity matrix works too).
    Similar heads form dark blocks along the diagonal. ``importance``: one value per head in the
    matrix's order (e.g. ``HeadImportance.matrix()`` flattened without NaN), drawn as a strip under the
    dendrogram, so clusters of heads that matter stand out.

    Args:
        attn: a record or tensor, or a ready ``PairwiseMatrix``.
        method: the linkage method of the clustering (SciPy's names: ``"average"``, ``"ward"``...).
        measure: the head distance of ``head_distances`` (``"distance"``, ``"js"``...).
        item: one batch item (``None``: all items).
        stack: the stack of a record's layers.
        kind: ``"self"`` or ``"cross"``.
        cmap: a matplotlib colormap for distances.
        max_labels: the most labelled heads per axis.
        title: the title (default: names the linkage).
        importance: one value per head, in the matrix's order (drawn as a strip).
        path: save to this .png, .svg or .pdf file as well.

    Returns:
        The Figure.
    """
    from scipy.cluster.hierarchy import dendrogram

    matrix = (
        attn
        if isinstance(attn, PairwiseMatrix)
        else head_distances(attn, measure=measure, item=item, stack=stack, kind=kind)
    )
    clusters = cluster(matrix, method=method)
    order = clusters.order
    values = matrix.values.numpy()[np.ix_(order, order)]
    labels = [matrix.labels[i] for i in order]
    n = len(labels)
    side = min(7.5, max(3.0, 0.09 * n + 2.2))
    fig = new_figure(side + 0.8, side + 0.9 + (0.3 if importance is not None else 0))
    strip = importance is not None
    grid = fig.add_gridspec(2 + strip, 2, height_ratios=[1] + [0.22] * strip + [4.5], width_ratios=[4.5, 0.18])
    ax_tree = fig.add_subplot(grid[0, 0])
    ax = fig.add_subplot(grid[1 + strip, 0])
    ax_bar = fig.add_subplot(grid[1 + strip, 1])
    if strip:
        scores = np.asarray(importance, dtype=float).reshape(-1)
        if scores.size != n:
            raise ValueError(f"importance has {scores.size} values for {n} heads")
        ax_imp = fig.add_subplot(grid[1, 0])
        shown = ax_imp.imshow(scores[order][None, :], cmap="magma", aspect="auto", interpolation="nearest")
        ax_imp.set_xticks([])
        ax_imp.set_yticks([0])
        ax_imp.set_yticklabels(["importance"], fontsize=6)
        fig.colorbar(shown, cax=fig.add_subplot(grid[1, 1])).ax.tick_params(labelsize=5)
    if n >= 2:
        dendrogram(
            clusters.linkage,
            ax=ax_tree,
            no_labels=True,
            color_threshold=0,
            above_threshold_color="#444444",
            link_color_func=lambda _k: "#444444",
        )
    ax_tree.set_axis_off()
    similarity = "similarity" in matrix.measure
    image = ax.imshow(
        values,
        cmap="viridis" if similarity else cmap,
        aspect="auto",
        interpolation="nearest",
        vmin=0.0,
        vmax=1.0 if similarity else max(float(np.nanmax(values)) if values.size else 1.0, 1e-9),
    )
    step = max(1, int(np.ceil(n / max_labels)))
    fontsize = 6 if len(range(0, n, step)) <= 24 else 5
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([labels[i] for i in ticks], rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks)
    ax.set_yticklabels([labels[i] for i in ticks], fontsize=fontsize)
    bar = fig.colorbar(image, cax=ax_bar)
    bar.set_label(_short(matrix.measure))
    bar.outline.set_linewidth(0.5)
    fig.suptitle(
        title
        if title is not None
        else ("layer similarity" if similarity else "head similarity") + f" ({clusters.method} linkage)"
    )
    return finish(fig, path)


def _short(measure: str) -> str:
    if "similarity" in measure:
        return "similarity"
    return measure.replace(" between heads", "").replace("mean ", "mean ").strip()


@contextual
def layer_similarity_plot(
    attn: Any,
    *,
    method: str = "js",
    item: int | None = None,
    stack: Any = ANY,
    kind: str = "self",
    title: str | None = None,
    path: str | os.PathLike[str] | None = None,
) -> Figure:
    """Layer-to-layer similarity of the head-averaged attention, values written in the cells.

    Args:
        attn: a record or tensor, or a ready ``PairwiseMatrix``.
        method: the similarity of ``layer_similarity`` (``"js"``, ...).
        item: one batch item (``None``: all items).
        stack: the stack of a record's layers.
        kind: ``"self"`` or ``"cross"``.
        title: the title.
        path: save to this .png, .svg or .pdf file as well.

    Returns:
        The Figure.
    """
    matrix = (
        attn
        if isinstance(attn, PairwiseMatrix)
        else layer_similarity(attn, method=method, item=item, stack=stack, kind=kind)
    )
    data = matrix.values.numpy()
    n = len(matrix.labels)
    side = min(6.0, max(2.4, 0.32 * n + 1.4))
    fig = new_figure(side + 0.6, side)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(
        data,
        cmap="viridis",
        vmin=min(0.0, float(np.nanmin(data))) if data.size else 0.0,
        vmax=1.0,
        interpolation="nearest",
    )
    ax.set_xticks(range(n))
    ax.set_xticklabels(matrix.labels, rotation=90)
    ax.set_yticks(range(n))
    ax.set_yticklabels(matrix.labels)
    if n <= 16:
        for i in range(n):
            for j in range(n):
                ax.text(
                    j,
                    i,
                    f"{data[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=5,
                    color="black" if data[i, j] > 0.6 else "white",
                )
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label("similarity")
    bar.outline.set_linewidth(0.5)
    ax.set_title(title if title is not None else "layer-to-layer similarity")
    return finish(fig, path)


__all__ = ["layer_similarity_plot", "similarity_plot"]
