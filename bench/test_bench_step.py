"""The streaming step at batch 1: rnnkit's ``layer.step`` against a one-step ONNX Runtime session and torch.

Each row (cell, hidden size; input size = hidden, batch 1, one thread) is a pytest-benchmark
group ``step-<cell>-H<h>``: one call advances the state by one time step, which is fed back
into the next call, as in real-time use. Before timing, 20 steps of every library are checked
to end in the same state as torch's (1e-4 relative). ``python bench/compare.py --step`` prints
the same rows as one table with the ratios.
"""

from __future__ import annotations

import pytest

import rnnbench

pytest.importorskip("torch", reason=rnnbench.TORCH_MISSING_REASON)
pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed (pip install '.[bench]')")

CASES = [(cell, h, lib) for cell, h in rnnbench.STEP_ROWS for lib in rnnbench.STEP_LIBS]


@pytest.mark.parametrize("cell,hidden,lib", CASES, ids=[f"step-{c}-H{h}-{lib}" for c, h, lib in CASES])
def test_bench_step(benchmark, cell, hidden, lib, quick):
    if lib == "ort" and not rnnbench.ort_available():
        pytest.skip(rnnbench.ORT_MISSING_REASON)
    if quick and hidden != 64:
        pytest.skip("quick mode: the H=64 rows only")
    _time(benchmark, rnnbench.StepPair(cell, hidden), lib, f"step-{cell}-H{hidden}", cell=cell, D=hidden, H=hidden)


ESTIMATOR_CASES = [(cell, h, lib) for cell, h in rnnbench.ESTIMATOR_STEP_ROWS for lib in rnnbench.EstimatorStepPair.libs]


@pytest.mark.parametrize("cell,hidden,lib", ESTIMATOR_CASES,
                         ids=[f"estimator-step-{c}-H{h}-{lib}" for c, h, lib in ESTIMATOR_CASES])
def test_bench_estimator_step(benchmark, cell, hidden, lib, quick):
    """One stream of RNNClassifier.predict_proba_step against the same model as torch modules."""
    if quick and (cell, hidden) != ("lstm", 64):
        pytest.skip("quick mode: the LSTM H=64 row only")
    _time(benchmark, rnnbench.EstimatorStepPair(cell, hidden), lib, f"estimator-step-{cell}-H{hidden}", cell=cell,
          D=8, H=hidden)


def _time(benchmark, pair, lib: str, group: str, **info) -> None:
    """Check the pair's libraries agree, warm ``lib`` up, then time one step of it (batch 1, one thread)."""
    pair.check()
    step = pair.step(lib)
    step()
    benchmark.group = group
    benchmark.name = f"{lib}[{group}]"
    benchmark.extra_info.update(lib=lib, B=1, threads=1, **info)
    benchmark(step)
