"""rnnkit against PyTorch, side by side: RNN (tanh), LSTM and GRU, inference and training step.

Each row (cell, mode, B, T, D, H) is one pytest-benchmark group holding two benchmarks, torch
and rnnkit, run on the same weights, inputs and thread count. Before a row is timed its rnnkit
forward (and, for a training row, its gradients) is checked against torch within 1e-4 relative,
so the suite cannot time wrong code. ``extra_info`` carries the row's GFLOP count.
"""

from __future__ import annotations

import pytest

import rnnbench

torch = pytest.importorskip("torch", reason=rnnbench.TORCH_MISSING_REASON)
pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed (pip install '.[bench]')")

ROWS = rnnbench.all_rows()


@pytest.mark.parametrize("lib", rnnbench.LIBS)
@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bench(benchmark, row, lib, quick, bench_threads, pair_cache):
    run_row = row.quick() if quick else row
    pair = pair_cache.get(run_row, bench_threads)
    step = pair.step(lib)
    step()  # warm-up: first-call allocations, thread pool start

    benchmark.group = row.id
    benchmark.name = f"{lib}[{row.id}]"
    benchmark.extra_info.update(
        lib=lib,
        cell=run_row.cell,
        mode=run_row.mode,
        B=run_row.B,
        T=run_row.T,
        D=run_row.D,
        H=run_row.H,
        source=run_row.source,
        threads=bench_threads,
        gflop=run_row.gflop,
    )
    benchmark(step)
