"""A beam-search record of a tiny Marian in the views: the alignment plot, BertViz (in headless
Chromium) and the report's generation section, with returned sequences that end at different steps.

References: transformers' eager cross-attention of a teacher-forced forward over each returned
sequence (for the alignment), the returned ids (for the tokens), and an eager ``generate()`` with
``output_attentions=True`` (for the bytes beam search really stores, against the memory guard).
"""

import base64
import math
import os
import re

import numpy as np
import pytest
import torch

import attn_plugins as ap
from attn_plugins.errors import MemoryBudgetError

from .test_beam_search import _marian

NEW = 6
EOS = [6, 46]  # tokens this Marian's beams emit at different steps: returned sequences end at 3, 4 and 6 tokens
BEAMS, RETURNED = 4, 2


@pytest.fixture(scope="module")
def marian():
    """(model whose generation_config decodes with 4 beams and returns 2, eager twin, inputs,
    returned ids, record)."""
    model, inputs = _marian()
    eager, _ = _marian("eager")
    eager.load_state_dict(model.state_dict())
    for m in (model, eager):
        m.generation_config.update(
            num_beams=BEAMS,
            num_return_sequences=RETURNED,
            eos_token_id=EOS,
            max_new_tokens=NEW,
            min_new_tokens=2,
            do_sample=False,
        )
    with torch.no_grad():
        outside = model.generate(**inputs)
    with torch.no_grad(), ap.capture(model) as cap:
        sequences = model.generate(**inputs)
    assert torch.equal(sequences, outside)
    return model, eager, inputs, sequences, cap.record


def _lengths(sequences):
    """Generated tokens of each returned sequence (through its EOS), from the ids alone."""
    generated = sequences[:, 1:]
    hit = torch.isin(generated, torch.tensor(EOS))
    return torch.where(
        hit.any(1), hit.int().argmax(1) + 1, torch.full_like(hit[:, 0], generated.shape[1], dtype=torch.long)
    ).tolist()


def test_the_record_holds_sequences_that_end_early(marian):
    _, _, _, sequences, record = marian
    lengths = _lengths(sequences)
    assert len(set(lengths)) > 1 and min(lengths) < NEW  # rows that ended early are zeros in the record
    assert [r["generated_tokens"] for r in record.metadata["beam_rows"]] == lengths
    assert record.metadata["decoding"]["strategy"] == "beam_search"
    assert record.metadata["decoding"]["num_beams"] == BEAMS


@pytest.mark.parametrize("layer", [-1, "mean"])
def test_alignment_draws_each_returned_sequence(marian, layer):
    from attn_plugins.plots import alignment

    _, eager, inputs, sequences, record = marian
    repeat = {k: v.repeat_interleave(RETURNED, 0) for k, v in inputs.items()}
    with torch.no_grad():
        cross = eager(**repeat, decoder_input_ids=sequences[:, :-1], output_attentions=True).cross_attentions
    cross = cross[-1:] if layer == -1 else cross
    for item, length in enumerate(_lengths(sequences)):
        fig = alignment(record, layer=layer, item=item)
        drawn = np.asarray(fig.axes[0].images[0].get_array(), dtype=np.float64)
        source = int(inputs["attention_mask"][item // RETURNED].sum())
        assert drawn.shape == (length, source), item  # the fed target rows x the source tokens, no padding
        assert np.isfinite(drawn).all()
        expected = torch.stack([c[item].mean(0) for c in cross]).mean(0)[:length, :source].double().numpy()
        assert np.abs(drawn - expected).max() <= 1e-5, item
        kept = [layer.weights[item].double().mean(0) for layer in record.layers if layer.kind == "cross"]
        kept = torch.stack(kept[-1:] if layer == -1 else kept).mean(0)
        assert np.array_equal(drawn, kept[:length, :source].numpy()), item  # the record's own row, as stored
        assert float(kept[length:].abs().sum()) == 0  # the rows after its end: zeros, not drawn
        import matplotlib.pyplot as plt

        plt.close(fig)


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("bertviz")
    from .. import _browser

    with _browser.Browser() as b:
        yield b


@pytest.mark.parametrize("view", ["head", "model"])
def test_bertviz_views_draw_each_returned_sequence(marian, browser, tmp_path, view):
    _, _, inputs, sequences, record = marian
    lengths = _lengths(sequences)
    for item in (lengths.index(min(lengths)), lengths.index(max(lengths))):
        decoder = [str(int(t)) for t in sequences[item, : lengths[item]]]  # the ids fed back (no tokenizer)
        source = [
            str(int(t))
            for t, m in zip(
                inputs["input_ids"][item // RETURNED], inputs["attention_mask"][item // RETURNED], strict=True
            )
            if m
        ]
        path = tmp_path / f"{view}-{item}.html"
        result = ap.export(record, "bertviz", view=view, item=item, path=path)
        root = f"#{result.root_id}"
        page = browser.open(path, wait_for=f"document.querySelector('{root} svg')")
        assert page.console_errors() == [] and page.network_requests() == []
        opacities = page.js(
            f"return Array.from(document.querySelectorAll('{root} line, {root} rect'))"
            ".map(e => e.getAttribute('stroke-opacity') || e.getAttribute('fill-opacity'))"
            ".filter(v => v !== null)"
        )
        assert opacities and all(math.isfinite(float(v)) for v in opacities)  # no NaN from the zero rows
        cross = record.layer(1, stack="decoder", kind="cross").weights[item]
        if view == "head":
            page.js(
                f"var s = document.querySelector('{root} #filter'); s.value = '2'; s.dispatchEvent(new Event('change'))"
            )
            assert page.text(f"{root} #left text") == decoder
            assert page.text(f"{root} #right text") == source
            assert page.count(f"{root} #attention line") == 4 * len(decoder) * len(source)
            page.js(
                f"var s = document.querySelector('{root} #layer'); s.value = '1'; s.dispatchEvent(new Event('change'))"
            )
            i = len(decoder) - 1
            value = page.js(
                f"return document.querySelector('{root} #attention').children[2].children[{i}].children[1].__data__"
            )
            assert torch.tensor(value, dtype=torch.float32) == cross[2, i, 1]
        else:
            assert page.count(f"{root} .attn_background") == 2 * 4  # one block at a time: 2 layers x 4 heads
            page.js(
                f"var s = document.querySelector('{root} #filter'); s.value = '2'; s.dispatchEvent(new Event('change'))"
            )
            assert page.count(f"{root} .attn_background") == 2 * 4
            assert page.count(f"{root} line") > 0 and page.console_errors() == []
        page.screenshot(tmp_path / f"{view}-{item}.png")


def test_report_generation_section_decodes_with_the_beams(marian, minilm_tokenizer, tmp_path):
    """The section generates as the model's generation_config says (4 beams here, not greedy) and says so."""
    import transformers as tf

    from attn_plugins.report import GENERATION_STEPS
    from attn_plugins.report.context import ReportContext
    from attn_plugins.report.generation import section_generation

    tokenizer = minilm_tokenizer  # a real tokenizer: the tiny Marian's config, with its vocabulary
    config = marian[0].config.to_dict()
    config.update(
        vocab_size=tokenizer.vocab_size,
        decoder_vocab_size=tokenizer.vocab_size,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = tf.MarianMTModel(tf.MarianConfig(**config)).eval()
    model.generation_config.update(num_beams=BEAMS, num_return_sequences=RETURNED, early_stopping=True)
    out = tmp_path / "report"
    ctx = ReportContext(model, tokenizer, ["the cat sat on the mat"], str(out), "test", 64)
    os.makedirs(ctx.plot_dir)
    try:  # as build_report does: the section, then its figures put in place, then the renderer closed
        section = ctx.finish_figures(section_generation(ctx))
    finally:
        ctx.renderer.close()
    assert 'data-decoding="beam_search"' in section
    assert "beam search with 4 beams (2 returned, length penalty 1, early stopping True)" in section
    assert f"{GENERATION_STEPS} step(s)" in section
    assert "nan" not in re.sub(r"<[^>]+>|data:image[^\"]+", "", section).lower()
    # the figure is drawn into the page (print versions go to plots/ only with figures=...)
    png = re.search(r'src="data:image/png;base64,([^"]+)"', section)
    assert png and base64.b64decode(png.group(1)).startswith(b"\x89PNG")
    assert model.generation_config.num_beams == BEAMS  # the user's model is left as it was


def test_generation_steps_of_a_sequence_that_ended_early(marian):
    """The step-by-step view of a returned sequence stops at its own end (its later rows are padding)."""
    from attn_plugins.analysis.evolution import generation_evolution

    _, _, _, sequences, record = marian
    for item, length in enumerate(_lengths(sequences)):
        evo = generation_evolution(record, item=item, kind="cross")
        assert evo.steps == length and evo.weights.shape[0] == length
        assert torch.isfinite(evo.entropy).all()
        assert torch.allclose(evo.weights.sum(-1), torch.ones(()).double(), atol=1e-5)  # every step a full row


def _eager_stored_bytes(eager, inputs):
    """Bytes of every attention block transformers' eager beam search computes (all steps, all beams)."""
    with torch.no_grad():
        out = eager.generate(**inputs, output_attentions=True, return_dict_in_generate=True)
    blocks = list(out.encoder_attentions) + [a for step in out.decoder_attentions + out.cross_attentions for a in step]
    return sum(a.numel() for a in blocks) * 4, out.sequences


def test_memory_guard_estimate_covers_what_beams_store(marian):
    """The guard's estimate (read from its refusal) is >= the bytes beam search stores, measured on an
    eager generate(); a budget one byte under the measured size is refused up front, never mid-run."""
    model, eager, inputs, sequences, record = marian
    measured, eager_sequences = _eager_stored_bytes(eager, inputs)
    assert torch.equal(eager_sequences, sequences)
    with pytest.raises(MemoryBudgetError) as refused:
        with torch.no_grad(), ap.capture(model, max_bytes=measured - 1):
            model.generate(**inputs)
    message = str(refused.value)
    assert "this generate() call would hold" in message and "storing the next block" not in message
    parts = re.findall(r"(\d+) layers x (\d+) heads x batch (\d+) x (\d+) x (\d+)", message)
    estimate = sum(math.prod(map(int, p)) for p in parts) * 4
    kept = sum(layer.weights.numel() for layer in record.layers) * 4
    print(
        f"\nmarian beams={BEAMS} returned={RETURNED}: estimate {estimate} B ({estimate / BEAMS:.0f} per beam), "
        f"stored by beam search {measured} B ({measured / BEAMS:.0f} per beam), record {kept} B"
    )
    assert estimate >= measured >= kept
    with torch.no_grad(), ap.capture(model, max_bytes=estimate) as cap:  # the estimate is enough
        model.generate(**inputs)
    assert cap.record.layers[0].weights.shape[0] == sequences.shape[0]
