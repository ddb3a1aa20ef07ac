"""Transformers models inside other models (a torch classifier over BERT, an AllenNLP embedder).

The plain-PyTorch and AllenNLP adapters hand such submodels to the Hugging Face adapter, one
instance per submodel, with target names that carry the outer path.
"""

from __future__ import annotations

from .base import Session, Target
from .hf_kernel import is_hf_model
from .huggingface import HuggingFaceAdapter


def hf_roots(model, skip=lambda path, module: False) -> list[tuple[str, object]]:
    """The outermost transformers models inside ``model`` (not ``model`` itself), with their paths."""
    roots: list[tuple[str, object]] = []

    def visit(module, path: str) -> None:
        for name, child in module.named_children():
            child_path = f"{path}.{name}" if path else name
            if skip(child_path, child):
                continue
            if is_hf_model(child):
                roots.append((child_path, child))
            else:
                visit(child, child_path)

    visit(model, "")
    return roots


class NestedHuggingFace:
    """HF adapters for the transformers models inside another model; target names carry the outer path."""

    def __init__(self, session: Session, roots: list[tuple[str, object]]) -> None:
        self.adapters: list[tuple[HuggingFaceAdapter, object]] = []
        self.targets: list[Target] = []
        for path, hf_model in roots:
            sub = HuggingFaceAdapter(session)
            found = sub.find(hf_model)
            for target in found:
                target.name = f"{path}.{target.name}" if target.name else path
            if found:
                self.adapters.append((sub, hf_model))
                self.targets.extend(found)

    def attach(self) -> None:
        for sub, hf_model in self.adapters:
            sub.attach(hf_model)

    def detach(self) -> list[Exception]:
        errors = []
        for sub, _ in self.adapters:
            try:
                sub.detach()
            except Exception as exc:  # noqa: BLE001 - detach the rest
                errors.append(exc)
        return errors
