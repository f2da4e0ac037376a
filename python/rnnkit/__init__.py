"""rnnkit: small, fast recurrent networks (RNN, LSTM, GRU) with BPTT in C++, exact to PyTorch."""

from . import optim
from ._buffers import freeze
from ._config import config, show_config
from ._version import __version__
from .clip import clip_grad_norm, clip_grad_value
from .layers import GRU, LSTM, RNN

_LAZY = {"RNNClassifier": "estimators", "RNNRegressor": "estimators", "load": "io"}
_SUBMODULES = ("text", "forecast", "datasets", "onnx", "music")


def __getattr__(name: str):
    """Import the estimators and task modules on first use (the estimators load scikit-learn
    where it is installed; rnnkit.onnx loads onnx only when a function needs it)."""
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


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
    "freeze",
    "load",
    "optim",
    "show_config",
]
