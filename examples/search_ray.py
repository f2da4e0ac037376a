"""A hyper-parameter search over rnnkit estimators on Ray, through joblib.

    pip install "rnnkit[ray]"
    python examples/search_ray.py            # a local Ray instance with 2 CPUs
    RAY_ADDRESS=auto python examples/search_ray.py   # an existing Ray cluster

``ray.util.joblib.register_ray()`` adds the "ray" joblib backend; the search code is
scikit-learn's, unchanged. Ray sets OMP_NUM_THREADS to the CPUs of each task (1 by default)
and rnnkit's default ``n_threads=None`` follows it, so the workers do not oversubscribe.
"""

from __future__ import annotations

import os
import time
import warnings

import joblib
import ray
from ray.util.joblib import register_ray
from sklearn.model_selection import RandomizedSearchCV

import rnnkit
from order_task import data


def main() -> None:
    if "RAY_ADDRESS" in os.environ:
        ray.init()
    else:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    register_ray()
    X, y = data()
    search = RandomizedSearchCV(
        rnnkit.RNNClassifier(max_epochs=15, random_state=0),
        {"cell": ["lstm", "gru"], "hidden_size": [8, 16, 32], "learning_rate": [1e-3, 3e-3, 1e-2]},
        n_iter=4, cv=3, random_state=0,
    )
    start = time.perf_counter()
    with warnings.catch_warnings(), joblib.parallel_backend("ray"):
        warnings.simplefilter("ignore")
        search.fit(X, y)
    print(f"4 configurations x 3 folds on Ray in {time.perf_counter() - start:.1f} s")
    print(f"best: {search.best_params_}, cross-validated accuracy {search.best_score_:.3f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
