"""Per-type inputs for the model types whose forward takes more than text, pixels or audio.

Layout boxes, language ids, Q-Former text, tiles with aspect-ratio ids, NaFlex patches, time series,
trajectories: ``INPUT_RECIPES`` maps a model type to a function of ``(config, kit)`` returning
``[(label, inputs)]``, where ``kit`` makes the generic pieces (:class:`tests.sweep.inputs.Kit`).
Shapes follow each model's processor and its tester in transformers'
``tests/models/<type>/test_modeling_<type>.py``.
"""

from __future__ import annotations

import torch

from .config_fixes import IMAGE_TOKEN


def _boxes(kit, corners: int = 4, scale: int = 1000) -> torch.Tensor:
    """Layout boxes ``[x0, y0, x1, y1]`` with x0 <= x1 and y0 <= y1, one per token."""
    low = torch.randint(0, scale // 2, (kit.batch, kit.length, 2), generator=kit.g)
    high = low + torch.randint(1, scale // 2, (kit.batch, kit.length, 2), generator=kit.g)
    return torch.cat([low, high], -1) if corners == 4 else torch.cat([low, high, low, high], -1)


def _layout(config, kit):
    return [("text+layout", {**kit.text(), "bbox": _boxes(kit)})]


def _bros(config, kit):
    return [("text+layout", {**kit.text(), "bbox": _boxes(kit).float() / 1000})]


def _xmod(config, kit):
    return [("text", {**kit.text(), "lang_ids": torch.zeros(kit.batch, dtype=torch.long)})]


def _lxmert(config, kit):
    boxes = 5
    feats = torch.randn(kit.batch, boxes, config.visual_feat_dim, generator=kit.g)
    pos = torch.rand(kit.batch, boxes, config.visual_pos_dim, generator=kit.g)
    return [("text+image", {**kit.text(), "visual_feats": feats, "visual_pos": pos})]


def _blip2(config, kit):
    batch = kit.placeholders(config.image_token_index, config.num_query_tokens)
    return [("vlm", {**batch, "pixel_values": kit.pixels()})]


def _instructblip(config, kit):
    batch = kit.placeholders(config.image_token_index, config.num_query_tokens)
    qformer = kit.text()
    return [
        (
            "vlm",
            {
                **batch,
                "pixel_values": kit.pixels(),
                "qformer_input_ids": qformer["input_ids"],
                "qformer_attention_mask": qformer["attention_mask"],
            },
        )
    ]


def _instructblipvideo(config, kit):
    frames = 4  # the model's own comment: "video has frames=4 always"
    batch = kit.placeholders(config.video_token_index, config.num_query_tokens * frames)
    qformer = kit.text()
    pixels = kit.pixels()[:, None].repeat(1, frames, 1, 1, 1)
    return [
        (
            "vlm",
            {
                **batch,
                "pixel_values": pixels,
                "qformer_input_ids": qformer["input_ids"],
                "qformer_attention_mask": qformer["attention_mask"],
            },
        )
    ]


def _patchtst(config, kit):
    values = torch.randn(kit.batch, config.context_length, config.num_input_channels, generator=kit.g)
    return [("time-series", {"past_values": values})]


def _timesfm(config, kit):
    length = 2 * config.patch_length
    values = torch.randn(kit.batch, length, generator=kit.g)
    padding = torch.zeros(kit.batch, length, dtype=torch.long)
    return [
        (
            "time-series",
            {
                "past_values": values,
                "past_values_padding": padding,
                "freq": torch.zeros(kit.batch, 1, dtype=torch.long),
            },
        )
    ]


def _ast(config, kit):
    return [
        ("audio", {"input_values": torch.randn(kit.batch, config.max_length, config.num_mel_bins, generator=kit.g)})
    ]


def _speecht5(config, kit):
    """The bare SpeechT5Model has no pre-nets: its inputs are hidden states for encoder and decoder."""
    width = config.hidden_size
    return [
        (
            "audio",
            {
                "input_values": torch.randn(kit.batch, 12, width, generator=kit.g),
                "decoder_input_values": torch.randn(kit.batch, 7, width, generator=kit.g),
            },
        )
    ]


def _kyutai(config, kit):
    """Text plus ``num_codebooks`` audio codes per step: ids ``[batch, length, 1 + codebooks]``."""
    text = kit.text()
    codes = torch.randint(
        0, config.codebook_vocab_size - 1, (kit.batch, kit.length, config.num_codebooks), generator=kit.g
    )
    ids = torch.cat([text["input_ids"][..., None], codes], -1)
    return [("audio-lm", {"input_ids": ids, "attention_mask": text["attention_mask"]})]


def _anyres(config, kit):
    """LLaVA-NeXT: ``[batch, tiles + 1, C, H, W]`` with each image's original size."""
    pixels = kit.pixels()
    size = list(pixels.shape[-2:])
    batch = kit.placeholders(config.image_token_id, 1)
    return [
        (
            "vlm",
            {
                **batch,
                "pixel_values": pixels[:, None].repeat(1, 2, 1, 1, 1),
                "image_sizes": torch.tensor([size] * kit.batch),
            },
        )
    ]


def _mllama(config, kit):
    """Mllama: ``[batch, images, tiles, C, H, W]``, one tile used (aspect ratio id 1 = [1, 1])."""
    tiles = config.vision_config.max_num_tiles
    pixels = kit.pixels()[:, None, None].repeat(1, 1, tiles, 1, 1, 1)
    batch = kit.placeholders(config.image_token_index, 1)
    length = batch["input_ids"].shape[1]
    tile_mask = torch.zeros(kit.batch, 1, tiles, dtype=torch.long)
    tile_mask[..., 0] = 1
    cross = tile_mask[:, None].repeat(1, length, 1, 1)
    return [
        (
            "vlm",
            {
                **batch,
                "pixel_values": pixels,
                "aspect_ratio_ids": torch.ones(kit.batch, 1, dtype=torch.long),
                "aspect_ratio_mask": tile_mask,
                "cross_attention_mask": cross,
            },
        )
    ]


def _fuyu(config, kit):
    """Fuyu: the image as flattened patches ``[batch, patches, patch * patch * C]``, one token each."""
    patches = 4
    width = config.patch_size * config.patch_size * config.num_channels
    batch = kit.placeholders(config.image_token_id, patches)
    return [("vlm", {**batch, "pixel_values": torch.randn(kit.batch, patches, width, generator=kit.g)})]


def _naflex(vision, kit):
    """SigLIP-2 NaFlex patches: ``pixel_values [batch, patches, C*P*P]``, a patch mask and the grid shape."""
    side = int(vision.num_patches**0.5)
    width = vision.num_channels * vision.patch_size**2
    return {
        "pixel_values": torch.randn(kit.batch, side * side, width, generator=kit.g),
        "pixel_attention_mask": torch.ones(kit.batch, side * side, dtype=torch.long),
        "spatial_shapes": torch.tensor([[side, side]] * kit.batch),
    }


def _siglip2(config, kit):
    return [("text+image", {**kit.text(), **_naflex(config.vision_config, kit)})]


def _siglip2_vision(config, kit):
    return [("image", _naflex(config, kit))]


def _lfm2_vl(config, kit):
    side = int(config.vision_config.num_patches**0.5) // config.downsample_factor
    batch = kit.placeholders(config.image_token_id, side * side)
    return [("vlm", {**batch, **_naflex(config.vision_config, kit)})]


def _kosmos2(config, kit):
    """Kosmos-2: ``latent_query_num`` image positions at the start of the text, marked by a mask."""
    count = config.latent_query_num
    batch = kit.placeholders(IMAGE_TOKEN, count)
    marks = (batch["input_ids"] == IMAGE_TOKEN).long()
    return [("vlm", {**batch, "pixel_values": kit.pixels(), "image_embeds_position_mask": marks})]


def _clap(config, kit):
    """CLAP: text plus a log-mel spectrogram ``[batch, 1, frames, mel bins]``."""
    mels = torch.randn(kit.batch, 1, 256, config.audio_config.num_mel_bins, generator=kit.g)
    return [
        ("text+audio", {**kit.text(), "input_features": mels, "is_longer": torch.zeros(kit.batch, 1, dtype=torch.bool)})
    ]


def _seggpt(config, kit):
    """SegGPT: the image, a prompt image and the prompt's mask, all at the config's image size."""
    height, width = config.image_size[0] // 2, config.image_size[1]  # image and prompt are stacked in height
    images = [torch.randn(kit.batch, config.num_channels, height, width, generator=kit.g) for _ in range(3)]
    return [("image", dict(zip(("pixel_values", "prompt_pixel_values", "prompt_masks"), images, strict=True)))]


def _pix2struct(config, kit):
    """Pix2Struct: flattened patches ``[row, col, patch...]`` (1-based positions) plus decoder ids."""
    vision = config.vision_config
    rows, cols = 4, 4
    width = vision.patch_embed_hidden_size + 2
    patches = torch.randn(kit.batch, rows * cols, width, generator=kit.g)
    patches[..., 0] = torch.arange(rows).repeat_interleave(cols) + 1
    patches[..., 1] = torch.arange(cols).repeat(rows) + 1
    mask = torch.ones(kit.batch, rows * cols, dtype=torch.long)
    mask[1, -4:] = 0
    patches[1, -4:] = 0
    text = kit.text()
    return [
        (
            "image+text",
            {
                "flattened_patches": patches,
                "attention_mask": mask,
                "decoder_input_ids": text["input_ids"],
                "decoder_attention_mask": text["attention_mask"],
            },
        )
    ]


def _udop(config, kit):
    """UDOP: text with normalised boxes in [0, 1], the page image, decoder ids."""
    text = kit.text()
    decoder = kit.text()
    return [
        (
            "text+image",
            {
                **text,
                "bbox": _boxes(kit).float() / 1000,
                "pixel_values": kit.pixels(),
                "decoder_input_ids": decoder["input_ids"][:, :7],
            },
        )
    ]


def _dia(config, kit):
    """Dia: text ids for the encoder, ``num_channels`` audio codes per decoder step."""
    decoder = config.decoder_config
    codes = torch.randint(0, min(decoder.vocab_size, 256) - 3, (kit.batch, 7, decoder.num_channels), generator=kit.g)
    return [("text", {**kit.text(), "decoder_input_ids": codes})]


def _gemma4_patches(vision, kit, side: int = 6):
    """Gemma 4 vision: patches ``[batch, side*side, C*P*P]`` and their (x, y) positions."""
    width = 3 * vision.patch_size**2
    pixels = torch.rand(kit.batch, side * side, width, generator=kit.g)
    positions = torch.stack([torch.arange(side).repeat(side), torch.arange(side).repeat_interleave(side)], -1)
    return pixels, positions[None].repeat(kit.batch, 1, 1)


def _gemma4_vision(config, kit):
    pixels, positions = _gemma4_patches(config, kit)
    return [("image", {"pixel_values": pixels, "pixel_position_ids": positions})]


def _gemma4(config, kit):
    vision = config.vision_config
    pixels, positions = _gemma4_patches(vision, kit)
    tokens = positions.shape[1] // vision.pooling_kernel_size**2
    batch = kit.placeholders(config.image_token_id, tokens)
    batch["mm_token_type_ids"] = (batch["input_ids"] == config.image_token_id).long()
    return [("vlm", {**batch, "pixel_values": pixels, "image_position_ids": positions})]


def _paddleocr_vl(config, kit):
    """PaddleOCR-VL: patches ``[patches, C, P, P]`` with ``image_grid_thw``; merged 2 x 2 into tokens."""
    vision = config.vision_config
    side, merge = 4, vision.spatial_merge_size
    pixels = torch.randn(
        kit.batch * side * side, vision.num_channels, vision.patch_size, vision.patch_size, generator=kit.g
    )
    batch = kit.placeholders(config.image_token_id, side * side // merge**2)
    batch["mm_token_type_ids"] = (batch["input_ids"] == config.image_token_id).long()
    grid = torch.tensor([[1, side, side]] * kit.batch)
    return [("vlm-grid", {**batch, "pixel_values": pixels, "image_grid_thw": grid})]


def _oneformer(config, kit):
    """OneFormer: the image plus the task prompt ("the task is semantic") as token ids."""
    task = torch.randint(3, 200, (kit.batch, config.task_seq_len), generator=kit.g)
    return [("image", {"pixel_values": kit.pixels(), "task_inputs": task})]


def _idefics(config, kit):
    """IDEFICS (v1): ``[batch, images, C, H, W]`` and which text tokens see which image."""
    batch = kit.placeholders(config.image_token_index if hasattr(config, "image_token_index") else IMAGE_TOKEN, 1)
    length = batch["input_ids"].shape[1]
    return [
        (
            "vlm",
            {
                **batch,
                "pixel_values": kit.pixels()[:, None],
                "image_attention_mask": torch.ones(kit.batch, length, 1, dtype=torch.long),
            },
        )
    ]


def _qwen3_asr_encoder(config, kit):
    """Qwen3-ASR's encoder: log-mel ``[batch, mel bins, frames]``, frames a multiple of ``2 * n_window``."""
    frames = 2 * config.n_window
    return [
        (
            "audio",
            {
                "input_features": torch.randn(kit.batch, config.num_mel_bins, frames, generator=kit.g),
                "input_features_mask": torch.ones(kit.batch, frames, dtype=torch.long),
            },
        )
    ]


def _decision_transformer(config, kit):
    """Decision Transformer: states, actions, returns-to-go and timesteps of a short trajectory."""
    steps = 6
    mask = torch.ones(kit.batch, steps, dtype=torch.long)
    mask[1, :2] = 0
    return [
        (
            "trajectory",
            {
                "states": torch.randn(kit.batch, steps, config.state_dim, generator=kit.g),
                "actions": torch.randn(kit.batch, steps, config.act_dim, generator=kit.g),
                "returns_to_go": torch.randn(kit.batch, steps, 1, generator=kit.g),
                "timesteps": torch.arange(steps)[None].repeat(kit.batch, 1),
                "attention_mask": mask,
            },
        )
    ]


def _granite_docling(config, kit):
    """Granite-Docling: tiles ``[batch, tiles, C, H, W]`` with a mask of the real tiles."""
    batch = kit.placeholders(config.image_token_id, 1)
    return [
        (
            "vlm",
            {
                **batch,
                "pixel_values": kit.pixels()[:, None],
                "pixel_attention_mask": torch.ones(kit.batch, 1, dtype=torch.bool),
            },
        )
    ]


def _keypoint_pair(config, kit):
    """SuperGlue / LightGlue: a pair of images per example ``[batch, 2, C, H, W]``."""
    pixels = torch.rand(kit.batch, 2, 3, 64, 64, generator=kit.g)
    return [("image", {"pixel_values": pixels})]


def _forecaster(config, kit):
    """Time Series Transformer family: history (context + largest lag), its time features, the future."""
    history = config.context_length + max(config.lags_sequence)
    future = config.prediction_length
    return [
        (
            "time-series",
            {
                "past_values": torch.randn(kit.batch, history, generator=kit.g),
                "past_time_features": torch.randn(kit.batch, history, config.num_time_features, generator=kit.g),
                "past_observed_mask": torch.ones(kit.batch, history),
                "future_values": torch.randn(kit.batch, future, generator=kit.g),
                "future_time_features": torch.randn(kit.batch, future, config.num_time_features, generator=kit.g),
            },
        )
    ]


def _deepseek_vl_hybrid(config, kit):
    """DeepSeek-VL hybrid: a SigLIP view and a high-resolution SAM view of each image."""
    size = config.high_res_vision_config.image_size
    high = torch.randn(kit.batch, 3, size, size, generator=kit.g)
    batch = kit.placeholders(config.image_token_id, 1)
    return [("vlm", {**batch, "pixel_values": kit.pixels(), "high_res_pixel_values": high})]


INPUT_RECIPES = {
    "deepseek_vl_hybrid": _deepseek_vl_hybrid,
    "time_series_transformer": _forecaster,
    "informer": _forecaster,
    "decision_transformer": _decision_transformer,
    "granite_docling": _granite_docling,
    "superglue": _keypoint_pair,
    "lightglue": _keypoint_pair,
    "qwen3_asr_encoder": _qwen3_asr_encoder,
    "oneformer": _oneformer,
    "idefics": _idefics,
    "paddleocr_vl": _paddleocr_vl,
    "gemma4": _gemma4,
    "gemma4_vision": _gemma4_vision,
    "clap": _clap,
    "seggpt": _seggpt,
    "pix2struct": _pix2struct,
    "udop": _udop,
    "dia": _dia,
    "fuyu": _fuyu,
    "siglip2": _siglip2,
    "siglip2_vision_model": _siglip2_vision,
    "lfm2_vl": _lfm2_vl,
    "kosmos-2": _kosmos2,
    "mllama": _mllama,
    "llava_next": _anyres,
    "llava_next_video": _anyres,
    "llava_onevision": _anyres,
    "lilt": _layout,
    "bros": _bros,
    "xmod": _xmod,
    "lxmert": _lxmert,
    "blip-2": _blip2,
    "instructblip": _instructblip,
    "instructblipvideo": _instructblipvideo,
    "patchtst": _patchtst,
    "patchtsmixer": _patchtst,
    "timesfm": _timesfm,
    "audio-spectrogram-transformer": _ast,
    "speecht5": _speecht5,
    "kyutai_speech_to_text": _kyutai,
}
