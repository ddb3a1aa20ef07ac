"""Tiny configs for any transformers model type, derived generically from the type's default config.

The default config of a model type describes the full-size model. ``tiny_config`` walks it and
every nested sub-config (``text_config``, ``vision_config``, ``audio_config``, encoder/decoder
configs, ...) as plain dicts and shrinks what makes a model large, keeping what makes it the
architecture it is: widths go to 4 heads of 8 dimensions, every stack keeps at least two layers,
every stage keeps two blocks, one layer of each distinct ``layer_types`` entry is kept (a sliding
layer and a full layer), the vocabulary shrinks to ``VOCAB`` with special token ids moved inside it.
Image sizes and audio feature sizes stay at their defaults: they set the geometry that the
processors and position tables rely on, and with narrow layers they cost little.
"""

from __future__ import annotations

import copy

from .config_fixes import SUB_CONFIGS, apply_config_fixes

VOCAB = 256
HEADS, HEAD_DIM = 4, 8
WIDTH = HEADS * HEAD_DIM
FFN = 64

HIDDEN_NAMES = (
    "hidden_size",
    "d_model",
    "n_embd",
    "embed_dim",
    "dim",
    "embedding_dim",
    "word_embed_proj_dim",
    "model_dim",
    "d_embed",
)
HEAD_NAMES = (
    "num_attention_heads",
    "n_head",
    "num_heads",
    "encoder_attention_heads",
    "decoder_attention_heads",
    "n_heads",
    "attention_heads",
    "num_attention_head",
)
KV_NAMES = ("num_key_value_heads", "num_kv_heads", "n_kv_heads", "multi_query_group_num", "num_key_value_groups")
FFN_NAMES = (
    "intermediate_size",
    "ffn_dim",
    "encoder_ffn_dim",
    "decoder_ffn_dim",
    "d_ff",
    "n_inner",
    "moe_intermediate_size",
    "shared_expert_intermediate_size",
    "mlp_dim",
    "dim_feedforward",
    "feed_forward_size",
    "encoder_intermediate_size",
    "decoder_intermediate_size",
    "expert_intermediate_size",
    "dense_intermediate_size",
    "ffn_hidden_size",
)
EXPERT_NAMES = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts", "num_routed_experts")
TOPK_NAMES = ("num_experts_per_tok", "num_experts_per_token", "moe_topk", "top_k", "moe_k", "num_selected_experts")
# widths that must follow the hidden size (projections, out sizes) when they equal a shrunk width
_WIDTH_HINTS = ("hidden", "dim", "size", "embed", "channels", "width", "proj")
_NOT_WIDTHS = (
    "vocab",
    "image",
    "patch",
    "position",
    "window",
    "token",
    "mel",
    "sampling",
    "chunk",
    "max_",
    "bins",
    "kernel",
    "stride",
    "conv",
    "num_",
    "n_positions",
    "length",
    "sample",
    "pad",
    "bucket",
    "block",
    "rope",
    "frame",
    "feature_size",
    "grid",
    "spatial",
    "temporal",
    "queries",
    "pool",
    "codebook",
)
_SKIP_KEYS = (
    "id2label",
    "label2id",
    "architectures",
    "task_specific_params",
    "rope_scaling",
    "rope_parameters",
    "quantization_config",
)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _nodes(tree: dict, path: str = ""):
    """Every config dict in the tree (the root and nested sub-config dicts), with its path."""
    yield path, tree
    for key, value in tree.items():
        if isinstance(value, dict) and key not in _SKIP_KEYS and ("model_type" in value or key.endswith("config")):
            yield from _nodes(value, f"{path}.{key}" if path else key)
        elif isinstance(value, list) and key.endswith("configs"):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    yield from _nodes(item, f"{path}.{key}.{i}")


def _first(node: dict, names) -> str | None:
    for name in names:
        if _is_int(node.get(name)) and node[name] > 0:
            return name
    return None


def _shrink_node(node: dict, widths: dict, ffns: dict) -> None:
    heads_key = _first(node, HEAD_NAMES)
    hidden_keys = [k for k in HIDDEN_NAMES if _is_int(node.get(k)) and node[k] > WIDTH]
    if heads_key is not None and not isinstance(node.get("depths"), list):
        heads = node[heads_key]
        if "head_dim" in node and node["head_dim"] is None:  # None means "hidden / heads" to some, a crash to others
            node["head_dim"] = HEAD_DIM
        for key in KV_NAMES[:1]:
            if key in node and node[key] is None:
                node[key] = HEADS
        for key in HEAD_NAMES:
            if _is_int(node.get(key)) and node[key] > HEADS:
                node[key] = HEADS
        kv_key = _first(node, KV_NAMES)
        if kv_key is not None:
            kv = node[kv_key]
            node[kv_key] = 1 if kv == 1 else HEADS if kv >= heads else 2
        for key in hidden_keys:
            widths[node[key]] = WIDTH
            node[key] = WIDTH
        for key in list(node):
            if _is_int(node[key]) and "head_dim" in key and node[key] > HEAD_DIM:
                node[key] = HEAD_DIM
        for key in ("d_kv", "kv_channels", "attention_head_size", "d_head"):
            if _is_int(node.get(key)) and node[key] > HEAD_DIM:
                node[key] = HEAD_DIM
        if _is_int(node.get("rotary_dim")) and node["rotary_dim"] > HEAD_DIM // 2:
            node["rotary_dim"] = HEAD_DIM // 2
        if _is_int(node.get("qk_nope_head_dim")) and _is_int(node.get("qk_rope_head_dim")):  # MLA
            node["qk_head_dim"] = node["qk_nope_head_dim"] + node["qk_rope_head_dim"]
    if isinstance(node.get("num_heads"), list) and _is_int(node.get("embed_dim")) and node["embed_dim"] > WIDTH:
        # hierarchical vision models (Swin family): the width doubles per stage, two heads per stage
        widths[node["embed_dim"]] = WIDTH
        node["embed_dim"] = WIDTH
        node["num_heads"] = [2] * len(node["num_heads"])
    for key in FFN_NAMES:
        if _is_int(node.get(key)) and node[key] > FFN:
            ffns[node[key]] = FFN
            node[key] = FFN
    for key in list(node):
        value = node[key]
        if _is_int(value) and "lora_rank" in key and value > 16:
            node[key] = 16
    for key in EXPERT_NAMES:
        if _is_int(node.get(key)) and node[key] > 4:
            node[key] = 4
    for key in TOPK_NAMES:
        if _is_int(node.get(key)) and node[key] > 2:
            node[key] = 2
    if _is_int(node.get("n_group")) and node["n_group"] > 2 and _first(node, EXPERT_NAMES):  # grouped routing
        node["n_group"] = 2
        if _is_int(node.get("topk_group")):
            node["topk_group"] = min(node["topk_group"], 2)
    _shrink_depth(node)
    _shrink_ssm(node)
    for key in list(node):
        if "vocab_size" in key and _is_int(node[key]) and node[key] > VOCAB:
            node[key] = VOCAB


def _shrink_ssm(node: dict) -> None:
    """Mamba-style mixers: heads times head size must equal expand times the hidden size."""
    expand = node.get("mamba_expand", node.get("expand"))
    for key in list(node):
        low = key.lower()
        value = node[key]
        if not _is_int(value):
            continue
        if ("mamba" in low or "ssm" in low or "linear" in low) and ("n_heads" in low or "num_heads" in low):
            node[key] = min(value, HEADS)
        elif ("mamba" in low or "ssm" in low) and ("d_head" in low or "head_dim" in low) and _is_int(expand):
            node[key] = expand * WIDTH // HEADS
        elif ("d_state" in low or "state_size" in low) and value > 16:
            node[key] = 16
        elif low.endswith("_period") and value > 2:
            node[key] = 2
            offset = key.replace("period", "offset")
            if _is_int(node.get(offset)):
                node[offset] = min(node[offset], 1)


_DEPTH_KEYS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers")


def _per_layer_keys(node: dict, depth: int) -> list[str]:
    keys = []
    for key, value in node.items():
        if (
            isinstance(value, list)
            and len(value) == depth
            and all(v is None or isinstance(v, (str, bool, int, float, list)) for v in value)
        ):
            keys.append(key)
        elif (
            isinstance(value, str)
            and len(value) == depth
            and ("pattern" in key or "type" in key)
            and len(set(value)) <= 3
        ):  # a per-layer pattern ("MMA*"), not a word such as "block_sparse"
            keys.append(key)
    return keys


def _kept_layers(node: dict, keys: list[str], depth: int) -> list[int]:
    """One layer of each distinct kind (per the per-layer type lists), at least two."""
    typed = [k for k in keys if all(isinstance(v, (str, bool)) or v is None for v in node[k])]
    kept: list[int] = []
    seen = set()
    for i in range(depth):
        signature = tuple(str(node[k][i]) for k in typed)
        if signature not in seen:
            seen.add(signature)
            kept.append(i)
    for i in range(depth):
        if len(kept) >= 2:
            break
        if i not in kept:
            kept.append(i)
    return sorted(kept[:6])


def _shrink_depth(node: dict) -> None:
    depth_key = next((k for k in _DEPTH_KEYS if _is_int(node.get(k)) and node[k] > 2), None)
    layers = None
    if depth_key is not None:
        depth = node[depth_key]
        keys = _per_layer_keys(node, depth)
        kept = _kept_layers(node, keys, depth)
        for key in keys:
            value = node[key]
            node[key] = "".join(value[i] for i in kept) if isinstance(value, str) else [value[i] for i in kept]
        for key, value in list(node.items()):
            if isinstance(value, dict) and value and all(str(k).lstrip("-").isdigit() for k in value):
                node[key] = {type(k)(pos): value[k] for pos, i in enumerate(kept) for k in value if int(k) == i}
        layers = len(kept)
    list_lengths = {len(v) for v in node.values() if isinstance(v, list)}
    for key in list(node):
        value = node[key]
        if key in ("num_hidden_layers", "depth") or (key.endswith("layers") and not key.startswith("use_")):
            if _is_int(value) and value > 2 and (value not in list_lengths or key == depth_key):
                node[key] = layers if layers and value == node.get(depth_key, value) else 2
        elif "depths" in key and isinstance(value, list) and value and all(_is_int(v) for v in value):
            node[key] = [min(v, 2) if v > 0 else v for v in value]
    if layers is not None:
        node[depth_key] = layers


def _fix_backbone(node: dict) -> None:
    """Backbone settings: no timm, no pretrained weights, stage names within the shrunk depth."""
    backbone = node.get("backbone_config")
    if isinstance(backbone, dict) and backbone.get("model_type") == "timm_backbone":
        node["backbone_config"] = {
            "model_type": "resnet",
            "depths": [2, 2, 2, 2],
            "out_indices": backbone.get("out_indices") or [4],
        }
        node["backbone"] = None
    for key in ("use_timm_backbone", "use_pretrained_backbone"):
        if node.get(key) is True:
            node[key] = False
    features = node.get("out_features")
    depth = next((node[k] for k in ("num_hidden_layers", "depth") if _is_int(node.get(k))), None)
    if depth is None and isinstance(node.get("depths"), list):
        depth = len(node["depths"])
    if isinstance(features, list) and depth:
        fixed = []
        for name in features:
            if isinstance(name, str) and name.startswith("stage") and name[5:].isdigit() and int(name[5:]) > depth:
                name = f"stage{depth}"
            if name not in fixed:
                fixed.append(name)
        node["out_features"] = fixed
        node.pop("out_indices", None)


def _follow_widths(node: dict, widths: dict, ffns: dict) -> None:
    """Projection and output sizes that equalled a shrunk width follow it."""
    for key in list(node):
        value = node[key]
        if not _is_int(value) or key in HIDDEN_NAMES or key in FFN_NAMES:
            continue
        low = key.lower()
        if not any(h in low for h in _WIDTH_HINTS) or any(n in low for n in _NOT_WIDTHS):
            continue
        if value in widths:
            node[key] = widths[value]
        elif value in ffns:
            node[key] = ffns[value]


def _fix_layer_refs(node: dict) -> None:
    """Layer indices (feature layers, deepstack indexes) that point past the shrunk depth."""
    depth = next((node[k] for k in ("num_hidden_layers", "depth", "num_layers") if _is_int(node.get(k))), None)
    if depth is None:
        return
    for key in list(node):
        value = node[key]
        low = key.lower()
        if not ("layer" in low or "index" in low or "indexes" in low) or key.endswith("layers"):
            continue
        if any(part in low for part in ("token", "period", "offset", "size", "vocab", "dim", "head", "topk")):
            continue
        if _is_int(value) and value >= depth:
            node[key] = depth - 1
        elif isinstance(value, list) and value and all(_is_int(v) for v in value):
            if any(v >= depth or v < -depth for v in value):
                fixed = list(dict.fromkeys(min(max(v, -depth), depth - 1) for v in value))
                node[key] = fixed


def _fix_rope_sections(node: dict) -> None:
    """Multimodal rope sections (``mrope_section``) must add up to half the shrunk head size."""
    heads = _first(node, HEAD_NAMES)
    hidden = _first(node, HIDDEN_NAMES)
    head_dim = (
        node.get("head_dim")
        if _is_int(node.get("head_dim"))
        else (node[hidden] // node[heads] if heads and hidden else None)
    )
    for key in ("rope_parameters", "rope_scaling"):
        params = node.get(key)
        if not isinstance(params, dict) or not head_dim:
            continue
        for name, section in list(params.items()):
            if "section" in name and isinstance(section, list) and section and all(_is_int(v) for v in section):
                half, total = head_dim // 2, sum(section)
                if total <= half:
                    continue
                scaled = [max(1, v * half // total) for v in section]
                scaled[0] += half - sum(scaled)
                params[name] = scaled


def _fit_multimodal(tree: dict) -> None:
    """Vision-language trees: multimodal rope sections for the shrunk head size, fewer image tokens.

    Qwen-style multimodal rope falls back to full-size sections ([16, 24, 24]) when the config has
    none, so sections for a head of ``HEAD_DIM`` are written; pooled image tokens
    (``mm_tokens_per_image``) must tile the vision tower's patch grid.
    """
    vision = tree.get("vision_config")
    for _, node in _nodes(tree):
        params = node.get("rope_parameters")
        if (
            isinstance(params, dict)
            and node is not vision
            and "mrope_section" not in params
            and (isinstance(vision, dict) or "mrope" in str(params) or "vl" in str(node.get("model_type")))
        ):
            if _first(node, HEAD_NAMES) and (node.get("head_dim") in (None, HEAD_DIM)):
                params["mrope_section"] = [1, 1, HEAD_DIM // 2 - 2]
    if not isinstance(vision, dict):
        return
    for key in ("out_hidden_size", "text_hidden_size"):  # the vision tower's output feeds the text model
        if _is_int(vision.get(key)) and vision[key] > WIDTH:
            vision[key] = WIDTH
    for _, node in _nodes(tree):
        size, patch = node.get("image_size"), node.get("patch_size")
        if _is_int(size) and _is_int(patch) and size > 448 and node is not tree:
            node["image_size"] = 16 * patch  # full-resolution towers (Pixtral's 1540) cost minutes
    if _is_int(tree.get("mm_tokens_per_image")) and _is_int(vision.get("patch_size")):
        tree["mm_tokens_per_image"] = 16
        vision["image_size"] = 8 * vision["patch_size"]


def _move_token_ids(tree: dict) -> set[int]:
    """Special token ids at or above ``VOCAB`` get distinct ids at the top of the small vocabulary."""
    moved: dict[int, int] = {}

    def new_id(old: int) -> int:
        if old not in moved:
            moved[old] = VOCAB - 1 - len(moved)
        return moved[old]

    special: set[int] = set()
    for _, node in _nodes(tree):
        for key in list(node):
            value = node[key]
            low = key.lower()
            if not (
                low.endswith("token_id")
                or low.endswith("token_index")
                or low.endswith("token_ids")
                or low.endswith("_id")
                and "token" in low
            ):
                continue
            if _is_int(value):
                node[key] = new_id(value) if value >= VOCAB else value
                special.add(node[key])
            elif isinstance(value, list) and all(_is_int(v) for v in value):
                node[key] = [new_id(v) if v >= VOCAB else v for v in value]
                special.update(node[key])
        for key in ("suppress_tokens", "begin_suppress_tokens", "forced_decoder_ids"):
            if key in node:
                node[key] = None
    return special


def tiny_config(model_type: str):
    """``(config, special_ids)``: a tiny config of ``model_type`` and the token ids it reserves."""
    import transformers as tf

    base = tf.AutoConfig.for_model(model_type)
    tree = copy.deepcopy(base.to_dict())
    for key, sub_type in SUB_CONFIGS.get(model_type, {}).items():  # towers the default config leaves out
        tree[key] = tf.AutoConfig.for_model(sub_type).to_dict()
    widths: dict[int, int] = {}
    ffns: dict[int, int] = {}
    nodes = list(_nodes(tree))
    for _, node in nodes:
        _shrink_node(node, widths, ffns)
    for _, node in nodes:
        _follow_widths(node, widths, ffns)
        _fix_layer_refs(node)
        if "initializer_range" in node and isinstance(node["initializer_range"], float):
            node["initializer_range"] = 0.02
        _fix_rope_sections(node)
        _fix_backbone(node)
    _fit_multimodal(tree)
    apply_config_fixes(model_type, tree)
    special = _move_token_ids(tree)
    tree.pop("transformers_version", None)
    config = type(base)(**{k: v for k, v in tree.items() if k != "model_type"})
    return config, special
