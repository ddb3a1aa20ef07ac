"""Inputs of the right modality for a tiny sweep model, shaped as its processor would shape them.

Text: a batch of two sequences of different lengths (the shorter padded, on the left for
decoder-only models as for generation, on the right otherwise). Vision: ``pixel_values`` at the
config's image size. Vision-language: images plus text holding the image placeholder tokens, as
many per image as the vision tower produces (counted from the model itself: its own
"features and tokens do not match" check names the count). Speech: log-mel ``input_features`` or
raw ``input_values``. ``candidates`` yields the plausible inputs in order; the caller keeps the
first one the eager model accepts.
"""

from __future__ import annotations

import inspect
import re

import torch

from .config_fixes import IMAGE_TOKEN
from .input_recipes import INPUT_RECIPES

BATCH, TEXT_LEN, PAD = 2, 10, 3
IMAGE_TOKEN_KEYS = ("image_token_id", "image_token_index", "image_token")
AUDIO_TOKEN_KEYS = ("audio_token_id", "audio_token_index")
START_KEYS = ("vision_start_token_id", "boi_token_id", "image_start_token_id", "im_start_token_id")
END_KEYS = ("vision_end_token_id", "eoi_token_id", "image_end_token_id", "im_end_token_id")
COUNT_HINTS = ("image_seq_length", "mm_tokens_per_image", "num_image_tokens", "image_seq_len", "num_query_tokens")


def _params(model) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


def _attr(config, keys):
    for key in keys:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _vision_config(config):
    for key in (
        "vision_config",
        "visual_config",
        "vision_tower_config",
        "image_config",
        "backbone_config",
        "encoder_config",
        "encoder",
    ):
        sub = getattr(config, key, None)
        if sub is not None and hasattr(sub, "to_dict"):
            inner = getattr(sub, "vision_config", None)  # T5Gemma 2: the tower sits in the encoder config
            return inner if inner is not None and hasattr(inner, "to_dict") else sub
    return config


def _image_hw(config) -> tuple[int, int]:
    size = getattr(config, "image_size", None) or getattr(config, "crop_size", None)
    backbone = getattr(config, "backbone_config", None)
    if size is None and backbone is not None:  # SAM 2: the size sits on the Hiera backbone
        return _image_hw(backbone)
    if size is None:
        size = getattr(config, "img_size", None) or getattr(config, "input_size", None) or 224
    if isinstance(size, dict):
        size = (size.get("height") or size.get("shortest_edge"), size.get("width") or size.get("shortest_edge"))
    if isinstance(size, (list, tuple)):
        return int(size[-2] if len(size) > 2 else size[0]), int(size[-1])
    return int(size), int(size)


def text_vocab(config) -> int:
    try:
        text = config.get_text_config(decoder=True)
    except Exception:  # noqa: BLE001 - configs without the accessor
        text = config
    return getattr(text, "vocab_size", None) or getattr(config, "vocab_size", None) or 99


def _ids(config, special, length, generator):
    vocab = min(text_vocab(config), 256)
    allowed = torch.tensor([i for i in range(3, vocab) if i not in special] or [3])
    return allowed[torch.randint(len(allowed), (BATCH, length), generator=generator)]


def _mask(length: int, left: bool) -> torch.Tensor:
    mask = torch.ones(BATCH, length, dtype=torch.long)
    if left:
        mask[1, :PAD] = 0
    else:
        mask[1, -PAD:] = 0
    return mask


def _left_padded(model, params) -> bool:
    config = model.config
    return "past_key_values" in params and not getattr(config, "is_encoder_decoder", False)


def _pixels(config, generator) -> torch.Tensor:
    vision = _vision_config(config)
    height, width = _image_hw(vision)
    channels = getattr(vision, "num_channels", None) or getattr(vision, "in_channels", None) or 3
    return torch.randn(BATCH, channels, height, width, generator=generator)


def _grid_pixels(config, generator):
    """Qwen2-VL style: flattened patches plus ``image_grid_thw``; returns (pixels, grid, tokens per image)."""
    vision = _vision_config(config)
    patch = getattr(vision, "patch_size", 14)
    temporal = getattr(vision, "temporal_patch_size", 2) or 1
    merge = getattr(vision, "spatial_merge_size", 2) or 1
    channels = getattr(vision, "in_channels", None) or getattr(vision, "num_channels", None) or 3
    side = 2 * merge
    grid = torch.tensor([[1, side, side]] * BATCH)
    pixels = torch.randn(BATCH * side * side, channels * temporal * patch * patch, generator=generator)
    return pixels, grid, side * side // (merge * merge)


def _grid_layouts(config, generator) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """The grid patches as processors lay them out: flat with the temporal patch, then one frame per
    patch (flat ``[patches, C*P*P]`` and ``[patches, C, P, P]``: ERNIE-4.5-VL, Kimi-K2.5, Cosmos)."""
    pixels, grid, per_image = _grid_pixels(config, generator)
    vision = _vision_config(config)
    patch = getattr(vision, "patch_size", 14)
    temporal = getattr(vision, "temporal_patch_size", 2) or 1
    layouts = [(pixels, grid, per_image)]
    if temporal > 1 or pixels.shape[1] % (patch * patch) == 0:
        single = pixels[:, : pixels.shape[1] // temporal]
        layouts.append((single, grid, per_image))
        layouts.append((single.reshape(single.shape[0], -1, patch, patch), grid, per_image))
    return layouts


def _frames(config) -> int | None:
    """Frames per clip of a video model (``num_frames`` on the config or its vision config)."""
    for node in (config, _vision_config(config)):
        frames = getattr(node, "num_frames", None) or getattr(node, "frames_per_clip", None)
        if isinstance(frames, int) and frames > 0:
            return frames
    return None


def _audio(model, config, params, generator) -> list[dict]:
    audio = getattr(config, "audio_config", None) or getattr(config, "encoder_config", None) or config
    out = []
    if "input_features" in params:
        bins = (
            getattr(audio, "feature_projection_input_dim", None)  # wav2vec2-bert: stacked frames
            or getattr(audio, "num_mel_bins", None)
            or getattr(audio, "feature_size", None)
            or getattr(audio, "input_feat_per_channel", None)
            or 80
        )
        bins *= getattr(audio, "input_channels", 1) or 1
        source = getattr(audio, "max_source_positions", None)
        frames = 2 * source if isinstance(source, int) and source <= 3000 else 64
        for layout in ("bft", "btf") if source else ("btf", "bft"):
            shape = (BATCH, bins, frames) if layout == "bft" else (BATCH, frames, bins)
            feats = {"input_features": torch.randn(*shape, generator=generator)}
            if "input_features_mask" in params:  # Qwen3-ASR, FunASR: which frames are real
                feats["input_features_mask"] = torch.ones(BATCH, frames, dtype=torch.long)
            out.append(feats)
    if "input_values" in params:
        wave = torch.randn(BATCH, 8000, generator=generator)
        out.append({"input_values": wave})
        out.append({"input_values": wave[:, None]})  # codecs: [batch, channels=1, samples]
    return out


def _with_placeholders(config, special, ids_len, token, count, generator, left):
    """Text rows holding ``count`` placeholder tokens each (with start/end markers when the model has them)."""
    start, end = _attr(config, START_KEYS), _attr(config, END_KEYS)
    rows = []
    text = _ids(config, special, ids_len, generator)
    for b in range(BATCH):
        block = ([start] if start is not None else []) + [token] * count + ([end] if end is not None else [])
        rows.append(torch.cat([torch.tensor(block, dtype=torch.long), text[b]]))
    ids = torch.stack(rows)
    mask = torch.ones_like(ids)
    if left:  # shift the shorter row right: the placeholders stay whole
        ids[1] = torch.cat([torch.full((PAD,), getattr(config, "pad_token_id", None) or 0), ids[1, :-PAD]])
        mask[1, :PAD] = 0
    else:
        mask[1, -PAD:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def feature_count(error: Exception) -> int | None:
    """The number of image/audio features a model's own placeholder check names in its error."""
    text = str(error)
    match = re.search(r"features[^0-9]{0,20}(\d+)", text) or re.search(r"(\d+)\s*(?:image|audio)?\s*features", text)
    return int(match.group(1)) if match else None


class Kit:
    """The generic pieces a per-type recipe (:mod:`tests.sweep.input_recipes`) builds its inputs from."""

    def __init__(self, model, special: set[int], generator: torch.Generator, count_hint: dict) -> None:
        self.config, self.g, self.hint = model.config, generator, count_hint
        self.special = special | {IMAGE_TOKEN}  # recipes may use it as a placeholder
        self.left = _left_padded(model, _params(model))
        self.batch, self.length = BATCH, TEXT_LEN

    def text(self) -> dict:
        """Two token rows of ``length`` ids, the second padded (left for decoders)."""
        return {
            "input_ids": _ids(self.config, self.special, self.length, self.g),
            "attention_mask": _mask(self.length, self.left),
        }

    def placeholders(self, token: int, count: int, kind: str = "image") -> dict:
        """Text rows holding ``count`` copies of the placeholder ``token`` each (or the count the model asked for)."""
        count = self.hint.get(kind, count)
        return _with_placeholders(self.config, self.special, 6, token, count, self.g, self.left)

    def pixels(self) -> torch.Tensor:
        """Images at the (vision) config's size."""
        return _pixels(self.config, self.g)


def candidates(model, special: set[int], count_hint: dict | None = None):
    """Plausible inputs for ``model``, most specific first (see the module docstring)."""
    config = model.config
    params = _params(model)
    g = torch.Generator().manual_seed(1)
    recipe = INPUT_RECIPES.get(getattr(config, "model_type", None))
    if recipe is not None:
        return recipe(config, Kit(model, special, g, count_hint or {}))
    left = _left_padded(model, params)
    image_token = _attr(config, IMAGE_TOKEN_KEYS)
    audio_token = _attr(config, AUDIO_TOKEN_KEYS)
    count_hint = count_hint or {}
    out = []
    has_tower = getattr(config, "vision_config", True) is not None  # EmbeddingGemma 2: text-only by default
    if "input_ids" in params and image_token is not None and "pixel_values" in params and has_tower:
        if "image_grid_thw" in params:
            for pixels, grid, per_image in _grid_layouts(config, g):
                count = count_hint.get("image", per_image)
                batch = _with_placeholders(config, special, 6, image_token, count, g, left)
                out.append(("vlm-grid", {**batch, "pixel_values": pixels, "image_grid_thw": grid}))
        guess = count_hint.get("image") or _attr(config, COUNT_HINTS) or 1
        batch = _with_placeholders(config, special, 6, image_token, guess, g, left)
        pixels = _pixels(config, g)
        out.append(("vlm", {**batch, "pixel_values": pixels}))
        out.append(("vlm", {**batch, "pixel_values": pixels[:, None]}))  # idefics-style: [batch, images, ...]
        if "image_sizes" in params:
            sizes = torch.tensor([list(pixels.shape[-2:])] * BATCH)
            out.append(("vlm", {**batch, "pixel_values": pixels, "image_sizes": sizes}))
        if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in params:  # T5Gemma 2
            for _, inputs in out:
                inputs["decoder_input_ids"] = _ids(config, special, 7, g)
        if "mm_token_type_ids" in params:
            for _, inputs in out:
                inputs["mm_token_type_ids"] = (inputs["input_ids"] == image_token).long()
        return out  # a vision-language model is tested with images, never text only
    has_audio = getattr(config, "audio_config", True) is not None
    if "input_ids" in params and audio_token is not None and {"input_features", "input_values"} & params and has_audio:
        for audio in _audio(model, config, params, g):
            batch = _with_placeholders(config, special, 6, audio_token, count_hint.get("audio", 1), g, left)
            mask_key = "feature_attention_mask" if "feature_attention_mask" in params else None
            feats = dict(audio)
            if mask_key:
                frames = next(iter(audio.values())).shape[-1]
                feats[mask_key] = torch.ones(BATCH, frames, dtype=torch.long)
            out.append(("audio-lm", {**batch, **feats}))
    text = None
    if "input_ids" in params:
        ids = _ids(config, special, TEXT_LEN, g)
        text = {"input_ids": ids}
        if "attention_mask" in params:
            text["attention_mask"] = _mask(TEXT_LEN, left)
    decoder = None
    if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in params:
        dec = _ids(config, special, 7, g)
        decoder = {"decoder_input_ids": dec}
        if "decoder_attention_mask" in params:
            dec_mask = torch.ones_like(dec)
            dec_mask[0, -2:] = 0
            decoder["decoder_attention_mask"] = dec_mask
        if text is not None:
            text.update(decoder)
    grid_key = next((k for k in ("image_grid_thw", "grid_thw") if k in params), None)
    pixel_key = "pixel_values" if "pixel_values" in params else "hidden_states" if "hidden_states" in params else None
    if grid_key and pixel_key and "input_ids" not in params:
        for pixels, grid, _ in _grid_layouts(config, g):
            out.append(("image-grid", {pixel_key: pixels, grid_key: grid}))
    if "pixel_values" in params:
        pixels = {"pixel_values": _pixels(config, g), **(decoder or {})}
        if text is not None:
            out.append(("text+image", {**text, **pixels}))
        out.append(("image", pixels))
        frames = _frames(config)
        if frames:  # video models: [batch, frames, channels, height, width]
            video = pixels["pixel_values"][:, None].repeat(1, frames, 1, 1, 1)
            if text is not None:
                out.append(("text+video", {**text, **pixels, "pixel_values": video}))
            out.append(("video", {**pixels, "pixel_values": video}))
    if "pixel_values_videos" in params and image_token is None:  # V-JEPA 2, VideoPrism (and its CLIP)
        clip = _pixels(config, g)[:, None].repeat(1, _frames(config) or 2, 1, 1, 1)
        out.append(("text+video" if text else "video", {**(text or {}), "pixel_values_videos": clip}))
    for audio in _audio(model, config, params, g):
        if decoder is not None:
            audio = {**audio, **decoder}
        out.append(("audio", audio))
    if text is not None:
        out.append(("text", text))
    return out
