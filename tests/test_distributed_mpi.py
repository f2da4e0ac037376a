"""Data-parallel training over MPI (rnnkit.distributed): 2 ranks with batch b per rank train
exactly as 1 process with batch 2b; mismatched shards fail on every rank before training; a
failing rank ends the job naming itself. The multi-rank tests launch ``mpirun -n 2`` on
tests/mpi_fit_script.py over loopback only."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import pytest

import rnnkit
from rnnkit import distributed

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "mpi_fit_script.py")
MPIRUN = shutil.which("mpirun")
HAS_MPI4PY = importlib.util.find_spec("mpi4py") is not None

needs_mpi = pytest.mark.skipif(
    MPIRUN is None or not HAS_MPI4PY,
    reason="needs mpirun (apt-get install openmpi-bin libopenmpi-dev) and mpi4py (pip install \"rnnkit[mpi]\")"
    f"; found mpirun={MPIRUN}, mpi4py={'yes' if HAS_MPI4PY else 'no'}",
)


def _load_script() -> Any:
    spec = importlib.util.spec_from_file_location("mpi_fit_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mpirun(n: int, *args: str) -> subprocess.CompletedProcess:
    """``mpirun -n n python mpi_fit_script.py args`` on loopback only, as root where needed."""
    cmd = [MPIRUN, "-n", str(n), "--oversubscribe", "--bind-to", "none",
           "--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo",
           sys.executable, SCRIPT, *args]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
               PYTHONWARNINGS="ignore")
    # The limit only guards against a hang: a run takes a few seconds.
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)


@needs_mpi
def test_two_ranks_with_batch_b_train_as_one_process_with_batch_2b(tmp_path):
    out, checkpoint = tmp_path / "result.npz", tmp_path / "checkpoint.npz"
    run = _mpirun(2, "equal", str(out), str(checkpoint))
    assert run.returncode == 0, run.stdout + run.stderr
    result = np.load(out)
    script = _load_script()
    for name in script.CASES:
        est, X, y = script.case(name)
        est.set_params(batch_size=2 * script.BATCH)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, y)
        assert float(result[f"{name}_max_rank_difference"]) == 0.0  # the ranks hold the same weights
        np.testing.assert_allclose(result[f"{name}_params"], est._params_flat, rtol=0, atol=1e-10, err_msg=name)
        np.testing.assert_allclose(result[f"{name}_loss"], est.loss_curve_, rtol=1e-10, atol=0, err_msg=name)
        assert float(result[f"{name}_learning_rate"]) == est.learning_rate_, name  # lr_schedule ran alike
    assert est.learning_rate_ == 0.02 / 5  # the last case's "adaptive" schedule lowered the rate once
    saved = rnnkit.load(checkpoint)  # rank 0's checkpoint, in the portable format
    np.testing.assert_array_equal(saved._params_flat, result["classifier_params"])
    assert saved.classes_.tolist() == ["down", "up"]


@needs_mpi
def test_mismatched_shards_raise_the_same_error_on_every_rank(tmp_path):
    run = _mpirun(2, "mismatch", str(tmp_path / "report"))
    assert run.returncode == 0, run.stdout + run.stderr
    expected = {
        "features": "differ in features per step (rank 0: 3, rank 1: 2)",
        "labels": "differ in label sets",
        "dtype": "differ in X dtype (rank 0: float64, rank 1: float32)",
        "parameters": "differ in estimator parameters ['hidden_size']",
        "bad input on one rank": "failed on 1 of 2 ranks: rank 1: ValueError: Input X contains NaN",
        "zero class weight": "class_weight with a weight of 0 is not supported with several ranks",
    }
    for rank in (0, 1):
        lines = (tmp_path / f"report.{rank}").read_text().splitlines()
        for problem, text in expected.items():
            line = next((ln for ln in lines if ln.startswith(f"rank {rank} {problem}:")), "")
            assert "ValueError" in line and text in line, (rank, problem, lines)
        assert f"rank {rank} classes: ['down', 'up']" in lines  # classes= lets a shard lack a label


@needs_mpi
def test_a_failing_rank_aborts_the_job_naming_rank_and_cause():
    run = _mpirun(2, "fail")
    assert run.returncode != 0
    assert "rnnkit.distributed: rank 1 of 2 failed: RuntimeError: injected fault" in run.stderr, run.stderr
    assert "finished" not in run.stdout


class _OneRank:
    """A communicator of one process (what ``mpirun -n 1`` gives) without MPI."""

    def Get_size(self) -> int:
        return 1

    def Get_rank(self) -> int:
        return 0


class _Echo:
    """Two ranks that hold the same data: enough for the checks made before training."""

    def Get_size(self) -> int:
        return 2

    def Get_rank(self) -> int:
        return 0

    def allgather(self, value: Any) -> list:
        return [value, value]


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 5, 2))
    return X, (X[:, :, 0].sum(axis=1) > 0).astype(int)


def test_one_process_is_exactly_the_ordinary_fit(tmp_path):
    X, y = _data()
    params = dict(hidden_size=5, max_epochs=2, random_state=1, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = rnnkit.RNNClassifier(**params).fit(X, y)
        dist = distributed.fit(rnnkit.RNNClassifier(**params), X, y, comm=_OneRank(),
                               checkpoint=tmp_path / "model.npz")
    np.testing.assert_array_equal(dist._params_flat, plain._params_flat)
    assert dist.loss_curve_ == plain.loss_curve_
    np.testing.assert_array_equal(rnnkit.load(tmp_path / "model.npz")._params_flat, plain._params_flat)


@pytest.mark.parametrize("option", ["early_stopping", "warm_start"])
def test_options_without_a_distributed_meaning_are_refused_before_training(option):
    X, y = _data()
    est = rnnkit.RNNClassifier(hidden_size=4, max_epochs=1, random_state=0, **{option: True})
    with pytest.raises(ValueError, match=f"{option}=True is not supported with several ranks"):
        distributed.fit(est, X, y, comm=_Echo())
    assert not hasattr(est, "_params_flat")


def test_labels_outside_classes_are_refused():
    X, y = _data()
    with pytest.raises(ValueError, match="labels outside classes"):
        distributed.fit(rnnkit.RNNClassifier(max_epochs=1), X, y, comm=_Echo(), classes=[0, 2])
    with pytest.raises(ValueError, match="labels outside classes"):
        distributed.fit(rnnkit.RNNClassifier(max_epochs=1), X, y, comm=_OneRank(), classes=[1, 2])
