"""ONNX in and out: :func:`export` rnnkit layers and fitted estimators, :func:`load` recurrent stacks.

Both directions use the standard ONNX ``LSTM``, ``GRU`` and ``RNN`` operators, so ONNX Runtime
and every other ONNX backend can run what rnnkit writes (opset 14 or newer; 17 by default), and
models written by PyTorch's exporter (any opset from 9) load into rnnkit.

The ``onnx`` package is needed here and only here (``pip install "rnnkit[onnx]"``, which also
installs ``onnxruntime`` to run the exported graphs); ``import rnnkit`` never imports it.

Conversions between PyTorch's (and rnnkit's) layout and ONNX's:

* LSTM gates are (i, f, g, o) in PyTorch and (i, o, f, c) in ONNX; GRU gates are (r, z, n) in
  PyTorch and (z, r, h) in ONNX, with ``linear_before_reset=1`` (PyTorch's GRU). ONNX's ``B``
  input is ``[b_ih, b_hh]`` per direction.
* ONNX's recurrent operators are sequence-major (``layout=0``); batch-first models get
  ``Transpose`` nodes around them. Their ``Y`` output is ``[T, directions, B, H]``; a
  ``Transpose`` + ``Reshape`` (a ``Squeeze`` for one direction) turns it into PyTorch's
  ``(T, B, directions * H)`` between layers and for the final output.
"""
from ._common import DEFAULT_OPSET, MIN_OPSET
from ._export import export
from ._load import load

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "export", "load"]
