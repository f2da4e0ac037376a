"""Small calls made now and then: each call 20 ms after the previous one, at all cores.

A real-time caller (an audio frame, a sensor reading, a request) calls a small model every few
ms, not back to back. By then thread pools have stopped spinning and gone to sleep, and a
library that wakes them for a small call can take longer than the call's work
(bench/NOTES.md, 2026-11-29 stop 29). Each row is a pytest-benchmark group ``spaced-<row>``
with one test per library; every timed round follows a 20 ms sleep (pytest-benchmark's
``pedantic`` setup, not timed). ``python bench/compare.py --spaced`` prints the same rows side
by side, the libraries taking turns call by call, with the 90th percentiles.
"""

from __future__ import annotations

import time

import pytest

import rnnbench

pytest.importorskip("torch", reason=rnnbench.TORCH_MISSING_REASON)
pytest.importorskip("pytest_benchmark", reason="pytest-benchmark is not installed (pip install '.[bench]')")

PAUSE_S = 0.02
ROWS = [rnnbench.Row("lstm", "inference", 1, 100, 32, 64), rnnbench.Row("gru", "inference", 1, 100, 32, 64),
        rnnbench.Row("lstm", "inference", 4, 100, 64, 128)]
CASES = [(row, lib) for row in ROWS for lib in ("rnnkit", "ort", "torch")]
STEP_CASES = [(cell, h, lib) for cell, h in (("lstm", 256), ("gru", 256)) for lib in rnnbench.STEP_LIBS]


def _pause() -> None:
    time.sleep(PAUSE_S)


def _time(benchmark, step, group: str, lib: str, rounds: int, **info) -> None:
    step()
    benchmark.group = group
    benchmark.name = f"{lib}[{group}]"
    benchmark.extra_info.update(lib=lib, pause_ms=1e3 * PAUSE_S, **info)
    benchmark.pedantic(step, setup=_pause, rounds=rounds, iterations=1)


@pytest.mark.parametrize("row,lib", CASES, ids=[f"spaced-{r.id}-{lib}" for r, lib in CASES])
def test_bench_spaced_forward(benchmark, row, lib, quick, bench_threads):
    if lib == "ort" and not rnnbench.ort_available():
        pytest.skip(rnnbench.ORT_MISSING_REASON)
    if quick:
        row = row.quick()
    pair = rnnbench.Pair(row, bench_threads)
    pair.check()
    _time(benchmark, pair.step(lib), f"spaced-{row.id}", lib, 3 if quick else 25, threads=bench_threads,
          cell=row.cell, B=row.B, T=row.T, D=row.D, H=row.H)


@pytest.mark.parametrize("cell,hidden,lib", STEP_CASES, ids=[f"spaced-step-{c}-H{h}-{lib}" for c, h, lib in STEP_CASES])
def test_bench_spaced_step(benchmark, cell, hidden, lib, quick, bench_threads):
    if lib == "ort" and not rnnbench.ort_available():
        pytest.skip(rnnbench.ORT_MISSING_REASON)
    if quick and cell != "lstm":
        pytest.skip("quick mode: the LSTM row only")
    hidden = 16 if quick else hidden
    pair = rnnbench.StepPair(cell, hidden, threads=bench_threads)
    pair.check()
    pair.use_threads()
    _time(benchmark, pair.step(lib), f"spaced-step-{cell}-H{hidden}", lib, 3 if quick else 25,
          threads=bench_threads, cell=cell, B=1, D=hidden, H=hidden)
