"""Token saliency: which input tokens a prediction rests on, by attention or by gradients.

Methods are registered by name in :data:`METHODS` (third parties add more through the entry point
group ``attn_plugins.saliency_methods``):

========================== ==========================================================================
``attention``              raw attention of the query row (``layer=``, ``head=``)
``rollout``                attention rollout (Abnar & Zuidema 2020)
``flow``                   attention flow, max flow on the layer graph (SciPy)
``grad_attention``         attention x its gradient w.r.t. the target (eager attention copy)
``saliency``               Captum Saliency (absolute gradient)
``input_x_gradient``       Captum InputXGradient
``integrated_gradients``   Captum IntegratedGradients over the word embeddings
``layer_integrated_gradients`` Captum LayerIntegratedGradients on the embedding layer
``smoothgrad``             Captum NoiseTunnel(Saliency), seeded
``smoothgrad_allennlp``    AllenNLP's SmoothGradient formula (signed mean gradient, per-instance noise)
``deeplift``               Captum DeepLift
``feature_ablation``       Captum FeatureAblation, one token at a time
========================== ==========================================================================

Every method returns :class:`TokenSaliency` results; :func:`merge_words` merges word pieces.
"""

from . import (
    allennlp_smoothgrad,  # noqa: F401  (registers "smoothgrad_allennlp")
    attention_methods,  # noqa: F401  (registers "attention", "rollout", "flow", "grad_attention")
)
from .explainer import Explainer
from .methods import METHODS, family_of
from .record_saliency import attention_saliency
from .result import TokenSaliency, merge_words
from .sentence_similarity import SimilarityExplainer

__all__ = [
    "METHODS",
    "Explainer",
    "SimilarityExplainer",
    "TokenSaliency",
    "attention_saliency",
    "family_of",
    "merge_words",
    "method_names",
]


def method_names() -> list[str]:
    """The registered saliency method names.

    Returns:
        The names of :data:`METHODS`, sorted (built-in and third-party entry points).
    """
    return METHODS.names()
