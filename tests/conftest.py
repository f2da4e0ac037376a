"""Shared helpers for the rnnkit test-suite.

The helpers live here (rather than in fixtures only) so that test modules and
the SIMD subprocess scripts can ``from conftest import ...``.  Nothing in this
module imports torch or rnnkit at import time: torch is optional (tests that
need it skip with a clear reason) and rnnkit is imported lazily.
"""
from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from typing import Dict, Optional, Sequence

import numpy as np
import pytest

# Make ``import conftest`` work from test modules and from subprocesses
# regardless of pytest's import mode.
_TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

CELLS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
DTYPES = ("float32", "float64")
# Parity tolerances (norm-inf relative error, see assert_close_rel). Do not loosen.
RTOL = {"float32": 1e-5, "float64": 1e-10}

TORCH_MISSING_REASON = (
    "torch is not installed: the PyTorch parity tests need it "
    "(CI installs it via the 'test' extra: pip install rnnkit[test])"
)


# --------------------------------------------------------------------------
# seeding / torch availability
# --------------------------------------------------------------------------
def _torch_or_none():
    try:
        import torch  # noqa: F401
    except Exception:  # pragma: no cover - depends on the environment
        return None
    return torch


@pytest.fixture(autouse=True)
def _seed_everything():
    """Seed every global RNG before each test (tests mostly use local rngs)."""
    random.seed(1234)
    np.random.seed(1234)
    torch = _torch_or_none()
    if torch is not None:
        torch.manual_seed(1234)
    yield


def pytest_configure(config):
    torch = _torch_or_none()
    if torch is not None:
        # Small problems: threads only add overhead; also keeps the
        # reference deterministic.
        torch.set_num_threads(1)


@pytest.fixture
def torch():
    """The torch module, or skip the test with a clear reason."""
    return pytest.importorskip("torch", reason=TORCH_MISSING_REASON)


def require_torch():
    """Module-level variant: ``torch = require_torch()``."""
    return pytest.importorskip("torch", reason=TORCH_MISSING_REASON)


# --------------------------------------------------------------------------
# comparison
# --------------------------------------------------------------------------
def rel_err(actual, expected, tiny: float = 1e-30) -> float:
    """max|a-e| / max(max|e|, tiny) (norm-inf relative error)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise AssertionError(f"shape mismatch: actual {a.shape} vs expected {e.shape}")
    if e.size == 0:
        return 0.0
    if not np.all(np.isfinite(a)):
        return float("inf")
    scale = max(float(np.max(np.abs(e))), tiny)
    return float(np.max(np.abs(a - e))) / scale


def assert_close_rel(actual, expected, rtol: float, name: str = "", tiny: float = 1e-30) -> float:
    """Assert max|a-e| <= rtol * max(max|e|, tiny); return the achieved error."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{name}: shape {a.shape} != expected {e.shape}"
    if e.size == 0:
        return 0.0
    assert np.all(np.isfinite(a)), f"{name}: actual contains non-finite values"
    scale = max(float(np.max(np.abs(e))), tiny)
    abs_err = float(np.max(np.abs(a - e)))
    err = abs_err / scale
    if not err <= rtol:
        idx = np.unravel_index(int(np.argmax(np.abs(a - e))), a.shape)
        raise AssertionError(
            f"{name}: relative error {err:.3e} > rtol {rtol:.1e} "
            f"(max abs err {abs_err:.3e} at {idx}: actual {a[idx]!r} expected {e[idx]!r}; "
            f"scale max|expected| = {scale:.3e})"
        )
    return err


# --------------------------------------------------------------------------
# model construction
# --------------------------------------------------------------------------
def make_rnnkit(cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                bidirectional: bool = False, dtype: str = "float64", seed=0,
                n_threads=None):
    import rnnkit

    common = dict(bias=bias, batch_first=batch_first, dropout=dropout,
                  bidirectional=bidirectional, dtype=dtype, seed=seed, n_threads=n_threads)
    if cell in ("rnn_tanh", "rnn_relu"):
        return rnnkit.RNN(input_size, hidden_size, num_layers,
                          nonlinearity=cell.split("_")[1], **common)
    if cell == "lstm":
        return rnnkit.LSTM(input_size, hidden_size, num_layers, **common)
    if cell == "gru":
        return rnnkit.GRU(input_size, hidden_size, num_layers, **common)
    raise ValueError(cell)


def make_torch(cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
               bias: bool = True, batch_first: bool = False, bidirectional: bool = False,
               dtype: str = "float64", state_dict: Optional[Dict[str, np.ndarray]] = None):
    """torch.nn.{RNN,LSTM,GRU} with the same configuration (and weights if given)."""
    import torch

    kw = dict(bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    if cell in ("rnn_tanh", "rnn_relu"):
        tm = torch.nn.RNN(input_size, hidden_size, num_layers,
                          nonlinearity=cell.split("_")[1], **kw)
    elif cell == "lstm":
        tm = torch.nn.LSTM(input_size, hidden_size, num_layers, **kw)
    elif cell == "gru":
        tm = torch.nn.GRU(input_size, hidden_size, num_layers, **kw)
    else:
        raise ValueError(cell)
    tm = tm.to(torch.float64 if np.dtype(dtype) == np.float64 else torch.float32)
    if state_dict is not None:
        tm.load_state_dict(
            {k: torch.from_numpy(np.array(v, dtype=np.dtype(dtype), copy=True))
             for k, v in state_dict.items()},
            strict=True,
        )
    return tm


def torch_state_dict_np(tm) -> Dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().copy() for k, v in tm.state_dict().items()}


def expected_param_shapes(cell: str, input_size: int, hidden_size: int, num_layers: int,
                          bias: bool, bidirectional: bool) -> Dict[str, tuple]:
    """PyTorch's parameter names/shapes, in PyTorch's order, derived independently of torch."""
    gates = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}[cell]
    dirs = 2 if bidirectional else 1
    out = {}
    for layer in range(num_layers):
        in_l = input_size if layer == 0 else hidden_size * dirs
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d == 1 else "")
            out["weight_ih" + sfx] = (gates * hidden_size, in_l)
            out["weight_hh" + sfx] = (gates * hidden_size, hidden_size)
            if bias:
                out["bias_ih" + sfx] = (gates * hidden_size,)
                out["bias_hh" + sfx] = (gates * hidden_size,)
    return out


# --------------------------------------------------------------------------
# problems (inputs, initial states, upstream gradients)
# --------------------------------------------------------------------------
@dataclass
class Problem:
    cell: str
    x: np.ndarray
    h0: Optional[np.ndarray]
    c0: Optional[np.ndarray]
    lengths: Optional[list]
    G: np.ndarray                  # grad wrt out
    Gh: Optional[np.ndarray]       # grad wrt h_n
    Gc: Optional[np.ndarray]       # grad wrt c_n (LSTM)
    batch_first: bool = False

    @property
    def is_lstm(self) -> bool:
        return self.cell == "lstm"

    def state(self):
        if self.is_lstm:
            return None if self.h0 is None else (self.h0, self.c0)
        return self.h0

    def grad_state(self):
        if self.is_lstm:
            if self.Gh is None and self.Gc is None:
                return None
            return (self.Gh, self.Gc)
        return self.Gh


def unsorted_lengths(rng: np.random.Generator, T: int, B: int) -> list:
    """Lengths in 1..T, containing T and 1, not sorted in either direction."""
    assert B >= 3 and T >= 3
    lens = [T, 1] + [int(v) for v in rng.integers(2, T, size=B - 2)]
    for _ in range(1000):
        rng.shuffle(lens)
        if lens != sorted(lens) and lens != sorted(lens, reverse=True):
            break
    return [int(v) for v in lens]


def make_problem(cell: str, T: int, B: int, D: int, H: int, num_layers: int = 1,
                 bidirectional: bool = False, dtype: str = "float64",
                 batch_first: bool = False, with_lengths: bool = False,
                 with_state: bool = True, with_grad_state: bool = True,
                 unbatched: bool = False, seed: int = 0,
                 lengths: Optional[Sequence[int]] = None) -> Problem:
    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    dirs = 2 if bidirectional else 1
    if unbatched:
        xshape, oshape, sshape = (T, D), (T, dirs * H), (num_layers * dirs, H)
    elif batch_first:
        xshape, oshape, sshape = (B, T, D), (B, T, dirs * H), (num_layers * dirs, B, H)
    else:
        xshape, oshape, sshape = (T, B, D), (T, B, dirs * H), (num_layers * dirs, B, H)
    x = rng.standard_normal(xshape).astype(dt)
    h0 = (0.5 * rng.standard_normal(sshape)).astype(dt) if with_state else None
    c0 = (0.5 * rng.standard_normal(sshape)).astype(dt) if (with_state and cell == "lstm") else None
    if lengths is not None:
        lens = [int(v) for v in lengths]
    elif with_lengths:
        lens = unsorted_lengths(rng, T, B)
    else:
        lens = None
    G = rng.standard_normal(oshape).astype(dt)
    Gh = rng.standard_normal(sshape).astype(dt) if with_grad_state else None
    Gc = rng.standard_normal(sshape).astype(dt) if (with_grad_state and cell == "lstm") else None
    return Problem(cell, x, h0, c0, lens, G, Gh, Gc, batch_first)


# --------------------------------------------------------------------------
# running rnnkit / torch on a problem
# --------------------------------------------------------------------------
def rnnkit_forward(m, p: Problem, training: bool = False):
    """Return (out, h_n, c_n) as copies (c_n None unless LSTM)."""
    out, st = m.forward(p.x, p.state(), lengths=p.lengths, training=training)
    if p.is_lstm:
        h_n, c_n = st
        return np.array(out, copy=True), np.array(h_n, copy=True), np.array(c_n, copy=True)
    return np.array(out, copy=True), np.array(st, copy=True), None


def rnnkit_run(m, p: Problem) -> dict:
    """Training forward + backward; everything copied into a plain dict."""
    out, h_n, c_n = rnnkit_forward(m, p, training=True)
    gx, gst = m.backward(p.G, p.grad_state())
    if p.is_lstm:
        gh0, gc0 = gst
    else:
        gh0, gc0 = gst, None
    return dict(
        out=out, h_n=h_n, c_n=c_n,
        grad_x=np.array(gx, copy=True),
        grad_h0=None if gh0 is None else np.array(gh0, copy=True),
        grad_c0=None if gc0 is None else np.array(gc0, copy=True),
        grads={k: np.array(v, copy=True) for k, v in m.grads.items()},
    )


def torch_run(tm, p: Problem) -> dict:
    """Reference forward/backward with torch (pack/pad when lengths are given)."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    x = torch.tensor(p.x, requires_grad=True)
    h0 = None if p.h0 is None else torch.tensor(p.h0, requires_grad=True)
    c0 = None if p.c0 is None else torch.tensor(p.c0, requires_grad=True)
    hx = (h0, c0) if (p.is_lstm and h0 is not None) else h0
    if p.lengths is not None:
        T = p.x.shape[1] if p.batch_first else p.x.shape[0]
        packed = pack_padded_sequence(x, torch.as_tensor(p.lengths, dtype=torch.int64),
                                      batch_first=p.batch_first, enforce_sorted=False)
        out_p, st = tm(packed, hx)
        out, _ = pad_packed_sequence(out_p, batch_first=p.batch_first, total_length=T)
    else:
        out, st = tm(x, hx)
    if p.is_lstm:
        h_n, c_n = st
    else:
        h_n, c_n = st, None
    loss = (out * torch.as_tensor(p.G)).sum()
    if p.Gh is not None:
        loss = loss + (h_n * torch.as_tensor(p.Gh)).sum()
    if p.Gc is not None:
        loss = loss + (c_n * torch.as_tensor(p.Gc)).sum()
    tm.zero_grad(set_to_none=True)
    loss.backward()

    def g(t):
        if t is None:
            return None
        return np.zeros(tuple(t.shape), dtype=p.x.dtype) if t.grad is None else t.grad.numpy().copy()

    grads = {}
    for name, prm in tm.named_parameters():
        grads[name] = g(prm)
    return dict(
        out=out.detach().numpy().copy(),
        h_n=h_n.detach().numpy().copy(),
        c_n=None if c_n is None else c_n.detach().numpy().copy(),
        grad_x=g(x), grad_h0=g(h0), grad_c0=g(c0), grads=grads,
    )


def compare_results(ours: dict, ref: dict, rtol: float, label: str = "") -> Dict[str, float]:
    """assert_close_rel on every tensor of two run dicts; returns errors per name."""
    errs = {}
    for key in ("out", "h_n", "c_n", "grad_x", "grad_h0", "grad_c0"):
        if ref.get(key) is None:
            continue
        assert ours.get(key) is not None, f"{label}{key}: missing from rnnkit results"
        errs[key] = assert_close_rel(ours[key], ref[key], rtol, name=f"{label}{key}")
    assert set(ours["grads"]) == set(ref["grads"]), (
        f"{label}grads keys {sorted(ours['grads'])} != torch {sorted(ref['grads'])}")
    for k in ref["grads"]:
        errs["grads." + k] = assert_close_rel(ours["grads"][k], ref["grads"][k], rtol,
                                              name=f"{label}grads[{k}]")
    return errs


def scalar_loss(out, h_n, c_n, p: Problem) -> float:
    """L = sum(out*G) + sum(h_n*Gh) (+ sum(c_n*Gc)), accumulated in float64."""
    L = float(np.sum(np.asarray(out, np.float64) * p.G))
    if p.Gh is not None:
        L += float(np.sum(np.asarray(h_n, np.float64) * p.Gh))
    if p.Gc is not None:
        L += float(np.sum(np.asarray(c_n, np.float64) * p.Gc))
    return L


# ---------------------------------------------------------------------------- device backends
SIMULATE_ENV = "RNNKIT_CUDA_SIMULATE"
REQUIRE_ENV = "RNNKIT_REQUIRE_CUDA"


def cuda_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip() == "1"


@pytest.fixture(params=["simulated", "cuda"])
def device(request, monkeypatch):
    """The device string of a backend ("cuda" either way; the environment picks the module)."""
    if request.param == "simulated":
        monkeypatch.setenv(SIMULATE_ENV, "1")
        return "cuda"
    monkeypatch.delenv(SIMULATE_ENV, raising=False)
    from rnnkit import cuda

    if not cuda.is_available():
        reason = cuda.unavailable_reason()
        if cuda_required():
            pytest.fail(f"{REQUIRE_ENV}=1 but device='cuda' is unavailable: {reason}")
        pytest.skip(f"device='cuda' is unavailable here ({reason}); the 'simulated' variant covers the driver")
    return "cuda"


# ---------------------------------------------------------------------------- compiled models
def model_problem(case: tuple, dtype: str, seed: int = 1, D: int = 3, H: int = 4, T: int = 5, B: int = 3):
    """A compiled model and one batch for it: (spec, params, (x, lengths, labels, values)).

    ``case`` is (cell, bidirectional, layers, n_outputs, loss, readout, vocab, lengths); x holds
    token ids where vocab > 0; the targets suit the loss (labels for cross-entropy, values in
    [0, 1] with some exactly 0 or 1 for binary cross-entropy, normal values otherwise).
    """
    from rnnkit._backend import core

    cell, bidir, layers, n_out, loss, readout, vocab, lengths = case
    rng = np.random.default_rng(seed)
    spec = core.ModelSpec(core.LayerSpec(cell, D, H, layers, bidir, True), n_out, loss, readout, vocab)
    params = rng.uniform(-0.5, 0.5, spec.param_count).astype(dtype)
    x = rng.integers(0, vocab, (B, T)).astype(np.int64) if vocab else rng.normal(size=(B, T, D)).astype(dtype)
    lens = None if lengths is None else np.array(lengths, np.int64)
    rows = B * T if readout == "sequence" else B
    labels = rng.integers(0, n_out, rows).astype(np.int64) if loss == "cross_entropy" else None
    values = rng.normal(size=rows * n_out).astype(dtype) if loss == "squared_error" else None
    if loss == "binary_cross_entropy":
        values = np.where(rng.random(rows * n_out) < 0.3, rng.random(rows * n_out),
                          rng.integers(0, 2, rows * n_out)).astype(dtype)
    return spec, params, (x, lens, labels, values)


# ---------------------------------------------------------------------------- estimator tasks
def order_task(n=96, steps=8, seed=0):
    """Label 1 when the marker in feature 0 comes before the one in feature 1."""
    rng = np.random.default_rng(seed)
    X = rng.normal(scale=0.1, size=(n, steps, 2))
    y = rng.integers(0, 2, n)
    for i in range(n):
        a, b = sorted(rng.choice(steps, 2, replace=False))
        first, second = (0, 1) if y[i] else (1, 0)
        X[i, a, first] += 1.0
        X[i, b, second] += 1.0
    return X, y
