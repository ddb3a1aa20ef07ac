"""The sweep's summary: ``PASS k / testable n``, the table by family and the failures by cause."""

from __future__ import annotations

from collections import Counter, defaultdict

from .compare import cause_class
from .families import FAMILIES

STATUSES = ("PASS", "FAIL-ours", "FAIL-eager", "SKIP")


def headline(results: list[dict]) -> str:
    passed = sum(r["status"] == "PASS" for r in results)
    testable = sum(r["status"] in ("PASS", "FAIL-ours") for r in results)
    sdpa = [r for r in results if r.get("default_impl") == "sdpa" and r["status"] in ("PASS", "FAIL-ours")]
    sdpa_pass = sum(r["status"] == "PASS" for r in sdpa)
    return f"PASS {passed} / testable {testable} ({len(results)} types; default sdpa: {sdpa_pass} / {len(sdpa)})"


def table(results: list[dict]) -> str:
    counts: dict[str, Counter] = defaultdict(Counter)
    for r in results:
        counts[r.get("family", "other")][r["status"]] += 1
    lines = ["| family | PASS | FAIL-ours | FAIL-eager | SKIP | PASS / testable |", "|---|---|---|---|---|---|"]
    total = Counter()
    for fam in FAMILIES:
        c = counts.get(fam)
        if not c:
            continue
        total.update(c)
        lines.append(
            f"| {fam} | " + " | ".join(str(c[s]) for s in STATUSES) + f" | {c['PASS']} / {c['PASS'] + c['FAIL-ours']} |"
        )
    lines.append(
        "| **all** | "
        + " | ".join(str(total[s]) for s in STATUSES)
        + f" | {total['PASS']} / {total['PASS'] + total['FAIL-ours']} |"
    )
    return "\n".join(lines)


def failures(results: list[dict], status: str) -> str:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        if r["status"] == status:
            groups[cause_class(r)].append(r)
    lines = []
    for cause, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"- **{cause}** ({len(items)}): " + ", ".join(r["type"] for r in items))
        example = items[0]
        if example.get("detail"):
            lines.append(f"  - e.g. {example['type']}: {example['detail'][:240]}")
    return "\n".join(lines)


def markdown(results: list[dict]) -> str:
    parts = [f"**{headline(results)}**", "", table(results)]
    for status in ("FAIL-ours", "FAIL-eager", "SKIP"):
        parts += ["", f"### {status} by cause", "", failures(results, status) or "(none)"]
    return "\n".join(parts) + "\n"
