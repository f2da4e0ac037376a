"""rnnkit against PyTorch and ONNX Runtime, side by side: RNN (tanh), LSTM and GRU, inference and training step.

Each row (cell, mode, B, T, D, H) is one pytest-benchmark group holding the benchmarks torch
and rnnkit, plus ort (ONNX Runtime on the rnnkit layer's ONNX export) for inference rows, run
on the same weights, inputs and thread count. Before a row is timed its rnnkit forward (and,
for a training row, its gradients) and ONNX Runtime's outputs are checked against torch within
1e-4 relative, so the suite cannot time wrong code. ``extra_info`` carries the row's GFLOP
count. The ort benchmarks skip when onnxruntime (or onnx) is not installed.
"""

from __future__ import annotations

import pytest

import rnnbench

torch = pytest.importorskip("torch", reason=rnnbench.TORCH_MISSING_REASON)
pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed (pip install '.[bench]')")

CASES = [(row, lib) for row in rnnbench.all_rows() for lib in rnnbench.libs_for(row)]


@pytest.mark.parametrize("row,lib", CASES, ids=[f"{row.id}-{lib}" for row, lib in CASES])
def test_bench(benchmark, row, lib, quick, bench_threads, pair_cache):
    if lib == "ort" and not rnnbench.ort_available():
        pytest.skip(rnnbench.ORT_MISSING_REASON)
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
        layers=run_row.layers,
        bidirectional=run_row.bidirectional,
        source=run_row.source,
        threads=bench_threads,
        gflop=run_row.gflop,
    )
    benchmark(step)
