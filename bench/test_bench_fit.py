"""Whole fits: ``RNNClassifier`` / ``RNNRegressor.fit`` against the torch loop for the same model.

Each row of ``fitbench.FIT_ROWS`` is a pytest-benchmark group holding the two fits (same data,
model, optimizer, clipping and thread count; see ``bench/fitbench.py``). Before timing, both fit
once and must end below chance loss (finite only, in quick mode). A fit takes seconds, so each
is timed over a few rounds of one call. ``python bench/compare.py --fit`` prints the same rows
as one table with the ratios.
"""

from __future__ import annotations

import pytest

import fitbench
import rnnbench

pytest.importorskip("torch", reason=rnnbench.TORCH_MISSING_REASON)
pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed (pip install '.[bench]')")

CASES = [(row, lib) for row in fitbench.all_fit_rows() for lib in fitbench.FitPair.libs]


@pytest.mark.parametrize("row,lib", CASES, ids=[f"{row.id}-{lib}" for row, lib in CASES])
def test_bench_fit(benchmark, row, lib, quick, bench_threads):
    run_row = row.quick() if quick else row
    pair = fitbench.FitPair(run_row, bench_threads)
    pair.check(learned=not quick)
    benchmark.group = row.id
    benchmark.name = f"{lib}[{row.id}]"
    benchmark.extra_info.update(lib=lib, task=run_row.task, cell=run_row.cell, N=run_row.N, T=run_row.T,
                                D=run_row.D, H=run_row.H, layers=run_row.layers,
                                bidirectional=run_row.bidirectional, batch=run_row.batch, epochs=run_row.epochs,
                                threads=bench_threads)
    benchmark.pedantic(pair.step(lib), rounds=3, iterations=1, warmup_rounds=0)
