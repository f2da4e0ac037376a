"""Peak memory of one training step (forward with training=True, backward, SGD update) against
the activations that back-propagation through time must keep (issue 4's target: within 1.5x).

    python bench/memory.py            # the table, markdown, for bench/RESULTS.md
    python bench/memory.py --quick    # two small rows (CI: the script must keep running)
    python bench/memory.py --torch    # and torch's peak for the same step, side by side
    python bench/memory.py --threads 2  # the same rows at two threads (default: one)

Each row runs in a fresh process. It builds the layer, the inputs and dL/d(out) first, resets
the process's peak resident set (``/proc/self/clear_refs``), runs the layer's first training step,
and reports the peak's growth over the resident set just before: every buffer the step touched
(its tape, scratch, packed weights, the returned out and dL/dx), freed or not.

"Activations" counts what a textbook BPTT keeps per layer and direction, T x B x
(input + gates + h (+ c for LSTM, + W_hn h + b_hn for GRU)) values, float32. The step also needs
buffers the size of the weights (packed copies for the products, up to six per weight matrix),
which do not grow with T x B; the "weights" column gives the parameters' size for scale.
Linux only (``/proc``).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from typing import Dict, List, Optional, Sequence, Tuple

#: (cell, B, T, D, H, layers, bidirectional): the training rows of bench/RESULTS.md with a batch
#: of 8 or more, and a 2-layer bidirectional stack.
ROWS: List[Tuple[str, int, int, int, int, int, bool]] = [
    (cell, b, t, d, h, 1, False)
    for cell in ("lstm", "gru", "rnn")
    for (b, t, d, h) in ((64, 100, 32, 128), (32, 50, 64, 256), (16, 25, 512, 512), (8, 1000, 64, 64))
] + [("lstm", 64, 25, 512, 512, 1, False), ("lstm", 32, 150, 256, 256, 1, False), ("lstm", 32, 50, 64, 128, 2, True)]
#: Small bidirectional batches: at two threads their directions run at once, forward and backward,
#: each with buffers of its own (layer.cpp, layer_backward.cpp: threads_per_direction).
SMALL_BATCH_ROWS: List[Tuple[str, int, int, int, int, int, bool]] = [
    (cell, b, 100, 64, 128, layers, True) for cell in ("lstm", "gru") for b in (1, 8) for layers in (1, 2)
]
QUICK_ROWS = [("lstm", 16, 100, 16, 64, 1, False), ("gru", 16, 100, 8, 64, 2, True)]
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def activation_bytes(cell: str, b: int, t: int, d: int, h: int, layers: int, bidirectional: bool) -> int:
    """Bytes of the values a textbook BPTT keeps (float32)."""
    dirs = 2 if bidirectional else 1
    total = 0
    for layer in range(layers):
        width = d if layer == 0 else dirs * h
        per_step = width + GATES[cell] * h + h + (h if cell in ("lstm", "gru") else 0)
        total += dirs * t * b * per_step
    return 4 * total


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(cell: str, b: int, t: int, d: int, h: int, layers: int, bidirectional: bool,
            threads: int = 1) -> Dict[str, float]:
    """Run in a fresh process: the first training step's peak growth, in bytes."""
    import numpy as np

    import rnnkit
    from rnnkit.optim import SGD

    cls = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn": rnnkit.RNN}[cell]
    small = cls(4, 4, num_layers=layers, bidirectional=bidirectional, dtype="float32", n_threads=1, seed=0)
    small.forward(np.zeros((2, 1, 4), np.float32), training=True)  # as for torch (measure_torch)
    small.backward(np.ones((2, 1, (2 if bidirectional else 1) * 4), np.float32))
    del small
    layer = cls(d, h, num_layers=layers, bidirectional=bidirectional, dtype="float32", n_threads=threads, seed=0)
    opt = SGD(layer, lr=0.01)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((t, b, d)).astype(np.float32)
    g = rng.standard_normal((t, b, (2 if bidirectional else 1) * h)).astype(np.float32)
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed heap memory back to the system: the step cannot reuse it unseen
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak resident set (VmHWM) to the current one
    before = _status_kb("VmRSS")
    out = layer.forward(x, training=True)  # kept, as a training loop keeps it until backward
    layer.backward(g)
    opt.step()
    peak = _status_kb("VmHWM")
    del out
    return {"peak_bytes": 1024.0 * (peak - before), "weight_bytes": float(layer._flat.nbytes)}


def measure_torch(cell: str, b: int, t: int, d: int, h: int, layers: int, bidirectional: bool,
                  threads: int = 1) -> Dict[str, float]:
    """The same step with torch's module (forward, ``out.backward(g)``, SGD), in a fresh process."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    # A first step of a small module of the same kind: torch's one-off start-up memory (its
    # autograd engine, kernel caches) is not the step's.
    small = cls(4, 4, num_layers=layers, bidirectional=bidirectional)
    small(torch.zeros(2, 1, 4))[0].sum().backward()
    del small
    module = cls(d, h, num_layers=layers, bidirectional=bidirectional)
    opt = torch.optim.SGD(module.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((t, b, d)).astype(np.float32))
    g = torch.from_numpy(rng.standard_normal((t, b, (2 if bidirectional else 1) * h)).astype(np.float32))
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_kb("VmRSS")
    out, _ = module(x)
    out.backward(g)
    opt.step()
    peak = _status_kb("VmHWM")
    del out
    return {"peak_bytes": 1024.0 * (peak - before)}


def run_row(row: Tuple[str, int, int, int, int, int, bool], library: str = "rnnkit",
            threads: int = 1) -> Dict[str, float]:
    fn = "measure" if library == "rnnkit" else "measure_torch"
    code = (f"import json, sys; sys.path.insert(0, {sys.path[0]!r}); import memory; "
            f"print(json.dumps(memory.{fn}(*{row!r}, threads={threads})))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def table(rows: Sequence[Tuple[str, int, int, int, int, int, bool]], with_torch: bool = False,
          threads: int = 1) -> List[str]:
    head = "| cell | B | T | D | H | layers | dirs | activations MB | step peak MB | peak / activations | weights MB |"
    rule = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    if with_torch:
        head += " torch peak MB | torch / rnnkit |"
        rule += "---:|---:|"
    lines = [head, rule]
    for row in rows:
        cell, b, t, d, h, layers, bi = row
        res = run_row(row, threads=threads)
        act = activation_bytes(*row)
        lines.append(f"| {cell.upper() if cell != 'rnn' else 'RNN-tanh'} | {b} | {t} | {d} | {h} | {layers} | "
                     f"{2 if bi else 1} | {act / 1e6:.1f} | {res['peak_bytes'] / 1e6:.1f} | "
                     f"{res['peak_bytes'] / act:.2f} | {res['weight_bytes'] / 1e6:.1f} |")
        if with_torch:
            peer = run_row(row, "torch", threads)["peak_bytes"]
            lines[-1] += f" {peer / 1e6:.1f} | {peer / res['peak_bytes']:.2f} |"
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small rows only")
    parser.add_argument("--torch", action="store_true", help="also torch's peak for the same step (torch installed)")
    parser.add_argument("--threads", type=int, default=1, help="threads of both libraries (default 1)")
    parser.add_argument("--small-batches", action="store_true",
                        help="the small bidirectional batches instead (SMALL_BATCH_ROWS)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    rows = QUICK_ROWS if args.quick else SMALL_BATCH_ROWS if args.small_batches else ROWS
    print("\n".join(table(rows, with_torch=args.torch, threads=args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
