"""Diagnostics: the questions users ask when attention looks wrong.

:func:`diagnose` checks every head of a record (or tensor) and returns a :class:`Findings` list;
each :class:`Finding` names the layer and head, what is wrong and why (the number behind it):

* ``nan`` / ``inf``: the head's weights on real rows hold NaN or infinite values;
* ``unnormalized``: real rows do not sum to 1 (logits or masked scores passed for probabilities?);
* ``padding``: weight leaks onto padded keys (a mask that was not applied);
* ``uniform``: the head spreads its attention evenly over every key it can reach
  (mean entropy / log(n) at or above ``uniform_threshold``; typical of an untrained head);
* ``collapsed``: every query puts nearly all its attention on one and the same key (mean weight on
  the most-attended key at or above ``collapse_threshold``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .blocks import ANY, views
from .tokens import readable_token

PROBLEMS = ("nan", "inf", "unnormalized", "padding", "uniform", "collapsed")


@dataclass
class Finding:
    """One problem of one head."""

    layer: str  # the layer's label, e.g. "L3" or "decoder cross L1"
    head: int
    problem: str  # one of PROBLEMS
    value: float  # the number the verdict rests on
    reason: str  # a sentence saying why
    index: int | None = None  # the layer's index in its stack and kind
    stack: str | None = None
    kind: str = "self"

    def __str__(self) -> str:
        where = f"{self.layer} head {self.head}" if self.layer else f"head {self.head}"
        return f"{where}: {self.problem} - {self.reason}"


class Findings(list[Finding]):
    """A list of :class:`Finding` that prints one line each (or says that all is well)."""

    def of(self, problem: str) -> Findings:
        return Findings(f for f in self if f.problem == problem)

    def heads(self, problem: str | None = None) -> list[tuple[str, int]]:
        return [(f.layer, f.head) for f in self if problem is None or f.problem == problem]

    def __str__(self) -> str:
        if not self:
            return "no attention problems found"
        counts: dict[str, int] = {}
        for f in self:
            counts[f.problem] = counts.get(f.problem, 0) + 1
        head = ", ".join(f"{n} {p}" for p, n in counts.items())
        return f"{len(self)} finding(s) ({head}):\n" + "\n".join("  " + str(f) for f in self)

    def _repr_pretty_(self, printer: Any, cycle: Any) -> None:  # IPython
        printer.text(str(self))


def _token(view: Any, col: int, item: int) -> str:
    if view.key_tokens and item < len(view.key_tokens) and col < len(view.key_tokens[item]):
        return f" {readable_token(view.key_tokens[item][col])!r}"
    return ""


def diagnose(
    attn: Any,
    *,
    uniform_threshold: float = 0.98,
    collapse_threshold: float = 0.9,
    leak_threshold: float = 1e-3,
    sum_tolerance: float = 1e-3,
    item: int | None = None,
    attention_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
    layers: Any = None,
    stack: Any = ANY,
    kind: str | None = None,
    checks: Any = PROBLEMS,
) -> Findings:
    """Check every head; see the module docstring for the problems. ``kind=None`` checks self- and
    cross-attention layers of a record; a plain tensor is treated as self-attention."""
    unknown = set(checks) - set(PROBLEMS)
    if unknown:
        raise ValueError(f"unknown checks {sorted(unknown)}; available: {', '.join(PROBLEMS)}")
    vs, _ = views(
        attn,
        attention_mask=attention_mask,
        query_mask=query_mask,
        layers=layers,
        stack=stack,
        kind=kind if not _is_plain(attn) else (kind or "self"),
        item=item,
    )
    out = Findings()
    for v in vs:
        out.extend(_check_view(v, uniform_threshold, collapse_threshold, leak_threshold, sum_tolerance, checks))
    return out


def _is_plain(attn: Any) -> bool:
    from ..record import AttentionRecord

    return not isinstance(attn, AttentionRecord)


def _check_view(
    v: Any, uniform_threshold: Any, collapse_threshold: Any, leak_threshold: Any, sum_tolerance: Any, checks: Any
) -> list[Finding]:
    w = v.weights  # [b, h, q, k]
    b, h, q, k = w.shape
    rows = v.query_mask  # [b, q]
    real_rows = rows.sum().item()
    found: list[Finding] = []

    def add(hi: int, problem: str, value: float, reason: str) -> None:
        found.append(
            Finding(
                layer=v.label,
                head=v.heads[hi],
                problem=problem,
                value=float(value),
                reason=reason,
                index=v.index,
                stack=v.stack,
                kind=v.kind,
            )
        )

    if real_rows == 0:
        return found
    rows_h = rows[:, None, :, None].expand(b, h, q, k)
    nan = (torch.isnan(w) & rows_h).sum(dim=(0, 2, 3))
    inf = (torch.isinf(w) & rows_h).sum(dim=(0, 2, 3))
    bad = nan + inf
    total = int(real_rows) * k
    for hi in range(h):
        if "nan" in checks and nan[hi] > 0:
            add(
                hi,
                "nan",
                nan[hi].item(),
                f"{int(nan[hi])} of {total} weights on real rows are NaN "
                "(a fully masked row, an overflow in half precision, or NaN inputs)",
            )
        if "inf" in checks and inf[hi] > 0:
            add(hi, "inf", inf[hi].item(), f"{int(inf[hi])} of {total} weights on real rows are infinite")

    clean = torch.nan_to_num(w, nan=0.0, posinf=0.0, neginf=0.0)
    rowsum = clean.sum(dim=-1)  # [b, h, q]
    if "unnormalized" in checks:
        dev = torch.where(rows[:, None, :], (rowsum - 1).abs(), torch.zeros((), dtype=w.dtype)).amax(dim=(0, 2))
        for hi in range(h):
            if bad[hi] == 0 and dev[hi] > sum_tolerance:
                add(
                    hi,
                    "unnormalized",
                    dev[hi].item(),
                    f"rows sum to 1 +/- {dev[hi].item():.3g} instead of 1 "
                    "(were scores or logits passed instead of softmax probabilities?)",
                )

    pad = ~v.key_mask  # [b, k]
    if "padding" in checks and pad.any():
        leak = torch.where(pad[:, None, None, :], clean, torch.zeros((), dtype=w.dtype)).sum(dim=-1)  # [b, h, q]
        leak = torch.where(rows[:, None, :], leak, torch.zeros((), dtype=w.dtype))
        worst = leak.amax(dim=(0, 2))
        mean = leak.sum(dim=(0, 2)) / rows.sum()
        for hi in range(h):
            if worst[hi] > leak_threshold:
                add(
                    hi,
                    "padding",
                    worst[hi].item(),
                    f"up to {worst[hi].item():.1%} (mean {mean[hi].item():.1%}) of a "
                    f"real token's attention goes to padding (threshold {leak_threshold:g}): the attention mask "
                    "was not applied",
                )

    support = v.support()  # [b, q, k]
    n = support.sum(dim=-1)  # [b, q]
    wide = rows & (n >= 2)
    if wide.sum() == 0:
        return found
    if "uniform" in checks:
        p = torch.where(support[:, None], clean, torch.zeros((), dtype=w.dtype))
        safe = torch.where(p > 0, p, torch.ones((), dtype=w.dtype))
        ent = -(torch.where(p > 0, p * torch.log(safe), torch.zeros((), dtype=w.dtype))).sum(dim=-1)
        norm = ent / torch.log(n.clamp(min=2).to(w.dtype))[:, None, :]
        wide_h = wide[:, None, :].expand(b, h, q)
        score = torch.where(wide_h, norm, torch.zeros((), dtype=w.dtype)).sum(dim=(0, 2)) / wide.sum()
        avg_n = n[wide].to(torch.float64).mean().item()
        for hi in range(h):
            if bad[hi] == 0 and score[hi] >= uniform_threshold:
                add(
                    hi,
                    "uniform",
                    score[hi].item(),
                    f"near-uniform: entropy is {score[hi].item():.1%} of the "
                    f"uniform maximum (threshold {uniform_threshold:.0%}), spreading evenly over ~{avg_n:.1f} keys; "
                    "the head carries little information (untrained, or an attention mask that hides everything?)",
                )
    if "collapsed" in checks:
        masked = torch.where(support[:, None], clean, torch.zeros((), dtype=w.dtype))  # [b, h, q, k]
        wide_h = wide[:, None, :, None]
        column = torch.where(wide_h, masked, torch.zeros((), dtype=w.dtype)).sum(dim=2)  # [b, h, k]
        target = column.argmax(dim=-1)  # [b, h]: the key the head attends to most, per item
        on_target = masked.gather(-1, target[:, :, None, None].expand(b, h, q, 1))[..., 0]  # [b, h, q]
        share = torch.where(wide[:, None, :], on_target, torch.zeros((), dtype=w.dtype)).sum(dim=(0, 2)) / wide.sum()
        for hi in range(h):
            if bad[hi] == 0 and share[hi] >= collapse_threshold:
                item0 = int(wide.any(dim=1).nonzero()[0, 0])
                col = int(target[item0, hi])
                add(
                    hi,
                    "collapsed",
                    share[hi].item(),
                    f"collapsed onto one token: queries put on average "
                    f"{share[hi].item():.1%} of their attention on a single key (key {col}{_token(v, col, item0)} "
                    f"in item {item0}; threshold {collapse_threshold:.0%}); a 'no-op' head, or a broken mask",
                )
    return found


__all__ = ["Finding", "Findings", "PROBLEMS", "diagnose"]
