"""bench/memory.py kept running (CI's quick bench pass): its quick rows, each in a fresh process.

The table itself (bench/RESULTS.md) is a measurement, not a test; this only checks that the
script still produces one: a peak that covers at least the tape's activations, and a finite ratio.
"""
from __future__ import annotations

import sys

import pytest

import memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self (Linux only)")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("row", memory.QUICK_ROWS, ids=lambda r: f"{r[0]}-B{r[1]}-T{r[2]}")
def test_memory_row_runs(row, threads):
    res = memory.run_row(row, threads=threads)
    act = memory.activation_bytes(*row)
    assert act > 0
    assert res["weight_bytes"] > 0
    # the step's tape alone holds the activations (forward's inputs, gates and states)
    assert act <= res["peak_bytes"] < 20 * act
