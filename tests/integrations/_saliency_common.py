"""Shared inputs of the saliency exporter tests: real results from the fixture classifier and
hand-made results with hostile tokens."""

from __future__ import annotations

import functools

import pytest

from attn_plugins.saliency import TokenSaliency

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "<script>alert(2)</script>",
    '"><svg onload=alert(3)>',
    "</td></tr></table><b>x",
    "&amp; &lt;",
    "'onmouseover='alert(4)",
    "{{7*7}}",
    "[CLS]",
]


def hostile_results(method: str = "saliency") -> list[TokenSaliency]:
    scores = [0.5, -1.0, 0.25, 0.0, 2.0, 0.1, -0.3, 0.0]
    return [
        TokenSaliency(
            tokens=list(HOSTILE),
            scores=scores,
            method=method,
            target=1,
            target_label="<b>pos</b>",
            prediction=1,
            prediction_label="<i>pos</i>",
            probability=0.75,
            true_label="<u>t</u>",
            text="<script>alert(5)</script>",
        )
    ]


@functools.cache
def fixture_table():
    """{method: results} for three fixture sentences (attention and gradient methods)."""
    from attn_plugins.saliency import Explainer
    from tests.saliency.helpers import TEXTS, classifier

    model, tok = classifier()
    return Explainer(model, tok).compare(
        TEXTS,
        ["attention", "rollout", "saliency", "integrated_gradients"],
        options={"integrated_gradients": {"n_steps": 16}},
    )


@pytest.fixture(scope="module")
def browser():
    from tests._browser import Browser

    with Browser() as b:
        yield b
