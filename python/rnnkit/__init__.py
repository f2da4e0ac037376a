"""rnnkit: small, fast recurrent networks (RNN, LSTM, GRU) with BPTT in C++, exact to PyTorch."""

from . import optim
from ._config import config, show_config
from ._version import __version__
from .clip import clip_grad_norm, clip_grad_value
from .estimators import RNNClassifier, RNNRegressor
from .io import load
from .layers import GRU, LSTM, RNN

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "RNNClassifier",
    "RNNRegressor",
    "__version__",
    "clip_grad_norm",
    "clip_grad_value",
    "config",
    "load",
    "optim",
    "show_config",
]
