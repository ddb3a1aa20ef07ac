"""A SequenceAttribution on the comparison page (agreement per target step and averaged, by the
saliency agreement code) and the report's generation-attribution section on a tiny GPT-2."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

import attn_plugins as ap
from attn_plugins.generation import explain_generation

from .models import SOURCE, tiny

stats = pytest.importorskip("scipy.stats")


@pytest.fixture(scope="module")
def result():
    return explain_generation(
        tiny("bart"),
        None,
        SOURCE,
        [11, 12, 13, 14],
        methods=["attention", "rollout", "input_x_gradient"],
        progress=False,
    )


def test_comparison_page_agrees_per_step_and_averaged(result):
    page = ap.export(result, "comparison", plot=None)
    agree = page.agreement
    assert agree.methods == result.methods and len(agree.units) == len(result)
    assert agree.families == {"attention": "attention", "rollout": "attention", "input_x_gradient": "gradient"}
    # the independent reference: scipy's Kendall tau on each step's |source row|
    for t in range(len(result)):
        a, b = np.abs(result.source["attention"][t]), np.abs(result.source["input_x_gradient"][t])
        expected = stats.kendalltau(a, b).statistic
        assert math.isclose(
            agree.per_unit[t][("attention", "input_x_gradient")]["kendall_tau"], expected, abs_tol=1e-12
        )
    taus = [
        stats.kendalltau(np.abs(result.source["rollout"][t]), np.abs(result.source["input_x_gradient"][t])).statistic
        for t in range(len(result))
    ]
    assert math.isclose(
        agree.mean("rollout", "input_x_gradient", "kendall_tau"), float(np.nanmean(taus)), abs_tol=1e-12
    )
    html = page._repr_html_()
    assert html.count("<h3>Instance") == len(result) and "Averaged over 4 instances" in html
    one = ap.export(result, "comparison", methods=["attention", "input_x_gradient"], plot=None)
    assert one.agreement.methods == ["attention", "input_x_gradient"]


def test_report_has_a_generation_attribution_section(tmp_path, minilm_path):
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from attn_plugins.report import build_report

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=tokenizer.vocab_size,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    model = GPT2LMHeadModel(config).eval()
    path = build_report(
        model, tokenizer, ["the cat sat"], out_dir=tmp_path, sections=["generation_attribution"], progress=False
    )
    html = open(path, encoding="utf-8").read()
    assert re.search(r'<section id="generation_attribution" class="[^"]*" data-status="ok"', html)
    body = re.search(r'<section id="generation_attribution".*?</section>', html, re.S).group(0)
    methods = ["attention", "rollout", "input_x_gradient", "integrated_gradients(n_steps=16)", "feature_ablation"]
    assert body.count('data-plot="generation_attribution_') == len(methods)
    assert body.count('class="gen-t"') == 6 and all(f'value="{m}"' in body for m in methods)
    assert 'data-view="generation-comparison"' in body


def test_report_attributes_a_caption_over_image_patches(tmp_path, minilm_tokenizer):
    from attn_plugins.report import build_report

    from .models import captioner

    model, pixels = captioner("gpt2")
    path = build_report(
        model, minilm_tokenizer, image=pixels, out_dir=tmp_path, sections=["generation_attribution"], progress=False
    )
    html = open(path, encoding="utf-8").read()
    body = re.search(r'<section id="generation_attribution".*?</section>', html, re.S).group(0)
    assert 'data-status="ok"' in body, body[:3000]
    assert "summed per patch" in body and "patch 3,3" in body and body.count('class="gen-t"') == 6
