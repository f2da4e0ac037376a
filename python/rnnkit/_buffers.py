"""Parameter buffers: aligned, and the read-only copies that :func:`rnnkit.freeze` makes."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np


def _aligned_zeros(size: int, dtype: np.dtype, alignment: int = 64) -> np.ndarray:
    """Zeros whose first element sits on an ``alignment``-byte boundary.

    The C++ core's results must not depend on where numpy happened to put the weights:
    SIMD loops round their unaligned heads differently.
    """
    raw = np.zeros(size * dtype.itemsize + alignment, dtype=np.uint8)
    start = (-raw.ctypes.data) % alignment
    return raw[start : start + size * dtype.itemsize].view(dtype)


def _read_only_copy(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An aligned copy of ``values`` that numpy will not write to or make writeable again, and the
    array owning its memory (read-only too; keep it private: numpy refuses to make a view
    writeable while its owner is read-only, so its one flag guards every view of the copy)."""
    copy = _aligned_zeros(values.size, values.dtype)
    copy[...] = values.reshape(-1)
    owner = copy
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    owner.flags.writeable = False
    copy.flags.writeable = False
    return copy, owner


def frozen_flag(owner: Optional[np.ndarray]) -> bool:
    """Whether a buffer made by :func:`_read_only_copy` (``owner``; None: none) is still read-only."""
    return owner is not None and not owner.flags.writeable



def freeze(model: Any) -> Any:
    """A frozen copy of ``model`` for inference: the same model, whose weights can no longer change.

    What an ONNX Runtime session or ``torch.jit.freeze`` gives: a copy to deploy. Its weights
    are read-only arrays (numpy refuses to write to them or to make them writeable again), so
    the engine keeps their packed form between calls by address, without comparing the weights
    with a copy of them at every call as a trainable model must. That comparison reads the
    weights twice per call: 7% of an LSTM B=4 T=25 H=512 forward and 20% at B=1, and a second
    copy of the weights in memory (bench/NOTES.md, 2026-11-27). ``model`` itself is left as it
    was and stays trainable.

    A frozen layer runs ``forward`` (inference and training, whose ``backward`` fills its
    gradients) and ``step``; a frozen estimator ``predict``, ``predict_proba``, ``score`` and
    the streaming steps. Both pickle (staying frozen) and export to ONNX. Changing the weights
    (``load_state_dict``, ``reset_parameters``, writing into ``params``, an optimizer, ``fit``,
    ``partial_fit``) raises; ``sklearn.base.clone`` gives a new, unfitted estimator as usual.

    Parameters
    ----------
    model : RNN, LSTM or GRU, or a fitted RNNClassifier / RNNRegressor

    Returns
    -------
    The same kind of object, with ``frozen == True``.
    """
    if not hasattr(model, "_freeze_in_place"):
        raise TypeError("model must be an rnnkit RNN, LSTM or GRU layer or a fitted RNNClassifier / RNNRegressor, "
                        f"got {type(model).__name__}")
    check_fitted = getattr(model, "_check_fitted", None)
    if check_fitted is not None:
        check_fitted()  # before copying an unfitted estimator
    import copy

    frozen = copy.deepcopy(model)  # through __getstate__ / __setstate__: no native objects shared
    if not frozen.frozen:  # (a frozen model's copy is frozen already)
        frozen._freeze_in_place()
    return frozen
