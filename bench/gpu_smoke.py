"""GPU smoke test: rnnkit layers on ``device="cuda"`` against the same layers on the CPU.

Short on purpose: ``bench/gpu_check.sh`` runs it under ``compute-sanitizer --tool memcheck``
(which slows kernels down a lot), so every kernel path is exercised on small shapes: LSTM, GRU
and RNN (tanh, relu); float32 and float64; 2 layers, bidirectional, batch-first or not, an
initial state, per-sequence lengths; an inference forward, then a training forward and backward.
Shapes are odd on purpose (no multiple of 32 or 8), one case is large enough to need several
thread blocks, and one has host arrays over 1 MiB. Outputs, final states, dL/dx, dL/d(state) and every parameter gradient must match
the CPU layer's within a norm-inf relative tolerance. Last, a model over token ids (the
embedding on the device) and three short classifier fits whose whole training step (clipping
and optimizer included) runs on the device.

    python bench/gpu_smoke.py                 # exit 0: all cases match
    python bench/gpu_smoke.py --device cuda   # the device to test (default cuda)

Needs only numpy and rnnkit built with CUDA (``RNNKIT_CUDA=1 pip install .``); no torch.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
import zlib
from typing import Callable

import numpy as np

from rnnbench import rel_err  # noqa: E402  (bench/ is the script's folder, so on sys.path)

#: Norm-inf relative tolerance per dtype: the project's parity contract (tests/conftest.py RTOL).
RTOL = {"float32": 1e-5, "float64": 1e-10}

#: (T, B, D, H): a tiny case, one that needs several thread blocks per kernel, and one whose x,
#: out, dL/dout and dL/dx pass 1 MiB in float32 (host ranges locked for the copy). The
#: recurrence runs fused or step by step by the size of W_hh (cpp/cuda/recurrence.hpp): the
#: cases have both.
SHAPES = ((7, 5, 6, 9), (23, 37, 45, 131), (41, 33, 203, 101))


def make(cell: str, D: int, H: int, dtype: str, batch_first: bool, device: str):
    from rnnkit.layers import layer_for_mode

    return layer_for_mode(cell, D, H, num_layers=2, bidirectional=True, batch_first=batch_first, dtype=dtype, seed=3,
                          device=device)


def flat_state(state):
    return list(state) if isinstance(state, tuple) else [state]


def one_case(cell: str, dtype: str, shape, batch_first: bool, device: str) -> dict:
    T, B, D, H = shape
    rng = np.random.default_rng(zlib.crc32(repr((cell, dtype, shape, batch_first)).encode()))
    cpu = make(cell, D, H, dtype, batch_first, "cpu")
    dev = make(cell, D, H, dtype, batch_first, device)
    dev.load_state_dict(cpu.state_dict())

    x = rng.standard_normal((B, T, D) if batch_first else (T, B, D)).astype(dtype)
    L = 2 * 2  # layers * directions
    h0 = (0.5 * rng.standard_normal((L, B, H))).astype(dtype)
    state = (h0, (0.5 * rng.standard_normal((L, B, H))).astype(dtype)) if cell == "lstm" else h0
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = T  # the longest sequence fills the batch
    if B > 2:
        lengths[-1] = 1

    errs: dict = {}
    # inference forward: no state, no lengths; then with both
    out_c, st_c = cpu.forward(x)
    out_d, st_d = dev.forward(x)
    errs["infer out"] = rel_err(out_d, out_c)
    for i, (a, b) in enumerate(zip(flat_state(st_d), flat_state(st_c))):
        errs[f"infer state{i}"] = rel_err(a, b)

    out_c, st_c = cpu.forward(x, state=state, lengths=lengths, training=True)
    out_d, st_d = dev.forward(x, state=state, lengths=lengths, training=True)
    errs["out"] = rel_err(out_d, out_c)
    for i, (a, b) in enumerate(zip(flat_state(st_d), flat_state(st_c))):
        errs[f"state{i}"] = rel_err(a, b)

    g_out = rng.standard_normal(out_c.shape).astype(dtype)
    g_h = rng.standard_normal((L, B, H)).astype(dtype)
    g_state = (g_h, rng.standard_normal((L, B, H)).astype(dtype)) if cell == "lstm" else g_h
    gx_c, gs_c = cpu.backward(g_out, g_state)
    gx_d, gs_d = dev.backward(g_out, g_state)
    errs["grad_x"] = rel_err(gx_d, gx_c)
    for i, (a, b) in enumerate(zip(flat_state(gs_d), flat_state(gs_c))):
        errs[f"grad_state{i}"] = rel_err(a, b)
    grads_c = cpu.grads
    for name, g in dev.grads.items():
        errs[f"grad[{name}]"] = rel_err(g, grads_c[name])
    return errs


def fit_case(optimizer: str, device: str) -> dict:
    """Two epochs of an RNNClassifier in float64 with clipping: the whole training step on the
    device (gradient, clip_value, clip_norm, optimizer update) against the CPU fit."""
    from rnnkit import RNNClassifier
    from rnnkit.exceptions import ConvergenceWarning

    rng = np.random.default_rng(zlib.crc32(optimizer.encode()))
    X = rng.standard_normal((40, 9, 5))
    y = (X[:, :3, 0].sum(axis=1) > X[:, -3:, 1].sum(axis=1)).astype(int)
    kw = dict(cell="lstm", hidden_size=11, max_epochs=2, batch_size=16, optimizer=optimizer, momentum=0.9,
              clip_value=0.05, clip_norm=0.2, learning_rate=0.05, dtype="float64", random_state=0, n_threads=1)
    with warnings.catch_warnings():  # two epochs do not converge, on purpose
        warnings.simplefilter("ignore", ConvergenceWarning)
        cpu = RNNClassifier(**kw).fit(X, y)
        dev = RNNClassifier(device=device, **kw).fit(X, y)
    errs = {"weights": rel_err(dev._params_flat, cpu._params_flat)}
    for i, (ours, theirs) in enumerate(zip(dev._optimizer_state["state"], cpu._optimizer_state["state"])):
        for key in theirs:
            errs[f"optimizer {key}"] = rel_err(ours[key], theirs[key])
    return errs


def vocab_case(dtype: str, device: str) -> dict:
    """A model over token ids (as the text models'): embedding lookup and its gradient on the
    device, ragged lengths, against the CPU engine's loss_and_grad; then three device steps."""
    from rnnkit import optim
    from rnnkit._backend import core
    from rnnkit._fitting import _BatchStep
    from rnnkit.cuda import _model_calls, parse_device

    class Owner:  # holds the cached device model, as an estimator does
        pass

    rng = np.random.default_rng(zlib.crc32(dtype.encode()))
    B, T, vocab = 13, 9, 11
    spec = core.ModelSpec(core.LayerSpec("gru", 7, 10, 2, True, True), vocab, "cross_entropy", "sequence", vocab)
    params = rng.uniform(-0.3, 0.3, spec.param_count).astype(dtype)
    x = rng.integers(0, vocab, (B, T)).astype(np.int64)
    lengths = rng.integers(1, T + 1, B).astype(np.int64)
    labels = rng.integers(0, vocab, B * T).astype(np.int64)
    errs: dict = {}
    grads = {}
    for where, index in (("cpu", None), ("dev", parse_device(device))):
        _, loss_and_grad = _model_calls(Owner(), spec, dtype, index)
        g = np.zeros_like(params)
        loss = loss_and_grad(spec, params, x, lengths, labels, None, g, 0.0, 0, 1)
        grads[where] = (loss, g)
    errs["loss"] = abs(grads["dev"][0] - grads["cpu"][0]) / abs(grads["cpu"][0])
    errs["grads"] = rel_err(grads["dev"][1], grads["cpu"][1])
    stepped = {}
    for where, index in (("cpu", None), ("dev", parse_device(device))):
        p, g = params.copy(), np.zeros_like(params)
        opt = optim.Adam([(p, g)], lr=1e-3)
        step = _BatchStep(spec, p, g, opt, dropout=0.0, clip_norm=1.0, clip_value=None, n_threads=1,
                          diverged=lambda: "diverged", run=_model_calls(Owner(), spec, dtype, index)[1])
        for _ in range(3):
            step(x, lengths, labels, None, 0)
        stepped[where] = p
    errs["3 steps"] = rel_err(stepped["dev"], stepped["cpu"])
    return errs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args(argv)

    import rnnkit

    if args.device == "cuda":
        import rnnkit.cuda

        if not rnnkit.cuda.is_available():
            print(f"FAIL: rnnkit.cuda is not available: {rnnkit.cuda.unavailable_reason()}", file=sys.stderr)
            return 1
        print(f"rnnkit {rnnkit.__version__}, {rnnkit.cuda.device_count()} CUDA device(s)")

    failures: list = []
    n = 0
    start = time.perf_counter()

    def check(case: str, rtol: float, run: Callable[[], dict]) -> None:
        """Run one case, print its worst error and note it in `failures` beyond `rtol` or when it raises."""
        nonlocal n
        try:
            errs = run()
        except Exception as exc:  # report every case, then fail
            failures.append(f"{case}: {type(exc).__name__}: {exc}")
            print(f"ERROR {case}: {type(exc).__name__}: {exc}", flush=True)
            return
        n += 1
        worst = max(errs, key=errs.get)
        ok = all(v <= rtol for v in errs.values())
        print(f"{'ok  ' if ok else 'FAIL'} {case}: max rel err {errs[worst]:.2e} ({worst})", flush=True)
        if not ok:
            bad = ", ".join(f"{k} {v:.2e}" for k, v in errs.items() if not v <= rtol)
            failures.append(f"{case}: beyond rtol {rtol:g}: {bad}")

    for cell in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
        for dtype in ("float32", "float64"):
            for k, shape in enumerate(SHAPES):
                batch_first = k % 2 == 1
                check(f"{cell} {dtype} T,B,D,H={shape} batch_first={batch_first}", RTOL[dtype],
                      lambda: one_case(cell, dtype, shape, batch_first, args.device))
    for dtype in ("float32", "float64"):
        check(f"token ids (embedding on the device) {dtype}", RTOL[dtype], lambda: vocab_case(dtype, args.device))
    for optimizer in ("adam", "sgd", "rmsprop"):
        # a fit's chain of steps: the device tests' bound for whole fits
        check(f"RNNClassifier fit float64 optimizer={optimizer}", 1e-9, lambda: fit_case(optimizer, args.device))
    print(f"{n} cases run, {len(failures)} failed, {time.perf_counter() - start:.1f} s")
    for f in failures:
        print("  " + f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
