#!/usr/bin/env python3
"""Print one side-by-side table of rnnkit against PyTorch and ONNX Runtime (RNN tanh, LSTM, GRU).

Per row (cell, mode, B, T, D, H; layers and directions where not one of each) and thread count:
torch ms, ONNX Runtime ms (inference rows; "-" for training rows or without onnxruntime), rnnkit
ms (the trainable layer), frozen ms (inference rows: ``rnnkit.freeze(layer)``, the deployed copy
whose packed weights are kept by address, as ORT's session keeps its own), the ratios
torch/rnnkit, ORT/rnnkit and ORT/frozen (> 1: rnnkit is faster), rnnkit's GFLOP/s and its
fraction of this machine's sgemm rate (numpy float32 2048x2048 matmul, best of several, at the
same thread count).

ONNX Runtime runs the rnnkit layer exported by ``rnnkit.onnx.export`` (one ``LSTM``/``GRU``/
``RNN`` node per layer) with the CPU provider, ``intra_op_num_threads`` = the row's thread count
and all graph optimisations.

GFLOP of a forward: 2*B*G*H*(T*D + (T-1)*H), G = 1/3/4 for RNN/GRU/LSTM (no initial state is
given, and the first step's product with the zero state is skipped); a training step adds
2 * 2*B*T*G*H*(D+H) for backward. A stacked or bidirectional row sums these over its layers
and directions, the input size above the first layer being H (or 2*H, bidirectional).

Timing: each row builds the models on the same weights and inputs, checks rnnkit and ONNX
Runtime against torch (1e-4 relative), warms them up, then runs blocks of each library's calls
in turn (about 50 ms each, the order reversed every round) until all have a time budget and a
minimum count of calls; the reported time is the median of the single-call times. So each ratio
is measured side by side, in one process, at one time.

    python bench/compare.py                      # all cores
    python bench/compare.py --both-threads --markdown > table.md
    python bench/compare.py --quick              # tiny shapes: a smoke run of a few seconds
    python bench/compare.py --step               # the streaming step at batch 1
    python bench/compare.py --spaced             # small calls made 20 ms apart (latency, not throughput)
    python bench/compare.py --fit --both-threads # whole estimator fits against the torch training loop
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import os
import platform
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rnnbench  # noqa: E402

SGEMM_N = 2048
SGEMM_REPS = 7
# Set on some machines for old OpenBLAS builds; they slow a current numpy, so the sgemm child
# runs without them (and the header says so).
OPENBLAS_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


# ------------------------------------------------------------------------------- sgemm
def _openblas_facts() -> Dict[str, object]:
    """Kernel name and thread count of the OpenBLAS loaded in this process, via ctypes."""
    facts: Dict[str, object] = {}
    try:
        with open("/proc/self/maps") as fh:
            paths = sorted({line.split()[-1] for line in fh if "openblas" in line.lower() and "/" in line})
    except OSError:
        return facts
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", "_64_", ""):
                fn = getattr(lib, f"{prefix}_get_corename{suffix}", None)
                if fn is not None and "kernel" not in facts:
                    fn.restype = ctypes.c_char_p
                    facts["kernel"] = "OpenBLAS " + fn().decode()
                fn = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                if fn is not None and "blas_threads" not in facts:
                    fn.restype = ctypes.c_int
                    facts["blas_threads"] = int(fn())
    return facts


def _sgemm_child(threads: int) -> None:
    """Runs in a subprocess: best sgemm GFLOP/s at `threads` threads, as one JSON line."""
    info: Dict[str, object] = {"threads": threads}
    try:
        from threadpoolctl import threadpool_info, threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")
        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        info["limiter"] = "threadpoolctl"
        if blas:
            info["kernel"] = f"{blas[0].get('internal_api')} {blas[0].get('architecture')}"
            info["blas_threads"] = blas[0].get("num_threads")
    except ImportError:
        info["limiter"] = "OPENBLAS_NUM_THREADS (threadpoolctl not installed)"
    rng = np.random.default_rng(0)
    a = rng.standard_normal((SGEMM_N, SGEMM_N)).astype(np.float32)
    b = rng.standard_normal((SGEMM_N, SGEMM_N)).astype(np.float32)
    c = a @ b  # warm-up (thread pool start, page faults)
    if info["limiter"] != "threadpoolctl":
        info.update(_openblas_facts())
    best = float("inf")
    for _ in range(SGEMM_REPS):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    info["gflops"] = 2.0 * SGEMM_N**3 / best / 1e9
    print(json.dumps(info))


def measure_sgemm(threads: int) -> Dict[str, object]:
    """sgemm rate at `threads` threads, measured in a child process with its own BLAS settings."""
    env = dict(os.environ)
    unset = [k for k in OPENBLAS_PINS if env.pop(k, None) is not None]
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--sgemm-child", str(threads)],
        env=env, capture_output=True, text=True, check=True,
    )
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    info["unset"] = unset
    return info


# ------------------------------------------------------------------------------ timing
def time_side_by_side(
    steps: Dict[str, "callable"], budget_s: float, min_calls: int, max_calls: int, block_s: float = 0.05,
    settle_s: float = 0.05, warmup: int = 2,
) -> Dict[str, float]:
    """Median single-call seconds of each step, the steps' calls interleaved in blocks, after
    ``warmup`` untimed calls of each.

    Each block starts ``settle_s`` after the previous one ends: thread pools spin for a while
    after their last call (ONNX Runtime's for several milliseconds, OpenMP's and OpenBLAS's for
    less), and without the pause the next library's first calls would share the cores with those
    spinning threads. Interleaving is there to cancel drift, not to charge one library for
    another's idle spinning.

    Each library's block lasts about ``block_s`` (its own number of calls): a core's first
    fraction of a millisecond after the pause runs slower, and with the same number of calls
    for all, the fastest library's block would be mostly that start (for a 4 us step, a block
    sized by a 140 us one is 0.6 ms long; its median came out 1.7x its steady time).
    """
    for step in steps.values():  # warm-up
        for _ in range(warmup):
            step()
    block: Dict[str, int] = {}
    for name, step in steps.items():
        t0 = time.perf_counter()
        step()
        est = time.perf_counter() - t0
        block[name] = max(1, min(int(block_s / max(est, 1e-9)), max_calls // 4 or 1))
    times: Dict[str, List[float]] = {name: [] for name in steps}
    spent: Dict[str, float] = {name: 0.0 for name in steps}
    rnd = 0
    while True:
        order = list(steps) if rnd % 2 == 0 else list(steps)[::-1]
        for name in order:
            step, ts = steps[name], times[name]
            time.sleep(settle_s)
            for _ in range(block[name]):
                t0 = time.perf_counter()
                step()
                dt = time.perf_counter() - t0
                ts.append(dt)
                spent[name] += dt
        rnd += 1
        counts = [len(t) for t in times.values()]
        if min(counts) >= max_calls:
            break
        if min(counts) >= min_calls and min(spent.values()) >= budget_s:
            break
    return {name: float(np.median(ts)) for name, ts in times.items()}


def _busy_cpu_s() -> Optional[float]:
    """CPU seconds the whole machine has been busy (incl. hypervisor steal), from /proc/stat."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def measure_row(row: rnnbench.Row, threads: int, args) -> Dict[str, object]:
    """Time one row at one thread count; retry when other processes were busy meanwhile.

    ``other`` in the result: the cores' worth of CPU that other processes (and the hypervisor)
    took while the row was timed; the attempt with the least of it is kept.
    """
    pair = rnnbench.Pair(row, threads)
    errs = pair.check()
    steps = {lib: pair.step(lib) for lib in pair.libs}
    best: Optional[Dict[str, object]] = None
    for _ in range(1 + max(0, args.retries)):
        busy0, own0, wall0 = _busy_cpu_s(), _own_cpu_s(), time.perf_counter()
        med = time_side_by_side(steps, args.budget, args.min_calls, args.max_calls, block_s=min(0.05, args.budget))
        busy1, own1, wall1 = _busy_cpu_s(), _own_cpu_s(), time.perf_counter()
        other = None
        if busy0 is not None and busy1 is not None:
            other = max(0.0, (busy1 - busy0) - (own1 - own0)) / max(wall1 - wall0, 1e-9)
        res = dict(row=row, threads=threads, torch_s=med["torch"], rnnkit_s=med["rnnkit"], ort_s=med.get("ort"),
                   frozen_s=med.get("frozen"), max_err=max(errs.values()), other=other)
        if best is None or (other is not None and other < best["other"]):
            best = res
        if other is None or other <= args.noise:
            break
    del pair, steps
    gc.collect()
    assert best is not None
    return best


# ------------------------------------------------------------------------------ header
def machine_facts() -> Dict[str, str]:
    import rnnkit
    import torch

    try:
        import onnxruntime

        ort_version = f"onnxruntime {onnxruntime.__version__}"
    except ImportError:
        ort_version = "onnxruntime not installed"

    cpu, family, model, flags = platform.processor() or "unknown", "?", "?", set()
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
        grab = lambda key: (re.search(rf"^{key}\s*:\s*(.*)$", text, re.M) or [None, "?"])[1]  # noqa: E731
        cpu, family, model = grab("model name"), grab("cpu family"), grab("model")
        flags = set(grab("flags").split())
    except OSError:
        pass
    isa = ", ".join(f for f in ("avx2", "fma", "avx512f") if f in flags) or "?"
    cfg = rnnkit.config()
    return dict(
        cpu=f"{cpu} (family {family}, model {model}; {isa})",
        cores=str(rnnbench.all_cores()),
        rnnkit=f"rnnkit {cfg.get('version', '?')}, SIMD {cfg.get('simd', '?')}, Eigen {cfg.get('eigen_version', '?')}",
        torch=f"torch {torch.__version__}",
        ort=ort_version,
        numpy=f"numpy {np.__version__}",
        python=f"Python {platform.python_version()}",
        date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
    )


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "?"


def sgemm_line(sgemm: Dict[int, Dict[str, object]]) -> str:
    rates = ", ".join(f"{t} thread{'s' if t > 1 else ''}: {s['gflops']:.0f} GFLOP/s" for t, s in sorted(sgemm.items()))
    any_info = next(iter(sgemm.values()))
    notes = [f"kernel {any_info.get('kernel', 'unknown')}", f"threads set by {any_info.get('limiter')}"]
    if any_info.get("unset"):
        notes.append(f"measured with {', '.join(any_info['unset'])} unset")
    return f"numpy sgemm (float32 {SGEMM_N}^3, best of {SGEMM_REPS}): {rates} ({'; '.join(notes)})"


# ------------------------------------------------------------------------------- table
COLUMNS = ("cell", "mode", "B", "T", "D", "H", "threads", "torch ms", "ORT ms", "rnnkit ms", "frozen ms",
           "torch/rnnkit", "ORT/rnnkit", "ORT/frozen", "rnnkit GFLOP/s", "of sgemm", "set")
RIGHT = {"B", "T", "D", "H", "threads", "torch ms", "ORT ms", "rnnkit ms", "frozen ms", "torch/rnnkit", "ORT/rnnkit",
         "ORT/frozen", "rnnkit GFLOP/s", "of sgemm"}


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


def table_cells(res: Dict[str, object], sgemm: Dict[int, Dict[str, object]]) -> List[str]:
    row: rnnbench.Row = res["row"]
    gflops = row.gflop / res["rnnkit_s"]
    peak = sgemm.get(res["threads"], {}).get("gflops")
    noisy = "*" if res.get("noisy") else ""
    ort_s, frozen_s = res.get("ort_s"), res.get("frozen_s")
    return [
        row.label, row.mode,
        str(row.B), str(row.T), str(row.D), str(row.H), str(res["threads"]),
        fmt_ms(res["torch_s"]), "-" if ort_s is None else fmt_ms(ort_s), fmt_ms(res["rnnkit_s"]),
        "-" if frozen_s is None else fmt_ms(frozen_s),
        f"{res['torch_s'] / res['rnnkit_s']:.2f}x{noisy}", "-" if ort_s is None else f"{ort_s / res['rnnkit_s']:.2f}x{noisy}",
        "-" if ort_s is None or frozen_s is None else f"{ort_s / frozen_s:.2f}x{noisy}",
        f"{gflops:.1f}", f"{100 * gflops / peak:.0f}%" if peak else "?",
        "" if row.source == "grid" else row.source.replace("deepbench:", "DeepBench "),
    ]


def render(results: Sequence[Dict[str, object]], sgemm, markdown: bool) -> str:
    body = [table_cells(r, sgemm) for r in results]
    if markdown:
        lines = ["| " + " | ".join(COLUMNS) + " |",
                 "|" + "|".join("---:" if c in RIGHT else "---" for c in COLUMNS) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(c), *(len(cells[i]) for cells in body)) if body else len(c) for i, c in enumerate(COLUMNS)]
    just = lambda s, i: s.rjust(widths[i]) if COLUMNS[i] in RIGHT else s.ljust(widths[i])  # noqa: E731
    lines = ["  ".join(just(c, i) for i, c in enumerate(COLUMNS)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(just(s, i) for i, s in enumerate(cells)).rstrip() for cells in body]
    return "\n".join(lines)


# -------------------------------------------------------------------------------- main
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=None, help="threads for both libraries (default: all cores)")
    p.add_argument("--both-threads", action="store_true", help="measure at 1 thread and at all cores (thread scaling)")
    p.add_argument("--quick", action="store_true", help=f"tiny shapes, short budgets (or {rnnbench.QUICK_ENV}=1)")
    p.add_argument("--markdown", action="store_true", help="print a markdown table with a header naming the machine")
    p.add_argument("-k", "--filter", default=None, help="only rows whose id (e.g. lstm-train-B64-T25-D512-H512) matches this regex")
    p.add_argument("--budget", type=float, default=None, help="seconds of timed calls per library per row (default 0.6; quick 0.02)")
    p.add_argument("--min-calls", type=int, default=None, help="minimum timed calls per library per row (default 7; quick 3)")
    p.add_argument("--max-calls", type=int, default=400, help="maximum timed calls per library per row")
    p.add_argument("--noise", type=float, default=0.1,
                   help="cores' worth of CPU used by other processes during a row above which the row is retried "
                        "and, if still above, marked '*' (default 0.1)")
    p.add_argument("--retries", type=int, default=2, help="re-measurements of a row disturbed by other processes")
    p.add_argument("--step", action="store_true",
                   help="the streaming-step table instead: batch 1, one thread, rnnkit step vs a one-step ORT session and torch")
    p.add_argument("--spaced", type=float, nargs="?", const=20.0, default=None, metavar="PAUSE_MS",
                   help="the spaced-call table instead: batch 1-4 inference rows and steps, each call made "
                        "PAUSE_MS (default 20) after the last, at 1 thread and all cores; median and 90th percentile")
    p.add_argument("--fit", action="store_true",
                   help="the whole-fit table instead: RNNClassifier/RNNRegressor.fit vs the torch loop for the same model")
    p.add_argument("--sgemm-child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.quick = args.quick or rnnbench.quick_from_env()
    args.budget_given = args.budget
    if args.fit and args.min_calls is None:
        args.min_calls = 3  # whole fits of seconds each
    if args.budget is None:
        args.budget = 0.02 if args.quick else 0.6
    if args.min_calls is None:
        args.min_calls = 3 if args.quick else 7
    return args


def step_table(args) -> int:
    """Print the streaming-step rows: microseconds per step of each library and the ratios to rnnkit."""
    rows = [(c, h) for c, h in rnnbench.STEP_ROWS if not args.filter or re.search(args.filter, f"{c}-H{h}")]
    if args.quick:
        rows = [(c, h) for c, h in rows if h == 64]
    lines = ["| row (B=1, D=H, 1 thread) | rnnkit step us | ORT one-step session us | torch us | ORT/rnnkit | torch/rnnkit |",
             "|---|---:|---:|---:|---:|---:|"]
    for cell, hidden in rows:
        pair = rnnbench.StepPair(cell, hidden)
        pair.check()
        med = time_side_by_side({lib: pair.step(lib) for lib in pair.libs}, args.budget, args.min_calls,
                                max(args.max_calls, 2000), block_s=0.02)
        us = {lib: 1e6 * t for lib, t in med.items()}
        ours, ort_us = us["rnnkit"], us.get("ort")
        ort_cells = ("-", "-") if ort_us is None else (f"{ort_us:.1f}", f"{ort_us / ours:.1f}")
        lines.append(f"| {cell} H={hidden} | {ours:.1f} | {ort_cells[0]} | {us['torch']:.1f} | {ort_cells[1]} | "
                     f"{us['torch'] / ours:.1f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    est_rows = [(c, h) for c, h in rnnbench.ESTIMATOR_STEP_ROWS
                if not args.filter or re.search(args.filter, f"estimator-{c}-H{h}")]
    if args.quick:
        est_rows = est_rows[:1]
    est_lines = ["| RNNClassifier.predict_proba_step (one stream, 8 features, 3 classes, 1 thread) | rnnkit us | "
                 "torch modules us | torch/rnnkit |", "|---|---:|---:|---:|"]
    for cell, hidden in est_rows:
        pair = rnnbench.EstimatorStepPair(cell, hidden)
        pair.check()
        med = time_side_by_side({lib: pair.step(lib) for lib in pair.libs}, args.budget, args.min_calls,
                                max(args.max_calls, 2000), block_s=0.02)
        ours, theirs = 1e6 * med["rnnkit"], 1e6 * med["torch"]
        est_lines.append(f"| {cell} H={hidden} | {ours:.1f} | {theirs:.1f} | {theirs / ours:.1f} |")
        print(est_lines[-1], file=sys.stderr, flush=True)
    f = machine_facts()
    print(f"Streaming step, {f['date']}: {f['cpu']}, {f['cores']} cores; {f['rnnkit']}; {f['torch']}; {f['ort']}; "
          f"load average at end {loadavg()}. Median of single calls, libraries interleaved.\n")
    print("\n".join(lines))
    if len(est_lines) > 2:
        print("\nThe estimator's step (input scaling, stack, head and softmax; torch: the same modules under no_grad):\n")
        print("\n".join(est_lines))
    return 0


def time_spaced(steps: Dict[str, "callable"], pause_s: float, calls: int) -> Dict[str, List[float]]:
    """Single-call seconds of each step, every call made ``pause_s`` after the previous one ended.

    A real-time caller (a sensor, an audio frame, a request) calls a small model now and then,
    not back to back: by its next call, thread pools have stopped spinning and caches have
    cooled. The libraries take turns call by call (the order reversed every round), so each
    call follows the same pause, whoever ran before it.
    """
    for step in steps.values():  # warm-up
        step()
    times: Dict[str, List[float]] = {name: [] for name in steps}
    for i in range(calls):
        for name in list(steps) if i % 2 == 0 else list(steps)[::-1]:
            time.sleep(pause_s)
            t0 = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def spaced_table(args) -> int:
    """Print the spaced-call rows: median and 90th percentile of each library's calls, and the ratios."""
    pause_s = args.spaced / 1e3
    calls = 4 if args.quick else 24
    cores = rnnbench.all_cores()
    inference = [r for r in rnnbench.all_rows() if r.mode == "inference" and r.B <= 4]
    steps = [(c, h) for c, h in rnnbench.STEP_ROWS if h in (64, 256)]
    if args.filter:
        inference = [r for r in inference if re.search(args.filter, r.id)]
        steps = [(c, h) for c, h in steps if re.search(args.filter, f"step-{c}-H{h}")]
    if args.quick:
        inference, steps = [r.quick() for r in inference[:2]], steps[:1]
    libs = ("rnnkit", "frozen", "ort", "torch")
    lines = ["| row | threads | " + " | ".join(f"{lib} ms (p90)" for lib in libs) + " | torch/rnnkit | ORT/rnnkit |",
             "|---|---:|" + "---:|" * (len(libs) + 2)]

    def add_line(name: str, threads: int, times: Dict[str, List[float]]) -> None:
        med = {lib: float(np.median(ts)) for lib, ts in times.items()}
        cells = [f"{1e3 * med[lib]:.3f} ({1e3 * float(np.percentile(times[lib], 90)):.3f})" if lib in times else "-"
                 for lib in libs]
        ratio = lambda lib: f"{med[lib] / med['rnnkit']:.2f}" if lib in med else "-"  # noqa: E731
        lines.append(f"| {name} | {threads} | " + " | ".join(cells) + f" | {ratio('torch')} | {ratio('ort')} |")
        print(lines[-1], file=sys.stderr, flush=True)

    for threads in sorted({1, cores}):
        for row in inference:
            pair = rnnbench.Pair(row, threads)
            pair.check()
            add_line(row.id, threads, time_spaced({lib: pair.step(lib) for lib in pair.libs}, pause_s, calls))
            del pair
            gc.collect()
        for cell, hidden in steps:
            pair = rnnbench.StepPair(cell, hidden, threads=threads)
            pair.check()
            pair.use_threads()
            add_line(f"step-{cell}-H{hidden} (B=1, D=H)", threads,
                     time_spaced({lib: pair.step(lib) for lib in pair.libs}, pause_s, calls))
    f = machine_facts()
    print(f"Spaced calls, {f['date']}: {f['cpu']}, {f['cores']} cores; {f['rnnkit']}; {f['torch']}; {f['ort']}; "
          f"load average at end {loadavg()}. Each call made {args.spaced:g} ms after the previous one ended, the "
          f"libraries taking turns call by call; median (90th percentile) of {calls} calls each.\n")
    print("\n".join(lines))
    if args.quick:
        print("\nQUICK mode: tiny shapes, not a measurement.")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    if args.sgemm_child is not None:
        _sgemm_child(args.sgemm_child)
        return 0
    try:
        import torch  # noqa: F401
    except ImportError:
        print(rnnbench.TORCH_MISSING_REASON, file=sys.stderr)
        return 2

    if args.step:
        return step_table(args)
    if args.fit:
        import fitbench

        if args.budget_given is None:
            args.budget = 0.0 if args.quick else 3.0  # whole fits: min_calls of them, or 3 s of each side
        return fitbench.fit_table(args, time_side_by_side, machine_facts)
    if args.spaced is not None:
        return spaced_table(args)
    cores = rnnbench.all_cores()
    if args.both_threads:
        thread_counts = sorted({1, cores})
    else:
        thread_counts = [args.threads or cores]
    rows = rnnbench.all_rows()
    if args.filter:
        rows = [r for r in rows if re.search(args.filter, r.id)]
    if args.quick:
        rows = [r.quick() for r in rows]

    load_start = loadavg()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    sgemm = {}
    for t in thread_counts:
        sgemm[t] = measure_sgemm(t)
        log(f"sgemm at {t} thread(s): {sgemm[t]['gflops']:.0f} GFLOP/s")

    results = []
    t_start = time.perf_counter()
    for i, row in enumerate(rows):
        for t in thread_counts:  # a row's thread counts back to back, so scaling is side by side too
            res = measure_row(row, t, args)
            res["noisy"] = res["other"] is not None and res["other"] > args.noise
            results.append(res)
            other = "?" if res["other"] is None else f"{res['other']:.2f}"
            ort_ms = "" if res["ort_s"] is None else f"ORT {fmt_ms(res['ort_s'])} ms, "
            frozen_ms = "" if res["frozen_s"] is None else f", frozen {fmt_ms(res['frozen_s'])} ms"
            log(f"[{i + 1}/{len(rows)}] {row.id} threads={t}: torch {fmt_ms(res['torch_s'])} ms, {ort_ms}"
                f"rnnkit {fmt_ms(res['rnnkit_s'])} ms{frozen_ms} (max rel err {res['max_err']:.1e}; "
                f"other processes {other} cores{', NOISY' if res['noisy'] else ''})")
    elapsed = time.perf_counter() - t_start
    noisy = sum(1 for r in results if r["noisy"])
    others = [r["other"] for r in results if r["other"] is not None]
    noise_line = (
        f"Other processes (and hypervisor steal) took at most {max(others):.2f} cores' worth of CPU while a row "
        f"was timed (from /proc/stat); {noisy} row(s) stayed above {args.noise:g} after {args.retries} "
        f"retries and are marked *." if others else "Interference from other processes was not measured (no /proc/stat)."
    )

    table = render(results, sgemm, args.markdown)
    if args.markdown:
        f = machine_facts()
        print(f"## rnnkit vs PyTorch and ONNX Runtime, {f['date']}\n")
        print(f"- Machine: {f['cpu']}, {f['cores']} cores; {f['python']}")
        print(f"- Libraries: {f['rnnkit']}; {f['torch']}; {f['ort']}; {f['numpy']}")
        print(f"- {sgemm_line(sgemm)}")
        print(f"- Load average (1, 5, 15 min) at start: {load_start}; at end: {loadavg()}; "
              f"{elapsed:.0f} s of measuring (the end figure includes this run's own threads)")
        print("- Each row: the libraries on the same weights and inputs, float32, seq-major, same thread count, "
              "rnnkit and ONNX Runtime checked against torch (1e-4 relative) first; time = median of single calls, "
              "the libraries' calls interleaved in blocks whose order reverses every round, so **ratios are "
              "measured side by side in one run**.")
        print("- ONNX Runtime (inference rows): the rnnkit layer exported by rnnkit.onnx.export, CPU provider, "
              "intra_op_num_threads = threads, inter_op_num_threads = 1, all graph optimisations (ORT_ENABLE_ALL).")
        print("- rnnkit: the trainable layer, which compares its weights with a copy of those it packed at every "
              "call; frozen (inference rows): its rnnkit.freeze copy, read-only, whose packed weights are kept by "
              "address (what ORT's session does with its own), same outputs bit for bit (checked first).")
        print("- torch/rnnkit, ORT/rnnkit, ORT/frozen > 1: rnnkit is faster. GFLOP/s counts 2*B*G*H*(T*D + (T-1)*H) per "
              "forward (G = 1/3/4 for RNN/GRU/LSTM; the first step's product with the zero initial state is "
              "skipped), plus 2 * 2*B*T*G*H*(D+H) for a training step's backward (incl. dL/dx; and an SGD update); "
              "a stacked or bidirectional row sums that over its layers and directions, D being 2*H (bi) or H "
              "above the first layer.")
        print(f"- {noise_line}")
        if args.quick:
            print("- QUICK mode: tiny shapes, not a measurement.")
        print()
        print(table)
    else:
        print(sgemm_line(sgemm))
        print(noise_line)
        print(table)
    if not rnnbench.ort_available():
        print(f"No ONNX Runtime column: {rnnbench.ORT_MISSING_REASON}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
