"""Gradient clipping with PyTorch's semantics (``clip_grad_norm_``, ``clip_grad_value_``)."""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Union

import numpy as np

from ._backend import kernel

Grads = Union[Mapping[str, np.ndarray], Iterable[np.ndarray], np.ndarray]


def _arrays(grads: Grads) -> list[np.ndarray]:
    if isinstance(grads, np.ndarray):
        items = [grads]
    elif isinstance(grads, Mapping):
        items = list(grads.values())
    else:
        try:
            items = list(grads)
        except TypeError as exc:
            raise TypeError("grads must be an array, a dict of arrays or an iterable of arrays") from exc
    for a in items:
        if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64):
            raise TypeError("grads: every gradient must be a float32 or float64 numpy array")
        if not a.flags.writeable:
            raise ValueError("grads: every gradient must be writeable (clipping is in place)")
    return items


def _apply(arrays: list[np.ndarray], fn_name: str, *args: float) -> list[float]:
    """Run core.<fn_name>_<dtype> per dtype group; non-contiguous or misaligned arrays go through a copy."""
    results = []
    for dtype in (np.float32, np.float64):
        group = [a for a in arrays if a.dtype == dtype]
        if not group:
            continue
        staged = [a if a.flags.c_contiguous and a.flags.aligned else a.copy(order="C") for a in group]
        results.append(kernel(fn_name, np.dtype(dtype))(staged, *args))
        for original, copy in zip(group, staged):
            if copy is not original:
                original[...] = copy
    return results


def clip_grad_norm(
    grads: Grads, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> float:
    """Scale gradients in place so that their joint norm is at most ``max_norm``.

    Like ``torch.nn.utils.clip_grad_norm_``: the norm is taken over all arrays together, the
    scale is ``min(1, max_norm / (norm + 1e-6))``, and a NaN/Inf norm propagates into the
    gradients unless ``error_if_nonfinite``.

    Parameters
    ----------
    grads : dict of arrays, iterable of arrays, or one array
        float32/float64 gradients (e.g. a layer's ``grads``), modified in place.
    max_norm : float
        Largest allowed norm, >= 0.
    norm_type : float
        p of the p-norm (> 0), or ``float('inf')`` for the largest absolute value.
    error_if_nonfinite : bool
        Raise ValueError instead of clipping when the norm is NaN or Inf.

    Returns
    -------
    float
        The total norm before clipping.
    """
    max_norm = float(max_norm)
    norm_type = float(norm_type)
    if not max_norm >= 0.0 or math.isinf(max_norm):
        raise ValueError(f"max_norm must be a finite number >= 0, got {max_norm}")
    if not norm_type > 0.0:
        raise ValueError(f"norm_type must be > 0 or inf, got {norm_type}")
    arrays = _arrays(grads)
    if not arrays:
        return 0.0
    norms = _apply(arrays, "total_norm", norm_type)
    if math.isinf(norm_type):
        total = max(norms)
    else:
        total = math.fsum(n**norm_type for n in norms) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise ValueError(f"clip_grad_norm: the total norm of order {norm_type} is non-finite ({total})")
    if len(norms) == 1:
        _apply(arrays, "clip_norm", max_norm, norm_type)
    else:  # mixed precisions: scale with the joint norm
        coef = min(max_norm / (total + 1e-6), 1.0)
        if coef != 1.0:
            for a in arrays:
                a *= a.dtype.type(coef)
    return float(total)


def clip_grad_value(grads: Grads, clip_value: float) -> None:
    """Clamp every gradient element into ``[-clip_value, clip_value]`` in place.

    Like ``torch.nn.utils.clip_grad_value_``.
    """
    clip_value = float(clip_value)
    if not clip_value >= 0.0:
        raise ValueError(f"clip_value must be >= 0, got {clip_value}")
    _apply(_arrays(grads), "clip_value", clip_value)
