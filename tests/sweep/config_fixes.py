"""Per-type config settings for the model types whose tiny config the generic shrink gets wrong.

Most types build from their default config shrunk generically (:mod:`tests.sweep.configs`). The
rest need what their processors or model testers fix: a hybrid whose kept layers hold no attention
layer, a width that must divide by six, image sizes a pixel shuffle can tile, a tower the default
config leaves out. ``CONFIG_FIXES`` holds dotted-path overrides applied to the shrunk config tree;
``SUB_CONFIGS`` the towers to add before shrinking. Values follow each model's processor defaults
and its tester in transformers' ``tests/models/<type>/test_modeling_<type>.py``.
"""

from __future__ import annotations

IMAGE_TOKEN = 250  # a free id inside the shrunk vocabulary for models whose config leaves it unset

# towers a default config leaves out (Gemma 4 defaults to text only): key -> model type of its default config
SUB_CONFIGS = {"gemma4": {"vision_config": "gemma4_vision"}}


def _prefixed(prefix: str, fixes: dict) -> dict:
    return {prefix + key: value for key, value in fixes.items()}


_HIERA = {
    "hidden_size": 16,
    "image_size": [256, 256],
    "embed_dim_per_stage": [16, 32, 64, 128],
    "blocks_per_stage": [2, 2, 2, 2],
    "global_attention_blocks": [3, 5, 7],
    "window_size_per_stage": [8, 4, 4, 4],
}
_FORECAST = {
    "prediction_length": 8,
    "context_length": 8,
    "lags_sequence": [1, 2, 3],
    "num_time_features": 1,
    "feature_size": 6,
}  # 3 lags + 1 time feature + 2 scale features
_SWIN4 = {
    "backbone_config.num_layers": 4,
    "backbone_config.depths": [2, 2, 2, 2],
    "backbone_config.num_heads": [2, 2, 2, 2],
    "backbone_config.out_indices": [2, 3, 4],
    "backbone_config.out_features": ["stage2", "stage3", "stage4"],
}
_SAM2_VISION = {"backbone_channel_list": [128, 64, 32, 16], "backbone_feature_sizes": [[64, 64], [32, 32], [16, 16]]}

CONFIG_FIXES: dict[str, dict] = {
    # hybrids: the generic shrink keeps two layers; at least one of them must be an attention layer
    "bamba": {"attn_layer_indices": [1]},
    "granitemoehybrid": {"layer_types": ["linear_attention", "attention"]},
    "recurrent_gemma": {"block_types": ["recurrent", "attention"]},
    "lfm2_moe": {"layer_types": ["conv", "full_attention"]},
    "nemotron_h": {"n_groups": 2},
    "zamba2": {
        "n_mamba_heads": 4,
        "mamba_headdim": 16,
        "attention_hidden_size": 64,
        "num_query_groups": 4,
        "adapter_rank": 8,
    },
    "deepseek_v2": {"num_experts_per_tok": 2},
    "falcon_h1": {"mamba_d_ssm": 64},
    # Aria's projector maps a patch count to a query count: 490 px / 14 = 35 x 35 = 1225 patches
    "aria": {"vision_config.image_size": 490, "vision_config.patch_size": 14},
    "dots1": {"n_routed_experts": 4, "num_experts_per_tok": 2, "n_shared_experts": 1},
    "esm": {"vocab_size": 33, "mask_token_id": 32, "pad_token_id": 1},
    # text halves of GLM-4V-style models: multimodal rope sections for a head of 8
    "glm4v_text": {"rope_parameters.mrope_section": [1, 1, 2]},
    "glm4v_moe_text": {"rope_parameters.mrope_section": [0, 1, 1]},
    "glm_image_text": {"rope_parameters.mrope_section": [1, 1, 2]},
    "glm_ocr_text": {"rope_parameters.mrope_section": [1, 1, 2]},
    "glm4v_moe": {"text_config.rope_parameters.mrope_section": [0, 1, 1]},
    # video towers: few frames of small images
    "vjepa2": {"frames_per_clip": 4, "crop_size": 64},
    "videoprism_vision_model": {"num_frames": 2, "image_size": 64},
    "videoprism": {"vision_config.num_frames": 2, "vision_config.image_size": 64},
    "ultravbert": {"vision_config.image_size": 128},
    # LiLT splits the width into six box embeddings: a width divisible by 6 and by the 4 heads
    "lilt": {"hidden_size": 48},
    # BROS: hidden/4 split over 8 box coordinates into sinusoids of even size
    "bros": {
        "hidden_size": 64,
        "dim_bbox_sinusoid_emb_2d": 16,
        "dim_bbox_sinusoid_emb_1d": 2,
        "dim_bbox_projection": 16,
    },
    # pixel shuffles need a patch grid divisible by the shuffle factor
    "smolvlm": {"vision_config.image_size": 128},
    "idefics3": {"vision_config.image_size": 128},
    "aya_vision": {"vision_config.image_size": 112},
    "mllama": {"vision_config.image_size": 56, "vision_config.intermediate_layers_indices": [0, 1]},
    "llama4": {
        "vision_config.image_size": 56,
        "vision_config.vision_output_dim": 32,
        "vision_config.projector_input_dim": 32,
        "vision_config.projector_output_dim": 32,
        "vision_config.intermediate_size": 128,
        "text_config.intermediate_size_mlp": 64,
        "text_config.moe_layers": [0, 1],
    },
    # SAM: the prompt encoder's embedding grid follows the (shrunk) image size
    "sam": {
        "prompt_encoder_config.image_embedding_size": 16,
        "prompt_encoder_config.hidden_size": 32,
        "vision_config.num_pos_feats": 16,
    },
    "sam_hq": {
        "prompt_encoder_config.image_embedding_size": 16,
        "prompt_encoder_config.hidden_size": 32,
        "vision_config.num_pos_feats": 16,
    },
    # SAM 2: a narrow four-stage Hiera (two blocks per stage) on 256-pixel images
    "sam2_hiera_det_model": _HIERA,
    "sam2_vision_model": {**_prefixed("backbone_config.", _HIERA), **_SAM2_VISION},
    "sam2": {
        **_prefixed("vision_config.backbone_config.", _HIERA),
        **_prefixed("vision_config.", _SAM2_VISION),
        "prompt_encoder_config.hidden_size": 32,
        "prompt_encoder_config.image_size": 256,
    },
    # Grounding DINO fuses four Swin stages (feature levels): keep the four stages, two blocks each
    "grounding-dino": _SWIN4,
    "mm-grounding-dino": _SWIN4,
    # DPT-style depth heads reassemble four backbone stages: four layers, small images
    "depth_anything": {
        "backbone_config.num_hidden_layers": 4,
        "backbone_config.out_indices": [1, 2, 3, 4],
        "backbone_config.out_features": ["stage1", "stage2", "stage3", "stage4"],
        "backbone_config.image_size": 56,
    },
    "prompt_depth_anything": {
        "backbone_config.num_hidden_layers": 4,
        "backbone_config.out_indices": [1, 2, 3, 4],
        "backbone_config.out_features": ["stage1", "stage2", "stage3", "stage4"],
        "backbone_config.image_size": 56,
    },
    "zoedepth": {
        "backbone_config.num_hidden_layers": 4,
        "backbone_config.out_indices": [1, 2, 3, 4],
        "backbone_config.out_features": ["stage1", "stage2", "stage3", "stage4"],
        "backbone_config.image_size": 64,
    },
    "vipllava": {"vision_feature_layers": [-2, -1], "vision_config.image_size": 112},
    # ViTMatte: image plus trimap (4 channels) into a ViTDet backbone whose width the head follows
    "vitmatte": {"hidden_size": 32, "backbone_config.num_channels": 4},
    # RT-DETR family: a narrow ResNet backbone whose stage widths the hybrid encoder takes in
    "rt_detr": {
        "backbone_config.hidden_sizes": [16, 32, 64, 128],
        "backbone_config.embedding_size": 16,
        "encoder_in_channels": [32, 64, 128],
        "decoder_in_channels": [32, 32, 32],
        "num_queries": 30,
    },
    "rt_detr_v2": {
        "backbone_config.hidden_sizes": [16, 32, 64, 128],
        "backbone_config.embedding_size": 16,
        "encoder_in_channels": [32, 64, 128],
        "decoder_in_channels": [32, 32, 32],
        "num_queries": 30,
    },
    # CLAP's audio tower is a two-stage Swin: width doubles once from the patch embedding
    "clap": {
        "audio_config.patch_embeds_hidden_size": 16,
        "audio_config.hidden_size": 32,
        "audio_config.num_attention_heads": [2, 2],
    },
    "vision-text-dual-encoder": {"vision_config.pooler_output_size": 32},
    "seggpt": {"image_size": [128, 64]},
    # T5Gemma 2 keeps its vision tower inside the encoder config
    "t5gemma2": {"encoder.vision_config.image_size": 128, "encoder.mm_tokens_per_image": 16},
    # NaFlex (SigLIP-2) towers: 8 x 8 patches
    "siglip2": {"vision_config.num_patches": 64},
    "siglip2_vision_model": {"num_patches": 64},
    "lfm2_vl": {"vision_config.num_patches": 64},
    # LLaVA-NeXT family: one tile size (the base image's), so one tile plus the base image
    "llava_next": {"vision_config.image_size": 112, "image_grid_pinpoints": [[112, 112]]},
    "llava_next_video": {"vision_config.image_size": 112, "image_grid_pinpoints": [[112, 112]]},
    "llava_onevision": {"vision_config.image_size": 112, "image_grid_pinpoints": [[112, 112]]},
    # probabilistic forecasters: a short window, a few lags, one time feature
    "time_series_transformer": _FORECAST,
    "informer": _FORECAST,
    # BLIP-2 family: the image placeholders the Q-Former outputs replace
    "blip-2": {"image_token_index": IMAGE_TOKEN, "num_query_tokens": 8},
    "instructblip": {"image_token_index": IMAGE_TOKEN, "num_query_tokens": 8},
    "instructblipvideo": {"video_token_index": IMAGE_TOKEN, "num_query_tokens": 8},
    # video models: few frames of small images
    "videomae": {"num_frames": 4, "image_size": 64},
    "vivit": {"num_frames": 4, "image_size": 64, "tubelet_size": [2, 16, 16]},
    "timesformer": {"num_frames": 2, "image_size": 64},
    "xclip": {"vision_config.num_frames": 2, "vision_config.image_size": 64, "prompt_layers": 2},
    # audio models: short spectrograms
    "audio-spectrogram-transformer": {"max_length": 128},
    "kyutai_speech_to_text": {"num_codebooks": 2, "codebook_vocab_size": 16},
}


def apply_config_fixes(model_type: str, tree: dict) -> None:
    """Write ``CONFIG_FIXES[model_type]`` into the config dict ``tree`` (dotted paths reach sub-configs)."""
    for path, value in CONFIG_FIXES.get(model_type, {}).items():
        node = tree
        *parents, key = path.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[key] = value
    if model_type == "mllama":  # the vision output concatenates the last and the intermediate layers
        vision = tree["vision_config"]
        vision["vision_output_dim"] = vision["hidden_size"] * (len(vision["intermediate_layers_indices"]) + 1)
