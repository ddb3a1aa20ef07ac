"""Small attention matrices whose statistics are worked out by hand in the tests."""

import torch

from attn_plugins.record import AttentionRecord, LayerAttention

# One head, 3 tokens, no padding.
A = torch.tensor(
    [
        [0.50, 0.50, 0.00],
        [0.25, 0.50, 0.25],
        [0.00, 0.00, 1.00],
    ]
)
A_TOKENS = ["[CLS]", "hello", "."]

# Item 1 of a batch of two: its last token is padding (mask [1, 1, 0]); its padded query row holds junk.
B1 = torch.tensor(
    [
        [0.6, 0.4, 0.0],
        [0.2, 0.8, 0.0],
        [1 / 3, 1 / 3, 1 / 3],
    ]
)
BATCH = torch.stack([A, B1])[:, None]  # [2, 1, 3, 3]
BATCH_MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])

# Two query rows over two keys, for Jensen-Shannon by hand.
H0 = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
H1 = torch.tensor([[0.0, 1.0], [1.0, 0.0]])


def record_of(*layers, tokens=None, mask=None, metadata=None) -> AttentionRecord:
    """A record whose layer i holds ``layers[i]`` (``[b, h, q, k]``)."""
    rec = AttentionRecord(
        layers=[LayerAttention(f"layers.{i}.attn", None, "self", i, w.float()) for i, w in enumerate(layers)],
        tokens=tokens,
        model_class="Fixture",
    )
    if mask is not None:
        rec.inputs["attention_mask"] = mask
    if metadata:
        rec.metadata.update(metadata)
    return rec


# ---------------------------------------------------------------------------------------------
# records from real and tiny models (built once per test session)
# ---------------------------------------------------------------------------------------------
SENTENCES = ["The cat sat on the mat.", "Dogs bark, birds sing!"]
_CACHE: dict = {}


def _cached(name, build):
    if name not in _CACHE:
        _CACHE[name] = build()
    return _CACHE[name]


def minilm_record(model, tokenizer):
    """The bundled pretrained MiniLM on two sentences of different lengths (so one is padded)."""
    import attn_plugins as ap

    def build():
        enc = tokenizer(SENTENCES, return_tensors="pt", padding=True)
        with torch.no_grad(), ap.capture(model, tokenizer) as cap:
            model(**enc)
        return cap.record

    return _cached("minilm", build)


def gpt2_generate_record():
    """A tiny random GPT-2 (from a config) generating 5 tokens for a left-padded batch of two prompts."""
    from transformers import GPT2Config, GPT2LMHeadModel

    import attn_plugins as ap

    def build():
        torch.manual_seed(0)
        model = GPT2LMHeadModel(
            GPT2Config(
                n_layer=2,
                n_head=2,
                n_embd=16,
                vocab_size=40,
                n_positions=32,
                bos_token_id=0,
                eos_token_id=39,
                pad_token_id=0,
            )
        ).eval()
        ids = torch.tensor([[0, 0, 5, 6], [7, 8, 9, 10]])
        mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
        with torch.no_grad(), ap.capture(model) as cap:
            model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0)
        record = cap.record
        record.tokens = [[f"w{i}" for i in row] for row in record.inputs["input_ids"].tolist()]
        return record

    return _cached("gpt2", build)


def gpt2_checkpoint_records():
    """The same inputs through a tiny GPT-2 at three "checkpoints" (weights nudged in between)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    import attn_plugins as ap

    def build():
        torch.manual_seed(1)
        model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=40, n_positions=32)).eval()
        ids = torch.tensor([[3, 4, 5, 6, 7]])
        records = []
        for _ in range(3):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(0.5 * torch.randn_like(p))
                with ap.capture(model) as cap:
                    model(input_ids=ids)
            record = cap.record
            record.tokens = [["the", "Ġcat", "Ġsat", "Ġdown", "."]]
            records.append(record)
        return records

    return _cached("checkpoints", build)


def vit_record():
    """A tiny random ViT (from a config) on a 32x32 gradient image: 4x4 patches + [CLS]."""
    from transformers import ViTConfig, ViTModel

    import attn_plugins as ap

    def build():
        torch.manual_seed(0)
        model = ViTModel(
            ViTConfig(
                image_size=32,
                patch_size=8,
                num_channels=3,
                hidden_size=16,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=32,
            )
        ).eval()
        yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
        image = torch.stack([xx, yy, xx * yy])[None] * 2 - 1
        with torch.no_grad(), ap.capture(model) as cap:
            model(pixel_values=image)
        return cap.record, image

    return _cached("vit", build)


def whisper_records():
    """A tiny random Whisper (from a WhisperConfig): a generate() record and a teacher-forced one."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    import attn_plugins as ap

    def build():
        torch.manual_seed(0)
        config = WhisperConfig(
            vocab_size=60,
            num_mel_bins=8,
            encoder_layers=1,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            d_model=16,
            encoder_ffn_dim=32,
            decoder_ffn_dim=32,
            max_source_positions=25,
            max_target_positions=16,
            decoder_start_token_id=1,
            pad_token_id=0,
            eos_token_id=2,
            bos_token_id=1,
        )
        model = WhisperForConditionalGeneration(config).eval()
        features = torch.randn(1, 8, 50)  # 50 log-mel frames -> 25 encoder frames
        with torch.no_grad(), ap.capture(model) as cap:
            model.generate(features, max_new_tokens=4, do_sample=False)
        generated = cap.record
        with torch.no_grad(), ap.capture(model) as cap:
            model(input_features=features, decoder_input_ids=torch.tensor([[1, 5, 6, 7, 8]]))
        return generated, cap.record, features

    return _cached("whisper", build)


def bart_record():
    """A tiny random BART (from a config), teacher-forced, with source and target tokens."""
    from transformers import BartConfig, BartForConditionalGeneration

    import attn_plugins as ap

    def build():
        torch.manual_seed(0)
        model = BartForConditionalGeneration(
            BartConfig(
                d_model=16,
                encoder_layers=1,
                decoder_layers=2,
                encoder_attention_heads=2,
                decoder_attention_heads=2,
                encoder_ffn_dim=32,
                decoder_ffn_dim=32,
                vocab_size=50,
                max_position_embeddings=32,
            )
        ).eval()
        with torch.no_grad(), ap.capture(model) as cap:
            model(input_ids=torch.tensor([[0, 5, 6, 7, 8, 2]]), decoder_input_ids=torch.tensor([[2, 0, 9, 10, 11]]))
        record = cap.record
        record.tokens = [["<s>", "Ġthe", "Ġblack", "Ġcat", ".", "</s>"]]
        record.decoder_tokens = [["</s>", "<s>", "Ġle", "Ġchat", "Ġnoir"]]
        return record

    return _cached("bart", build)
