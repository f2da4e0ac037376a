"""Run under ``mpirun -n N`` by tests/test_distributed_mpi.py (not collected by pytest itself).

    python mpi_fit_script.py equal OUT.npz CHECKPOINT.npz   each rank fits its shard of every case
    python mpi_fit_script.py mismatch PREFIX                shards that disagree: rank r reports in PREFIX.r
    python mpi_fit_script.py fail                           rank 1 fails in its third batch

The cases are defined here and imported by the test, which fits the same data in one process
with ``batch_size * N``.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

import rnnkit
from rnnkit import distributed

#: batch_size per rank in the distributed runs; the one-process reference uses batch_size * ranks.
BATCH = 5


def case(name: str) -> tuple[Any, Any, Any]:
    """(estimator with batch_size=BATCH, X, y) of the whole data set for case ``name``."""
    rng = np.random.default_rng(7)
    if name == "classifier":
        X = rng.standard_normal((43, 7, 3))
        y = np.where(X[:, :, 0].sum(axis=1) > X[:, :, 1].sum(axis=1), "up", "down")
        est = rnnkit.RNNClassifier(cell="lstm", hidden_size=8, batch_size=BATCH, max_epochs=3, learning_rate=0.01,
                                   dtype="float64", random_state=0, n_threads=1)
        return est, X, y
    if name == "regressor_sequence":
        lengths = rng.integers(2, 9, 37)
        X = [rng.standard_normal((n, 2)) * 3 + 1 for n in lengths]
        y = [np.stack([np.cumsum(x[:, 0]), x[:, 1] ** 2], axis=1) for x in X]
        est = rnnkit.RNNRegressor(cell="gru", hidden_size=6, output="sequence", batch_size=BATCH, max_epochs=2,
                                  optimizer="sgd", learning_rate=0.05, momentum=0.9, clip_norm=0.5,
                                  lr_schedule="cosine", dtype="float64", random_state=3, n_threads=1)
        return est, X, y
    if name == "tagger_balanced":
        # per-step labels, class 2 rare, and rank 0's shard holding more of it than rank 1's:
        # "balanced" must count the labels of every rank; with tol that large no epoch after the
        # first improves, so "adaptive" lowers the rate after the third (the same on every rank)
        lengths = rng.integers(3, 9, 41)
        X = [rng.standard_normal((n, 2)) for n in lengths]
        y = [np.digitize(x[:, 0] + (0.8 if i < 12 else 0.0), [-0.3, 1.3]) for i, x in enumerate(X)]
        est = rnnkit.RNNClassifier(cell="gru", hidden_size=6, output="sequence", class_weight="balanced",
                                   batch_size=BATCH, max_epochs=4, learning_rate=0.02, dtype="float64",
                                   lr_schedule="adaptive", tol=1e9, n_iter_no_change=1, random_state=2,
                                   n_threads=1)
        return est, X, y
    raise KeyError(name)


CASES = ("classifier", "regressor_sequence", "tagger_balanced")


def shard(values: Any, rank: int, size: int) -> Any:
    """Contiguous shards in rank order; rank 0 takes the remainder (so they can be uneven)."""
    base, extra = divmod(len(values), size)
    start = 0 if rank == 0 else base * rank + extra
    return values[start : base * (rank + 1) + extra]


def main() -> None:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    mode = sys.argv[1]
    if mode == "equal":
        out, checkpoint = sys.argv[2], sys.argv[3]
        results = {}
        for name in CASES:
            est, X, y = case(name)
            distributed.fit(est, shard(X, rank, size), shard(y, rank, size),
                            checkpoint=checkpoint if name == "classifier" else None)
            results[f"{name}_params"] = est._params_flat.copy()
            results[f"{name}_loss"] = np.asarray(est.loss_curve_)
            results[f"{name}_learning_rate"] = np.array(est.learning_rate_)
            gathered = comm.gather(est._params_flat.copy(), root=0)
            if rank == 0:
                results[f"{name}_max_rank_difference"] = np.array(max(np.abs(g - gathered[0]).max() for g in gathered))
        if rank == 0:
            np.savez(out, **results)
    elif mode == "mismatch":
        report = open(f"{sys.argv[2]}.{rank}", "w")  # one file per rank: no interleaved lines
        est, X, y = case("classifier")
        X, y = shard(X, rank, size), shard(y, rank, size)
        problems = {
            "features": (X[:, :, : 3 - rank], y, {}),
            "labels": (X, np.where(y == "up", "up", "sideways") if rank == 1 else y, {}),
            "dtype": (X.astype(np.float32) if rank == 1 else X, y, {}),
            "parameters": (X, y, {"hidden_size": 8 + rank}),
            "bad input on one rank": (np.full_like(X, np.nan) if rank == 1 else X, y, {}),
            "zero class weight": (X, y, {"class_weight": {"down": 0.0}}),
        }
        for problem, (Xr, yr, params) in problems.items():
            try:
                distributed.fit(type(est)(**{**est.get_params(), **params}), Xr, yr)
            except ValueError as exc:
                print(f"rank {rank} {problem}: ValueError: {exc}", file=report, flush=True)
            else:
                print(f"rank {rank} {problem}: no error", file=report, flush=True)
        # A shard lacking a class is fine once classes= names them all.
        yr = np.full(len(y), "up") if rank == 1 else y
        fitted = distributed.fit(type(est)(**est.get_params()), X, yr, classes=["down", "up"])
        print(f"rank {rank} classes: {fitted.classes_.tolist()}", file=report, flush=True)
        report.close()
    elif mode == "fail":
        if rank == 1:
            from rnnkit import _fitting

            calls = {"n": 0}
            original = _fitting._BatchStep.__call__

            def failing(self: Any, *args: Any) -> float:
                calls["n"] += 1
                if calls["n"] == 3:
                    raise RuntimeError("injected fault")
                return original(self, *args)

            _fitting._BatchStep.__call__ = failing
        est, X, y = case("classifier")
        est.set_params(max_epochs=50)
        distributed.fit(est, shard(X, rank, size), shard(y, rank, size))
        print(f"rank {rank}: finished (should not happen)", flush=True)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
