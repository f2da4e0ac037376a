"""Argument checks shared by the public API. Every failure names the argument."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

_FLOAT_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def check_dtype(dtype: Any) -> np.dtype:
    """Return np.float32 or np.float64 for ``dtype``; ValueError for anything else."""
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from exc
    if resolved not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return resolved


def check_int(value: Any, name: str, minimum: int) -> int:
    """An integer >= minimum (bool is rejected)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def check_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    return float(value)


def as_array(value: Any) -> np.ndarray:
    """numpy view of an array-like; framework tensors are detached first."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def float_array(value: Any, name: str, dtype: np.dtype, *, finite: bool = True) -> np.ndarray:
    """A C-contiguous, aligned array of ``dtype`` from a real floating-point array-like.

    Raises TypeError for integer, boolean, complex or object data and ValueError for NaN/Inf.
    Non-contiguous, Fortran-ordered and misaligned input is copied.
    """
    try:
        arr = as_array(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a floating-point array: {exc}") from exc
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array (float32 or float64), got dtype {arr.dtype}")
    arr = aligned(np.ascontiguousarray(arr, dtype=dtype))
    if finite and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return arr


def aligned(arr: np.ndarray) -> np.ndarray:
    """``arr``, or an aligned C-contiguous copy where its data is not aligned for its dtype.

    numpy can view memory at any byte offset; the C++ core reads its arrays as typed
    pointers, which must be aligned (loading a misaligned int64/float is undefined behaviour).
    """
    return arr if arr.flags.aligned else arr.copy(order="C")


def expect_shape(arr: np.ndarray, shape: tuple[int, ...], name: str) -> None:
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")


MAX_LAYERS = 65536
MAX_PARAMETERS = 2**40  # far beyond any machine's memory, and far below where int64 offsets overflow
_GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}


def check_stack_size(mode: str, input_size: int, hidden_size: int, num_layers: int, bidirectional: bool,
                     bias: bool = True) -> int:
    """The parameter count of a recurrent stack, computed exactly (Python integers).

    Raises ValueError for more than ``MAX_LAYERS`` layers or ``MAX_PARAMETERS`` parameters, so that
    the C++ core's offsets (int64) can never overflow and a typo cannot hang the process.

    Parameters
    ----------
    mode : {"lstm", "gru", "rnn_tanh", "rnn_relu"}
    input_size, hidden_size, num_layers : int
        Positive (already checked).
    bidirectional, bias : bool

    Returns
    -------
    int
        The number of parameters of the stack.
    """
    if num_layers > MAX_LAYERS:
        raise ValueError(f"num_layers must be <= {MAX_LAYERS}, got {num_layers}")
    dirs = 2 if bidirectional else 1
    gh = _GATES[mode] * hidden_size
    per_direction = gh * (hidden_size + (2 if bias else 0))
    count = dirs * (gh * input_size + per_direction) + (num_layers - 1) * dirs * (gh * dirs * hidden_size + per_direction)
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"input_size={input_size}, hidden_size={hidden_size}, num_layers={num_layers} give {count} parameters, "
            f"more than rnnkit supports ({MAX_PARAMETERS})"
        )
    return count


def sample_weights(sample_weight: Any, n: int) -> "np.ndarray | None":
    """``sample_weight`` of ``fit`` / ``score`` as float64 (n,), or None for None.

    A scalar stands for the same weight on every sample. Raises TypeError for non-numeric
    data and ValueError for a wrong shape, NaN/Inf, negative weights or weights that sum to zero.
    """
    if sample_weight is None:
        return None
    try:
        w = np.asarray(sample_weight)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"sample_weight must be an array of numbers: {exc}") from exc
    if w.dtype.kind not in "fiub":
        raise TypeError(f"sample_weight must be an array of real numbers, got dtype {w.dtype}")
    w = np.full(n, float(w), dtype=np.float64) if w.ndim == 0 else w.astype(np.float64)
    if w.shape != (n,):
        raise ValueError(f"sample_weight.shape == {w.shape}, expected ({n},): one weight per sample")
    if not np.isfinite(w).all():
        raise ValueError("sample_weight contains NaN or Inf")
    if (w < 0).any():
        raise ValueError("sample_weight must be >= 0: negative weights are not supported")
    if not w.sum() > 0:
        raise ValueError("sample_weight sums to zero: at least one sample must have a positive weight")
    return w
