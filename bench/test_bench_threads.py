"""One fitted model called from 8 Python threads at once: bit-identical to serial calls, and faster.

Group ``threads``: ``serial`` predicts 8 chunks one after the other, ``8-threads`` predicts the
same chunks from a pool of 8 Python threads, each C++ call with ``n_threads=1`` so that any
speed-up comes from the GIL being released during C++ work (not from OpenMP). Both benchmarks
check first that the threaded results equal the serial ones bit for bit (the unit test
``tests/test_threads.py`` checks the same without timing).

``test_threads_are_faster_than_serial`` compares the two directly (best of several rounds); it
needs two cores and real timing, so it skips in quick mode and under ``--benchmark-disable``.
"""

from __future__ import annotations

import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import pytest

import rnnbench
import rnnkit

pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed (pip install '.[bench]')")

N_THREADS = 8


class _Workload:
    """A fitted classifier and 8 chunks of sequences to predict."""

    def __init__(self, quick: bool) -> None:
        rng = np.random.default_rng(0)
        n, T, D, H = (64, 8, 4, 8) if quick else (256, 100, 16, 128)
        X = rng.standard_normal((n, T, D)).astype(np.float32)
        y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
        self.model = rnnkit.RNNClassifier(hidden_size=H, max_epochs=1, batch_size=64, random_state=0, n_threads=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.fit(X[: min(n, 128)], y[: min(n, 128)])
        self.chunks = [X[i::N_THREADS] for i in range(N_THREADS)]
        self.pool = ThreadPoolExecutor(max_workers=N_THREADS)

    def serial(self) -> list:
        return [self.model.predict_proba(c) for c in self.chunks]

    def threaded(self) -> list:
        return list(self.pool.map(self.model.predict_proba, self.chunks))

    def check(self) -> None:
        for s, p in zip(self.serial(), self.threaded()):
            np.testing.assert_array_equal(s, p)


@pytest.fixture(scope="module")
def workload(quick):
    w = _Workload(quick)
    w.check()
    yield w
    w.pool.shutdown()


@pytest.mark.parametrize("mode", ["serial", "8-threads"])
def test_bench_predict_from_threads(benchmark, workload, mode):
    run = workload.serial if mode == "serial" else workload.threaded
    run()  # warm-up
    benchmark.group = "threads"
    benchmark.name = f"{mode}[predict_proba x{N_THREADS} chunks]"
    benchmark.extra_info.update(mode=mode, python_threads=N_THREADS if mode != "serial" else 1, cores=rnnbench.all_cores())
    benchmark(run)


def _best_of(run: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def test_threads_are_faster_than_serial(workload, quick, pytestconfig):
    if quick or pytestconfig.getoption("benchmark_disable", False):
        pytest.skip("timing comparison: needs real timing (not quick mode, not --benchmark-disable)")
    if rnnbench.all_cores() < 2:
        pytest.skip("needs at least 2 cores")
    workload.check()
    serial, threaded = _best_of(workload.serial, 7), _best_of(workload.threaded, 7)
    print(f"\nserial {serial * 1e3:.1f} ms, {N_THREADS} threads {threaded * 1e3:.1f} ms: "
          f"speed-up {serial / threaded:.2f}x on {rnnbench.all_cores()} cores")
    assert threaded < serial / 1.2, f"8 threads took {threaded:.4f} s, serial {serial:.4f} s"
