"""Turning user input into padded sequence batches, and targets into arrays.

X may be a 3-D array (n_samples, n_timesteps, n_features), a 2-D array (n_samples,
n_timesteps) of univariate sequences, or a list of 2-D (n_timesteps_i, n_features) /
1-D (n_timesteps_i,) arrays of different lengths, which are zero-padded with their lengths
kept so that padding never changes a result.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np


@dataclass
class Sequences:
    x: np.ndarray  # (n, T, D), C-contiguous, model dtype
    lengths: Optional[np.ndarray]  # (n,) int64, or None when every sequence has T steps
    kind: str  # "2d", "3d" or "list"

    @property
    def n(self) -> int:
        return self.x.shape[0]

    def valid_mask(self) -> np.ndarray:
        """(n, T) True at the steps inside each sequence."""
        n, steps = self.x.shape[:2]
        if self.lengths is None:
            return np.ones((n, steps), dtype=bool)
        return np.arange(steps)[None, :] < self.lengths[:, None]

    def step_weights(self, weights: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """Each valid step's weight, its sequence's (in ``x[valid_mask()]``'s order), or None."""
        if weights is None:
            return None
        mask = self.valid_mask()
        return np.broadcast_to(weights[:, None], mask.shape)[mask]


def _reject_unsupported(X: Any, name: str) -> None:
    if hasattr(X, "toarray") and hasattr(X, "nnz"):
        raise TypeError(f"{name}: sparse input is not supported; pass a dense array")


def _numeric(arr: np.ndarray, name: str, dtype: np.dtype) -> np.ndarray:
    if arr.dtype.kind == "c":
        raise ValueError(f"{name}: Complex data not supported")
    if arr.dtype.kind not in "fiub":
        arr = arr.astype(np.float64)  # object/str data: numbers convert, anything else raises
    arr = np.asarray(arr, dtype=dtype)
    if not np.isfinite(arr).all():
        kind = "NaN" if np.isnan(arr).any() else "infinity or a value too large for " + str(dtype)
        raise ValueError(f"Input {name} contains {kind}.")
    return arr


def _as_array_or_list(X: Any) -> Any:
    """np.asarray(X) unless X is a ragged list of sequences, which is returned as a list."""
    if isinstance(X, (list, tuple)):
        if X and all(isinstance(s, np.ndarray) and s.ndim >= 1 for s in X):
            return list(X)  # a list of sequences, even when their lengths happen to match
        try:
            arr = np.asarray(X)
        except ValueError:  # inhomogeneous: sequences of different lengths
            return list(X)
        if arr.dtype == object and arr.ndim == 1 and len(X) and hasattr(X[0], "__len__"):
            return list(X)
        return arr
    return np.asarray(X)


def to_sequences(X: Any, dtype: np.dtype, name: str = "X") -> Sequences:
    """Validate X and return it as a padded (n, T, D) batch with lengths."""
    _reject_unsupported(X, name)
    data = _as_array_or_list(X)
    if isinstance(data, list):
        if not data:
            raise ValueError(f"{name}: found 0 sequences, while a minimum of 1 is required")
        seqs = []
        for i, s in enumerate(data):
            a = _numeric(np.asarray(s), f"{name}[{i}]", dtype)
            if a.ndim == 1:
                a = a[:, None]
            if a.ndim != 2 or a.shape[0] == 0:
                raise ValueError(
                    f"{name}[{i}]: each sequence must be a non-empty (n_timesteps, n_features) or (n_timesteps,) "
                    f"array, got shape {a.shape}"
                )
            seqs.append(a)
        widths = {a.shape[1] for a in seqs}
        if len(widths) != 1:
            raise ValueError(f"{name}: every sequence must have the same number of features, got {sorted(widths)}")
        lengths = np.array([a.shape[0] for a in seqs], dtype=np.int64)
        x = np.zeros((len(seqs), int(lengths.max()), widths.pop()), dtype=dtype)
        for i, a in enumerate(seqs):
            x[i, : a.shape[0]] = a
        return Sequences(x, lengths if (lengths != x.shape[1]).any() else None, "list")

    arr = data
    if arr.ndim == 0 or arr.ndim == 1:
        raise ValueError(
            f"Expected a 2-D (n_samples, n_timesteps) or 3-D (n_samples, n_timesteps, n_features) array for "
            f"{name}, got {arr.ndim}-D array instead. Reshape your data (e.g. array.reshape(-1, 1) for one "
            f"step per sample)."
        )
    if arr.ndim > 3:
        raise ValueError(f"{name} must be 2-D or 3-D, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape={arr.shape}) while a minimum of 1 is required.")
    if arr.shape[1] == 0 or (arr.ndim == 3 and arr.shape[2] == 0):
        raise ValueError(f"Found array with 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required.")
    arr = _numeric(arr, name, dtype)
    kind = "2d" if arr.ndim == 2 else "3d"
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return Sequences(np.ascontiguousarray(arr), None, kind)


def standardised(x: np.ndarray, mean: np.ndarray, scale: np.ndarray, dtype: np.dtype) -> Optional[np.ndarray]:
    """``((x - mean) / scale)`` in float64, cast to ``dtype``; None where a value is not finite then
    (NaN/Inf in x, or too large for ``dtype`` once scaled). The compiled calls do the same
    arithmetic (``standardise`` in model_spec.hpp)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = ((x - mean) / scale).astype(dtype, copy=False)
    return out if np.isfinite(out).all() else None


def per_step_targets(y: Any, seqs: Sequences, name: str = "y") -> np.ndarray:
    """Per-time-step targets as an (n, T, ...) array aligned with the padded X (padding zeros)."""
    data = _as_array_or_list(y)
    n, steps = seqs.x.shape[:2]
    if isinstance(data, list) or (isinstance(data, np.ndarray) and data.dtype == object and data.ndim == 1):
        items = [np.asarray(v) for v in data]
        if len(items) != n:
            raise ValueError(f"{name}: found {len(items)} target sequences for {n} input sequences")
        lengths = seqs.lengths if seqs.lengths is not None else np.full(n, steps)
        tail = items[0].shape[1:]
        out = np.zeros((n, steps) + tail, dtype=np.result_type(*(v.dtype for v in items)))
        for i, (v, length) in enumerate(zip(items, lengths)):
            if v.shape != (length,) + tail:
                raise ValueError(f"{name}[{i}]: expected shape {(int(length),) + tail} (one target per step), got {v.shape}")
            out[i, :length] = v
        return out
    arr = data
    if arr.ndim < 2 or arr.shape[:2] != (n, steps):
        raise ValueError(f"{name}: with output='sequence' expected shape ({n}, {steps}, ...) (one target per step), got {arr.shape}")
    return arr


#: While set (by :mod:`rnnkit.distributed`): an in-place sum over processes of a float64 array,
#: so that :func:`_standardiser` gives the statistics of every process's values together.
_STATS_ALLREDUCE: contextvars.ContextVar[Optional[Callable[[np.ndarray], None]]] = contextvars.ContextVar(
    "rnnkit_stats_allreduce", default=None)


def _standardiser(values: np.ndarray, name: str,
                  weights: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and scale of ``values`` (n, k), float64; ValueError where they overflow.

    ``weights`` (n,), where given, weigh the rows (sample_weight; the fit passes None for equal
    weights, so those give the unweighted statistics bit for bit). A column with (almost) no spread gets scale 1. Under
    :data:`_STATS_ALLREDUCE` (unweighted) the mean and standard deviation are those of all
    processes' values (count and sums, then the sums of squared deviations from the global mean:
    two reductions).
    """
    allreduce = _STATS_ALLREDUCE.get()
    if weights is not None and allreduce is not None:
        raise ValueError("sample_weight is not supported across processes (rnnkit.distributed)")
    with np.errstate(over="ignore", invalid="ignore"):
        if weights is not None:
            mean = np.average(values, axis=0, weights=weights)
            std = np.sqrt(np.average((values - mean) ** 2, axis=0, weights=weights))
        elif allreduce is None:
            mean = values.mean(axis=0)
            std = values.std(axis=0)
        else:
            sums = np.concatenate([[float(values.shape[0])], values.sum(axis=0)]).astype(np.float64)
            allreduce(sums)
            mean = sums[1:] / sums[0]
            squares = np.ascontiguousarray(((values - mean) ** 2).sum(axis=0), dtype=np.float64)
            allreduce(squares)
            std = np.sqrt(squares / sums[0])
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise ValueError(
            f"Input {name} holds values too large to standardise (their mean or standard deviation overflows "
            "float64); rescale them first"
        )
    return mean, np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
