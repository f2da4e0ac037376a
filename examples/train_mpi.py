"""Data-parallel training of an rnnkit estimator over MPI: each rank trains on its shard and
the gradients are averaged after every batch (one Allreduce), as in Horovod.

    pip install "rnnkit[mpi]"        # mpi4py; Open MPI: apt-get install openmpi-bin libopenmpi-dev
    mpirun -n 2 -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1 python examples/train_mpi.py
    python examples/train_mpi.py     # one process: exactly the ordinary fit

(As root add --allow-run-as-root; on one machine without a network, --mca btl self,tcp
--mca btl_tcp_if_include lo keeps MPI on loopback.)

``batch_size`` is per rank: 2 ranks with batch 32 train exactly as one process with batch 64
on all the data. Rank 0 writes the checkpoint (rnnkit's portable format) and scores the model.
"""

from __future__ import annotations

import os
import tempfile
import warnings

import numpy as np
from mpi4py import MPI

import rnnkit
from rnnkit import distributed


def main() -> None:
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    # Every rank makes the same toy data and keeps its own shard; real jobs read their own files.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1200, 25, 3)).astype(np.float32)
    y = X[:, :, 0].cumsum(axis=1).max(axis=1) - X[:, -5:, 1].sum(axis=1)
    X_train, y_train, X_test, y_test = X[:1000], y[:1000], X[1000:], y[1000:]
    shard = slice(rank * len(X_train) // size, (rank + 1) * len(X_train) // size)

    reg = rnnkit.RNNRegressor(hidden_size=32, batch_size=32, max_epochs=10, learning_rate=3e-3, random_state=0)
    checkpoint = os.path.join(tempfile.gettempdir(), "rnnkit_train_mpi.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        distributed.fit(reg, X_train[shard], y_train[shard], checkpoint=checkpoint)
    if rank == 0:
        print(f"{size} rank(s), {len(X_train[shard])} sequences on rank 0, loss per epoch: "
              + " ".join(f"{v:.3f}" for v in reg.loss_curve_))
        print(f"test R^2 {reg.score(X_test, y_test):.3f}; "
              f"checkpoint {checkpoint} reloads to R^2 {rnnkit.load(checkpoint).score(X_test, y_test):.3f}")


if __name__ == "__main__":
    main()
