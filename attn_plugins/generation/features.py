"""Sources that are not token ids: a speech model's input features (Whisper: mel frames) and a
captioning model's pixels (VisionEncoderDecoder: an image).

The source side has no embedding to swap: the features themselves are the input Captum attributes
to (``input_features`` / ``pixel_values`` passed straight to the model), and the attribution is
summed into one score per encoder position, the columns of the cross-attention: per frame window
(Whisper's convolutions turn each ``window`` input frames into one encoder position; the window is the
product of their strides) or per image patch (a ViT's ``patch_size`` squares; the encoder's extra
leading positions, e.g. [CLS], have no pixels of their own and score 0 in gradient and occlusion rows).
The decoder side is the ordinary teacher-forced prefix.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError
from .teacher import ENCODER_DECODER, TeacherForced

AUDIO, IMAGE = "audio", "image"


def is_feature_source(model: Any, source: Any) -> bool:
    """Whether ``source`` is a float tensor for a model whose main input is features or pixels."""
    return (
        isinstance(source, torch.Tensor)
        and source.is_floating_point()
        and getattr(model, "main_input_name", "input_ids") in ("input_features", "pixel_values")
    )


class FeatureTeacher(TeacherForced):
    """A teacher-forced problem whose source is ``input_features`` ``[1, C, F]`` or ``pixel_values``
    ``[1, 3, H, W]``.

    Args:
        model: a ``WhisperForConditionalGeneration``-like (``main_input_name == "input_features"``) or a
            ``VisionEncoderDecoderModel``-like (``"pixel_values"``) encoder-decoder.
        features: the source, one example (a leading batch axis of 1 is added when missing).
        sequence: the decoder's whole sequence ``[1, L]`` (decoder start token first).

    Attributes:
        source_ids: ``[1, S]`` the encoder positions ``0..S-1`` (there are no token ids).
        window: input frames per encoder position (audio) or patch side in pixels (image).
        extra: encoder positions before the first frame window / patch (ViT's [CLS]).
    """

    def __init__(self, model: Any, features: torch.Tensor, sequence: torch.Tensor) -> None:
        self.input_name = getattr(model, "main_input_name", "")
        self.modality = AUDIO if self.input_name == "input_features" else IMAGE
        want = 3 if self.modality == AUDIO else 4
        if features.dim() == want - 1:
            features = features[None]
        if features.dim() != want or features.shape[0] != 1:
            raise InputError(
                f"{self.input_name} of one example: expected {want} dimensions with batch 1, got "
                f"{tuple(features.shape)}"
            )
        device = next(model.parameters()).device
        dtype = next(model.parameters()).dtype
        self.features = features.to(device=device, dtype=dtype)
        self.window, self.grid = self._layout(model)
        with torch.no_grad():
            positions = int(model.get_encoder()(self.features).last_hidden_state.shape[1])
        self.extra = positions - self.n_windows
        if self.extra < 0:
            raise InputError(f"the encoder has {positions} positions for {self.n_windows} frame windows/patches")
        super().__init__(model, torch.arange(positions).view(1, -1), sequence, kind=ENCODER_DECODER)

    def _layout(self, model: Any) -> tuple[int, tuple[int, int]]:
        if self.modality == AUDIO:
            encoder = model.get_encoder()
            window = 1
            for conv in (getattr(encoder, "conv1", None), getattr(encoder, "conv2", None)):
                if conv is not None:
                    window *= int(conv.stride[0])
            frames = int(self.features.shape[-1])
            if frames % window:
                raise InputError(f"{frames} input frames do not split into windows of {window}")
            return window, (1, frames // window)
        patch = getattr(getattr(model.config, "encoder", None), "patch_size", None)
        if isinstance(patch, (tuple, list)):
            if patch[0] != patch[1]:
                raise InputError(f"square patches only, got patch_size {patch}")
            patch = patch[0]
        if not isinstance(patch, int):
            raise InputError("the encoder config names no patch_size: cannot map pixels to patches")
        h, w = int(self.features.shape[-2]), int(self.features.shape[-1])
        if h % patch or w % patch:
            raise InputError(f"a {h}x{w} image does not split into {patch}x{patch} patches")
        return patch, (h // patch, w // patch)

    @property
    def n_windows(self) -> int:
        return self.grid[0] * self.grid[1]

    def _embedding_modules(self) -> tuple[torch.nn.Module | None, torch.nn.Module]:
        return None, self.model.get_decoder().get_input_embeddings()

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features [1, ...], decoder prefix embeddings [1, P, d])``."""
        with torch.no_grad():
            return self.features.detach(), self.target_layer(self.prefix_ids.to(self.device)).detach()

    def _call(self, n: int) -> torch.Tensor:
        src = self._swap[0] if self._swap is not None else self.features.expand(n, *self.features.shape[1:])
        dec = self.decoder_inputs.to(self.device).expand(n, -1)
        logits: torch.Tensor = self.model(**{self.input_name: src}, decoder_input_ids=dec, use_cache=False).logits
        return logits

    def source_labels(self) -> list[str]:
        lead = ["<cls>"] + [f"<enc{i}>" for i in range(1, self.extra)] if self.extra else []
        if self.modality == AUDIO:
            return lead + [f"frames {i * self.window}-{(i + 1) * self.window - 1}" for i in range(self.n_windows)]
        return lead + [f"patch {r},{c}" for r in range(self.grid[0]) for c in range(self.grid[1])]

    def source_special(self) -> list[bool]:
        """The leading encoder positions without pixels/frames of their own."""
        return [True] * self.extra + [False] * self.n_windows

    def _windows(self, per_input: torch.Tensor) -> torch.Tensor:
        """``[n, C, F]`` / ``[n, 3, H, W]`` -> ``[n, S]``: summed over channels and each window/patch."""
        n, p = per_input.shape[0], self.window
        summed = per_input.sum(dim=1)
        if self.modality == AUDIO:
            pooled = summed.reshape(n, self.grid[1], p).sum(dim=-1)
        else:
            pooled = summed.reshape(n, self.grid[0], p, self.grid[1], p).sum(dim=(2, 4)).reshape(n, -1)
        lead = torch.zeros(n, self.extra, dtype=pooled.dtype, device=pooled.device)
        return torch.cat([lead, pooled], dim=1)

    def pool(self, attr: tuple[torch.Tensor, ...], reduce: str) -> tuple[torch.Tensor, torch.Tensor]:
        if reduce != "sum":
            raise InputError(
                f"audio and image sources are summed per frame window / patch; reduce={reduce!r} "
                "applies to token embeddings only"
            )
        return self._windows(attr[0]).double(), attr[1].sum(dim=-1).double()

    def group_index(self) -> torch.Tensor:
        """The window/patch index of every element of one example's features (``[C, F]`` / ``[3, H, W]``)."""
        shape = self.features.shape[1:]
        device = self.features.device
        if self.modality == AUDIO:
            return (torch.arange(shape[-1], device=device) // self.window).view(1, -1).expand(*shape)
        rows = torch.arange(shape[-2], device=device) // self.window
        cols = torch.arange(shape[-1], device=device) // self.window
        return (rows.view(-1, 1) * self.grid[1] + cols.view(1, -1)).view(1, *shape[1:]).expand(*shape)

    def ablation_masks(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One feature per frame window / patch, then one per prefix token."""
        src, prefix = inputs
        n, p = src.shape[0], prefix.shape[1]
        return (
            self.group_index().unsqueeze(0).expand(n, *src.shape[1:]),
            (torch.arange(p, device=prefix.device) + self.n_windows).view(1, p, 1).expand(n, p, prefix.shape[2]),
        )

    def ablation_values(self, attr: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        first = attr[0][:, 0]
        n = first.shape[0]
        if self.modality == AUDIO:
            values = first[:, :: self.window]
        else:
            values = first[:, :: self.window, :: self.window].reshape(n, -1)
        lead = torch.zeros(n, self.extra, dtype=values.dtype, device=values.device)
        return torch.cat([lead, values], dim=1).double(), attr[1][..., 0].double()
