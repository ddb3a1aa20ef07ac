"""One model type through the sweep: capture under the default implementation against eager.

``check(model_type)`` returns a result dict with ``status`` one of:

- ``PASS``: every layer within ``TOL`` of eager's ``output_attentions`` (padding query rows
  excluded), the same output keys and nesting from ``rec.as_hf_outputs()``, and the model's own
  outputs bit-identical inside and outside the capture;
- ``FAIL-ours``: the capture raised, changed the outputs, or returned other keys, layers or weights
  (``cause`` names the class);
- ``FAIL-eager``: eager itself gives nothing to compare with (it fails to build or run with any
  input we can make, returns no attentions, returns only NaN weights, ...), or eager's weights differ
  from the default model's own ``output_attentions`` on the same weights and the default model does
  not return every field (eager is then no reference for the default model);

Where the default model returns its own ``output_attentions``, they differ from eager's and so do the
models' outputs (beyond ``OUTPUT_TOL``: Grounding DINO's Swin backbone runs sdpa and picks other
decoder queries), those are the reference (``result["reference"] == "default-own"``), and PASS still
means exact. Where only the weights differ (Falcon's sdpa path returns other weights when asked),
eager stays the reference.
- ``SKIP``: not constructible offline (a missing package, downloaded files, too large).
"""

from __future__ import annotations

import re
import time
import warnings

import torch

from .builder import SkipTypeError, build_pair
from .families import family
from .inputs import candidates, feature_count

TOL = 1e-5
OUTPUT_TOL = 1e-3  # eager's outputs further than this from the default model's: eager computes something else
_SKIP_MARKERS = (
    "pip install",
    "requires the",
    "is not installed",
    "not available",
    "No module named",
    "from_pretrained",
    "does not appear to have",
    "offline",
    "HF_HUB_OFFLINE",
    "Can't load",
    "requires `",
    "requires the following",
)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text[:limit]


def attention_paths(output, prefix: str = "") -> dict[str, list[torch.Tensor]]:
    """``{"attentions": [...], "text_model_output.attentions": [...]}``: every non-empty attention tuple."""
    found: dict[str, list[torch.Tensor]] = {}
    items = output.items() if hasattr(output, "items") else []
    for key, value in items:
        path = f"{prefix}{key}"
        if hasattr(value, "items"):
            found.update(attention_paths(value, path + "."))
        elif str(key).endswith("attentions") and isinstance(value, (tuple, list)):
            tensors = _flatten(value)
            if tensors:
                found[path] = tensors
    return found


def _flatten(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _flatten(v)]
    return []


def _tensors(output, prefix: str = "") -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    if isinstance(output, torch.Tensor):
        return {prefix or "output": output}
    if hasattr(output, "items"):
        for key, value in output.items():
            out.update(_tensors(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(output, (tuple, list)):
        for i, value in enumerate(output):
            out.update(_tensors(value, f"{prefix}[{i}]"))
    return out


def _changed(reference, inside) -> list[str]:
    ref, got = _tensors(reference), _tensors(inside)
    if list(ref) != list(got):
        return [f"keys {sorted(set(ref) ^ set(got))}"]
    return [
        k
        for k in ref
        if ref[k].shape != got[k].shape
        or not torch.equal(torch.nan_to_num(ref[k].float(), 1e30), torch.nan_to_num(got[k].float(), 1e30))
    ]


def _is_probability(tensor: torch.Tensor) -> bool:
    """Attention probabilities: at least 3-D, every value in [0, 1] (rows may sum to less: sinks, masks)."""
    if tensor.dim() < 3 or not tensor.is_floating_point():
        return False
    t = torch.nan_to_num(tensor.float(), 0.0)
    return bool(t.min() >= -1e-6 and t.max() <= 1 + 1e-6)


def _hooked(model) -> list[str]:
    return [
        f"{n}:{len(m._forward_hooks)}:{len(m._forward_pre_hooks)}"
        for n, m in model.named_modules()
        if m._forward_hooks or m._forward_pre_hooks
    ]


def _row_masks(inputs) -> dict[int, torch.Tensor]:
    masks = {}
    for key in ("decoder_attention_mask", "attention_mask"):
        mask = inputs.get(key)
        if isinstance(mask, torch.Tensor) and mask.dim() == 2:
            masks[mask.shape[1]] = mask.bool()
    return masks


def _diff(ref: torch.Tensor, got: torch.Tensor, masks) -> float:
    diff = (torch.nan_to_num(ref.float(), 0.0) - torch.nan_to_num(got.float(), 0.0)).abs()
    if diff.dim() == 4 and diff.shape[2] in masks and diff.shape[0] == masks[diff.shape[2]].shape[0]:
        diff = diff * masks[diff.shape[2]][:, None, :, None]
    return diff.max().item() if diff.numel() else 0.0


def _run(model, inputs, **kwargs):
    torch.manual_seed(0)
    with torch.no_grad():
        return model(**inputs, **kwargs)


def _eager_inputs(model, eager, special):
    """The first candidate input the eager model runs with, and its output (or the first error)."""
    first_error = None
    for label, inputs in candidates(model, special):
        try:
            return label, inputs, _run(eager, inputs, output_attentions=True), None
        except Exception as exc:  # noqa: BLE001 - try the next layout
            count = feature_count(exc)
            if count and label.startswith(("vlm", "audio-lm")):
                kind = "audio" if label == "audio-lm" else "image"
                width = getattr(model.config.get_text_config(), "hidden_size", 1) or 1
                for per_item in dict.fromkeys((count // 2, count // (2 * width))):
                    if per_item < 1:
                        continue
                    for label2, inputs2 in candidates(model, special, {kind: per_item}):
                        if label2 != label:
                            continue
                        try:
                            return label2, inputs2, _run(eager, inputs2, output_attentions=True), None
                        except Exception as exc2:  # noqa: BLE001
                            exc = exc2
            first_error = first_error or f"{label}: {_short(exc)}"
    return None, None, None, first_error or "no input layout for this forward signature"


def check(model_type: str, stage=lambda name: None) -> dict:
    """Run one model type through the sweep (see the module docstring); ``stage`` is told each step."""
    import attn_plugins as ap

    started = time.time()
    result = {"type": model_type, "family": family(model_type)}

    def done(status, cause=None, detail=None, **extra):
        result.update(status=status, cause=cause, detail=detail, seconds=round(time.time() - started, 2), **extra)
        return result

    stage("build")
    try:
        model, eager, info = build_pair(model_type)
    except SkipTypeError as exc:
        return done("SKIP", "not-buildable", str(exc))
    except ImportError as exc:
        return done("SKIP", "missing-package", _short(exc))
    except Exception as exc:  # noqa: BLE001 - anything the type's own code raises
        if any(m in str(exc) for m in _SKIP_MARKERS):
            return done("SKIP", "needs-files-or-package", _short(exc))
        return done("FAIL-eager", "build", _short(exc))
    result.update(info)
    stage("eager")
    label, inputs, expected, error = _eager_inputs(model, eager, set(info["special_ids"]))
    if inputs is None:
        return done("FAIL-eager", "inputs", error)
    result["inputs"] = label
    result["family"] = family(model_type, label)
    wanted = attention_paths(expected)
    if not wanted:
        return done("FAIL-eager", "no-eager-attentions", "eager returned no attention weights with output_attentions")
    # eager entries that are not probabilities (scores, a linear mixer's state, attention outputs) are
    # not compared: capture keeps probabilities only (and says so)
    not_weights = {p: [i for i, t in enumerate(v) if not _is_probability(t)] for p, v in wanted.items()}
    not_weights = {p: i for p, i in not_weights.items() if i}
    wanted = {p: [t for t in v if _is_probability(t)] for p, v in wanted.items()}
    wanted = {p: v for p, v in wanted.items() if v}
    if not_weights:
        result["eager_not_weights"] = not_weights
    if not wanted:
        return done(
            "FAIL-eager",
            "eager-attentions-not-weights",
            f"eager's {sorted(not_weights)} hold no attention probabilities (values outside [0, 1] or < 3-D)",
        )
    stage("default")
    try:
        reference = _run(model, inputs)
    except Exception as exc:  # noqa: BLE001
        return done("FAIL-eager", "default-forward", _short(exc))
    stage("capture")
    hooked = _hooked(model)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with ap.capture(model) as cap:
                inside = _run(model, inputs)
            record = cap.record
        said = [str(w.message) for w in caught if "attn_plugins" in (w.filename or "") or "captur" in str(w.message)]
        result["warnings"] = [m[:200] for m in said[:3]]
    except Exception as exc:  # noqa: BLE001 - whatever the capture raised is ours
        return done("FAIL-ours", "capture-error:" + type(exc).__name__, _short(exc))
    left = sorted(set(_hooked(model)) - set(hooked))
    if left or len(_hooked(model)) != len(hooked):
        return done("FAIL-ours", "hooks-left", str(left[:3]))
    changed = _changed(reference, inside)
    if changed:
        again = _changed(reference, _run(model, inputs))
        if again:
            return done("FAIL-eager", "nondeterministic", f"two plain forwards differ: {again[:3]}")
        return done("FAIL-ours", "outputs-changed", f"outputs differ inside capture: {changed[:4]}")
    got = {p: v for p, v in attention_paths(record.as_hf_outputs()).items() if p in wanted or p not in not_weights}
    refused = any("not captured" in m for m in said)
    if sorted(got) != sorted(wanted):
        return done(
            "FAIL-ours",
            "keys" + ("-refused-with-message" if refused else ""),
            f"ours {sorted(got)} eager {sorted(wanted)}",
            layers={k: len(v) for k, v in got.items()},
            eager_layers={k: len(v) for k, v in wanted.items()},
        )
    if all(bool(t.isnan().all()) for v in wanted.values() for t in v):
        return done(
            "FAIL-eager",
            "eager-weights-nan",
            "every attention weight eager returns is NaN, nothing to compare with (e.g. nemotron ASR: "
            "transformers' eager path treats its float attention mask as bool)",
        )
    masks = _row_masks(inputs)
    stage("reference")
    own = _own_attentions(model, inputs, wanted)
    drift = _output_drift(expected, reference)
    if own is not None and drift > OUTPUT_TOL and _layers_differ(wanted, own, masks) is not None:
        # eager itself computes something else than the default model (Grounding DINO: its Swin backbone
        # under sdpa picks other decoder queries, and the outputs differ): the default model's own
        # output_attentions is the reference. Where the outputs agree, eager stays the reference even if
        # the default model returns other weights of its own (Falcon's sdpa path when asked)
        why = (
            f"eager's output_attentions differ from the default model's own "
            f"({_layers_differ(wanted, own, masks)}; outputs differ by {drift:.3g})"
        )
        if sorted(own) != sorted(wanted):
            return done(
                "FAIL-eager",
                "eager-not-reference",
                f"{why}; the default model returns only {sorted(own)} of {sorted(wanted)}",
            )
        result["reference"] = "default-own"
        result["eager_vs_default"] = why
        wanted = own
    differs = _layers_differ(wanted, got, masks)
    if differs is not None and not differs.startswith("max diff"):
        cause = differs.split(":", 1)[0]
        return done(
            "FAIL-ours",
            cause + ("-refused-with-message" if refused and cause == "layer-count" else ""),
            differs.split(":", 1)[1].strip(),
        )
    result["max_diff"] = _worst(wanted, got, masks)
    result["max_prob"] = max(t.max().item() for v in wanted.values() for t in v)
    if differs is not None:
        return done("FAIL-ours", "weights", differs)
    return done("PASS")


def _own_attentions(model, inputs, wanted) -> dict[str, list[torch.Tensor]] | None:
    """The default-implementation model's own ``output_attentions`` for the fields eager returns, or
    ``None`` when it returns none of them (sdpa kernels return no weights)."""
    try:
        found = attention_paths(_run(model, inputs, output_attentions=True))
    except Exception:  # noqa: BLE001 - a model that refuses output_attentions under its kernel
        return None
    own = {p: [t for t in v if _is_probability(t)] for p, v in found.items() if p in wanted}
    own = {p: v for p, v in own.items() if v}
    return own or None


def _output_drift(eager_output, default_output) -> float:
    """The largest difference between the eager and default models' outputs (attention fields left out)."""
    ref = {k: v for k, v in _tensors(eager_output).items() if "attentions" not in k}
    got = _tensors(default_output)
    pairs = [(ref[k], got[k]) for k in ref if k in got and ref[k].shape == got[k].shape and ref[k].is_floating_point()]
    return max(((a.float() - b.float()).abs().nan_to_num(0.0).max().item() for a, b in pairs if a.numel()), default=0.0)


def _worst(ref: dict, got: dict, masks) -> float:
    pairs = [(a, b) for p in ref if p in got for a, b in zip(ref[p], got[p], strict=False) if a.shape == b.shape]
    return max((_diff(a, b, masks) for a, b in pairs), default=0.0)


def _layers_differ(ref: dict, got: dict, masks) -> str | None:
    """``None`` when every field of ``ref`` that ``got`` holds matches within ``TOL``, else
    ``"<cause>: <detail>"`` (``layer-count``, ``shape`` or ``max diff``)."""
    for path in (p for p in ref if p in got):
        if len(got[path]) != len(ref[path]):
            return f"layer-count: {path}: {len(got[path])}/{len(ref[path])} layers"
        for i, (a, b) in enumerate(zip(ref[path], got[path], strict=True)):
            if a.shape != b.shape:
                return f"shape: {path}[{i}]: {tuple(a.shape)} vs {tuple(b.shape)}"
    worst = _worst(ref, got, masks)
    return None if worst <= TOL else f"max diff {worst:.3g}"


def cause_class(result: dict) -> str:
    """A short grouping key for a failure (capture errors grouped by their message's first words)."""
    cause = result.get("cause") or ""
    if cause.startswith("capture-error"):
        words = re.sub(r"'[^']*'", "'…'", result.get("detail") or "").split(": ", 1)[-1]
        words = re.sub(r"\b[A-Z][A-Za-z0-9]*(Model|For[A-Za-z]+)\b", "<model>", words)
        return f"{cause}: {' '.join(words.split()[:8])}"
    return cause
