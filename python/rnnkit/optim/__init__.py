"""Optimizers with torch.optim's semantics, stepping flat parameter buffers in C++.

Each optimizer takes layers (anything with ``flat_params`` and ``flat_grads``), explicit
``(param, grad)`` array pairs, or a list of these, and updates the parameters in place from
the gradients that ``backward`` left::

    opt = rnnkit.optim.Adam([lstm, (head_w, head_grad_w)], lr=1e-3)
    lstm.forward(x, training=True); lstm.backward(g); opt.step()

:mod:`rnnkit.optim.lr_scheduler` changes ``opt.lr`` over the epochs, as ``torch.optim.lr_scheduler``.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from .._backend import kernel

Pair = Tuple[np.ndarray, np.ndarray]


def _flat_view(a: Any, name: str) -> np.ndarray:
    if not isinstance(a, np.ndarray) or a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be a float32 or float64 numpy array")
    if not a.flags.c_contiguous or not a.flags.aligned or not a.flags.writeable:
        raise ValueError(f"{name} must be C-contiguous, aligned and writeable (it is updated in place)")
    return a.reshape(-1)


def _pairs(params: Any) -> list[Pair]:
    items = params if isinstance(params, (list, tuple)) and not _is_pair(params) else [params]
    pairs: list[Pair] = []
    for i, item in enumerate(items):
        if hasattr(item, "flat_params") and hasattr(item, "flat_grads"):
            if getattr(item, "frozen", False):
                raise ValueError(f"params[{i}] is a frozen layer (made by rnnkit.freeze): its weights cannot be "
                                 "trained; train the layer it was frozen from")
            p, g = item.flat_params, item.flat_grads
        elif _is_pair(item):
            p, g = item
        else:
            raise TypeError(
                f"params[{i}] must be a layer (with flat_params/flat_grads) or a (param, grad) pair of arrays"
            )
        p, g = _flat_view(p, f"params[{i}] parameter"), _flat_view(g, f"params[{i}] gradient")
        if p.shape != g.shape or p.dtype != g.dtype:
            raise ValueError(f"params[{i}]: the gradient must have the parameter's size and dtype")
        pairs.append((p, g))
    if not pairs:
        raise ValueError("params is empty: nothing to optimize")
    return pairs


def _is_pair(item: Any) -> bool:
    return isinstance(item, tuple) and len(item) == 2 and all(isinstance(a, np.ndarray) for a in item)


def _check(value: float, name: str, low: float, high: float = math.inf, high_open: bool = False) -> float:
    value = float(value)
    ok = low <= value < high if high_open else low <= value <= high
    if not (ok and math.isfinite(value)):
        bound = f"[{low}, {high})" if high_open else f"[{low}, {high}]"
        raise ValueError(f"{name} must lie in {bound}, got {value}")
    return value


class Optimizer:
    """Base class: holds the (param, grad) pairs, per-pair state and the step count."""

    _kernel: str = ""
    _buffers: Sequence[str] = ()
    lr: float

    def __init__(self, params: Any) -> None:
        self._params = _pairs(params)
        self.state = [{name: np.zeros_like(p) for name in self._buffers} for p, _ in self._params]
        self.step_count = 0
        self.initial_lr: Optional[float] = None  # a schedule's base (rnnkit.optim.lr_scheduler)

    def zero_grad(self) -> None:
        """Set every gradient to zero."""
        for _, g in self._params:
            g.fill(0)

    def step(self) -> None:
        """Update every parameter from its gradient, in place."""
        self.step_count += 1
        for (p, g), state in zip(self._params, self.state):
            self._update(p, g, state, kernel(self._kernel, p.dtype))

    def _update(self, p: np.ndarray, g: np.ndarray, state: dict, kernel: Any) -> None:
        raise NotImplementedError

    def _settings(self) -> Tuple[str, dict]:
        """(kind, hyperparameters by keyword): what the CPU kernel and a device model's
        ``train_step`` (whose state slots follow ``_buffers``) both take."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """The step count, the learning rate (and a schedule's ``initial_lr``) and copies of every
        state buffer (for checkpoints)."""
        return {"step_count": self.step_count, "lr": self.lr, "initial_lr": self.initial_lr,
                "state": [{k: v.copy() for k, v in s.items()} for s in self.state]}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what :meth:`state_dict` returned, checking sizes."""
        states = state_dict["state"]
        if len(states) != len(self.state):
            raise ValueError(f"state_dict: {len(states)} parameter groups, this optimizer has {len(self.state)}")
        for mine, theirs in zip(self.state, states):
            for key, buf in mine.items():
                value = np.asarray(theirs[key])
                if value.shape != buf.shape:
                    raise ValueError(f"state_dict: buffer {key!r} has shape {value.shape}, expected {buf.shape}")
                buf[...] = value
        self.step_count = int(state_dict["step_count"])
        if "lr" in state_dict:  # absent from the optimizer states that estimators keep in model files
            self.lr = _check(state_dict["lr"], "state_dict['lr']", 0.0)
        if state_dict.get("initial_lr") is not None:
            self.initial_lr = _check(state_dict["initial_lr"], "state_dict['initial_lr']", 0.0)


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum / Nesterov (``torch.optim.SGD``)."""

    _kernel = "sgd_step"
    _buffers = ("momentum_buffer",)

    def __init__(self, params: Any, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False) -> None:
        self.lr = _check(lr, "lr", 0.0)
        self.momentum = _check(momentum, "momentum", 0.0)
        self.dampening = float(dampening)
        self.weight_decay = _check(weight_decay, "weight_decay", 0.0)
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening = 0")
        self.nesterov, self.maximize = bool(nesterov), bool(maximize)
        super().__init__(params)

    def _update(self, p, g, state, kernel) -> None:
        kernel(p, g, state["momentum_buffer"], first_step=self.step_count == 1, **self._settings()[1])

    def _settings(self) -> Tuple[str, dict]:
        return "sgd", {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                       "weight_decay": self.weight_decay, "nesterov": self.nesterov, "maximize": self.maximize}


class Adam(Optimizer):
    """Adam (``torch.optim.Adam``), with ``amsgrad`` and L2 ``weight_decay``."""

    _kernel = "adam_step"
    _buffers = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _decoupled = False

    def __init__(self, params: Any, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False,
                 maximize: bool = False) -> None:
        self.lr = _check(lr, "lr", 0.0)
        self.betas = (_check(betas[0], "betas[0]", 0.0, 1.0, True), _check(betas[1], "betas[1]", 0.0, 1.0, True))
        self.eps = _check(eps, "eps", 0.0)
        self.weight_decay = _check(weight_decay, "weight_decay", 0.0)
        self.amsgrad, self.maximize = bool(amsgrad), bool(maximize)
        super().__init__(params)

    def _update(self, p, g, state, kernel) -> None:
        kernel(p, g, state["exp_avg"], state["exp_avg_sq"], state["max_exp_avg_sq"], step=self.step_count,
               **self._settings()[1])

    def _settings(self) -> Tuple[str, dict]:
        return "adam", {"lr": self.lr, "beta1": self.betas[0], "beta2": self.betas[1], "eps": self.eps,
                        "weight_decay": self.weight_decay, "decoupled_weight_decay": self._decoupled,
                        "amsgrad": self.amsgrad, "maximize": self.maximize}


class AdamW(Adam):
    """Adam with decoupled weight decay (``torch.optim.AdamW``)."""

    _decoupled = True

    def __init__(self, params: Any, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False,
                 maximize: bool = False) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)


class RMSprop(Optimizer):
    """RMSprop (``torch.optim.RMSprop``), optionally centered and with momentum."""

    _kernel = "rmsprop_step"
    _buffers = ("square_avg", "grad_avg", "momentum_buffer")

    def __init__(self, params: Any, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 maximize: bool = False) -> None:
        self.lr = _check(lr, "lr", 0.0)
        self.alpha = _check(alpha, "alpha", 0.0)
        self.eps = _check(eps, "eps", 0.0)
        self.weight_decay = _check(weight_decay, "weight_decay", 0.0)
        self.momentum = _check(momentum, "momentum", 0.0)
        self.centered, self.maximize = bool(centered), bool(maximize)
        super().__init__(params)

    def _update(self, p, g, state, kernel) -> None:
        kernel(p, g, state["square_avg"], state["grad_avg"], state["momentum_buffer"], **self._settings()[1])

    def _settings(self) -> Tuple[str, dict]:
        return "rmsprop", {"lr": self.lr, "alpha": self.alpha, "eps": self.eps, "weight_decay": self.weight_decay,
                           "momentum": self.momentum, "centered": self.centered, "maximize": self.maximize}


from . import lr_scheduler  # noqa: E402  (it needs Optimizer defined)

__all__ = ["SGD", "Adam", "AdamW", "RMSprop", "Optimizer", "lr_scheduler"]
