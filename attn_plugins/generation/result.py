"""SequenceAttribution: the one result type of generation attribution, and its file format.

Saved like an :class:`~attn_plugins.record.AttentionRecord`: one safetensors file, the matrices as
tensors and everything else as JSON in the header's metadata (no pickle; loading executes no code).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import RecordFormatError

if TYPE_CHECKING:
    from ..saliency.result import TokenSaliency

META_KEY = "attn_plugins.sequence_attribution"
FORMAT_VERSION = 1


@dataclass
class SequenceAttribution:
    """Per method, which source tokens and which earlier target tokens each generated token rests on.

    ``source[m]`` is ``[T, S]`` (target step x source token) and ``prefix[m]`` ``[T, P]`` (target step
    x decoder input that is not source: an encoder-decoder's start token and earlier target tokens,
    a decoder-only model's earlier generated tokens), in the method's own sign and scale.
    ``step_scores`` holds ``[T]`` arrays: ``probability`` of the produced token, ``entropy`` of the
    step's distribution (nats) and, when an alternative was given, ``contrast`` (probability of the
    produced token minus that of the alternative).
    """

    source_tokens: list[str]
    target_tokens: list[str]
    prefix_tokens: list[str]
    source: dict[str, np.ndarray]
    prefix: dict[str, np.ndarray]
    step_scores: dict[str, np.ndarray] = field(default_factory=dict)
    target_ids: list[int] = field(default_factory=list)
    model_class: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t, s, p = len(self.target_tokens), len(self.source_tokens), len(self.prefix_tokens)
        self.source = {k: np.asarray(v, dtype=np.float64) for k, v in self.source.items()}
        self.prefix = {k: np.asarray(v, dtype=np.float64) for k, v in self.prefix.items()}
        self.step_scores = {k: np.asarray(v, dtype=np.float64) for k, v in self.step_scores.items()}
        for name, matrix in self.source.items():
            if matrix.shape != (t, s):
                raise ValueError(f"source[{name!r}] is {matrix.shape}, expected {(t, s)}")
        for name, matrix in self.prefix.items():
            if matrix.shape != (t, p):
                raise ValueError(f"prefix[{name!r}] is {matrix.shape}, expected {(t, p)}")
        for name, values in self.step_scores.items():
            if values.shape != (t,):
                raise ValueError(f"step score {name!r} has shape {values.shape}, expected {(t,)}")

    @property
    def methods(self) -> list[str]:
        return list(self.source)

    def __len__(self) -> int:
        return len(self.target_tokens)

    def normalized(self, method: str, *, include_prefix: bool = False) -> np.ndarray:
        """Absolute values, each row scaled to sum 1 (over source, or source and prefix); zero rows stay zero."""
        values = np.abs(self.source[method])
        if include_prefix:
            values = np.concatenate([values, np.abs(self.prefix[method])], axis=1)
        sums = values.sum(axis=1, keepdims=True)
        out: np.ndarray = np.divide(values, sums, out=np.zeros_like(values), where=sums > 0)
        return out

    def families(self) -> dict[str, str]:
        """``{method label: "attention" | "gradient" | "perturbation"}`` (from the registry; ``"gradient"``
        for a label the registry does not know, as in the saliency agreement)."""
        from .methods import family_of

        recorded = self.info.get("methods", {})
        out = {}
        for label in self.methods:
            name = recorded[label][0] if label in recorded else label
            try:
                out[label] = family_of(name)
            except KeyError:
                out[label] = "gradient"
        return out

    def method_table(self) -> dict[str, list[list[TokenSaliency]]]:
        """``{method: [[TokenSaliency]]}`` with one instance per target step (its source row), the input
        of the comparison page and of :func:`~attn_plugins.saliency.agreement.agreement`: agreement per
        step, averaged over the steps. Special source tokens (when the tokenizer named them) are marked."""
        from ..saliency.result import TokenSaliency

        special = self.info.get("source_special")
        text = " ".join(self.source_tokens)
        return {
            m: [
                [
                    TokenSaliency(
                        tokens=list(self.source_tokens),
                        scores=self.source[m][t],
                        method=m,
                        target=self.target_ids[t] if t < len(self.target_ids) else None,
                        target_label=self.target_tokens[t],
                        position=t,
                        text=text,
                        special=list(special) if special is not None else None,
                    )
                ]
                for t in range(len(self))
            ]
            for m in self.methods
        }

    def __repr__(self) -> str:
        return (
            f"SequenceAttribution({len(self.target_tokens)} target x {len(self.source_tokens)} source tokens, "
            f"methods {self.methods})"
        )

    # ----- files -------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> str:
        """Write one safetensors file (atomically) with the JSON metadata in its header; returns the path."""
        from ..record.shards import save_tensors

        path = os.fspath(path)
        names = self.methods
        tensors = {}
        for i, name in enumerate(names):
            tensors[f"source.{i}"] = torch.from_numpy(np.ascontiguousarray(self.source[name]))
            tensors[f"prefix.{i}"] = torch.from_numpy(np.ascontiguousarray(self.prefix[name]))
        scores = list(self.step_scores)
        for i, name in enumerate(scores):
            tensors[f"step.{i}"] = torch.from_numpy(np.ascontiguousarray(self.step_scores[name]))
        meta = {
            "format": FORMAT_VERSION,
            "methods": names,
            "step_scores": scores,
            "source_tokens": self.source_tokens,
            "target_tokens": self.target_tokens,
            "prefix_tokens": self.prefix_tokens,
            "target_ids": [int(i) for i in self.target_ids],
            "model_class": self.model_class,
            "info": _jsonable(self.info),
        }
        return save_tensors(path, tensors, metadata={META_KEY: json.dumps(meta)})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SequenceAttribution:
        """Read a file written by :meth:`save`; damaged or foreign files raise
        :class:`~attn_plugins.errors.RecordFormatError`."""
        from safetensors import SafetensorError, safe_open

        path = os.fspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"no sequence attribution file at {path!r}")
        try:
            with safe_open(path, framework="pt") as handle:
                raw = (handle.metadata() or {}).get(META_KEY)
                if raw is None:
                    raise RecordFormatError(f"{path!r} is a safetensors file but not a sequence attribution")
                meta = json.loads(raw)
                if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
                    raise RecordFormatError(f"{path!r}: unknown sequence attribution format {meta.get('format')!r}")
                names, scores = list(meta["methods"]), list(meta["step_scores"])
                source = {n: handle.get_tensor(f"source.{i}").numpy() for i, n in enumerate(names)}
                prefix = {n: handle.get_tensor(f"prefix.{i}").numpy() for i, n in enumerate(names)}
                steps = {n: handle.get_tensor(f"step.{i}").numpy() for i, n in enumerate(scores)}
            return cls(
                source_tokens=meta["source_tokens"],
                target_tokens=meta["target_tokens"],
                prefix_tokens=meta["prefix_tokens"],
                source=source,
                prefix=prefix,
                step_scores=steps,
                target_ids=meta.get("target_ids", []),
                model_class=meta.get("model_class", ""),
                info=meta.get("info", {}),
            )
        except RecordFormatError:
            raise
        except (SafetensorError, OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise RecordFormatError(f"{path!r} is not a readable sequence attribution: {exc}") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic, torch.Tensor)) or hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)
