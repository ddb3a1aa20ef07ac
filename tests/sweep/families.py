"""The family a model type belongs to, for the sweep's table (from transformers' own auto mappings)."""

from __future__ import annotations

FAMILIES = (
    "text decoder",
    "encoder",
    "encoder-decoder",
    "vision",
    "speech",
    "vision-language",
    "dual encoder",
    "other",
)
_BY_MAPPING = (
    ("dual encoder", ("ZERO_SHOT_IMAGE_CLASSIFICATION", "ZERO_SHOT_OBJECT_DETECTION", "RETRIEVAL")),
    (
        "vision-language",
        (
            "IMAGE_TEXT_TO_TEXT",
            "MULTIMODAL_LM",
            "VISUAL_QUESTION_ANSWERING",
            "VISION_2_SEQ",
            "DOCUMENT_QUESTION_ANSWERING",
            "TEXT_RECOGNITION",
            "TABLE_RECOGNITION",
        ),
    ),
    (
        "speech",
        (
            "SPEECH_SEQ_2_SEQ",
            "CTC",
            "AUDIO_CLASSIFICATION",
            "AUDIO_FRAME_CLASSIFICATION",
            "AUDIO_XVECTOR",
            "TEXT_TO_SPECTROGRAM",
            "TEXT_TO_WAVEFORM",
            "RNNT",
            "TDT",
        ),
    ),
    ("encoder-decoder", ("SEQ_TO_SEQ_CAUSAL_LM",)),
    ("text decoder", ("CAUSAL_LM",)),
    (
        "vision",
        (
            "IMAGE_CLASSIFICATION",
            "IMAGE_MAPPING",
            "BACKBONE",
            "OBJECT_DETECTION",
            "SEGMENTATION",
            "DEPTH_ESTIMATION",
            "VIDEO_CLASSIFICATION",
            "MASKED_IMAGE_MODELING",
            "IMAGE_TO_IMAGE",
            "KEYPOINT",
            "MASK_GENERATION",
            "POSE_ESTIMATION",
            "IMAGE_MATTING",
            "NORMAL_ESTIMATION",
            "POINTMAP",
            "CAUSAL_IMAGE_MODELING",
        ),
    ),
    (
        "encoder",
        (
            "MASKED_LM",
            "SEQUENCE_CLASSIFICATION",
            "TOKEN_CLASSIFICATION",
            "QUESTION_ANSWERING",
            "MULTIPLE_CHOICE",
            "NEXT_SENTENCE_PREDICTION",
            "TEXT_ENCODING",
            "PRETRAINING",
            "TABLE_QUESTION_ANSWERING",
        ),
    ),
)
_BY_INPUTS = {
    "vlm": "vision-language",
    "vlm-grid": "vision-language",
    "audio-lm": "speech",
    "audio": "speech",
    "image": "vision",
    "image-grid": "vision",
    "video": "vision",
    "text+audio": "dual encoder",
    "text+video": "dual encoder",
    "text+layout": "encoder",
}


def family(model_type: str, inputs_label: str | None = None) -> str:
    """The sweep family of ``model_type``; the inputs that ran (when known) settle vision vs text."""
    import transformers.models.auto.modeling_auto as auto

    names = [
        n[len("MODEL_FOR_") : -len("_MAPPING_NAMES")]
        for n in dir(auto)
        if n.startswith("MODEL_FOR_") and n.endswith("_MAPPING_NAMES") and model_type in getattr(auto, n)
    ]
    for fam, keys in _BY_MAPPING[:3]:
        if any(any(k == n or k in n for k in keys) for n in names):
            return fam
    if inputs_label in _BY_INPUTS:
        return _BY_INPUTS[inputs_label]
    if inputs_label == "text" and not names:
        return "text decoder" if model_type.endswith("_text") else _by_name(model_type)
    for fam, keys in _BY_MAPPING[3:]:
        if any(any(k == n or k in n for k in keys) for n in names):
            return fam
    return _by_name(model_type)


def _by_name(model_type: str) -> str:
    """Sub-model types listed only in the base mapping (``qwen2_5_vl_vision``, ``gemma4_text``)."""
    name = model_type.replace("-", "_")
    if name.endswith(("_vision", "_vision_model", "_vit", "_backbone")) or "vision" in name:
        return "vision"
    if any(part in name for part in ("audio", "speech", "asr", "whisper", "wav", "encodec", "codec", "mimi", "tts")):
        return "speech"
    if name.endswith(("_text", "_text_model")) or "lm" in name:
        return "text decoder"
    return "other"
