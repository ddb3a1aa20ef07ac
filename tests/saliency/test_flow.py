"""Attention flow (SciPy max flow) against networkx max flow on the same layer graphs."""

import os
import subprocess
import sys

import networkx as nx
import numpy as np
import pytest
import torch

from attn_plugins.analysis.flow import DEFAULT_SCALE, attention_flow, flow_from_mixing, flow_matrices

from .test_rollout import L0, L1


def mixing(layer: np.ndarray) -> np.ndarray:
    mixed = layer.mean(0) + np.eye(layer.shape[-1])
    return mixed / mixed.sum(-1, keepdims=True)


def networkx_flow(layers, normalize=True) -> np.ndarray:
    """The reference implementation's approach: one networkx max flow per (output, input) pair."""
    n = layers[0].shape[-1]
    graph = nx.DiGraph()
    for depth, layer in enumerate(layers, start=1):
        mat = mixing(layer)
        for i in range(n):
            for j in range(n):
                graph.add_edge(("L", depth, i), ("L", depth - 1, j), capacity=float(mat[i, j]))
    top = len(layers)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            out[i, j] = nx.maximum_flow_value(graph, ("L", top, i), ("L", 0, j))
    if normalize:
        out = out / out.sum(1, keepdims=True)
    return out


def random_layers(num_layers, heads, n, seed):
    rng = np.random.default_rng(seed)
    layers = []
    for _ in range(num_layers):
        logits = rng.normal(size=(heads, n, n)) * 2
        e = np.exp(logits - logits.max(-1, keepdims=True))
        layers.append(e / e.sum(-1, keepdims=True))
    return layers


@pytest.mark.parametrize("num_layers,n,seed", [(1, 3, 0), (2, 4, 1), (3, 5, 2), (4, 6, 3), (2, 7, 4)])
def test_flow_equals_networkx(num_layers, n, seed):
    layers = random_layers(num_layers, 3, n, seed)
    ours = flow_matrices([torch.tensor(layer) for layer in layers])
    np.testing.assert_allclose(ours.numpy(), networkx_flow(layers), atol=1e-6)
    raw = flow_matrices([torch.tensor(layer) for layer in layers], normalize=False)
    np.testing.assert_allclose(raw.numpy(), networkx_flow(layers, normalize=False), atol=1e-6)


def test_flow_on_fixture_matrices_and_single_layer():
    np.testing.assert_allclose(
        flow_matrices([torch.tensor(L0), torch.tensor(L1)]).numpy(), networkx_flow([L0, L1]), atol=1e-6
    )
    # one layer: the only path from (1, i) to (0, j) is the edge itself
    np.testing.assert_allclose(flow_matrices([torch.tensor(L0)], normalize=False).numpy(), mixing(L0), atol=1e-8)


def test_one_query_row_and_backends_agree():
    layers = [torch.tensor(layer) for layer in random_layers(3, 2, 6, 9)]
    full = flow_matrices(layers)
    row = flow_matrices(layers, query=2)
    np.testing.assert_allclose(row.numpy(), full[2].numpy(), atol=1e-12)
    np.testing.assert_allclose(flow_matrices(layers, backend="networkx").numpy(), full.numpy(), atol=1e-6)


def test_precision_follows_the_scale():
    layers = [torch.tensor(layer) for layer in random_layers(3, 2, 6, 5)]
    reference = flow_matrices(layers, backend="networkx", normalize=False)
    coarse = flow_matrices(layers, scale=100, normalize=False)
    fine = flow_matrices(layers, scale=DEFAULT_SCALE, normalize=False)
    edges = 3 * 6 * 6
    assert float((coarse - reference).abs().max()) <= edges * 0.5 / 100
    assert float((coarse - reference).abs().max()) > 1e-4  # the rounding is visible at a coarse scale
    assert float((fine - reference).abs().max()) <= edges * 0.5 / DEFAULT_SCALE
    with pytest.raises(ValueError, match="overflows"):
        flow_matrices(layers, scale=2**31)


def test_flow_of_padded_record_equals_flow_of_each_item():
    from transformers import AutoModel, AutoTokenizer

    import attn_plugins as ap

    from .helpers import minilm_path

    tok = AutoTokenizer.from_pretrained(minilm_path())
    model = AutoModel.from_pretrained(minilm_path()).eval()
    texts = ["Short.", "A longer sentence here."]
    with torch.no_grad(), ap.capture(model, tok) as cap:
        model(**tok(texts, return_tensors="pt", padding=True))
    batched = attention_flow(cap.record, query="cls")
    for b, text in enumerate(texts):
        with torch.no_grad(), ap.capture(model, tok) as cap1:
            model(**tok(text, return_tensors="pt"))
        alone = attention_flow(cap1.record, query=0)[0]
        n = alone.shape[0]
        np.testing.assert_allclose(batched[b, :n].numpy(), alone.numpy(), atol=1e-5)
        assert float(batched[b, n:].abs().sum()) == 0.0
        # and against networkx on the same record
        mats = [layer.weights[0].double().numpy() for layer in cap1.record.layers]
        np.testing.assert_allclose(alone.numpy(), networkx_flow(mats)[0], atol=1e-5)


def test_flow_from_mixing_validates():
    with pytest.raises(ValueError):
        flow_from_mixing(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="backend"):
        flow_from_mixing(np.eye(3)[None], backend="igraph")


def test_benchmark_quick_runs():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run(
        [sys.executable, os.path.join(root, "benchmarks", "flow_bench.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "speed-up of scipy over networkx" in done.stdout
