"""Faithfulness of any :class:`~attn_plugins.saliency.TokenSaliency`: does removing what a method
calls important change the prediction? And does the method notice when the model is destroyed?

========================================= ==========================================================
:func:`evaluate`                          every metric, every method, one :class:`FaithfulnessResult`
:mod:`~.metrics`                          comprehensiveness / sufficiency (AOPC), deletion /
                                          insertion curves, leave-one-out Kendall tau
:func:`randomization_check`               cascading model-parameter randomization (Adebayo et al.)
:func:`plausibility`, :func:`rationale_mask` token F1, IOU, AUPRC against human rationales (ERASER)
:func:`curves_plot`                       the mean deletion / insertion curves (matplotlib)
========================================= ==========================================================
"""

from .evaluate import evaluate
from .metrics import DEFAULT_BINS, comprehensiveness_sufficiency, deletion_insertion, leave_one_out
from .perturb import Instance, Scorer, make_instances
from .plausibility import plausibility, rationale_mask
from .plot import curves_plot
from .randomization import cascade_steps, randomization_check
from .result import FaithfulnessResult, bootstrap_ci

__all__ = [
    "DEFAULT_BINS",
    "FaithfulnessResult",
    "Instance",
    "Scorer",
    "bootstrap_ci",
    "cascade_steps",
    "comprehensiveness_sufficiency",
    "curves_plot",
    "deletion_insertion",
    "evaluate",
    "leave_one_out",
    "make_instances",
    "plausibility",
    "randomization_check",
    "rationale_mask",
]
