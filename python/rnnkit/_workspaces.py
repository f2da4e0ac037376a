"""Call memory kept between calls of the C++ core.

A forward call over a large batch needs tens of MB of buffers. Fresh memory costs a page fault
per 4 KiB on first touch, which took a third of an LSTM forward's time and a third of an
estimator's ``predict_proba`` (bench/NOTES.md, 2026-11-27), so layers and estimators keep the
native workspaces (``Tape_*``, ``ModelWorkspace_*``) of earlier calls and pass them to later
ones, which then allocate nothing for the same sizes. Each call takes a workspace of its own
from the pool, so threads sharing a layer or an estimator never share one (the core also
refuses to run two calls in one workspace at once). Pools are not pickled.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from ._backend import core


class WorkspacePool:
    """At most ``size`` idle workspaces of at most ``max_bytes`` each."""

    size = 4
    max_bytes = 256 << 20

    def __init__(self) -> None:
        self._idle: list = []

    def take(self) -> Optional[Any]:
        """An idle workspace, or None."""
        try:
            return self._idle.pop()
        except IndexError:  # empty, or another thread took the last one
            return None

    def give(self, workspace: Any) -> None:
        """Keep ``workspace`` for a later call (unless the pool is full or it is too large)."""
        if workspace is not None and len(self._idle) < self.size and workspace.nbytes <= self.max_bytes:
            self._idle.append(workspace)

    def __len__(self) -> int:
        return len(self._idle)

    def __reduce__(self) -> tuple:  # pickled and copied empty: native workspaces do not travel
        return (WorkspacePool, ())


class CpuModelCalls:
    """The CPU core's model calls (``model_predict_*`` / ``model_loss_and_grad_*``) with a pool
    of workspaces; same signatures as the core's functions."""

    def __init__(self, dtype_name: str) -> None:
        self._predict = getattr(core, f"model_predict_{dtype_name}")
        self._loss_and_grad = getattr(core, f"model_loss_and_grad_{dtype_name}")
        self._new: Callable[[], Any] = getattr(core, f"ModelWorkspace_{dtype_name}")
        self._dtype_name = dtype_name
        self.pool = WorkspacePool()

    def __reduce__(self) -> tuple:  # pickled and copied without its workspaces
        return (CpuModelCalls, (self._dtype_name,))

    def _workspace(self) -> Any:
        workspace = self.pool.take()
        return workspace if workspace is not None else self._new()

    def predict(self, spec: Any, params: Any, x: Any, lengths: Any, n_threads: int, frozen: bool = False,
                x_mean: Any = None, x_scale: Any = None) -> Any:
        workspace = self._workspace()
        try:
            return self._predict(spec, params, x, lengths, n_threads, workspace, frozen, x_mean, x_scale)
        finally:
            self.pool.give(workspace)

    def loss_and_grad(self, spec: Any, params: Any, x: Any, lengths: Any, labels: Any, values: Any, grads: Any,
                      dropout: float, key: int, n_threads: int, weights: Any = None) -> float:
        workspace = self._workspace()
        try:
            return self._loss_and_grad(spec, params, x, lengths, labels, values, grads, dropout, key, n_threads,
                                       workspace, weights)
        finally:
            self.pool.give(workspace)
