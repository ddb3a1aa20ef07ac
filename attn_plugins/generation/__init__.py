"""Generation attribution: for each generated token, which source tokens and earlier target tokens
it rests on, by gradients (Captum), perturbation and attention, in one :class:`SequenceAttribution`.
Text models (Marian, BART, T5, GPT-2, Llama) attribute to tokens; Whisper to input-feature frame windows
and VisionEncoderDecoder to image patches (:mod:`.features`).

Entry point: :func:`explain_generation` (also ``attn_plugins.explain_generation``).
"""

from . import attention  # noqa: F401 - registers "attention" and "rollout"
from .attribute import explain_generation, method_label
from .methods import GENERATION_METHODS
from .result import SequenceAttribution

__all__ = ["GENERATION_METHODS", "SequenceAttribution", "explain_generation", "method_label"]
