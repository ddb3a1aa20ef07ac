"""The fixed sample of model types the test suite sweeps (``tests/sweep/test_sweep_sample.py``).

Chosen from the full sweep's testable types for spread (every family, every failure class) and
speed (each builds and runs in about a second); the whole sample runs in a few minutes.
"""

TEXT_DECODER = ("llama", "mistral", "gemma2", "gemma3_text", "qwen2", "qwen3", "qwen3_moe", "qwen3_next", "phi3",
                "gpt2", "gpt_neox", "opt", "bloom", "falcon", "gpt_oss", "deepseek_v3", "mixtral", "cohere2", "olmo2",
                "starcoder2", "lfm2", "jetmoe", "granitemoe", "xlnet", "minimax")
ENCODER = ("bert", "roberta", "albert", "distilbert", "deberta", "deberta-v2", "modernbert", "mpnet", "electra",
           "convbert", "ernie", "nystromformer", "canine", "funnel", "flava")
ENCODER_DECODER = ("t5", "bart", "mbart", "marian", "pegasus", "m2m_100", "longt5", "switch_transformers", "umt5",
                   "t5gemma", "fsmt", "led", "prophetnet")
VISION = ("vit", "deit", "beit", "data2vec-vision", "dinov2", "swinv2", "segformer", "vitdet", "vit_mae", "dpt",
          "clip_vision_model", "siglip_vision_model", "swin", "glpn", "hiera", "pvt_v2", "mask2former", "maskformer")
SPEECH = ("whisper", "wav2vec2", "hubert", "wavlm", "speech_to_text", "moonshine", "sew", "data2vec-audio",
          "parakeet_ctc", "parakeet_encoder", "wav2vec2-conformer", "parakeet_rnnt", "parakeet_tdt", "qwen2_audio",
          "voxtral")
VISION_LANGUAGE = ("llava", "qwen2_vl", "qwen2_5_vl", "gemma3", "paligemma", "idefics2", "internvl", "mistral3",
                   "glm4v", "got_ocr2", "video_llava", "vilt", "git", "layoutlmv3", "vision-encoder-decoder",
                   "pp_formulanet")
DUAL_ENCODER = ("clip", "siglip", "altclip", "chinese_clip", "blip", "owlvit", "owlv2", "metaclip_2", "clipseg",
                "colpali")

SAMPLE = TEXT_DECODER + ENCODER + ENCODER_DECODER + VISION + SPEECH + VISION_LANGUAGE + DUAL_ENCODER
