"""A generated (or given) sequence seen as one teacher-forced problem.

Every target step ``t`` is the model's output at one decoder position given the source and the
target prefix. One teacher-forced forward gives every step's logits; attribution methods replicate
the inputs once per step along the batch so that one backward (or one batched forward) gives every
step at once. The word embeddings are swapped in through forward hooks on the model's own embedding
modules (what Captum's layer methods do), so the model runs its own code after them: embedding
scales, positions and masks are exactly those of ``model(input_ids=...)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from ..errors import InputError
from ..saliency.methods import reduce_embedding

ENCODER_DECODER, DECODER_ONLY = "encoder-decoder", "decoder-only"


def logits_at(logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """``[N, L, V]`` logits -> ``[N, V]``: row ``i`` read at ``positions[i]``."""
    index = positions.to(logits.device).long().view(-1, 1, 1).expand(-1, 1, logits.shape[-1])
    out: torch.Tensor = logits.gather(1, index).squeeze(1)
    return out


class EmbeddingSwap(torch.nn.Module):
    """The word embedding of one side as a module: ``forward(ids) -> embedding(ids)``.

    Layer methods (Captum's LayerIntegratedGradients) hook this module, so a shared embedding
    (BART, T5, GPT-2's one table) still has one layer per side.
    """

    def __init__(self, embedding: torch.nn.Module) -> None:
        super().__init__()
        self.embedding = embedding

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.embedding(ids)
        return out


class TeacherForced:
    """One source and one target sequence of a transformers generation model.

    Other models (plain PyTorch seq2seq) subclass it and override :meth:`_embedding_modules` (the
    word-embedding module of each side) and :meth:`_call` (the teacher-forced logits ``[n, L, V]``).

    Args:
        model: an encoder-decoder (``model.get_encoder()``) or decoder-only model.
        source_ids: ``[1, S]`` source (or prompt) ids.
        sequence: the decoder's whole sequence, ``[1, L]``: an encoder-decoder's decoder start token
            followed by the target; a decoder-only model's prompt followed by the target.
        kind: ``"encoder-decoder"`` or ``"decoder-only"`` (default: from ``model.config``).

    Attributes:
        targets: ``[T]`` the ids each step produced; ``positions``: ``[T]`` the decoder position
        whose logits predict step ``t``; ``prefix_ids``: the decoder inputs that are not source.
    """

    def __init__(self, model: Any, source_ids: torch.Tensor, sequence: torch.Tensor, kind: str | None = None) -> None:
        self.model = model
        if kind is None:
            encoder_decoder = getattr(getattr(model, "config", None), "is_encoder_decoder", False)
            kind = ENCODER_DECODER if encoder_decoder else DECODER_ONLY
        self.kind = kind
        self.source_ids = source_ids
        if sequence.dim() != 2 or sequence.shape[0] != 1:
            raise InputError(f"one sequence at a time: expected [1, L] ids, got {tuple(sequence.shape)}")
        s = source_ids.shape[1]
        if self.kind == ENCODER_DECODER:
            if sequence.shape[1] < 2:
                raise InputError("the target is empty: nothing to attribute")
            self.decoder_inputs = sequence[:, :-1]
            self.targets = sequence[0, 1:]
            self.positions = torch.arange(self.targets.shape[0])
            self.prefix_ids = self.decoder_inputs
        else:
            if not torch.equal(sequence[:, :s], source_ids) or sequence.shape[1] <= s:
                raise InputError("a decoder-only sequence must start with the prompt and add at least one token")
            self.decoder_inputs = sequence[:, :-1]
            self.targets = sequence[0, s:]
            self.positions = torch.arange(self.targets.shape[0]) + s - 1
            self.prefix_ids = sequence[:, s:-1]
        self.sequence = sequence
        self.device = next(model.parameters()).device
        self._src_module, self._tgt_module = self._embedding_modules()
        self.source_layer = EmbeddingSwap(self._src_module) if self._src_module is not None else None
        self.target_layer = EmbeddingSwap(self._tgt_module)
        self._swap: tuple[torch.Tensor, torch.Tensor] | None = None
        self._calls = 0
        self._source_done = False

    @property
    def n_steps(self) -> int:
        return int(self.targets.shape[0])

    # ----- the model's embedding modules ------------------------------------------------------------
    def _embedding_modules(self) -> tuple[torch.nn.Module | None, torch.nn.Module]:
        """The word-embedding module of the source side (``None``: the source is not token ids) and of the decoder."""
        if self.kind == ENCODER_DECODER:
            return self.model.get_encoder().get_input_embeddings(), self.model.get_decoder().get_input_embeddings()
        table = self.model.get_input_embeddings()
        return table, table

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The word embeddings ``([1, S, d], [1, P, d])`` of the source and the target prefix."""
        if self.source_layer is None:
            raise InputError("this problem's source is not token ids: override embeddings()")
        with torch.no_grad():
            return (
                self.source_layer(self.source_ids.to(self.device)).detach(),
                self.target_layer(self.prefix_ids.to(self.device)).detach(),
            )

    # ----- how source attributions become one score per source position (overridden for features) -----
    def source_labels(self) -> list[str]:
        """One label per source position (token ids as text; a tokenizer's tokens replace them)."""
        return [str(int(i)) for i in self.source_ids[0]]

    def pool(self, attr: tuple[torch.Tensor, ...], reduce: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(source [n, S], prefix [n, P])`` from Captum's attributions of the inputs (float64)."""
        return reduce_embedding(attr[0], reduce).double(), reduce_embedding(attr[1], reduce).double()

    def ablation_masks(self, inputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Captum feature masks: one feature per source token, then one per prefix token."""
        src, prefix = inputs
        n, s, d = src.shape
        p = prefix.shape[1]
        return (
            torch.arange(s, device=src.device).view(1, s, 1).expand(n, s, d),
            (torch.arange(p, device=src.device) + s).view(1, p, 1).expand(n, p, prefix.shape[2]),
        )

    def ablation_values(self, attr: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """One value per feature of :meth:`ablation_masks` (every element of a feature holds it)."""
        return attr[0][..., 0].double(), attr[1][..., 0].double()

    @contextlib.contextmanager
    def swapping(self) -> Iterator[TeacherForced]:
        """While inside, :meth:`forward` may hand its embeddings to the model (hooks removed on exit).

        With one embedding module for both sides, its first call in a forward is the source's. The
        decoder's calls get the whole prefix, or one column per call for a step-by-step decoder (an RNN
        that embeds one token ``[n]`` at a time).
        """

        def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
            if self._swap is None:
                return output
            src, tgt = self._swap
            if self.kind == DECODER_ONLY:
                return torch.cat([src, tgt], dim=1).to(output.dtype)
            shared = self._src_module is self._tgt_module
            if (shared and not self._source_done) or (not shared and module is self._src_module):
                self._source_done = True
                return src.to(output.dtype)
            step = self._calls
            self._calls += 1
            return (tgt[:, step] if output.dim() == 2 else tgt).to(output.dtype)

        modules = [self._tgt_module] if self._src_module is None else [self._src_module]
        handles = [m.register_forward_hook(hook) for m in modules]
        if self._src_module is not None and self._tgt_module is not self._src_module:
            handles.append(self._tgt_module.register_forward_hook(hook))
        try:
            yield self
        finally:
            for h in handles:
                h.remove()
            self._swap = None

    def _call(self, n: int) -> torch.Tensor:
        src = self.source_ids.to(self.device).expand(n, -1)
        dec = self.decoder_inputs.to(self.device).expand(n, -1)
        mask = torch.ones_like(src)
        if self.kind == ENCODER_DECODER:
            out = self.model(input_ids=src, attention_mask=mask, decoder_input_ids=dec, use_cache=False)
        else:
            out = self.model(input_ids=dec, attention_mask=torch.ones_like(dec), use_cache=False)
        logits: torch.Tensor = out.logits
        return logits

    def forward(self, src_embeds: torch.Tensor, prefix_embeds: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``[N, V]`` logits: row ``i`` is the model's output at ``positions[i]`` given row ``i``'s
        source and prefix embeddings (call inside :meth:`swapping`)."""
        self._swap, self._calls, self._source_done = (src_embeds, prefix_embeds), 0, False
        try:
            logits = self._call(src_embeds.shape[0])
        finally:
            self._swap = None
        return logits_at(logits, positions)

    def ids_forward(self, src_ids: torch.Tensor, prefix_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` from ids, through :attr:`source_layer`/:attr:`target_layer` (for layer methods)."""
        if self.source_layer is None:
            raise InputError("layer methods need a token-id source; this source is not token ids")
        return self.forward(self.source_layer(src_ids), self.target_layer(prefix_ids), positions)

    def logits(self) -> torch.Tensor:
        """``[T, V]``: every step's logits from one teacher-forced forward."""
        with torch.no_grad():
            return logits_at(self._call(1).expand(self.n_steps, -1, -1), self.positions)

    def plain_forward(self) -> torch.Tensor:
        """The teacher-forced forward with the model's own inputs (what a capture records)."""
        with torch.no_grad():
            return self._call(1)
