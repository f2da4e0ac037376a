"""GPU benchmark: rnnkit layers on ``device="cuda"`` against ``torch.nn.RNN/LSTM/GRU`` on CUDA (cuDNN).

Rows: the CPU benchmark grid of ``rnnbench.py`` (every cell x shape x mode), then the GPU-sized
rows batch 64/128/256 x hidden 512/1024 x 100 steps (input size = hidden size). Modes:

* ``inference``: one forward of the whole batch (torch under ``no_grad``), float32, seq-major;
* ``train``: forward, then backward of ``loss = sum(out * G)`` (dL/dx and every parameter
  gradient). No optimizer step (that is the same elementwise update in both libraries).

Three timings per row, same weights (rnnkit's ``state_dict`` loaded into torch) and inputs:

* ``rnnkit``: the numpy-in, numpy-out call, so it includes rnnkit's host<->device copies (x in;
  out and the final state back, and for ``train`` also dL/dx and the parameter gradients);
* ``torch``: tensors already on the GPU, nothing copied (torch's best case);
* ``torch+copy``: the same numpy arrays in and out as rnnkit (x to the GPU, out and the state
  back, for ``train`` also G in and dL/dx and the parameter gradients back): like for like.

Each row is first checked (rnnkit against torch, norm-inf relative error, reported in the table;
rows beyond ``--rtol`` are flagged and make the exit status 1, after the whole table). Timing:
warm-up, then rounds that call each library once (the order reversed every other round), each
call followed by ``torch.cuda.synchronize()``, until each library has ``--budget`` seconds and
``--min-calls`` calls; the time is the median call. TF32 is off in torch (cuDNN and matmul),
as rnnkit computes float32 in float32; ``--tf32`` allows it in torch.

    python bench/gpu_bench.py --markdown > gpu_table.md   # progress on stderr
    python bench/gpu_bench.py -k "lstm-train" --budget 0.5
    python bench/gpu_bench.py --quick                     # a few small rows, a smoke run
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from typing import Callable, Dict, List, Tuple

import numpy as np

_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if _BENCH_DIR not in sys.path:
    sys.path.insert(0, _BENCH_DIR)

import rnnbench  # noqa: E402
from rnnbench import Row, rel_err  # noqa: E402

#: (B, T, D, H) rows sized for a GPU: batch 64/128/256 x hidden 512/1024 x 100 steps, D = H.
GPU_GRID: Tuple[Tuple[int, int, int, int], ...] = tuple((B, 100, H, H) for B in (64, 128, 256) for H in (512, 1024))

LIBS: Tuple[str, ...] = ("rnnkit", "torch", "torch+copy")


def all_rows() -> List[Row]:
    rows = [Row(c, m, *shape, source="cpu-grid") for c in rnnbench.CELLS for shape in rnnbench.GRID for m in rnnbench.MODES]
    rows += [Row(c, m, *shape, source="gpu") for c in rnnbench.CELLS for shape in GPU_GRID for m in rnnbench.MODES]
    return rows


def quick_rows() -> List[Row]:
    shapes = rnnbench.GRID[:2] + GPU_GRID[:1]
    return [Row(c, m, *shape, source="quick") for c in rnnbench.CELLS for shape in shapes for m in rnnbench.MODES]


class GpuPair:
    """An rnnkit layer on device="cuda" and a torch module on CUDA with the same weights and inputs."""

    def __init__(self, row: Row, seed: int = 0) -> None:
        import rnnkit
        import torch

        self.row = row
        self.torch = torch
        dev = torch.device("cuda")
        D, H = row.D, row.H
        if row.cell == "rnn":
            self.m = rnnkit.RNN(D, H, nonlinearity="tanh", seed=seed, device="cuda")
            tm = torch.nn.RNN(D, H, nonlinearity="tanh")
        elif row.cell == "lstm":
            self.m = rnnkit.LSTM(D, H, seed=seed, device="cuda")
            tm = torch.nn.LSTM(D, H)
        else:
            self.m = rnnkit.GRU(D, H, seed=seed, device="cuda")
            tm = torch.nn.GRU(D, H)
        tm.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in self.m.state_dict().items()})
        self.tm = tm.float().to(dev)
        self.params = list(self.tm.parameters())
        self.lstm = row.cell == "lstm"
        rng = np.random.default_rng(seed + 1)
        self.x = rng.standard_normal((row.T, row.B, D)).astype(np.float32)
        self.G = rng.standard_normal((row.T, row.B, H)).astype(np.float32)
        self.xt = torch.from_numpy(self.x).to(dev)
        self.Gt = torch.from_numpy(self.G).to(dev)
        self.dev = dev

    # ------------------------------------------------------------------ parity
    def check(self) -> float:
        """Max norm-inf relative error of rnnkit against torch over everything the row computes."""
        torch = self.torch
        train = self.row.mode == "train"
        out, st = self.m.forward(self.x, training=train)
        h = st[0] if self.lstm else st
        self.tm.zero_grad(set_to_none=True)
        if train:
            xg = self.xt.detach().clone().requires_grad_(True)
            t_out, t_st = self.tm(xg)
        else:
            with torch.no_grad():
                t_out, t_st = self.tm(self.xt)
        t_h = t_st[0] if self.lstm else t_st
        errs = [rel_err(out, t_out.detach().cpu().numpy()), rel_err(h, t_h.detach().cpu().numpy())]
        if train:
            grad_x, _ = self.m.backward(self.G)
            t_out.backward(self.Gt)
            errs.append(rel_err(grad_x, xg.grad.cpu().numpy()))
            grads = self.m.grads
            for name, p in self.tm.named_parameters():
                errs.append(rel_err(grads[name], p.grad.cpu().numpy()))
            self.tm.zero_grad(set_to_none=True)
        return max(errs)

    # ------------------------------------------------------------------- steps
    def steps(self) -> Dict[str, Callable[[], None]]:
        train = self.row.mode == "train"
        return {
            "rnnkit": self._rnnkit_train if train else self._rnnkit_inference,
            "torch": self._torch_train if train else self._torch_inference,
            "torch+copy": self._torch_copy_train if train else self._torch_copy_inference,
        }

    def _rnnkit_inference(self) -> None:
        self.m.forward(self.x)

    def _rnnkit_train(self) -> None:
        self.m.forward(self.x, training=True)
        self.m.backward(self.G)

    def _torch_inference(self) -> None:
        with self.torch.no_grad():
            self.tm(self.xt)

    def _torch_train(self) -> None:
        self.tm.zero_grad(set_to_none=True)
        xg = self.xt.detach().requires_grad_(True)
        out, _ = self.tm(xg)
        out.backward(self.Gt)

    def _torch_copy_inference(self) -> None:
        torch = self.torch
        with torch.no_grad():
            out, st = self.tm(torch.from_numpy(self.x).to(self.dev))
            out.cpu().numpy()
            for s in st if self.lstm else (st,):
                s.cpu().numpy()

    def _torch_copy_train(self) -> None:
        torch = self.torch
        self.tm.zero_grad(set_to_none=True)
        xg = torch.from_numpy(self.x).to(self.dev).requires_grad_(True)
        out, st = self.tm(xg)
        out.detach().cpu().numpy()
        for s in st if self.lstm else (st,):
            s.detach().cpu().numpy()
        out.backward(torch.from_numpy(self.G).to(self.dev))
        xg.grad.cpu().numpy()
        for p in self.params:
            p.grad.cpu().numpy()


def time_steps(steps: Dict[str, Callable[[], None]], sync: Callable[[], None], budget: float, min_calls: int,
               max_rounds: int = 400) -> Dict[str, float]:
    """Median seconds per call of each step, from interleaved rounds (order reversed every other round)."""
    names = list(steps)
    for _ in range(2):  # warm-up: contexts, cuBLAS/cuDNN handles and workspaces, allocator pools
        for name in names:
            steps[name]()
            sync()
    times: Dict[str, List[float]] = {name: [] for name in names}
    for r in range(max_rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            steps[name]()
            sync()
            times[name].append(time.perf_counter() - t0)
        if all(len(t) >= min_calls and sum(t) >= budget for t in times.values()):
            break
    return {name: statistics.median(t) for name, t in times.items()}


def header_lines(args, torch) -> List[str]:
    import rnnkit

    props = torch.cuda.get_device_properties(0)
    return [
        f"rnnkit {rnnkit.__version__} (device=\"cuda\") vs torch {torch.__version__} "
        f"(cuDNN {torch.backends.cudnn.version()}, CUDA {torch.version.cuda}) on {props.name} "
        f"({props.multi_processor_count} SMs), float32, seq-major (T, B, D).",
        "",
        "Columns: **rnnkit** = the numpy-in/numpy-out call (host<->device copies included: x in; out and the "
        "state back, and for train also dL/dx and the parameter gradients); **torch** = tensors already on the "
        "GPU, nothing copied; **torch+copy** = torch with the same host copies as rnnkit. Ratios are "
        "torch / rnnkit (> 1: rnnkit is faster). "
        f"TF32 in torch: {'allowed' if args.tf32 else 'off'}. train = forward + backward (dL/dx and all "
        "parameter gradients), no optimizer step. Median of interleaved calls, each followed by "
        f"torch.cuda.synchronize(); at least {args.min_calls} calls and {args.budget:g} s per library and row. "
        "err = max norm-inf relative error of rnnkit against torch over out, h_n and the gradients.",
        "",
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--markdown", action="store_true", help="a markdown table (default: plain text)")
    ap.add_argument("-k", default="", help="only rows whose id matches this regex (e.g. 'lstm-train')")
    ap.add_argument("--quick", action="store_true", help="a few small rows, short timing: a smoke run")
    ap.add_argument("--budget", type=float, default=0.2, help="timed seconds per library and row (default 0.2)")
    ap.add_argument("--min-calls", type=int, default=5, help="timed calls per library and row at least (default 5)")
    ap.add_argument("--rtol", type=float, default=1e-3, help="flag rows whose rnnkit/torch error exceeds this")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in torch (cuDNN RNNs and matmuls)")
    ap.add_argument("--max-seconds", type=float, default=300.0,
                    help="start no row after this many seconds (default 300); the rows left are listed")
    args = ap.parse_args(argv)

    import torch

    import rnnkit
    import rnnkit.cuda

    if not torch.cuda.is_available():
        print("torch sees no CUDA device: this benchmark needs a CUDA build of PyTorch and a GPU", file=sys.stderr)
        return 1
    if not rnnkit.cuda.is_available():
        print(f"rnnkit.cuda is not available: {rnnkit.cuda.unavailable_reason()}", file=sys.stderr)
        return 1
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cudnn.enabled = True
    if args.quick:
        args.budget, args.min_calls = min(args.budget, 0.03), min(args.min_calls, 3)

    rows = quick_rows() if args.quick else all_rows()
    if args.k:
        rows = [r for r in rows if re.search(args.k, r.id)]
    sync = torch.cuda.synchronize

    results = []
    bad = []
    start = time.perf_counter()
    left_out: List[Row] = []
    for i, row in enumerate(rows):
        if time.perf_counter() - start > args.max_seconds:
            left_out = rows[i:]
            break
        t0 = time.perf_counter()
        pair = GpuPair(row)
        err = pair.check()
        med = time_steps(pair.steps(), sync, args.budget, args.min_calls)
        del pair
        results.append((row, med, err))
        if not err <= args.rtol:
            bad.append(f"{row.id}: err {err:.2e}")
        print(
            f"[{i + 1}/{len(rows)}] {row.id}: rnnkit {med['rnnkit'] * 1e3:.3f} ms, torch {med['torch'] * 1e3:.3f} ms, "
            f"torch+copy {med['torch+copy'] * 1e3:.3f} ms, err {err:.1e} ({time.perf_counter() - t0:.1f} s)",
            file=sys.stderr, flush=True,
        )
    print(f"{len(results)} rows in {time.perf_counter() - start:.0f} s", file=sys.stderr)

    cols = ["row", "rows from", "GFLOP", "rnnkit ms", "torch ms", "torch+copy ms", "torch/rnnkit",
            "torch+copy/rnnkit", "rnnkit GFLOP/s", "err"]
    table = []
    for row, med, err in results:
        rk, tt, tc = med["rnnkit"], med["torch"], med["torch+copy"]
        flag = "" if err <= args.rtol else " (!)"
        table.append([row.id, row.source, f"{row.gflop:.3g}", f"{rk * 1e3:.3f}", f"{tt * 1e3:.3f}", f"{tc * 1e3:.3f}",
                      f"{tt / rk:.2f}", f"{tc / rk:.2f}", f"{row.gflop / rk:.3g}", f"{err:.1e}{flag}"])
    if args.markdown:
        print("\n".join(header_lines(args, torch)))
        print("| " + " | ".join(cols) + " |")
        print("|" + "|".join("---" if j < 2 else "---:" for j in range(len(cols))) + "|")
        for r in table:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(c), *(len(r[j]) for r in table)) if table else len(c) for j, c in enumerate(cols)]
        print("  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(cols, widths))))
        for r in table:
            print("  ".join(v.ljust(w) if j < 2 else v.rjust(w) for j, (v, w) in enumerate(zip(r, widths))))
    if left_out:
        note = f"{len(left_out)} row(s) not run (--max-seconds {args.max_seconds:g}): " + ", ".join(r.id for r in left_out)
        print(("\n" + note) if args.markdown else note)
        print(note, file=sys.stderr)
    if bad:
        print(f"\n{len(bad)} row(s) beyond rtol {args.rtol:g}: " + "; ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
