"""GPU training steps: an estimator's step with clipping and the optimizer on the device,
against the same step with them on the host, and against the same model in torch on the GPU.

Each row is a classifier (one recurrent layer, a dense head on the last hidden state, softmax
cross-entropy, 5 classes; on the last row token ids through an embedding table, as the text
models) trained in float32 with Adam (lr 1e-3) and ``clip_norm`` 1.0, on
batches of numpy arrays. The median time of one step, for

* ``device step``: rnnkit's estimator step as it is now: the gradient, the clipping and Adam on
  the device, Adam's state kept there; the parameters copied in and the stepped ones back;
* ``host step``: the same device model, as estimators stepped before: the gradient copied back,
  clipped and Adam-stepped by rnnkit.optim on the host (forced here with an identity
  ``grad_hook``, which is what keeps a step on the host);
* ``torch``: (nn.Embedding +) nn.LSTM/GRU + nn.Linear on the GPU, the batch copied in from numpy each step,
  cross-entropy, backward, ``clip_grad_norm_``, ``torch.optim.Adam``, the loss read back.

First a check: three steps of the device and host variants from the same weights must give the
same parameters (norm-inf relative error, reported; beyond 1e-5 the exit status is 1).

    python bench/gpu_fit.py --markdown          # bench/gpu_check.sh runs it
    RNNKIT_CUDA_SIMULATE=1 python bench/gpu_fit.py --quick   # anywhere: host simulation, torch on the CPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Callable, Dict, List, Tuple

import numpy as np

from rnnbench import rel_err  # noqa: E402  (bench/ is the script's folder, so on sys.path)

#: (cell, B, T, D, H, vocab): vocab > 0 feeds token ids through an embedding table of D columns
ROWS: Tuple[Tuple[str, int, int, int, int, int], ...] = (
    ("lstm", 32, 50, 64, 128, 0),
    ("gru", 64, 100, 64, 256, 0),
    ("lstm", 128, 50, 256, 512, 0),
    ("lstm", 256, 100, 512, 1024, 0),
    ("lstm", 64, 50, 128, 256, 20000),
)
QUICK_ROWS = (("lstm", 8, 10, 6, 16, 0), ("gru", 4, 7, 5, 24, 30))
CLASSES = 5
LIBS = ("device step", "host step", "torch")


def model_spec(cell: str, D: int, H: int, vocab: int):
    from rnnkit._backend import core

    return core.ModelSpec(core.LayerSpec(cell, D, H, 1, False, True), CLASSES, "cross_entropy", "last", vocab)


def rnnkit_step(spec, params: np.ndarray, on_host: bool) -> Callable:
    """A _BatchStep of the device model (Adam, clip_norm 1.0) over a copy of ``params``."""
    import rnnkit.cuda
    from rnnkit import optim
    from rnnkit._fitting import _BatchStep

    p = params.copy()
    grads = np.zeros_like(p)
    opt = optim.Adam([(p, grads)], lr=1e-3)

    class Owner:  # holds the cached device model, as an estimator does
        pass

    run = rnnkit.cuda._model_calls(Owner(), spec, "float32", 0)[1]
    step = _BatchStep(spec, p, grads, opt, dropout=0.0, clip_norm=1.0, clip_value=None, n_threads=1,
                      diverged=lambda: "diverged", run=run, grad_hook=(lambda loss: loss) if on_host else None)
    assert (step.device is None) == on_host
    return step


def torch_step(cell: str, D: int, H: int, vocab: int, device: str) -> Callable:
    import torch

    torch.manual_seed(0)
    rnn = (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(D, H, batch_first=True).to(device)
    head = torch.nn.Linear(H, CLASSES).to(device)
    embed = torch.nn.Embedding(vocab, D).to(device) if vocab else None
    params = list(rnn.parameters()) + list(head.parameters()) + (list(embed.parameters()) if vocab else [])
    opt = torch.optim.Adam(params, lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(x: np.ndarray, y: np.ndarray) -> float:
        xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        opt.zero_grad(set_to_none=True)
        out, _ = rnn(embed(xt) if embed is not None else xt)
        loss = loss_fn(head(out[:, -1]), yt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return float(loss.item())

    return step


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=0.5, help="seconds of calls per library and row")
    ap.add_argument("--min-calls", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="two tiny rows (a smoke run)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)

    import torch

    import rnnkit.cuda

    if not rnnkit.cuda.is_available():
        print(f"rnnkit.cuda is not available: {rnnkit.cuda.unavailable_reason()}", file=sys.stderr)
        return 1
    tdev = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if tdev == "cuda" else (lambda: None)
    lines = [f"rnnkit device: {rnnkit.cuda.get_device_name(0)}; torch {torch.__version__} on {tdev}; float32, Adam, "
             f"clip_norm 1.0; median ms per step over interleaved calls (budget {args.budget} s)", "",
             "| row | params | " + " | ".join(f"{lib} ms" for lib in LIBS) + " | host/device step | torch/device step "
             "| device vs host step (3 steps) |", "|---|---:|" + "---:|" * (len(LIBS) + 3)]
    failed = False
    for cell, B, T, D, H, vocab in QUICK_ROWS if args.quick else ROWS:
        name = f"{cell}-B{B}-T{T}-D{D}-H{H}" + (f"-vocab{vocab}" if vocab else "")
        rng = np.random.default_rng(0)
        spec = model_spec(cell, D, H, vocab)
        params = rng.uniform(-1 / np.sqrt(H), 1 / np.sqrt(H), spec.param_count).astype(np.float32)

        def inputs():
            if vocab:
                return rng.integers(0, vocab, (B, T)).astype(np.int64)
            return rng.standard_normal((B, T, D)).astype(np.float32)

        batches = [(inputs(), rng.integers(0, CLASSES, B).astype(np.int64)) for _ in range(4)]

        # check: the device step against the host step, three steps from the same weights
        dev, host = rnnkit_step(spec, params, False), rnnkit_step(spec, params, True)
        for x, y in batches[:3]:
            dev(x, None, y, None, 0)
            host(x, None, y, None, 0)
        err = rel_err(dev.params, host.params)
        failed |= not err <= 1e-5

        tstep = torch_step(cell, D, H, vocab, tdev)
        calls: Dict[str, Callable[[int], object]] = {
            "device step": lambda i: dev(batches[i % 4][0], None, batches[i % 4][1], None, 0),
            "host step": lambda i: host(batches[i % 4][0], None, batches[i % 4][1], None, 0),
            "torch": lambda i: tstep(*batches[i % 4]),
        }
        for lib in LIBS:  # warm-up
            calls[lib](0)
        sync()
        times: Dict[str, List[float]] = {lib: [] for lib in LIBS}
        spent = dict.fromkeys(LIBS, 0.0)
        rounds = 0
        while min(spent.values()) < args.budget or min(len(t) for t in times.values()) < args.min_calls:
            order = LIBS if rounds % 2 == 0 else LIBS[::-1]
            for lib in order:
                t0 = time.perf_counter()
                calls[lib](rounds)
                sync()
                dt = time.perf_counter() - t0
                times[lib].append(dt)
                spent[lib] += dt
            rounds += 1
        med = {lib: statistics.median(times[lib]) * 1e3 for lib in LIBS}
        lines.append(f"| {name} | {spec.param_count} | " + " | ".join(f"{med[lib]:.3f}" for lib in LIBS)
                     + f" | {med['host step'] / med['device step']:.2f} | {med['torch'] / med['device step']:.2f} "
                     f"| {err:.1e} |")
        print(f"{name}: " + ", ".join(f"{lib} {med[lib]:.3f} ms" for lib in LIBS) + f", check {err:.1e}",
              file=sys.stderr, flush=True)
    print("\n".join(lines) if args.markdown else "\n".join(lines[2:]))
    if failed:
        print("FAIL: the device step's parameters differ from the host step's beyond 1e-5", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
