"""Synchronous data-parallel training over MPI (``mpi4py``), the way Horovod does it.

Launch one process per rank, each holding its own shard of the training data::

    mpirun -n 4 python train.py        # train.py calls rnnkit.distributed.fit(est, X_shard, y_shard)

Every rank builds the same model (same seed), trains on its shard, and after each batch
averages the flat gradient buffer over all ranks with one ``Allreduce``; the clipping and the
optimizer step then run on identical gradients and identical weights on every rank, so the
ranks stay in lockstep without ever sending weights. mpi4py is imported only when
:func:`fit` runs (``pip install "rnnkit[mpi]"``).

Why a function and not ``fit(..., distributed="mpi")``: the estimators' ``fit`` keeps
scikit-learn's signature (searches, pipelines and ``clone`` pass only X and y), and the
distributed run needs arguments of its own (the communicator, the classes of all shards, a
checkpoint path). ``fit(estimator, X, y)`` trains ``estimator`` in place and returns it, so
the result is an ordinary fitted estimator on every rank.

How a run lines up with a one-process fit
-----------------------------------------
Number the samples of all shards in rank order (rank 0's first): together they are the
*global* data set of N samples, and rank r holds global indices ``[offset_r, offset_r + n_r)``.

- **Batches.** ``batch_size`` is per rank: a global batch holds ``batch_size * size`` samples.
  Each epoch every rank draws the same permutation of ``range(N)`` from the shared seed (the
  ordinary fit draws exactly this permutation for its N samples), cuts it into global batches
  and takes, from each, the members that fall in its own shard. A rank may thus get more or
  fewer than ``batch_size`` samples of a batch (or none: it then contributes a zero gradient).
- **Averaging.** Each rank's C++ loss and gradient are means over its valid rows (sequences,
  or valid time steps with ``output="sequence"``). The Allreduce buffer holds the gradient
  times the local row count, the count itself and the loss times the count, so one reduction
  gives the exact mean over the global batch: the gradient and loss of one process training
  on all N samples with ``batch_size * size`` (to rounding; the test checks float64 weights
  to 1e-10). With ``class_weight`` the count is the rows' total weight, and ``"balanced"``
  counts the labels of every shard (one more Allreduce), so the same holds.
- **Scaling.** The input (and, for regression, target) mean and standard deviation are
  computed over all shards (count and sums, then the squared deviations: two Allreduces), so
  every rank scales with the same statistics, those of the global data set.
- **Randomness.** The seed is ``random_state`` where it is an int (it must then be equal on
  every rank); otherwise rank 0 draws one and broadcasts it. Initial weights, the epoch
  permutations and dropout keys all come from it. Dropout masks depend on a sample's row in
  its batch, so with ``dropout > 0`` runs on different rank counts differ (each is valid).

Not supported with more than one rank (ValueError): ``early_stopping`` (its validation split
would have to be global too), ``warm_start`` and a ``class_weight`` of 0 (a global batch could
weigh nothing). :func:`fit` takes no ``sample_weight``. With one process :func:`fit` is exactly
``estimator.fit(X, y)``.

Faults
------
Before training the ranks exchange what they hold (sample counts, features per step, input
kind and dtype, label sets or target widths, the estimator's parameters). A mismatch, or bad
input on any rank, raises the same ValueError on every rank, naming the ranks and the
cause, before any gradient is exchanged. Once training runs, an exception on one rank would
leave the others waiting in the Allreduce: that rank prints ``rnnkit.distributed: rank R of
N failed: ...`` with the traceback to stderr and calls ``MPI_Abort``, which ends the whole
job (``abort_on_error=False`` re-raises instead, for callers that handle it themselves).
Divergence (a NaN/Inf loss or weights) is seen identically by every rank after the
reduction, so it raises the ordinary ValueError everywhere without aborting.
"""

from __future__ import annotations

import copy
import numbers
import os
import sys
import time
import traceback
import warnings
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from ._sequences import _STATS_ALLREDUCE, per_step_targets
from ._fitting import _BatchStep, _LearningRate, _make_rng
from ._estimator_base import _RNNBase
from .estimators import RNNClassifier, RNNRegressor
from .exceptions import ConvergenceWarning

__all__ = ["fit", "register_dask"]


def _world() -> Any:
    try:
        from mpi4py import MPI
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "rnnkit.distributed needs mpi4py and an MPI library: pip install \"rnnkit[mpi]\" "
            "(with Open MPI, e.g. apt-get install openmpi-bin libopenmpi-dev)"
        ) from exc
    return MPI.COMM_WORLD


def _mpi() -> Any:
    from mpi4py import MPI

    return MPI


def fit(
    estimator: _RNNBase,
    X: Any,
    y: Any,
    comm: Any = None,
    *,
    classes: Optional[Sequence[Any]] = None,
    checkpoint: Union[str, os.PathLike, None] = None,
    checkpoint_every: int = 1,
    abort_on_error: bool = True,
) -> _RNNBase:
    """Train ``estimator`` on this rank's shard (X, y), data-parallel with the other ranks.

    Every rank of ``comm`` must call this at the same point with the same estimator
    parameters; see the module docstring for how batches, gradients and scaling line up.

    Parameters
    ----------
    estimator : RNNClassifier or RNNRegressor
        Trained in place (from scratch).
    X, y : as for ``estimator.fit``
        This rank's shard (at least one sample).
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``.
    classes : sequence, optional
        Classifier only: every label of the whole data set. Without it each shard must hold
        the same set of labels (checked); with it a shard may lack some. With one process it
        is only checked against y (the ordinary fit takes the labels found in y).
    checkpoint : path, optional
        Rank 0 writes the model there in the portable format (``estimator.save``; load it
        with ``rnnkit.load``) every ``checkpoint_every`` epochs and at the end, through a
        temporary file and a rename, so a crash never leaves half a file.
    checkpoint_every : int
        Epochs between checkpoints.
    abort_on_error : bool
        On an exception that only this rank sees during training, print the rank and cause
        and call ``MPI_Abort`` (default), instead of raising while the other ranks wait.

    Returns
    -------
    estimator
        The fitted estimator, identical on every rank.

    Raises
    ------
    ValueError
        On every rank, before training: mismatched shards (features per step, input kind or
        dtype, label sets, target widths), differing estimator parameters, bad input on any
        rank, or an option not supported with several ranks.
    """
    if not isinstance(estimator, (RNNClassifier, RNNRegressor)):
        raise TypeError(f"fit() takes an RNNClassifier or RNNRegressor, got {type(estimator).__name__}")
    if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, numbers.Integral) or checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be an integer >= 1, got {checkpoint_every!r}")
    comm = _world() if comm is None else comm
    if comm.Get_size() == 1:
        if classes is not None and isinstance(estimator, RNNClassifier):
            _check_in_classes(estimator, X, y, np.unique(np.asarray(classes)), rank=0)
        estimator.fit(X, y)
        if checkpoint is not None:
            _save(estimator, checkpoint)
        return estimator
    return _Run(estimator, comm, checkpoint, int(checkpoint_every), abort_on_error).fit(X, y, classes)


class _GradientAllreduce:
    """The ``grad_hook`` of :class:`~rnnkit._fitting._BatchStep`: one Allreduce per batch.

    The buffer holds ``[weight * grads, weight, weight * loss]`` in the model's dtype (float32
    models send float32), ``weight`` being this rank's valid rows in the batch; after the sum,
    grads and loss are the global means.
    """

    def __init__(self, comm: Any, grads: np.ndarray) -> None:
        self.comm, self.grads = comm, grads
        self.buffer = np.empty(grads.size + 2, dtype=grads.dtype)
        self.mpi = _mpi()
        self.weight = 0.0
        self.total = 0.0  # the summed weight of the last reduction: every rank's
        self.reduced = False  # set once this batch's reduction is done (every rank then agrees)
        self.seconds = 0.0  # time spent in the Allreduce (for benchmarks)

    def __call__(self, loss: float) -> float:
        g, w = self.buffer[:-2], float(self.weight)
        np.multiply(self.grads, w, out=g)
        self.buffer[-2] = w
        self.buffer[-1] = loss * w if w > 0 else 0.0
        start = time.perf_counter()
        self.comm.Allreduce(self.mpi.IN_PLACE, self.buffer, op=self.mpi.SUM)
        self.seconds += time.perf_counter() - start
        self.reduced = True
        total = self.buffer[-2]
        self.total = float(total)
        np.divide(g, total, out=self.grads)
        return float(self.buffer[-1] / total)


class _Run:
    """One distributed fit: agreement checks, global scaling, the epoch loop, checkpoints."""

    def __init__(self, est: _RNNBase, comm: Any, checkpoint: Any, every: int, abort: bool) -> None:
        self.est, self.comm, self.checkpoint, self.every, self.abort = est, comm, checkpoint, every, abort
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.hook: Optional[_GradientAllreduce] = None

    # ------------------------------------------------------------------ agreement
    def _agree(self, what: str, work: Callable[[], Any]) -> Any:
        """Run ``work()`` here; if it fails on any rank, raise the same ValueError on all ranks."""
        try:
            result, error = work(), None
        except Exception as exc:  # noqa: BLE001 - reported to every rank below
            result, error = None, f"{type(exc).__name__}: {exc}"
        errors = self.comm.allgather(error)
        failed = [(r, e) for r, e in enumerate(errors) if e is not None]
        if failed:
            detail = "; ".join(f"rank {r}: {e}" for r, e in failed)
            raise ValueError(f"rnnkit.distributed.fit: {what} failed on {len(failed)} of {self.size} ranks: {detail}")
        return result

    def _same(self, name: str, values: list) -> None:
        """ValueError (on every rank: ``values`` are allgathered) unless all ranks agree."""
        if any(v != values[0] for v in values[1:]):
            per_rank = ", ".join(f"rank {r}: {v}" for r, v in enumerate(values))
            raise ValueError(f"rnnkit.distributed.fit: the shards differ in {name} ({per_rank})")

    def _local_facts(self, X: Any, y: Any) -> dict:
        est = self.est
        est._validate_params()
        if est.early_stopping:
            raise ValueError("early_stopping=True is not supported with several ranks (the validation split "
                             "would have to be global); hold out a validation set and score it after fit")
        if est.warm_start:
            raise ValueError("warm_start=True is not supported with several ranks: distributed fit trains from "
                             "scratch")
        if y is None:
            raise ValueError(f"{type(est).__name__} requires y to be passed, but the target y is None.")
        seqs = est._check_X(X, reset=True)
        if seqs.n < 1:
            raise ValueError("the shard holds no samples")
        self.seqs = seqs
        facts: dict = {
            "n": int(seqs.n),
            "features per step": int(est._input_size),
            "n_features_in_": int(est.n_features_in_),
            "input kind": "2-D univariate" if seqs.kind == "2d" else "sequences",
            "X dtype": _raw_dtype(X),
            "y dtype kind": np.dtype(_raw_dtype(y)).kind,
            "params": {k: repr(v) for k, v in est.get_params().items() if k != "random_state"},
            "random_state": est.random_state if isinstance(est.random_state, numbers.Integral) else None,
        }
        if isinstance(est, RNNClassifier):
            self.local_labels = _local_labels(est, seqs, y)
            facts["labels"] = self.local_labels.tolist()
        else:
            facts["target width"] = _target_width(est, seqs, y)
        return facts

    def _check_shards(self, facts: list[dict], classes: Optional[np.ndarray]) -> None:
        for name in ("features per step", "n_features_in_", "input kind", "X dtype", "y dtype kind", "params",
                     "random_state"):
            if name == "params" and any(f[name] != facts[0][name] for f in facts):
                diff = sorted({k for f in facts for k in f[name] if f[name].get(k) != facts[0][name].get(k)})
                self._same(f"estimator parameters {diff}", [{k: f[name].get(k) for k in diff} for f in facts])
            elif name != "params":
                self._same(name, [f[name] for f in facts])
        if "labels" in facts[0]:
            if classes is None:
                self._same("label sets (pass classes= with every label when a shard may lack some)",
                           [f["labels"] for f in facts])
            else:
                known = set(classes.tolist())
                extra = [(r, sorted(set(f["labels"]) - known, key=repr)) for r, f in enumerate(facts)]
                extra = [(r, e) for r, e in extra if e]
                if extra:
                    raise ValueError("rnnkit.distributed.fit: labels outside classes: "
                                     + "; ".join(f"rank {r}: {e[:5]}" for r, e in extra))
        else:
            self._same("target width (outputs per sample or step)", [f["target width"] for f in facts])

    # ------------------------------------------------------------------ the run
    def fit(self, X: Any, y: Any, classes: Optional[Sequence[Any]]) -> _RNNBase:
        est, comm = self.est, self.comm
        facts = self._agree("checking the input", lambda: self._local_facts(X, y))
        facts = comm.allgather(facts)
        cls_array = None if classes is None else np.unique(np.asarray(classes))
        self._check_shards(facts, cls_array)
        if isinstance(est, RNNClassifier):
            cls_array = self.local_labels if cls_array is None else cls_array  # equal on all ranks here
            if cls_array.size < 2:
                raise ValueError(f"rnnkit.distributed.fit: {type(est).__name__} needs at least 2 classes over all "
                                 f"shards, got {cls_array.tolist()!r}")
        sizes = [f["n"] for f in facts]
        offset, n_total = sum(sizes[: self.rank]), sum(sizes)

        seed = facts[0]["random_state"]
        if seed is None:  # None or a generator object: rank 0 draws the seed that all ranks use
            seed = comm.bcast(int(_make_rng(est.random_state).integers(0, 2**63 - 1)) if self.rank == 0 else None,
                              root=0)

        def allreduce(values: np.ndarray) -> None:
            comm.Allreduce(_mpi().IN_PLACE, values, op=_mpi().SUM)

        # What can fail on one rank alone is tried first on a copy (local statistics); then every
        # rank reaches the reductions of the global scaling statistics, whose own checks see
        # the same global values everywhere.
        self._agree("checking y", lambda: copy.copy(est)._encode_targets(y, self.seqs, reset=True, classes=cls_array))
        token = _STATS_ALLREDUCE.set(allreduce)
        try:
            est._fit_scaler(self.seqs)
            targets = est._encode_targets(y, self.seqs, reset=True, classes=cls_array)
            class_weights = est._class_weights(targets, self.seqs)  # "balanced": global counts
        finally:
            _STATS_ALLREDUCE.reset(token)
        if class_weights is not None and not class_weights.all():
            raise ValueError("rnnkit.distributed.fit: class_weight with a weight of 0 is not supported with several "
                             "ranks (a global batch could then weigh nothing); drop those classes' rows instead")
        est._random = np.random.default_rng(seed)
        est._build(est._n_outputs_for_fit, est._random)
        x_all = self._agree("scaling X", lambda: est._scale_X(self.seqs))

        self.hook = _GradientAllreduce(comm, est._grads_flat)
        try:
            self._epochs(x_all, targets, offset, n_total, class_weights)
        except BaseException as exc:
            if self.hook.reduced or not self.abort:
                raise  # a divergence every rank saw after the reduction, or the caller's choice
            self._abort(exc)
        comm.Bcast(est._params_flat, root=0)  # the ranks agree already; this makes it certain
        if self.checkpoint is not None and self.rank == 0:
            _save(est, self.checkpoint)
        return est

    def _epochs(self, x_all: np.ndarray, targets: np.ndarray, offset: int, n_total: int,
                class_weights: Optional[np.ndarray]) -> None:
        """The ordinary fit's loop (no early stopping), over this rank's part of each global batch."""
        est, hook = self.est, self.hook
        assert hook is not None
        rng = est._random
        opt = est._make_optimizer()
        step = _BatchStep(est._spec, est._params_flat, est._grads_flat, opt, dropout=float(est.dropout),
                          clip_norm=est.clip_norm, clip_value=est.clip_value, n_threads=est._threads(),
                          diverged=est._divergence_message, grad_hook=hook, run=est._model_calls()[1])
        labels = est._loss == "cross_entropy"
        lengths_all = self.seqs.lengths
        n_local = x_all.shape[0]
        global_batch = int(est.batch_size) * self.size
        stopped_early = False
        rate = _LearningRate(est.lr_schedule, opt, int(est.max_epochs))  # the epoch loss is global: ranks agree
        try:
            for _ in range(int(est.max_epochs)):
                start_time = time.perf_counter()
                order = rng.permutation(n_total)
                total, total_weight = 0.0, 0.0
                for b0 in range(0, n_total, global_batch):
                    batch = np.sort(order[b0 : b0 + global_batch])
                    idx = batch[(batch >= offset) & (batch < offset + n_local)] - offset
                    key = int(rng.integers(0, 2**63 - 1)) if est.dropout > 0 else 0
                    hook.reduced = False
                    if idx.size:
                        steps = x_all.shape[1] if lengths_all is None else int(lengths_all[idx].max())
                        xb = np.ascontiguousarray(x_all[idx, :steps])
                        lb = None if lengths_all is None else np.ascontiguousarray(lengths_all[idx])
                        tb = np.ascontiguousarray(targets[idx][:, :steps] if est.output == "sequence" else targets[idx])
                        wb, row_weight = est._row_weights(None, class_weights, tb, lb)
                        if wb is not None:
                            hook.weight = row_weight  # the rows' total weight: the global loss is their weighted mean
                        elif est.output == "last":
                            hook.weight = idx.size
                        else:
                            hook.weight = idx.size * steps if lb is None else int(lb.sum())
                        loss = step(xb, lb, tb if labels else None, None if labels else tb, key, wb)
                    else:  # none of this batch is here: add nothing to the sums, still take the step
                        est._grads_flat.fill(0)
                        hook.weight = 0
                        loss = step.finish(0.0)
                    # as the ordinary fit: batches count by their sequences, or by their total weight
                    batch_weight = batch.size if class_weights is None else hook.total
                    total += loss * batch_weight
                    total_weight += batch_weight
                hook.reduced = False
                est.n_iter_ += 1
                est.t_ += n_total
                epoch_loss = total / total_weight
                est.loss_curve_.append(epoch_loss)
                improved = epoch_loss < est._best_loss - est.tol
                est._best_loss = min(est._best_loss, epoch_loss)
                est._no_improvement = 0 if improved else est._no_improvement + 1
                if est.verbose and self.rank == 0:
                    print(f"Epoch {est.n_iter_}: loss {epoch_loss:.6f}{rate.note()}, "
                          f"{time.perf_counter() - start_time:.2f} s "
                          f"({self.size} ranks)", flush=True)
                if rate.after_epoch(est._no_improvement > est.n_iter_no_change) == "lowered":
                    est._no_improvement = 0
                est.learning_rate_ = opt.lr
                if self.checkpoint is not None and self.rank == 0 and est.n_iter_ % self.every == 0:
                    est._optimizer_state = opt.state_dict()
                    _save(est, self.checkpoint)
                if est._no_improvement > est.n_iter_no_change:
                    stopped_early = True
                    break
            else:
                if int(est.max_epochs) > 1:
                    warnings.warn(
                        f"{type(est).__name__}: max_epochs={est.max_epochs} reached and the loss is still improving; "
                        "consider raising max_epochs.",
                        ConvergenceWarning,
                        stacklevel=4,
                    )
        finally:
            est._optimizer_state = opt.state_dict()
        est._no_improvement = 0
        est.best_loss_ = min(est.loss_curve_) if est.loss_curve_ else None
        est.best_validation_score_ = None
        est.stopped_early_ = stopped_early

    def _abort(self, exc: BaseException) -> None:
        """Name this rank and the cause on stderr, then end the whole job."""
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        sys.stderr.write(f"{trace}rnnkit.distributed: rank {self.rank} of {self.size} failed: "
                         f"{type(exc).__name__}: {exc}; aborting the job\n")
        sys.stderr.flush()
        sys.stdout.flush()
        self.comm.Abort(1)


# ---------------------------------------------------------------------- Dask searches
_DASK_BACKEND: Optional[type] = None


def register_dask(name: str = "dask") -> type:
    """Register joblib's Dask backend under ``name``, reporting Dask's own task failures.

    joblib's Dask backend (joblib 1.6) reports an exception raised *inside* a task, but not a
    task that Dask itself fails: when a worker dies while running it (``KilledWorker``), or
    its scattered inputs are lost, ``Parallel`` -- and so ``GridSearchCV.fit`` -- waits
    forever. The backend registered here is joblib's, with that failure passed to joblib like
    any other, so ``fit`` raises it (``distributed.scheduler.KilledWorker``, naming the task and
    the worker) and cancels the rest. Call it once before ``joblib.parallel_backend("dask")``,
    as ``ray.util.joblib.register_ray()`` before ``parallel_backend("ray")``.

    Parameters
    ----------
    name : str
        The backend name; "dask" replaces joblib's own registration.

    Returns
    -------
    type
        The backend class (a subclass of ``joblib._dask.DaskDistributedBackend``).
    """
    global _DASK_BACKEND
    import joblib

    if _DASK_BACKEND is None:
        try:
            from joblib._dask import DaskDistributedBackend
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError('register_dask needs dask.distributed: pip install "rnnkit[dask]"') from exc

        class ReportingDaskBackend(DaskDistributedBackend):  # type: ignore[misc, valid-type]
            """joblib's Dask backend; a task that Dask fails raises in Parallel instead of hanging."""

            def submit(self, func: Any, callback: Any = None) -> Any:
                future = super().submit(func, callback)
                if callback is not None:
                    def report(done: Any) -> None:
                        # joblib calls ``callback`` only for finished tasks (their own errors come
                        # back as results); pass a failure of the task itself the same way.
                        if done.exception() is not None:
                            callback(done.exception())

                    future.add_done_callback(report)
                return future

        _DASK_BACKEND = ReportingDaskBackend
    joblib.register_parallel_backend(name, _DASK_BACKEND)
    return _DASK_BACKEND


# ---------------------------------------------------------------------- helpers
def _raw_dtype(X: Any) -> str:
    """The dtype the caller passed (of the first sequence for a list of sequences)."""
    if hasattr(X, "dtype"):
        return str(X.dtype)
    if isinstance(X, (list, tuple)) and len(X) and not np.isscalar(X[0]):
        return str(np.asarray(X[0]).dtype)
    return str(np.asarray(X).dtype)


def _local_labels(est: RNNClassifier, seqs: Any, y: Any) -> np.ndarray:
    """The distinct labels of this shard (sorted)."""
    if est.output == "last":
        labels = np.asarray(y)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels.ravel()
        if labels.ndim == 2:
            raise ValueError(f"rnnkit.distributed.fit: a multi-label y (shape {labels.shape}) is not supported with "
                             "several ranks; fit it in one process")
        if labels.ndim != 1:
            raise ValueError(f"y must be 1-D (one label per sequence) with output='last', got shape {labels.shape}")
    else:
        labels = per_step_targets(y, seqs)[seqs.valid_mask()]
        if labels.ndim == 2 and labels.shape[1] > 1:
            raise ValueError(f"rnnkit.distributed.fit: a multi-label y ({labels.shape[1]} labels per step) is not "
                             "supported with several ranks; fit it in one process")
    return np.unique(labels)


def _check_in_classes(est: RNNClassifier, X: Any, y: Any, classes: np.ndarray, rank: int) -> None:
    seqs = est._check_X(X, reset=True)
    extra = np.setdiff1d(_local_labels(est, seqs, y), classes)
    if extra.size:
        raise ValueError(f"rnnkit.distributed.fit: labels outside classes: rank {rank}: {extra[:5].tolist()}")


def _target_width(est: RNNRegressor, seqs: Any, y: Any) -> list:
    """(dimensions per sample or step, outputs): what the shards' targets must agree on."""
    values = np.asarray(y) if est.output == "last" else per_step_targets(y, seqs)
    per_item = values.ndim - (1 if est.output == "last" else 2)
    return [int(per_item), int(values.shape[-1]) if per_item else 1]


def _save(est: _RNNBase, path: Any) -> None:
    """``est.save(path)`` through a temporary file in the same folder and a rename."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        est.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
