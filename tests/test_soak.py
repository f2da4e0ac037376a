"""Soak: many calls must not grow the process's memory (no leak in C++ or in Python).

Resident memory (``/proc/self/statm``, where there is one) is read after a warm-up and at the
end; the bound is generous against allocator noise yet far below what leaking one call's
buffers would add up to. The number of live Python objects must not grow either.
LeakSanitizer checks the same code paths in the sanitizer build (README: Reliability).
"""
from __future__ import annotations

import gc
import os
import resource
import sys
import warnings

import numpy as np
import pytest

import rnnkit

MiB = 1 << 20


def _rss() -> int:
    """Resident set size in bytes (the peak, where /proc is missing)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _live_objects() -> int:
    gc.collect()
    return len(gc.get_objects())


def _soak(call, n: int, warm_up: int) -> tuple[int, int]:
    """Run ``call`` ``n`` times; RSS growth and live-object growth after ``warm_up`` calls."""
    for i in range(warm_up):
        call(i)
    objects, rss = _live_objects(), _rss()
    for i in range(warm_up, n):
        call(i)
    return _rss() - rss, _live_objects() - objects


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU])
def test_10000_forward_backward_calls_do_not_grow_memory(cls):
    # each call allocates ~40 KiB (outputs, tape, gradients): leaking it would add ~350 MiB
    layer = cls(8, 32, num_layers=2, bidirectional=True, seed=0, n_threads=1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 4, 8)).astype(np.float32)
    lengths = np.array([12, 7, 3, 1])
    state = (np.zeros((4, 4, 32), np.float32),) * 2 if cls is rnnkit.LSTM else np.zeros((4, 4, 32), np.float32)

    def call(i: int) -> None:
        out, _ = layer.forward(x, state=state if i % 2 else None, lengths=lengths if i % 3 else None,
                               training=True)
        layer.backward(np.ones_like(out), accumulate=bool(i % 2))

    rss, objects = _soak(call, 10_000 // 2, warm_up=500)  # two cells: 10,000 calls in all
    assert rss < 16 * MiB, f"resident memory grew by {rss / MiB:.1f} MiB"
    assert objects < 200, f"{objects} more live Python objects"


def test_10000_step_calls_do_not_grow_memory():
    layer = rnnkit.LSTM(8, 32, num_layers=2, seed=0, n_threads=1)
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    state = [None]

    def call(i: int) -> None:
        _, state[0] = layer.step(x, None if i % 100 == 0 else state[0])

    rss, objects = _soak(call, 10_000, warm_up=500)
    assert rss < 16 * MiB, f"resident memory grew by {rss / MiB:.1f} MiB"
    assert objects < 200, f"{objects} more live Python objects"


def test_200_fit_predict_cycles_do_not_grow_memory():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((48, 10, 3))
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    ragged = [X[i, : 3 + i % 7] for i in range(16)]

    def call(i: int) -> None:
        clf = rnnkit.RNNClassifier(cell=("lstm", "gru", "rnn")[i % 3], hidden_size=8, max_epochs=2, batch_size=16,
                                   random_state=i, n_threads=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X, y)
        clf.predict(X)
        clf.predict_proba(ragged)

    rss, objects = _soak(call, 200, warm_up=20)
    assert rss < 16 * MiB, f"resident memory grew by {rss / MiB:.1f} MiB"
    assert objects < 500, f"{objects} more live Python objects"
