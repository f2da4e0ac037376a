"""Scale-out measurements: a 16-configuration search serial vs on a Dask LocalCluster of 2
workers, and one training epoch on 1 vs 2 MPI ranks (plus the Allreduce of the gradient
buffer alone). Not a pytest file: the MPI part needs ``mpirun``.

    python bench/scaling.py              # everything; prints markdown for bench/RESULTS.md
    python bench/scaling.py search       # the search only
    python bench/scaling.py mpi          # the MPI rows only (starts mpirun -n 1 and -n 2 itself)

Needs ``rnnkit[dask]`` and ``rnnkit[mpi]`` (with Open MPI's mpirun). Run it on a quiet machine:
the numbers are wall-clock times.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import warnings
from typing import Any

import numpy as np

#: The epoch benchmark: LSTM D=16 -> H=64, T=50, N=2048 sequences, global batch 64, float32.
EPOCH = dict(n=2048, steps=50, features=16, hidden=64, global_batch=64, epochs=3)
#: The search: 16 configurations x 2 folds = 32 fits of an LSTM/GRU classifier (500 sequences of
#: 50 steps each, 10 epochs).
GRID = {"cell": ["lstm", "gru"], "hidden_size": [32, 64], "learning_rate": [3e-3, 1e-2], "num_layers": [1, 2]}


def _search_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1000, 50, 4)).astype(np.float32)
    y = (X[:, :10, 0].sum(axis=1) > X[:, 40:, 1].sum(axis=1)).astype(int)
    return X, y


def _search(n_threads: Any) -> tuple[float, Any]:
    from sklearn.model_selection import GridSearchCV

    import rnnkit

    X, y = _search_data()
    est = rnnkit.RNNClassifier(max_epochs=10, batch_size=32, random_state=0, n_threads=n_threads)
    search = GridSearchCV(est, GRID, cv=2)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(X, y)
    return time.perf_counter() - start, search.cv_results_["mean_test_score"]


def bench_search(rounds: int = 2) -> dict:
    """Serial (2 threads, 1 thread) vs a Dask LocalCluster of 2 workers x 1 thread, interleaved.

    Each round runs the three one after the other, so that load from other processes on a
    shared machine falls on all of them; the medians over rounds are reported.
    """
    import joblib
    from dask.distributed import Client, LocalCluster

    from rnnkit.distributed import register_dask

    saved = dict(os.environ)
    start = time.perf_counter()
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.CRITICAL)
    client = Client(cluster)
    startup = time.perf_counter() - start
    # Dask's nanny leaves OMP_NUM_THREADS=1 in this process too; the serial runs get all cores.
    os.environ.clear()
    os.environ.update(saved)
    register_dask()
    with joblib.parallel_backend("dask"):
        first, dask_scores = _search(None)  # the workers import rnnkit and scikit-learn here
    times: dict = {"serial_2_threads_s": [], "serial_1_thread_s": [], "dask_s": []}
    for _ in range(rounds):
        t, scores = _search(None)
        times["serial_2_threads_s"].append(t)
        times["serial_1_thread_s"].append(_search(1)[0])
        with joblib.parallel_backend("dask"):
            times["dask_s"].append(_search(None)[0])
    client.close()
    cluster.close()
    out = {k: float(np.median(v)) for k, v in times.items()}
    return dict(out, all=times, configs=16, fits=32, dask_cluster_start_s=startup, dask_first_s=first,
                same_scores=bool(np.array_equal(scores, dask_scores)))


# ---------------------------------------------------------------------- MPI (run under mpirun)
def _epoch_rank() -> None:
    """One rank of the epoch benchmark; rank 0 prints a JSON line."""
    from mpi4py import MPI

    import rnnkit
    from rnnkit import distributed

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    cfg = EPOCH
    rng = np.random.default_rng(1)
    X = rng.standard_normal((cfg["n"], cfg["steps"], cfg["features"])).astype(np.float32)
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    per_rank = cfg["n"] // size
    Xs, ys = X[rank * per_rank : (rank + 1) * per_rank], y[rank * per_rank : (rank + 1) * per_rank]
    est = rnnkit.RNNClassifier(hidden_size=cfg["hidden"], batch_size=cfg["global_batch"] // size,
                               max_epochs=cfg["epochs"], random_state=0)

    hooks: list = []
    original = distributed._GradientAllreduce.__init__

    def keep(self: Any, *args: Any) -> None:
        original(self, *args)
        hooks.append(self)

    distributed._GradientAllreduce.__init__ = keep  # to read the time spent in Allreduce
    comm.Barrier()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        distributed.fit(est, Xs, ys)
    total = time.perf_counter() - start
    allreduce = hooks[0].seconds if hooks else 0.0
    waits = comm.gather(allreduce, root=0)

    # The Allreduce alone, on a buffer of the gradient's size (after a barrier, so no waiting).
    buf = np.zeros(est._params_flat.size + 2, dtype=np.float32)
    times = []
    for _ in range(300):
        comm.Barrier()
        t0 = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        times.append(time.perf_counter() - t0)
    if rank == 0:
        batches = -(-cfg["n"] // cfg["global_batch"]) * cfg["epochs"]
        print(json.dumps({"ranks": size, "threads_per_rank": est._threads(), "epoch_s": total / cfg["epochs"],
                          "allreduce_in_fit_s_per_epoch": [w / cfg["epochs"] for w in waits],
                          "batches_per_epoch": batches // cfg["epochs"], "params": int(est._params_flat.size),
                          "allreduce_alone_median_us": float(np.median(times) * 1e6),
                          "allreduce_alone_p90_us": float(np.percentile(times, 90) * 1e6)}), flush=True)


def bench_mpi() -> list:
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        raise SystemExit("mpirun not found: apt-get install openmpi-bin libopenmpi-dev")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", PYTHONWARNINGS="ignore")
    rows = []
    # OPENBLAS_NUM_THREADS=1 as Dask does for its workers; the last row leaves numpy's OpenBLAS
    # its threads (on a contended machine the Allreduce then took up to ~8 ms instead of ~45 us).
    for ranks, threads, blas in ((1, 2, "1"), (1, 1, "1"), (2, 1, "1"), (2, 1, str(os.cpu_count()))):
        cmd = [mpirun, "-n", str(ranks), "--oversubscribe", "--bind-to", "none", "--mca", "btl", "self,tcp",
               "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo",
               sys.executable, os.path.abspath(__file__), "mpi-rank"]
        run = subprocess.run(cmd, env=dict(env, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=blas),
                             capture_output=True, text=True,
                             timeout=600)
        if run.returncode != 0:
            raise SystemExit(run.stdout + run.stderr)
        rows.append(dict(json.loads(run.stdout.strip().splitlines()[-1]), openblas_threads=blas))
    return rows


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what == "mpi-rank":
        _epoch_rank()
        return
    print(f"load average before: {_load()}")
    if what in ("all", "search"):
        s = bench_search()
        print(json.dumps(s))
        print("\n| run (median of rounds) | wall s | speed-up vs serial, 2 threads |\n|---|---:|---:|")
        for label, key in (("serial, n_threads=None (2 threads)", "serial_2_threads_s"),
                           ("serial, n_threads=1", "serial_1_thread_s"),
                           ("Dask LocalCluster, 2 workers x 1 thread", "dask_s"),
                           ("Dask, first search (workers import rnnkit)", "dask_first_s")):
            print(f"| {label} | {s[key]:.2f} | {s['serial_2_threads_s'] / s[key]:.2f}x |")
        print(f"\ncluster start {s['dask_cluster_start_s']:.1f} s; same scores as serial: {s['same_scores']}")
    if what in ("all", "mpi"):
        rows = bench_mpi()
        for r in rows:
            print(json.dumps(r))
        base = rows[0]["epoch_s"]
        print("\n| ranks x threads | epoch s | speed-up vs 1x2 | Allreduce in fit, s/epoch (per rank) | "
              "Allreduce alone, median us |\n|---|---:|---:|---|---:|")
        for r in rows:
            waits = ", ".join(f"{w:.3f}" for w in r["allreduce_in_fit_s_per_epoch"])
            blas = "" if r["openblas_threads"] == "1" else f", OpenBLAS {r['openblas_threads']} threads"
            print(f"| {r['ranks']} x {r['threads_per_rank']}{blas} | {r['epoch_s']:.3f} | {base / r['epoch_s']:.2f}x | "
                  f"{waits} | {r['allreduce_alone_median_us']:.0f} |")
        print(f"\nparams {rows[0]['params']}, batches per epoch {rows[0]['batches_per_epoch']}")
    print(f"load average after: {_load()}")


if __name__ == "__main__":
    main()
