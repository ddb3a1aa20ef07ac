"""Tiny random models of every model type in transformers' auto mappings, as default/eager pairs.

``model_types()`` lists the types; ``build_pair(model_type)`` builds the type's model twice from one
tiny config (see :mod:`tests.sweep.configs`): once with the default attention implementation and
once with ``attn_implementation="eager"``, with the same weights. Query and key projections are
scaled up: with a 0.02 initialiser the attention logits of a 32-wide model are ~0.01 and every
attention row is nearly uniform, which would hide wrong masks, wrong layers and wrong scalings.
"""

from __future__ import annotations

import copy
import re

import torch

from .configs import tiny_config

# one class per type: the base model first, then the heads that generate or cross-attend
PREFERRED_MAPPINGS = (
    "MODEL_MAPPING_NAMES",
    "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",
    "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
    "MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES",
    "MODEL_FOR_MULTIMODAL_LM_MAPPING_NAMES",
    "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES",
    "MODEL_FOR_VISION_2_SEQ_MAPPING_NAMES",
)
MAX_PARAMS = 40_000_000
LOGIT_STD = 2.0
_QK = re.compile(
    r"(^|\.)(q|k|query|key|q_proj|k_proj|q_lin|k_lin|wq|wk|to_q|to_k|query_proj|key_proj|q_a_proj|"
    r"q_b_proj|kv_a_proj_with_mqa|qkv|qkv_proj|c_attn|in_proj|Wqkv|query_key_value|wqkv|qk_proj|k_head|q_head)"
    r"(\.weight|_weight)$"
)


class SkipTypeError(Exception):
    """The type cannot be built offline here (missing package, needs downloaded files, too large)."""


def _mappings():
    import transformers.models.auto.modeling_auto as auto

    names = [n for n in dir(auto) if n.startswith("MODEL_") and n.endswith("_MAPPING_NAMES")]
    ordered = [n for n in PREFERRED_MAPPINGS if n in names] + sorted(n for n in names if n not in PREFERRED_MAPPINGS)
    return [(n, getattr(auto, n)) for n in ordered]


def model_types() -> list[str]:
    """Every model type with a model class in any of transformers' auto model mappings."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    types: set[str] = set()
    for _, mapping in _mappings():
        types.update(mapping)
    return sorted(t for t in types if t in CONFIG_MAPPING_NAMES)


def model_class(model_type: str):
    """The class the sweep builds for ``model_type`` and the mapping it came from."""
    import transformers

    for mapping_name, mapping in _mappings():
        names = mapping.get(model_type)
        if not names:
            continue
        for name in names if isinstance(names, (tuple, list)) else (names,):
            try:
                cls = getattr(transformers, name)
            except (AttributeError, ImportError, RuntimeError):
                continue
            if isinstance(cls, type):
                return cls, mapping_name
    raise SkipTypeError(f"no importable model class for {model_type!r} (missing optional package?)")


def _param_count(cls, config) -> int:
    try:
        with torch.device("meta"):
            model = cls._from_config(copy.deepcopy(config))
    except Exception:  # noqa: BLE001 - the real build reports the error
        return 0
    return sum(p.numel() for p in model.parameters())


def scale_query_key(model, logit_std: float = LOGIT_STD) -> int:
    """Rescale query/key projection weights so attention rows are far from uniform; returns how many.

    With unit-variance inputs of width D and weights of std s, a scaled dot-product logit has std
    about s*s*D: s = sqrt(logit_std / D) gives logits of std ``logit_std`` whatever the initialiser.
    """
    count = 0
    with torch.no_grad():
        for name, param in model.named_parameters():
            if _QK.search(name) and param.dim() >= 2 and param.numel() > 1:
                std = param.float().std().item()
                if std > 0:
                    param.mul_((logit_std / param.shape[-1]) ** 0.5 / std)
                    count += 1
    return count


def build_pair(model_type: str, seed: int = 0):
    """``(default_model, eager_model, info)``: the same tiny weights under both implementations."""
    config, special = tiny_config(model_type)
    cls, mapping = model_class(model_type)
    params = _param_count(cls, config)
    if params > MAX_PARAMS:
        raise SkipTypeError(f"still {params / 1e6:.0f}M parameters after shrinking the config")
    torch.manual_seed(seed)
    model = cls._from_config(copy.deepcopy(config)).eval()
    scaled = scale_query_key(model)
    eager = cls._from_config(copy.deepcopy(config), attn_implementation="eager").eval()
    missing = eager.load_state_dict(model.state_dict(), strict=False)
    if missing.missing_keys or missing.unexpected_keys:
        raise RuntimeError(f"eager model has different weights: {missing}")
    impl = getattr(model.config, "_attn_implementation", None)
    info = {
        "class": cls.__name__,
        "mapping": mapping,
        "params": sum(p.numel() for p in model.parameters()),
        "default_impl": impl,
        "qk_scaled": scaled,
        "special_ids": sorted(special),
    }
    return model, eager, info
