"""The fixed sample of model types the test suite sweeps (``tests/sweep/test_sweep_sample.py``).

Chosen from the full sweep's testable types for spread (every family, every failure class) and
speed (each builds and runs in about a second); the whole sample runs in a few minutes. Types the
per-type recipes made testable (:mod:`tests.sweep.input_recipes`, :mod:`tests.sweep.config_fixes`)
replaced near-duplicates of types kept here (starcoder2, mixtral, deit, sew, mbart, ... for
Bamba, SmolVLM, LLaVA-NeXT, Qwen3-VL, Mllama, Gemma 4, SigLIP-2, BLIP-2, SpeechT5, ...).
"""

TEXT_DECODER = ("llama", "mistral", "gemma2", "gemma3_text", "qwen2", "qwen3", "qwen3_moe", "qwen3_next", "phi3",
                "gpt2", "gpt_neox", "opt", "bloom", "falcon", "gpt_oss", "deepseek_v3", "cohere2", "lfm2", "bamba",
                "recurrent_gemma", "deepseek_v2", "granitemoe", "xlnet", "minimax")
ENCODER = ("bert", "roberta", "albert", "distilbert", "deberta", "deberta-v2", "modernbert", "electra", "convbert",
           "ernie", "canine", "lilt", "esm", "funnel", "flava")
ENCODER_DECODER = ("t5", "bart", "marian", "pegasus", "m2m_100", "longt5", "switch_transformers", "t5gemma", "fsmt",
                   "led", "prophetnet")
VISION = ("vit", "beit", "dinov2", "videomae", "depth_anything", "seggpt", "swinv2", "segformer", "vitdet", "dpt",
          "clip_vision_model", "siglip_vision_model", "swin", "glpn", "hiera", "pvt_v2", "mask2former", "maskformer")
SPEECH = ("whisper", "wav2vec2-bert", "speecht5", "wav2vec2", "hubert", "wavlm", "speech_to_text", "moonshine",
          "parakeet_ctc", "parakeet_encoder", "wav2vec2-conformer", "parakeet_rnnt", "parakeet_tdt", "qwen2_audio",
          "voxtral")
VISION_LANGUAGE = ("llava", "smolvlm", "llava_next", "qwen3_vl", "mllama", "gemma4", "kosmos-2", "qwen2_vl",
                   "qwen2_5_vl", "gemma3", "paligemma", "idefics2", "internvl", "mistral3", "glm4v", "vilt", "git",
                   "layoutlmv3", "vision-encoder-decoder", "pp_formulanet")
DUAL_ENCODER = ("clip", "siglip2", "blip-2", "siglip", "altclip", "blip", "owlvit", "owlv2", "clipseg", "colpali")

SAMPLE = TEXT_DECODER + ENCODER + ENCODER_DECODER + VISION + SPEECH + VISION_LANGUAGE + DUAL_ENCODER
