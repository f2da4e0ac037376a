"""Whole fits: ``RNNClassifier`` / ``RNNRegressor.fit`` against the PyTorch loop a user writes for
the same model, data, optimizer and thread count.

The layer benchmarks (``rnnbench.py``) time one forward or one training step of a layer; a user
times ``fit``. This module holds the rows and the paired fits that ``compare.py --fit`` prints
and ``test_bench_fit.py`` runs under pytest-benchmark. Nothing here imports torch or rnnkit at
import time.

A fit on each side, per epoch: a random order of the sequences, mini-batches of ``batch`` of them
(batch-first), the recurrent stack, a linear head on the final state (both directions' final
states, bidirectional), cross-entropy (classifier) or squared error (regressor), the gradient's
global 2-norm clipped to 1.0, one Adam step (lr 1e-3). The inputs are standardised per feature
first (the regressor's targets too), as the estimator does by default. The torch loop is what
its documentation teaches (``torch.nn.LSTM(batch_first=True)``, ``nn.Linear``,
``clip_grad_norm_``, ``torch.optim.Adam``), with the data as tensors up front (no DataLoader,
which would only add to torch's time). The two start from different random weights, so their
losses are compared for sanity (both finite, both falling), not for parity: the layers' parity
with torch is checked by ``rnnbench.Pair`` and the test suite.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Tuple

import numpy as np

from rnnbench import all_cores, stack_label

#: Adam's learning rate, and the clip of the gradient's norm, on both sides (the estimator's defaults).
LR = 1e-3
CLIP_NORM = 1.0


@dataclass(frozen=True)
class FitRow:
    """One fit: task ("classify" / "regress"), cell, N sequences of T steps of D features, H units,
    layers, directions, mini-batch size, epochs; classes for "classify"."""

    task: str
    cell: str
    N: int
    T: int
    D: int
    H: int
    layers: int = 1
    bidirectional: bool = False
    batch: int = 32
    epochs: int = 2
    classes: int = 4

    @property
    def id(self) -> str:
        stack = f"-L{self.layers}" if self.layers > 1 else ""
        return (f"fit-{self.task}-{self.cell}-N{self.N}-T{self.T}-D{self.D}-H{self.H}{stack}"
                f"{'-bi' if self.bidirectional else ''}-b{self.batch}-e{self.epochs}")

    @property
    def label(self) -> str:
        return stack_label(self.cell, self.layers, self.bidirectional)

    def quick(self) -> "FitRow":
        """The same fit shrunk for the quick (CI smoke) mode."""
        return replace(self, N=min(self.N, 64), T=min(self.T, 8), D=min(self.D, 4), H=min(self.H, 8),
                       batch=min(self.batch, 16), epochs=1)


#: Fits a user of each task makes: sentiment-like classification of feature sequences, a small
#: forecaster, a stacked model, a bidirectional one at a small batch.
FIT_ROWS: Tuple[FitRow, ...] = (
    FitRow("classify", "lstm", 4096, 50, 8, 64),
    FitRow("classify", "gru", 4096, 50, 8, 64),
    FitRow("classify", "rnn", 4096, 50, 8, 64),
    FitRow("classify", "lstm", 2048, 50, 16, 128, layers=2),
    FitRow("classify", "lstm", 1024, 50, 16, 64, bidirectional=True, batch=8),
    FitRow("regress", "lstm", 4096, 50, 1, 32),
)


def fit_data(row: FitRow, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Float32 sequences (N, T, D) and targets: labels that depend on the order of the steps
    (the sign of a weighted sum of the first feature over time) or, to regress, the next value
    of a noisy sine per sequence."""
    rng = np.random.default_rng(seed)
    if row.task == "regress":
        phase = rng.uniform(0, 2 * np.pi, (row.N, 1))
        freq = rng.uniform(0.1, 0.3, (row.N, 1))
        t = np.arange(row.T + 1)[None, :]
        wave = np.sin(freq * t + phase) + 0.05 * rng.standard_normal((row.N, row.T + 1))
        X = np.repeat(wave[:, :-1, None], row.D, axis=2).astype(np.float32)
        return X, wave[:, -1].astype(np.float32)
    X = rng.standard_normal((row.N, row.T, row.D)).astype(np.float32)
    ramp = np.linspace(-1.0, 1.0, row.T)
    score = X[:, :, 0] @ ramp
    edges = np.quantile(score, np.linspace(0, 1, row.classes + 1)[1:-1])
    return X, np.searchsorted(edges, score).astype(np.int64)


class FitPair:
    """The two fits of one row on the same data and thread count; :meth:`fit` runs one side and
    records its last epoch's mean training loss in :attr:`losses`."""

    libs = ("torch", "rnnkit")

    def __init__(self, row: FitRow, threads: int, seed: int = 0) -> None:
        import torch

        self.row, self.threads, self.seed = row, threads, seed
        self._torch = torch
        self.X, self.y = fit_data(row, seed)
        self.losses: Dict[str, float] = {}
        self._fits = 0

    def use_threads(self) -> None:
        if self._torch.get_num_threads() != self.threads:
            self._torch.set_num_threads(self.threads)

    def step(self, lib: str) -> Callable[[], None]:
        if lib not in self.libs:
            raise ValueError(f"lib must be one of {self.libs}, got {lib!r}")
        return getattr(self, f"_{lib}_fit")

    def _rnnkit_fit(self) -> None:
        import rnnkit
        from rnnkit.exceptions import ConvergenceWarning

        r = self.row
        cls = rnnkit.RNNClassifier if r.task == "classify" else rnnkit.RNNRegressor
        self._fits += 1
        est = cls(cell=r.cell, hidden_size=r.H, num_layers=r.layers, bidirectional=r.bidirectional,
                  batch_size=r.batch, max_epochs=r.epochs, learning_rate=LR, clip_norm=CLIP_NORM,
                  random_state=self.seed + self._fits, n_threads=self.threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # few epochs, on purpose
            est.fit(self.X, self.y)
        # The regressor's loss is half the mean squared error (of standardised targets): doubled,
        # it is torch's mse_loss.
        self.losses["rnnkit"] = float(est.loss_curve_[-1]) * (2.0 if r.task == "regress" else 1.0)

    def _torch_fit(self) -> None:
        torch = self._torch
        r = self.row
        self.use_threads()
        self._fits += 1
        torch.manual_seed(self.seed + self._fits)
        mean = self.X.mean(axis=(0, 1))
        scale = self.X.std(axis=(0, 1))
        x = torch.from_numpy((self.X - mean) / np.where(scale > 0, scale, 1.0))
        if r.task == "classify":
            y = torch.from_numpy(self.y)
            n_out, loss_fn = r.classes, torch.nn.functional.cross_entropy
        else:
            y = torch.from_numpy(((self.y - self.y.mean()) / self.y.std())[:, None])
            n_out, loss_fn = 1, torch.nn.functional.mse_loss
        kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[r.cell]
        rnn = kind(r.D, r.H, num_layers=r.layers, bidirectional=r.bidirectional, batch_first=True)
        dirs = 2 if r.bidirectional else 1
        head = torch.nn.Linear(dirs * r.H, n_out)
        params = list(rnn.parameters()) + list(head.parameters())
        opt = torch.optim.Adam(params, lr=LR)
        for _ in range(r.epochs):
            order = torch.randperm(r.N)
            total = 0.0
            for b0 in range(0, r.N, r.batch):
                idx = order[b0 : b0 + r.batch]
                _, state = rnn(x[idx])
                h_n = state[0] if r.cell == "lstm" else state
                final = torch.cat([h_n[-2], h_n[-1]], dim=1) if dirs == 2 else h_n[-1]
                loss = loss_fn(head(final), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, CLIP_NORM)
                opt.step()
                total += float(loss.detach()) * idx.numel()
        self.losses["torch"] = total / r.N

    def check(self, learned: bool = True) -> Dict[str, float]:
        """Fit both once; assert both last-epoch losses are finite and, with ``learned``, below
        chance (log(classes) for the classifier, 1.0, the targets' variance, for the regressor).
        The quick rows are too small to learn: they check finiteness only."""
        for lib in self.libs:
            self.step(lib)()
        chance = float(np.log(self.row.classes)) if self.row.task == "classify" else 1.0
        bad = {k: v for k, v in self.losses.items() if not (np.isfinite(v) and (v < chance or not learned))}
        if bad:
            raise AssertionError(f"{self.row.id}: a fit did not learn (chance {chance:.3f}): {bad}")
        return dict(self.losses)


def all_fit_rows() -> List[FitRow]:
    return list(FIT_ROWS)


def fit_table(args, timer: Callable[..., Dict[str, float]], facts: Callable[[], Dict[str, str]]) -> int:
    """Print the fit rows (``compare.py --fit``): seconds per fit of each side at 1 thread and all
    cores, the ratio, rnnkit's sequences per second, and both last-epoch losses. ``timer`` is
    compare.py's side-by-side timer; ``facts`` its machine description."""
    import re
    import sys

    rows = [r for r in all_fit_rows() if not args.filter or re.search(args.filter, r.id)]
    if args.quick:
        rows = [r.quick() for r in rows[:2]]
    threads_list = sorted({1, all_cores()}) if args.both_threads else [args.threads or all_cores()]
    lines = ["| fit | model | N | T | D | H | batch | epochs | threads | torch s | rnnkit s | torch/rnnkit | "
             "rnnkit seq/s | last-epoch loss torch / rnnkit |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        for threads in threads_list:
            pair = FitPair(row, threads)
            pair.check(learned=not args.quick)
            # A fit takes seconds: check() was the warm-up, and the sides alternate fit by fit.
            med = timer({lib: pair.step(lib) for lib in pair.libs}, args.budget, args.min_calls, args.max_calls,
                        block_s=0.0, settle_s=0.2, warmup=0)
            t, r = med["torch"], med["rnnkit"]
            lines.append(f"| {row.task} | {row.label} | {row.N} | {row.T} | {row.D} | {row.H} | {row.batch} | "
                         f"{row.epochs} | {threads} | {t:.2f} | {r:.3f} | {t / r:.2f}x | {row.epochs * row.N / r:.0f} | "
                         f"{pair.losses['torch']:.3f} / {pair.losses['rnnkit']:.3f} |")
            print(lines[-1], file=sys.stderr, flush=True)
    f = facts()
    print(f"Whole fits, {f['date']}: {f['cpu']}, {f['cores']} cores; {f['rnnkit']}; {f['torch']}; {f['numpy']}. "
          "RNNClassifier / RNNRegressor.fit against the torch loop for the same model (bench/fitbench.py); "
          "median seconds of whole fits, the two sides alternating.\n")
    print("\n".join(lines))
    if args.quick:
        print("\nQUICK mode: tiny shapes, not a measurement.")
    return 0
