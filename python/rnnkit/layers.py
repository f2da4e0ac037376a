"""Recurrent layers with PyTorch's semantics: ``RNN``, ``LSTM`` and ``GRU``.

Parameters live in one flat buffer; ``state_dict()`` and ``grads`` are named views with
PyTorch's names and layouts, so weights move between the two libraries unchanged.
"""

from __future__ import annotations

from typing import Any, Optional

from ._recurrent import State, _Recurrent

__all__ = ["GRU", "LSTM", "RNN", "State", "layer_for_mode"]


def layer_for_mode(mode: str, input_size: int, hidden_size: int, **kwargs: Any) -> "_Recurrent":
    """The layer of a core cell mode ("lstm", "gru", "rnn_tanh" or "rnn_relu"); ``kwargs`` as for :class:`LSTM`."""
    if mode == "lstm":
        return LSTM(input_size, hidden_size, **kwargs)
    if mode == "gru":
        return GRU(input_size, hidden_size, **kwargs)
    if mode in ("rnn_tanh", "rnn_relu"):
        return RNN(input_size, hidden_size, nonlinearity=mode[4:], **kwargs)
    raise ValueError(f"unknown cell mode {mode!r}")


class LSTM(_Recurrent):
    """Multi-layer LSTM, numerically PyTorch's ``torch.nn.LSTM``.

    Gates in PyTorch's order (input, forget, cell, output)::

        i, f, o = sigmoid(W_i* x + b_i* + W_h* h + b_h*),  g = tanh(W_ig x + b_ig + W_hg h + b_hg)
        c' = f * c + i * g,   h' = o * tanh(c')

    Parameters
    ----------
    input_size, hidden_size : int
        Features per step in, and hidden units per direction.
    num_layers : int
        Stacked layers.
    bias : bool
        Use b_ih and b_hh.
    batch_first : bool
        x and out are (B, T, F) instead of (T, B, F).
    dropout : float
        Dropout on the outputs of every layer but the last, in training forwards only.
    bidirectional : bool
        Run a reverse direction too; outputs are concatenated.
    dtype : {"float32", "float64"}
    seed : int, optional
        Seeds the initial weights and the dropout masks.
    n_threads : int, optional
        Threads per call; by default OpenMP's maximum (``OMP_NUM_THREADS`` or all cores). An
        inference call or step of up to 128 MFLOP made more than 1 ms after the previous one
        runs on the calling thread, with the same results, instead of waking OpenMP's workers.
    device : {"cpu", "cuda", "cuda:N"}
        Where forward and backward run (see :mod:`rnnkit.cuda`). Inputs and outputs stay
        numpy arrays; :meth:`step` runs on the CPU (one step is too little work for a GPU).
        The first forward raises RuntimeError, saying why, where CUDA is unavailable.
    """

    _mode = "lstm"


class GRU(_Recurrent):
    """Multi-layer GRU, numerically PyTorch's ``torch.nn.GRU`` (cuDNN's variant)::

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr),  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h' = (1 - z) * n + z * h

    Parameters are those of :class:`LSTM`.
    """

    _mode = "gru"


class RNN(_Recurrent):
    """Multi-layer Elman RNN, numerically PyTorch's ``torch.nn.RNN``::

        h' = act(W_ih x + b_ih + W_hh h + b_hh),  act = tanh or relu

    Parameters are those of :class:`LSTM`, plus ``nonlinearity`` ("tanh" or "relu").
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        dtype: Any = "float32",
        seed: Optional[int] = None,
        n_threads: Optional[int] = None,
        device: str = "cpu",
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self._mode = f"rnn_{nonlinearity}"
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
            dtype=dtype, seed=seed, n_threads=n_threads, device=device,
        )

    def _extra_repr(self) -> str:
        extra = super()._extra_repr()
        return extra + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")

    def _init_params(self) -> dict:
        return {**super()._init_params(), "nonlinearity": self.nonlinearity}
