"""A hyper-parameter search over rnnkit estimators on a Dask cluster, through joblib.

    pip install "rnnkit[dask]"
    python examples/search_dask.py                      # a LocalCluster of 2 worker processes
    python examples/search_dask.py tcp://scheduler:8786 # an existing cluster

The search code is scikit-learn's, unchanged: only ``joblib.parallel_backend("dask")`` sends
its fits to the workers. Each worker process runs one fit per thread; rnnkit's default
``n_threads=None`` takes the worker's budget (Dask's nanny sets OMP_NUM_THREADS=1), so the
workers do not oversubscribe the cores. ``register_dask()`` makes a worker that dies raise
in ``fit`` (``KilledWorker``) instead of leaving the search waiting.
"""

from __future__ import annotations

import sys
import time
import warnings

import joblib
from dask.distributed import Client, LocalCluster
from sklearn.model_selection import GridSearchCV

import rnnkit
from order_task import data
from rnnkit.distributed import register_dask


def main() -> None:
    if len(sys.argv) > 1:
        client = Client(sys.argv[1])
    else:
        client = Client(LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None))
    register_dask()
    X, y = data()
    search = GridSearchCV(
        rnnkit.RNNClassifier(max_epochs=15, learning_rate=3e-3, random_state=0),
        {"cell": ["lstm", "gru"], "hidden_size": [8, 16]},
        cv=3,
    )
    start = time.perf_counter()
    with warnings.catch_warnings(), joblib.parallel_backend("dask"):
        warnings.simplefilter("ignore")  # ConvergenceWarning of the short runs
        search.fit(X, y)
    print(f"{len(search.cv_results_['params'])} configurations x 3 folds on "
          f"{len(client.scheduler_info()['workers'])} workers in {time.perf_counter() - start:.1f} s")
    print(f"best: {search.best_params_}, cross-validated accuracy {search.best_score_:.3f}")
    client.close()


if __name__ == "__main__":
    main()
