"""Shared checks for the core tests."""

import torch


def hooks_left(model) -> list[str]:
    """Names of modules that still carry a forward hook or pre-hook."""
    return [
        name or "<root>"
        for name, m in model.named_modules()
        if m._forward_hooks or m._forward_pre_hooks or m._forward_hooks_with_kwargs or m._forward_pre_hooks_with_kwargs
    ]


def attn_impls(model) -> list:
    seen = []
    for m in model.modules():
        c = getattr(m, "config", None)
        if c is not None and hasattr(c, "_attn_implementation_internal"):
            seen.append((id(c), c._attn_implementation_internal))
    return sorted(set(seen))


def max_diff(reference, captured, query_rows=None) -> float:
    """Largest absolute difference over layers; ``query_rows`` [b, q] bool limits the rows compared."""
    assert len(reference) == len(captured), (len(reference), len(captured))
    worst = 0.0
    for ref, got in zip(reference, captured, strict=True):
        assert ref.shape == got.shape, (ref.shape, got.shape)
        diff = (ref.float() - got.float()).abs()
        if query_rows is not None:
            diff = diff * query_rows[:, None, :, None]
        worst = max(worst, diff.max().item())
    return worst


def first_tensor(output):
    if isinstance(output, torch.Tensor):
        return output
    for value in output.values() if hasattr(output, "values") else output:
        if isinstance(value, torch.Tensor):
            return value
    raise AssertionError("no tensor in output")
