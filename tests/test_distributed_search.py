"""Hyper-parameter searches over rnnkit estimators on Dask and Ray through joblib: the search
code runs unchanged under ``joblib.parallel_backend(...)`` and gives the local results; a
Dask worker that dies makes ``fit`` raise instead of hang; importing rnnkit imports none of
the cluster engines.

The estimators use ``n_threads=1`` where results are compared: rnnkit's results are
bit-identical for the same seed *and thread count*, and a worker's default budget (1 thread)
differs from the local process's (all cores).
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import logging
import os
import subprocess
import sys
import warnings
from typing import Any

import numpy as np
import pytest

import rnnkit

pytest.importorskip("sklearn")
joblib = pytest.importorskip("joblib")
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_validate  # noqa: E402

HAS_DASK = importlib.util.find_spec("dask") is not None and importlib.util.find_spec("distributed") is not None
HAS_RAY = importlib.util.find_spec("ray") is not None

_MAIN_PID = os.getpid()


def test_importing_rnnkit_imports_no_cluster_engine():
    code = (
        "import sys, rnnkit, rnnkit.estimators, rnnkit.distributed\n"
        "rnnkit.RNNClassifier(); rnnkit.show_config\n"
        "loaded = sorted(m for m in ('dask', 'distributed', 'ray', 'mpi4py') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------------- the searches
def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((48, 6, 2))
    labels = np.where(X[:, :, 0].sum(axis=1) > X[:, :, 1].sum(axis=1), "a", "b")
    return X, labels, X[:, :, 0].sum(axis=1) - X[:, -1, 1]


def _classifier(**params: Any) -> rnnkit.RNNClassifier:
    return rnnkit.RNNClassifier(hidden_size=4, max_epochs=3, batch_size=8, learning_rate=0.02, random_state=0,
                                n_threads=1, **params)


def _run_searches() -> dict:
    """Grid search, randomized search and cross-validation; what each found, for comparing runs."""
    X, labels, values = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: three epochs are enough here
        grid = GridSearchCV(_classifier(), {"hidden_size": [3, 5], "cell": ["lstm", "gru"]}, cv=2).fit(X, labels)
        regressor = rnnkit.RNNRegressor(hidden_size=4, max_epochs=3, batch_size=8, random_state=1, n_threads=1)
        randomized = RandomizedSearchCV(regressor, {"learning_rate": [0.003, 0.01, 0.03], "hidden_size": [3, 4, 6]},
                                        n_iter=3, cv=2, random_state=0).fit(X, values)
        cv = cross_validate(_classifier(cell="rnn"), X, labels, cv=3, return_estimator=True)
    return {
        "grid scores": grid.cv_results_["mean_test_score"],
        "grid split scores": np.stack([grid.cv_results_[f"split{i}_test_score"] for i in range(2)]),
        "grid best": grid.best_params_,
        "grid best proba": grid.best_estimator_.predict_proba(X),
        "randomized params": randomized.cv_results_["params"],
        "randomized scores": randomized.cv_results_["mean_test_score"],
        "randomized best prediction": randomized.best_estimator_.predict(X),
        "cv scores": cv["test_score"],
        "cv weights": np.concatenate([e._params_flat for e in cv["estimator"]]),
    }


def _assert_same(local: dict, remote: dict) -> None:
    assert local.keys() == remote.keys()
    for key, value in local.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(remote[key], value, err_msg=key)
        else:
            assert remote[key] == value, key


@pytest.fixture(scope="module")
def local_results() -> dict:
    return _run_searches()


def _worker_threads(_: int) -> int:
    """The thread count an estimator with n_threads=None uses where this runs."""
    return rnnkit.RNNClassifier()._threads()


class _DiesInWorker(rnnkit.RNNClassifier):
    """An estimator whose fit kills the process it runs in, unless that is the test process."""

    def fit(self, X: Any, y: Any) -> "_DiesInWorker":
        if os.getpid() != _MAIN_PID:
            os._exit(1)
        return super().fit(X, y)


# ---------------------------------------------------------------------- Dask
@pytest.fixture(scope="module")
def dask_client():
    if not HAS_DASK:
        pytest.skip('needs dask.distributed: pip install "rnnkit[dask]"')
    import cloudpickle
    import dask
    from dask.distributed import Client, LocalCluster

    from rnnkit.distributed import register_dask

    # Workers cannot import this test module: send its classes and functions by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # Dask's nanny sets OMP_NUM_THREADS=1 (and more) in this process too, for good: restore it.
    environ = dict(os.environ)
    # One death is enough to fail a task (the default retries it on 3 more workers first).
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.CRITICAL)
        client = Client(cluster)
    register_dask()
    try:
        yield client
    finally:
        client.close()
        cluster.close()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        os.environ.clear()
        os.environ.update(environ)


def test_dask_searches_equal_the_local_ones(dask_client, local_results):
    assert len(dask_client.scheduler_info()["workers"]) == 2
    with joblib.parallel_backend("dask"):
        remote = _run_searches()
    _assert_same(local_results, remote)


def test_dask_workers_default_to_one_thread(dask_client):
    with joblib.parallel_backend("dask"):
        threads = joblib.Parallel()(joblib.delayed(_worker_threads)(i) for i in range(4))
    assert threads == [1, 1, 1, 1]


def test_a_dask_worker_that_dies_makes_fit_raise_not_hang(dask_client):
    from distributed.scheduler import KilledWorker

    X, labels, _ = _data()
    search = GridSearchCV(_DiesInWorker(hidden_size=3, max_epochs=1), {"hidden_size": [3, 4]}, cv=2)

    def run() -> None:
        with joblib.parallel_backend("dask"):  # joblib's backend choice is per thread
            search.fit(X, labels)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(run)
        try:
            # Only a guard against the hang this test is about: the error comes within a second.
            error = future.exception(timeout=120)
        except concurrent.futures.TimeoutError:
            pytest.fail("GridSearchCV.fit still waits 120 s after its Dask worker died")
    assert isinstance(error, KilledWorker), repr(error)
    assert "workers died while running it" in str(error)


# ---------------------------------------------------------------------- Ray
@pytest.mark.skipif(not HAS_RAY, reason='needs ray: pip install "rnnkit[ray]"')
def test_ray_searches_equal_the_local_ones(local_results):
    import ray
    import ray.cloudpickle
    from ray.util.joblib import register_ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             object_store_memory=100 * 2**20, _node_ip_address="127.0.0.1")  # loopback only
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this module
    try:
        register_ray()
        with joblib.parallel_backend("ray"):
            remote = _run_searches()
            threads = joblib.Parallel(n_jobs=2)(joblib.delayed(_worker_threads)(i) for i in range(2))
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        ray.shutdown()
    _assert_same(local_results, remote)
    assert threads == [1, 1]
