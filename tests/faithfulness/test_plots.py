"""The curve figures draw exactly the averaged curves, and save."""

import numpy as np
import pytest

from attn_plugins.errors import InputError
from attn_plugins.faithfulness import FaithfulnessResult, curves_plot
from attn_plugins.heads import PruningCurve, pruning_plot


def test_curves_plot_draws_the_mean_curves(tmp_path):
    pytest.importorskip("matplotlib")
    rows = {
        "a": [
            {"deletion": [0.9, 0.5, 0.1], "insertion": [0.2, 0.6, 0.9]},
            {"deletion": [0.8, 0.6, 0.4, 0.2, 0.0], "insertion": [0.1, 0.2, 0.3, 0.4, 0.5]},
        ],
        "b": [{"deletion": [1.0, 1.0, 1.0], "insertion": [0.0, 0.0, 1.0]}],
    }
    result = FaithfulnessResult(rows)
    fig = curves_plot(result, points=5, path=tmp_path / "curves.png")
    deletion, insertion = fig.axes[:2]
    a_del = deletion.lines[0].get_ydata()
    expected = np.mean(
        [np.interp(np.linspace(0, 1, 5), [0, 0.5, 1], [0.9, 0.5, 0.1]), [0.8, 0.6, 0.4, 0.2, 0.0]], axis=0
    )
    np.testing.assert_allclose(a_del, expected)
    np.testing.assert_allclose(insertion.lines[1].get_ydata(), np.interp(np.linspace(0, 1, 5), [0, 0.5, 1], [0, 0, 1]))
    assert [t.get_text() for t in insertion.get_legend().get_texts()] == ["a", "b"]
    assert (tmp_path / "curves.png").stat().st_size > 1000
    with pytest.raises(InputError, match="no results"):
        curves_plot(result, ["c"])


def test_pruning_plot(tmp_path):
    pytest.importorskip("matplotlib")
    curve = PruningCurve(
        removed=[0, 4, 8],
        total=8,
        by_importance=[0.9, 0.9, 0.5],
        random=[[0.9, 0.7, 0.5], [0.9, 0.6, 0.5]],
        order=[],
        random_orders=[],
    )
    fig = pruning_plot(curve, path=tmp_path / "pruning.svg")
    lines = fig.axes[0].lines
    np.testing.assert_allclose(lines[0].get_ydata(), [0.9, 0.9, 0.5])
    np.testing.assert_allclose(lines[-1].get_ydata(), [0.9, 0.65, 0.5])
    np.testing.assert_allclose(lines[0].get_xdata(), [0, 0.5, 1])
    assert (tmp_path / "pruning.svg").exists()
