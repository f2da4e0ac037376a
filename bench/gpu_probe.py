"""GPU probe: how exact each float32 implementation is, and how fast host<->device copies are.

1. Accuracy. For each cell (tanh/ReLU RNN, LSTM, GRU), 1-2 layers, one or two directions, full
   length or packed sequences (T=6, B=4, D=3, H=5, float32 weights and inputs): the forward,
   final states and every gradient of a training step, computed in float32 by

   * rnnkit on the GPU, rnnkit on the CPU,
   * torch on the GPU with cuDNN, torch on the GPU without cuDNN (its own CUDA kernels), torch on
     the CPU,

   each against the same step in float64 (rnnkit on the CPU, the float32 values widened). The
   column is the largest norm-inf relative error over everything the step computes.
2. Copies: torch host->device and device->host of 105 MB of float32, from and into pageable
   (touched, and freshly allocated) and page-locked memory; cudaHostRegister + unregister
   (through cupy, where installed).

Needs torch with CUDA and rnnkit built with CUDA. ``bench/gpu_check.sh`` runs it;
bench/RESULTS.md (the GPU section) records a run.

    python bench/gpu_probe.py
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Dict, Optional

import numpy as np

from rnnbench import rel_err  # noqa: E402  (bench/ is the script's folder, so on sys.path)

T, B, D, H = 6, 4, 3, 5
CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")


def make_rnnkit(cell: str, layers: int, bidirectional: bool, dtype: str, device: str):
    from rnnkit.layers import layer_for_mode

    return layer_for_mode(cell, D, H, num_layers=layers, bidirectional=bidirectional, dtype=dtype,
                          seed=5 + layers, device=device)


def make_torch(cell: str, layers: int, bidirectional: bool, state_dict: dict, dtype):
    import torch

    kw = dict(num_layers=layers, bidirectional=bidirectional)
    if cell == "lstm":
        m = torch.nn.LSTM(D, H, **kw)
    elif cell == "gru":
        m = torch.nn.GRU(D, H, **kw)
    else:
        m = torch.nn.RNN(D, H, nonlinearity=cell[4:], **kw)
    m = m.to(dtype)
    m.load_state_dict({k: torch.as_tensor(np.asarray(v), dtype=dtype) for k, v in state_dict.items()})
    return m


def problem(cell: str, layers: int, bidirectional: bool, packed: bool, seed: int) -> Dict[str, Optional[np.ndarray]]:
    rng = np.random.default_rng(seed)
    dirs = 2 if bidirectional else 1
    states = (layers * dirs, B, H)
    p = {
        "x": rng.standard_normal((T, B, D)).astype(np.float32),
        "h0": (0.5 * rng.standard_normal(states)).astype(np.float32),
        "c0": (0.5 * rng.standard_normal(states)).astype(np.float32) if cell == "lstm" else None,
        "G": rng.standard_normal((T, B, dirs * H)).astype(np.float32),
        "Gh": rng.standard_normal(states).astype(np.float32),
        "Gc": rng.standard_normal(states).astype(np.float32) if cell == "lstm" else None,
        "lengths": np.array([T, 2, 1, 4]) if packed else None,
    }
    return p


def widened(p: dict) -> dict:
    return {k: (v.astype(np.float64) if v is not None and v.dtype == np.float32 else v) for k, v in p.items()}


def run_rnnkit(m, p: dict) -> Dict[str, np.ndarray]:
    lstm = p["c0"] is not None
    state = (p["h0"], p["c0"]) if lstm else p["h0"]
    out, st = m.forward(p["x"], state, lengths=p["lengths"], training=True)
    grad_state = (p["Gh"], p["Gc"]) if lstm else p["Gh"]
    gx, gst = m.backward(p["G"], grad_state)
    res = {"out": out, "h_n": st[0] if lstm else st, "grad_x": gx, "grad_h0": gst[0] if lstm else gst}
    if lstm:
        res.update(c_n=st[1], grad_c0=gst[1])
    res.update({"grad " + k: v for k, v in m.grads.items()})
    return {k: np.array(v, copy=True) for k, v in res.items()}


def run_torch(tm, p: dict, device: str) -> Dict[str, np.ndarray]:
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    dtype = next(tm.parameters()).dtype
    tm = tm.to(device)
    leaf = lambda a: None if a is None else torch.tensor(a, dtype=dtype, device=device, requires_grad=True)  # noqa: E731
    x, h0, c0 = leaf(p["x"]), leaf(p["h0"]), leaf(p["c0"])
    hx = (h0, c0) if c0 is not None else h0
    if p["lengths"] is not None:
        packed = pack_padded_sequence(x, torch.as_tensor(p["lengths"]), enforce_sorted=False)
        out_p, st = tm(packed, hx)
        out, _ = pad_packed_sequence(out_p, total_length=T)
    else:
        out, st = tm(x, hx)
    h_n, c_n = st if c0 is not None else (st, None)
    as_t = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
    loss = (out * as_t(p["G"])).sum() + (h_n * as_t(p["Gh"])).sum()
    if c_n is not None:
        loss = loss + (c_n * as_t(p["Gc"])).sum()
    tm.zero_grad(set_to_none=True)
    loss.backward()
    res = {"out": out, "h_n": h_n, "grad_x": x.grad, "grad_h0": h0.grad}
    if c_n is not None:
        res.update(c_n=c_n, grad_c0=c0.grad)
    res.update({"grad " + k: v.grad for k, v in tm.named_parameters()})
    return {k: v.detach().cpu().numpy() for k, v in res.items()}


def worst(res: dict, truth: dict) -> str:
    errs = {k: rel_err(res[k], truth[k]) for k in truth}
    k = max(errs, key=errs.get)
    return f"{errs[k]:.1e} ({k})"


def accuracy() -> None:
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print("float32 against float64: the largest norm-inf relative error of a training step (T=6, B=4, D=3, H=5)")
    for cell in CELLS:
        for layers, bidirectional in ((1, False), (1, True), (2, False), (2, True)):
            for packed in (False, True):
                p = problem(cell, layers, bidirectional, packed, seed=6 + bidirectional)
                gpu = make_rnnkit(cell, layers, bidirectional, "float32", "cuda")
                sd = gpu.state_dict()
                exact = make_rnnkit(cell, layers, bidirectional, "float64", "cpu")
                exact.load_state_dict({k: np.asarray(v, np.float64) for k, v in sd.items()})
                truth = run_rnnkit(exact, widened(p))
                cpu = make_rnnkit(cell, layers, bidirectional, "float32", "cpu")
                cpu.load_state_dict(sd)
                tm = make_torch(cell, layers, bidirectional, sd, torch.float32)
                cols = {"rnnkit cuda": run_rnnkit(gpu, p), "rnnkit cpu": run_rnnkit(cpu, p),
                        "cuDNN": run_torch(tm, p, "cuda")}
                with torch.backends.cudnn.flags(enabled=False):
                    cols["torch cuda kernels"] = run_torch(tm, p, "cuda")
                cols["torch cpu"] = run_torch(tm, p, "cpu")
                case = f"{cell:8s} L{layers} {'bi ' if bidirectional else 'uni'} {'packed' if packed else 'full  '}"
                print(case + "  " + "  ".join(f"{name} {worst(r, truth)}" for name, r in cols.items()), flush=True)


def copies() -> None:
    import torch

    n = 100 * 256 * 1024
    x = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    dev = torch.from_numpy(x).cuda()
    pinned = torch.empty(n, dtype=torch.float32).pin_memory()
    touched = np.ones_like(x)

    def rate(name: str, f: Callable[[], object], reps: int = 5) -> None:
        f()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / reps
        print(f"  {name:44s} {dt * 1e3:8.2f} ms  {x.nbytes / dt / 1e9:6.2f} GB/s", flush=True)

    print(f"copies of {x.nbytes / 1e6:.0f} MB (torch)")
    rate("host->device, pageable (touched numpy)", lambda: torch.from_numpy(x).to("cuda"))
    rate("host->device, page-locked", lambda: dev.copy_(pinned, non_blocking=True))
    rate("device->host, into new memory (.cpu())", lambda: dev.cpu())
    rate("device->host, into touched numpy", lambda: torch.from_numpy(touched).copy_(dev))
    rate("device->host, page-locked", lambda: pinned.copy_(dev, non_blocking=True))
    try:
        import cupy
    except ImportError:
        print("  cudaHostRegister: cupy is not installed")
        return

    def lock() -> None:
        cupy.cuda.runtime.hostRegister(touched.ctypes.data, touched.nbytes, 0)
        cupy.cuda.runtime.hostUnregister(touched.ctypes.data)

    rate("cudaHostRegister + cudaHostUnregister", lock)


def main() -> int:
    import torch

    import rnnkit.cuda

    if not torch.cuda.is_available() or not rnnkit.cuda.is_available():
        print(f"needs a GPU for torch and rnnkit (rnnkit: {rnnkit.cuda.unavailable_reason()})", file=sys.stderr)
        return 1
    accuracy()
    copies()
    return 0


if __name__ == "__main__":
    sys.exit(main())
