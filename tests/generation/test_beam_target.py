"""A beam-search output as the target: its attribution is the forced decoding of that sequence
(the same numbers as ``target=`` that sequence), and the sequence is what ``generate(num_beams=...)`` returns."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attn_plugins.generation import explain_generation

from .models import SOURCE, tiny

METHODS = ["attention", "input_x_gradient", "feature_ablation"]
BEAMS = {"num_beams": 3, "max_new_tokens": 4, "min_new_tokens": 4, "do_sample": False}


@pytest.mark.parametrize("arch", ["marian", "gpt2"])
def test_beam_output_is_attributed_as_its_forced_decoding(arch):
    model = tiny(arch)
    with torch.no_grad():
        beam = model.generate(
            input_ids=torch.tensor([SOURCE]), attention_mask=torch.ones(1, len(SOURCE), dtype=torch.long), **BEAMS
        )[0]
    target = beam[1:] if model.config.is_encoder_decoder else beam[len(SOURCE) :]
    generated = explain_generation(model, None, SOURCE, methods=METHODS, generate_kwargs=BEAMS, progress=False)
    forced = explain_generation(model, None, SOURCE, target.tolist(), methods=METHODS, progress=False)
    assert generated.target_ids == target.tolist() == forced.target_ids
    assert generated.info["generated"] and not forced.info["generated"]
    for m in METHODS:
        assert np.array_equal(generated.source[m], forced.source[m])
        assert np.array_equal(generated.prefix[m], forced.prefix[m])
    for k, v in forced.step_scores.items():
        assert np.array_equal(generated.step_scores[k], v)
