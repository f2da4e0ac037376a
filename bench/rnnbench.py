"""Shared pieces of rnnkit's benchmarks: the grid of rows, FLOP counts, and paired models.

Used by ``conftest.py`` / ``test_bench_rnn.py`` (pytest-benchmark) and by ``compare.py``
(one side-by-side table). Nothing here imports torch, onnxruntime or rnnkit at import time.

A *row* is one (cell, mode, B, T, D, H) problem, of one layer in one direction unless it says
more (``layers``, ``bidirectional``). A :class:`Pair` holds an rnnkit layer and a
``torch.nn`` layer with the same weights (rnnkit's ``state_dict`` loaded into torch), the same
inputs ``x`` (T, B, D) and the same upstream gradient ``G`` (T, B, directions * H), and hands out the
steps to time:

* ``inference``: one forward of the whole batch (torch under ``no_grad``), float32, seq-major;
  also ONNX Runtime running the layer exported by ``rnnkit.onnx.export`` (CPU provider,
  ``intra_op_num_threads`` = the row's threads, all graph optimisations) where onnxruntime
  and onnx are installed;
* ``train``: forward, backward of ``loss = sum(out * G)`` (which includes dL/dx on both sides,
  since rnnkit always returns it), and an SGD update of every parameter (torch and rnnkit).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Tuple

import numpy as np

CELLS: Tuple[str, ...] = ("rnn", "lstm", "gru")  # "rnn" is the tanh RNN
GATES: Dict[str, int] = {"rnn": 1, "gru": 3, "lstm": 4}
MODES: Tuple[str, ...] = ("inference", "train")
# "ort": ONNX Runtime; "frozen": rnnkit.freeze(layer), the deployed copy; both inference rows only
LIBS: Tuple[str, ...] = ("torch", "rnnkit", "ort", "frozen")

#: Relative (norm-inf) tolerance of the parity check run once per row before timing.
PARITY_RTOL = 1e-4
#: SGD learning rate of the training step (small: hundreds of steps must stay finite).
LR = 1e-4
#: Environment variable that turns on the quick (CI smoke) mode.
QUICK_ENV = "RNNKIT_BENCH_QUICK"

TORCH_MISSING_REASON = (
    "torch is not installed: the benchmarks time rnnkit against PyTorch and check parity with it "
    "(pip install '.[bench]')"
)
ORT_MISSING_REASON = "onnxruntime or onnx is not installed: the ONNX Runtime column needs both (pip install '.[onnx]')"


def stack_label(cell: str, layers: int, bidirectional: bool) -> str:
    """The cell as the tables name it, with the stack where it is not one layer, one direction."""
    name = "RNN-tanh" if cell == "rnn" else cell.upper()
    if layers > 1:
        name += f" {layers} layers"
    return name + (" bi" if bidirectional else "")


@dataclass(frozen=True)
class Row:
    """One benchmark problem: cell, mode and shape (x is (T, B, D), the hidden size is H)."""

    cell: str
    mode: str
    B: int
    T: int
    D: int
    H: int
    source: str = "grid"  # "grid", the DeepBench set the row comes from, "issue 8" or "stack"
    layers: int = 1
    bidirectional: bool = False

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def id(self) -> str:
        stack = "" if self.layers == 1 else f"-L{self.layers}"
        return f"{self.cell}-{self.mode}-B{self.B}-T{self.T}-D{self.D}-H{self.H}{stack}{'-bi' if self.bidirectional else ''}"

    @property
    def label(self) -> str:
        return stack_label(self.cell, self.layers, self.bidirectional)

    @property
    def gflop(self) -> float:
        """GFLOP of one call. Forward, per layer and direction: 2*B*G*H*(T*D_l + (T-1)*H), the
        products with the inputs and with the state, where D_l is D for the first layer and
        directions*H above it; the rows give no initial state, and the first step's product
        with that zero state is skipped, so not counted. Backward: twice 2*B*T*G*H*(D_l+H) (the
        weight gradients, and dL/dx with dL/dh of every step). A training step is forward + backward."""
        b_g_h = 2.0 * self.B * GATES[self.cell] * self.H
        total = 0.0
        for layer in range(self.layers):
            d_in = self.D if layer == 0 else self.directions * self.H
            fwd = b_g_h * (self.T * d_in + (self.T - 1) * self.H)
            bwd = 2.0 * b_g_h * self.T * (d_in + self.H)
            total += self.directions * (fwd + (bwd if self.mode == "train" else 0.0))
        return total / 1e9

    def quick(self) -> "Row":
        """The same row shrunk for the quick (CI smoke) mode."""
        return replace(self, B=min(self.B, 4), T=min(self.T, 6), D=min(self.D, 16), H=min(self.H, 16))


# (B, T, D, H): typical training shapes, one large and one long.
GRID: Tuple[Tuple[int, int, int, int], ...] = (
    (1, 100, 32, 64),
    (4, 100, 64, 128),
    (64, 100, 32, 128),
    (32, 50, 64, 256),
    (16, 25, 512, 512),  # large
    (8, 1000, 64, 64),  # long
)

# Rows of issue 8's table that the grid lacks: its batch-1 rows take D=64 (the grid's take
# D=32), and one stacked bidirectional LSTM. (cell, B, T, D, H, layers, bidirectional, modes)
ISSUE8: Tuple[Tuple[str, int, int, int, int, int, bool, Tuple[str, ...]], ...] = (
    ("lstm", 1, 100, 64, 64, 1, False, ("inference",)),
    ("gru", 1, 100, 64, 64, 1, False, ("inference",)),
    ("rnn", 1, 100, 64, 64, 1, False, ("inference",)),
    ("lstm", 32, 50, 64, 128, 2, True, MODES),
)

# Stacks at small batches, where a layer's steps are too small for two threads and rnnkit runs
# a unidirectional stack's layers, or a bidirectional layer's directions, at once instead.
# (cell, B, T, D, H, layers, bidirectional, modes)
STACKS: Tuple[Tuple[str, int, int, int, int, int, bool, Tuple[str, ...]], ...] = (
    ("lstm", 1, 100, 64, 128, 2, False, MODES),
    ("gru", 1, 100, 64, 128, 2, False, MODES),
    ("lstm", 4, 100, 64, 128, 1, True, MODES),
)

# DeepBench (baidu-research/DeepBench, code/kernels/rnn_problems.h) rows that are cheap on a
# 2-core machine; input size = hidden size there. (set, cell, H, B, T, modes)
DEEPBENCH: Tuple[Tuple[str, str, int, int, int, Tuple[str, ...]], ...] = (
    ("inference_device", "rnn", 32, 1, 672, ("inference",)),
    ("inference_device", "rnn", 64, 1, 96, ("inference",)),
    ("inference_device", "lstm", 256, 1, 150, ("inference",)),
    ("inference_server", "lstm", 512, 1, 25, ("inference",)),
    ("inference_server", "lstm", 512, 4, 25, ("inference",)),
    ("inference_server", "gru", 512, 4, 1, ("inference",)),
    ("training", "lstm", 512, 64, 25, MODES),
    ("training", "lstm", 256, 32, 150, MODES),
)


def all_rows() -> List[Row]:
    """Every row: the grid for each cell and mode, then the DeepBench rows, issue 8's, and the small-batch stacks."""
    rows = [Row(cell, mode, B, T, D, H) for cell in CELLS for (B, T, D, H) in GRID for mode in MODES]
    for dset, cell, H, B, T, modes in DEEPBENCH:
        rows += [Row(cell, mode, B, T, H, H, source=f"deepbench:{dset}") for mode in modes]
    for cell, B, T, D, H, layers, bi, modes in ISSUE8:
        rows += [Row(cell, mode, B, T, D, H, source="issue 8", layers=layers, bidirectional=bi) for mode in modes]
    for cell, B, T, D, H, layers, bi, modes in STACKS:
        rows += [Row(cell, mode, B, T, D, H, source="stack", layers=layers, bidirectional=bi) for mode in modes]
    return rows


def quick_from_env() -> bool:
    return os.environ.get(QUICK_ENV, "").strip().lower() not in ("", "0", "false", "no")


def all_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def ort_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def libs_for(row: Row) -> Tuple[str, ...]:
    """The libraries timed on ``row``: ONNX Runtime and the frozen layer run inference only."""
    return tuple(lib for lib in LIBS if lib not in ("ort", "frozen") or row.mode == "inference")


def ort_session(model, threads: int):
    """An ONNX Runtime session for an ``onnx.ModelProto``: CPU, ``threads`` intra-op threads, all optimisations."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def rel_err(actual, expected) -> float:
    """max|a - e| / max|e| (norm-inf relative error), inf when a has non-finite values."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise AssertionError(f"shape {a.shape} != expected {e.shape}")
    if not np.all(np.isfinite(a)):
        return float("inf")
    return float(np.max(np.abs(a - e))) / max(float(np.max(np.abs(e))), 1e-30)


class Pair:
    """An rnnkit layer and a torch layer with the same weights, inputs and thread count.

    For an inference row, ``ort`` is also an ONNX Runtime session on the rnnkit layer's ONNX
    export where onnxruntime is installed (else None), and ``frozen`` the layer's
    :func:`rnnkit.freeze` copy (its packed weights kept by address, as ORT's session keeps its
    own); :attr:`libs` lists what can be timed.

    ``torch.set_num_threads`` is process-wide: :meth:`use_threads` sets it for this pair; call it
    again after another pair changed it.
    """

    def __init__(self, row: Row, threads: int, seed: int = 0) -> None:
        import rnnkit
        import torch

        self.row, self.threads = row, threads
        self._torch = torch
        D, H = row.D, row.H
        stack = dict(num_layers=row.layers, bidirectional=row.bidirectional)
        if row.cell == "rnn":
            self.m = rnnkit.RNN(D, H, nonlinearity="tanh", seed=seed, n_threads=threads, **stack)
            self.tm = torch.nn.RNN(D, H, nonlinearity="tanh", **stack)
        elif row.cell == "lstm":
            self.m = rnnkit.LSTM(D, H, seed=seed, n_threads=threads, **stack)
            self.tm = torch.nn.LSTM(D, H, **stack)
        elif row.cell == "gru":
            self.m = rnnkit.GRU(D, H, seed=seed, n_threads=threads, **stack)
            self.tm = torch.nn.GRU(D, H, **stack)
        else:
            raise ValueError(f"unknown cell {row.cell!r}")
        self.tm = self.tm.float()
        self.tm.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in self.m.state_dict().items()})
        rng = np.random.default_rng(seed + 1)
        self.x = rng.standard_normal((row.T, row.B, D)).astype(np.float32)
        self.G = rng.standard_normal((row.T, row.B, row.directions * H)).astype(np.float32)
        self.xt = torch.from_numpy(self.x)  # inference input
        self.xt_grad = torch.from_numpy(self.x.copy()).requires_grad_(True)  # training input
        self.Gt = torch.from_numpy(self.G)
        self.tparams = list(self.tm.parameters())
        self.ort = None
        if row.mode == "inference" and ort_available():
            import rnnkit.onnx

            self.ort = ort_session(rnnkit.onnx.export(self.m), threads)
            self._ort_feeds = {"input": self.x}
        self.frozen = rnnkit.freeze(self.m) if row.mode == "inference" else None
        self.libs = tuple(lib for lib in libs_for(row) if lib != "ort" or self.ort is not None)
        self.use_threads()

    def use_threads(self) -> None:
        if self._torch.get_num_threads() != self.threads:
            self._torch.set_num_threads(self.threads)

    # ------------------------------------------------------------------ parity
    def check(self, rtol: float = PARITY_RTOL) -> Dict[str, float]:
        """Assert that rnnkit matches torch (forward; and gradients for a training row).

        Run before any timed training step (those change the weights). Returns the errors.
        """
        torch = self._torch
        self.use_threads()
        errs: Dict[str, float] = {}
        train = self.row.mode == "train"
        out, st = self.m.forward(self.x, training=train)
        h_n = st[0] if self.row.cell == "lstm" else st
        if train:
            xt = torch.from_numpy(self.x.copy()).requires_grad_(True)
            t_out, t_st = self.tm(xt)
        else:
            with torch.no_grad():
                t_out, t_st = self.tm(self.xt)
        t_h = t_st[0] if self.row.cell == "lstm" else t_st
        errs["out"] = rel_err(out, t_out.detach().numpy())
        if self.frozen is not None:
            frozen_out = self.frozen.forward(self.x)[0]
            if not np.array_equal(frozen_out, out):
                raise AssertionError(f"{self.row.id}: the frozen layer's output differs from the layer's")
        errs["h_n"] = rel_err(h_n, t_h.detach().numpy())
        if self.ort is not None:
            o_out, o_h = self.ort.run(["output", "h_n"], self._ort_feeds)
            errs["ort out"] = rel_err(o_out, t_out.numpy())
            errs["ort h_n"] = rel_err(o_h, t_h.numpy())
        if train:
            grad_x, _ = self.m.backward(self.G)
            self.tm.zero_grad(set_to_none=True)
            (t_out * self.Gt).sum().backward()
            errs["grad_x"] = rel_err(grad_x, xt.grad.numpy())
            for name, p in self.tm.named_parameters():
                errs[f"grad[{name}]"] = rel_err(self.m.grads[name], p.grad.numpy())
            self.tm.zero_grad(set_to_none=True)
        bad = {k: v for k, v in errs.items() if not v <= rtol}
        if bad:
            raise AssertionError(
                f"{self.row.id}: rnnkit differs from torch beyond rtol {rtol:g}: "
                + ", ".join(f"{k} {v:.2e}" for k, v in bad.items())
            )
        return errs

    # ------------------------------------------------------------------- steps
    def step(self, lib: str) -> Callable[[], None]:
        """The zero-argument callable to time for ``lib`` (one of :attr:`libs`) on this row."""
        if lib not in self.libs:
            raise ValueError(f"lib must be one of {self.libs} on row {self.row.id}, got {lib!r}")
        name = f"_{lib}_{self.row.mode}"
        return getattr(self, name)

    def _torch_inference(self) -> None:
        with self._torch.no_grad():
            self.tm(self.xt)

    def _rnnkit_inference(self) -> None:
        self.m.forward(self.x)

    def _frozen_inference(self) -> None:
        self.frozen.forward(self.x)

    def _ort_inference(self) -> None:
        self.ort.run(None, self._ort_feeds)

    def _torch_train(self) -> None:
        torch = self._torch
        out, _ = self.tm(self.xt_grad)
        (out * self.Gt).sum().backward()
        with torch.no_grad():
            for p in self.tparams:
                p -= LR * p.grad
        self.tm.zero_grad(set_to_none=True)
        self.xt_grad.grad = None

    def _rnnkit_train(self) -> None:
        m = self.m
        m.forward(self.x, training=True)
        m.backward(self.G)
        grads = m.grads
        for k, p in m.params.items():
            p -= LR * grads[k]


def ordered_libs(round_index: int) -> Tuple[str, ...]:
    """Alternate which library goes first, so neither always runs right after the other."""
    return LIBS if round_index % 2 == 0 else LIBS[::-1]


# ---------------------------------------------------------------------- streaming step
#: (cell, hidden) rows of the step benchmark: batch 1, input size = hidden (issue: B=1, H 64-256).
STEP_ROWS: Tuple[Tuple[str, int], ...] = tuple((cell, h) for cell in ("lstm", "gru", "rnn") for h in (64, 128, 256))
STEP_LIBS: Tuple[str, ...] = ("rnnkit", "ort", "torch")


class StepPair:
    """One time step at batch 1, carrying the state, in rnnkit (``layer.step``), ONNX Runtime (a
    one-step session of the layer's export with state inputs, its state outputs fed back) and
    torch (the module on a one-step sequence). Same weights and input for all three."""

    def __init__(self, cell: str, hidden: int, threads: int = 1, seed: int = 0) -> None:
        import rnnkit
        import torch

        self.cell, self.hidden, self.threads = cell, hidden, threads
        self._torch = torch
        cls = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn": rnnkit.RNN}[cell]
        tcls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        self.m = cls(hidden, hidden, seed=seed, n_threads=threads)
        self.tm = tcls(hidden, hidden).float()
        self.tm.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in self.m.state_dict().items()})
        self.x = np.random.default_rng(seed + 1).standard_normal((1, hidden)).astype(np.float32)
        self.xt = torch.from_numpy(self.x[None])
        self.lstm = cell == "lstm"
        self.ort = None
        if ort_available():
            import rnnkit.onnx

            self.ort = ort_session(rnnkit.onnx.export(self.m, initial_state=True), threads)
        self.libs = tuple(lib for lib in STEP_LIBS if lib != "ort" or self.ort is not None)
        self.reset()

    def reset(self) -> None:
        zeros = np.zeros((1, 1, self.hidden), np.float32)
        self.state = (zeros, zeros.copy()) if self.lstm else zeros
        self.feeds = {"input": self.x[None], "h_0": zeros.copy()}
        if self.lstm:
            self.feeds["c_0"] = zeros.copy()
        self.tstate = None

    def use_threads(self) -> None:
        if self._torch.get_num_threads() != self.threads:
            self._torch.set_num_threads(self.threads)

    def rnnkit_step(self) -> None:
        self.state = self.m.step(self.x, self.state)[1]

    def ort_step(self) -> None:
        out = self.ort.run(None, self.feeds)
        self.feeds["h_0"] = out[1]
        if self.lstm:
            self.feeds["c_0"] = out[2]

    def torch_step(self) -> None:
        with self._torch.no_grad():
            self.tstate = self.tm(self.xt, self.tstate)[1]

    def step(self, lib: str) -> Callable[[], None]:
        if lib not in self.libs:
            raise ValueError(f"lib must be one of {self.libs}, got {lib!r}")
        return getattr(self, f"{lib}_step")

    def check(self, steps: int = 20, rtol: float = PARITY_RTOL) -> None:
        """Assert that ``steps`` steps of each library end in the same hidden state, then reset."""
        self.use_threads()
        self.reset()
        for _ in range(steps):
            for lib in self.libs:
                self.step(lib)()
        h = self.state[0] if self.lstm else self.state
        th = (self.tstate[0] if self.lstm else self.tstate).numpy()
        errs = {"torch": rel_err(h, th)}
        if self.ort is not None:
            errs["ort"] = rel_err(self.feeds["h_0"], th)
        bad = {k: v for k, v in errs.items() if not v <= rtol}
        if bad:
            raise AssertionError(f"step {self.cell} H={self.hidden}: states differ from torch's: {bad}")
        self.reset()


# ---------------------------------------------------------------------- estimator-level step
#: (cell, hidden) rows of the estimator step benchmark: one stream, 8 features, 3 classes.
ESTIMATOR_STEP_ROWS: Tuple[Tuple[str, int], ...] = (("lstm", 64), ("gru", 64), ("rnn", 64), ("lstm", 128))


class EstimatorStepPair:
    """``RNNClassifier.predict_proba_step`` for one stream against what a PyTorch user writes for
    the same model: standardise the features, the recurrent module on a one-step sequence, the
    linear head and softmax, under ``no_grad``. Same fitted weights, same input."""

    libs = ("rnnkit", "torch")

    def __init__(self, cell: str, hidden: int, features: int = 8, classes: int = 3, seed: int = 0) -> None:
        import warnings

        import rnnkit
        import torch

        self.cell, self.hidden, self._torch = cell, hidden, torch
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((32, 10, features)).astype(np.float32)
        y = rng.integers(0, classes, 32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.clf = rnnkit.RNNClassifier(cell=cell, hidden_size=hidden, max_epochs=1, random_state=seed,
                                            n_threads=1).fit(X, y)
        tcls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        self.tm = tcls(features, hidden, batch_first=True)
        self.tm.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in self.clf.rnn_.state_dict().items()})
        head = self.clf.head_
        self.head = torch.nn.Linear(hidden, classes)
        self.head.load_state_dict({"weight": torch.from_numpy(head["weight"]), "bias": torch.from_numpy(head["bias"])})
        self.mean = torch.from_numpy(self.clf._x_mean.astype(np.float32))
        self.scale = torch.from_numpy(self.clf._x_scale.astype(np.float32))
        self.x = rng.standard_normal(features).astype(np.float32)
        self.xt = torch.from_numpy(self.x)
        self.reset()

    def reset(self) -> None:
        self.state = self.tstate = None
        self.proba = self.tproba = None

    def rnnkit_step(self) -> None:
        self.proba, self.state = self.clf.predict_proba_step(self.x, self.state)

    def torch_step(self) -> None:
        torch = self._torch
        with torch.no_grad():
            z = ((self.xt - self.mean) / self.scale).view(1, 1, -1)
            out, self.tstate = self.tm(z, self.tstate)
            self.tproba = torch.softmax(self.head(out[0, -1]), dim=-1)

    def step(self, lib: str) -> Callable[[], None]:
        if lib not in self.libs:
            raise ValueError(f"lib must be one of {self.libs}, got {lib!r}")
        return getattr(self, f"{lib}_step")

    def check(self, steps: int = 20, rtol: float = PARITY_RTOL) -> None:
        """Assert that ``steps`` steps of both end in the same probabilities, then reset."""
        self._torch.set_num_threads(1)
        self.reset()
        for _ in range(steps):
            self.rnnkit_step()
            self.torch_step()
        err = rel_err(self.proba, self.tproba.numpy())
        if not err <= rtol:
            raise AssertionError(f"estimator step {self.cell} H={self.hidden}: probabilities differ from torch's: {err}")
        self.reset()
