"""The GPU scripts of gpu_check.sh, run on the host simulation of the device backend
(``RNNKIT_CUDA_SIMULATE=1``) so that they cannot rot between the sessions that have a GPU:
gpu_smoke.py (every kernel path against the CPU layers, and device fits) and gpu_fit.py's
quick rows (the device training step against the host step, then a few timed calls).
"""

from __future__ import annotations

import pytest

import rnnbench


@pytest.fixture
def simulated(monkeypatch):
    monkeypatch.setenv("RNNKIT_CUDA_SIMULATE", "1")


def test_gpu_smoke_passes_on_the_host_simulation(simulated, capsys):
    import gpu_smoke

    assert gpu_smoke.main([]) == 0
    assert "0 failed" in capsys.readouterr().out


def test_gpu_fit_quick_rows_on_the_host_simulation(simulated, capsys):
    pytest.importorskip("torch", reason=rnnbench.TORCH_MISSING_REASON)
    import gpu_fit

    assert gpu_fit.main(["--quick", "--budget", "0.01", "--min-calls", "2"]) == 0
    table = capsys.readouterr().out
    assert "lstm-B8-T10-D6-H16" in table and "gru-B4-T7-D5-H24" in table
