"""What export and load share: the opsets, the gate orders of both layouts, and the onnx import."""
from __future__ import annotations

import os
from typing import Any, Sequence, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

DEFAULT_OPSET = 17
MIN_OPSET = 14  # Reshape's allowzero, the recurrent operators' layout attribute, axes as inputs
_INSTALL_HINT = 'pip install "rnnkit[onnx]"'

# Gate blocks: ONNX's order as indices into PyTorch's, and back.
_TO_ONNX = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn": (0,)}  # (i,f,g,o)->(i,o,f,c); (r,z,n)->(z,r,h)
_FROM_ONNX = {"lstm": (0, 2, 3, 1), "gru": (1, 0, 2), "rnn": (0,)}
_OP_TYPE = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
_DEFAULT_ACTIVATIONS = {"LSTM": ("Sigmoid", "Tanh", "Tanh"), "GRU": ("Sigmoid", "Tanh"), "RNN": ("Tanh",)}


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise ImportError(
            f"rnnkit.onnx needs the 'onnx' package, an optional extra of rnnkit: {_INSTALL_HINT}"
        ) from exc
    return onnx


def _family(mode: str) -> str:
    """'lstm', 'gru' or 'rnn' for a layer mode ('rnn_tanh' and 'rnn_relu' are both 'rnn')."""
    return "rnn" if mode.startswith("rnn") else mode


def _reorder(w: np.ndarray, order: Sequence[int]) -> np.ndarray:
    """Permute the gate blocks (along axis 0) of a (G*H, ...) weight or (G*H,) bias."""
    blocks = w.reshape((len(order), -1) + w.shape[1:])
    return blocks[list(order)].reshape(w.shape)

