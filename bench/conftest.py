"""pytest configuration of rnnkit's benchmark suite (pytest-benchmark).

Options:
  --quick            shrink every row (also: RNNKIT_BENCH_QUICK=1); with --benchmark-disable the
                     whole suite is a smoke test of well under a minute
  --bench-threads N  threads for rnnkit (n_threads) and torch (set_num_threads); default all cores

The unit-test run does not collect this folder (pyproject: testpaths = ["tests"]); run it as
``python -m pytest bench --benchmark-only``.
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Tuple

import pytest

_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
if _BENCH_DIR not in sys.path:
    sys.path.insert(0, _BENCH_DIR)

import rnnbench  # noqa: E402


def pytest_addoption(parser):
    group = parser.getgroup("rnnkit-bench", "rnnkit benchmark suite")
    group.addoption(
        "--quick",
        action="store_true",
        default=False,
        help=f"shrink every row for a fast smoke run (same as {rnnbench.QUICK_ENV}=1)",
    )
    group.addoption(
        "--bench-threads",
        type=int,
        default=None,
        help="threads for rnnkit and torch (default: all cores)",
    )


@pytest.fixture(scope="session")
def quick(pytestconfig) -> bool:
    return bool(pytestconfig.getoption("--quick")) or rnnbench.quick_from_env()


@pytest.fixture(scope="session")
def bench_threads(pytestconfig) -> int:
    n = pytestconfig.getoption("--bench-threads")
    if n is not None and n < 1:
        raise pytest.UsageError(f"--bench-threads must be >= 1, got {n}")
    return n or rnnbench.all_cores()


class _PairCache:
    """Keeps the last row's Pair so that its torch and rnnkit tests share inputs and one check."""

    def __init__(self) -> None:
        self._key: Optional[Tuple] = None
        self._pair: Optional[rnnbench.Pair] = None

    def get(self, row: "rnnbench.Row", threads: int) -> "rnnbench.Pair":
        key = (row, threads)
        if key != self._key:
            self._pair = None  # free the previous row's models first
            pair = rnnbench.Pair(row, threads)
            pair.check()  # rnnkit must match torch before anything is timed
            self._key, self._pair = key, pair
        assert self._pair is not None
        self._pair.use_threads()
        return self._pair


@pytest.fixture(scope="session")
def pair_cache() -> _PairCache:
    return _PairCache()
