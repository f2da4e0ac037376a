"""n_threads=None inside workers: rnnkit takes the thread budget that joblib, Dask, Ray or
threadpoolctl give a worker instead of all cores (rnnkit._threads). On a 1-core machine the
default is 1 anyway and these tests cannot tell the difference; they are meant for >= 2."""

from __future__ import annotations

import pytest

import rnnkit
from rnnkit import _threads
from rnnkit._backend import core


def _estimator_threads(_: int = 0) -> int:
    return rnnkit.RNNClassifier()._threads()


def _layer_threads(_: int = 0) -> int:
    return rnnkit.LSTM(2, 3)._threads()


def test_without_a_budget_the_default_is_openmps(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert _threads.default_threads() == core.default_threads()
    assert _estimator_threads() == _layer_threads() == core.default_threads()
    assert rnnkit.config()["n_threads"] == core.default_threads()


def test_omp_num_threads_set_after_import_is_respected(monkeypatch):
    # Ray sets OMP_NUM_THREADS inside a running worker, after OpenMP may have read it.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _estimator_threads() == _layer_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1,1")  # a list: the outermost level counts
    assert _estimator_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1000")  # never more than OpenMP allows
    assert _estimator_threads() == core.default_threads()


@pytest.mark.parametrize("value,expected", [("3", 3), (" 4 ", 4), ("+2", 2), ("5,1", 5), ("6, 2", 6), ("07", 7)])
def test_omp_num_threads_is_read_as_openmp_reads_it(monkeypatch, value, expected):
    """Read through getenv (the C++ module), which os.environ's assignments reach."""
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert _threads.env_threads() == expected
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert _threads.env_threads() is None


@pytest.mark.parametrize("value", ["", "0", "-2", "many", "7x", "2.5", ",3"])
def test_an_invalid_omp_num_threads_is_ignored(monkeypatch, value):
    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert _threads.env_threads() is None
    assert _estimator_threads() == core.default_threads()


def test_an_explicit_n_threads_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert rnnkit.RNNClassifier(n_threads=3)._threads() == 3


def test_threadpoolctl_limits_are_respected(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert _estimator_threads() == 1


def test_joblib_thread_workers_take_one_thread_each(monkeypatch):
    joblib = pytest.importorskip("joblib")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = joblib.Parallel(n_jobs=2, backend="threading")(
        joblib.delayed(f)(i) for i in range(4) for f in (_estimator_threads, _layer_threads))
    assert threads == [1] * 8
    assert _estimator_threads() == core.default_threads()  # the calling thread keeps its budget


def test_joblib_process_workers_take_inner_max_num_threads(monkeypatch):
    joblib = pytest.importorskip("joblib")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with joblib.parallel_config("loky", inner_max_num_threads=1):
        threads = joblib.Parallel(n_jobs=2)(joblib.delayed(_estimator_threads)(i) for i in range(2))
    assert threads == [1, 1]


def test_a_sequential_joblib_run_keeps_the_budget(monkeypatch):
    joblib = pytest.importorskip("joblib")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = joblib.Parallel(n_jobs=1)(joblib.delayed(_estimator_threads)(i) for i in range(2))
    assert threads == [core.default_threads()] * 2
