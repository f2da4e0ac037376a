"""Pieces shared by every model trained on the compiled model (the estimators, :mod:`rnnkit.text`,
:mod:`rnnkit.forecast`, :mod:`rnnkit.distributed`): the estimator base, parameter checks, the
random generator and PyTorch-style initialisation, one training step (:class:`_BatchStep`), and
the progress bar with its epoch reports.
"""

from __future__ import annotations

import inspect
import math
import numbers
import sys
import time
import warnings
from typing import Any, Callable, Optional, Sequence

import numpy as np

from . import cuda as _cuda
from . import optim
from .optim import lr_scheduler
from ._backend import kernel
from ._buffers import _aligned_zeros
from .clip import clip_grad_norm, clip_grad_value

#: The estimators' ``cell`` names and the compiled stack's modes they stand for.
_CELLS = {"lstm": "lstm", "gru": "gru", "rnn": "rnn_tanh", "rnn_relu": "rnn_relu"}

class _Estimator:
    """get_params / set_params / repr with scikit-learn's conventions, for when it is absent."""

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters, by name."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> "_Estimator":
        """Set constructor parameters; unknown names raise ValueError."""
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"Invalid parameter {key!r} for estimator {type(self).__name__}. Valid parameters are: {valid!r}."
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = [
            f"{k}={v!r}" for k, v in self.get_params().items()
            if not (isinstance(v, type(defaults.get(k))) and v == defaults.get(k))
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

try:  # a real scikit-learn estimator where scikit-learn is installed (an optional extra)
    from sklearn.base import BaseEstimator as _Base
except ImportError:  # pragma: no cover - exercised where scikit-learn is not installed
    _Base = _Estimator


#: The estimators' learning-rate schedules besides None (a constant rate); see :class:`_LearningRate`.
_LR_SCHEDULES = ("adaptive", "cosine")

#: "adaptive" lowers the rate no further than this, then lets the fit stop (scikit-learn's MLP).
_ADAPTIVE_FLOOR = 1e-6


class _LearningRate:
    """An estimator's ``lr_schedule`` over the epochs of one fit, acting on ``opt.lr``.

    None keeps the rate. "adaptive" is scikit-learn's MLP schedule: where the fit would stop
    for want of improvement (``n_iter_no_change`` epochs without it), the rate is divided by 5
    instead and the count starts again, until the rate is at most 1e-6. "cosine" anneals it
    to 0 over the fit's ``epochs`` (:class:`rnnkit.optim.lr_scheduler.CosineAnnealingLR`,
    stepped after each epoch).
    """

    def __init__(self, schedule: Optional[str], opt: optim.Optimizer, epochs: int) -> None:
        self.schedule, self.opt = schedule, opt
        self._cosine = lr_scheduler.CosineAnnealingLR(opt, T_max=epochs) if schedule == "cosine" else None

    def note(self) -> str:
        """The progress line's mention of the epoch's rate ("" without a schedule)."""
        return "" if self.schedule is None else f", learning rate {self.opt.lr:.3g}"

    def after_epoch(self, stalled: bool) -> Optional[str]:
        """Set the next epoch's rate; ``stalled``: the epoch ends a run without improvement long
        enough to stop the fit. Returns "lowered" where "adaptive" lowered the rate for it (the
        fit goes on and its count restarts), "spent" where "adaptive" is at its floor (the fit
        stops), else None."""
        if self._cosine is not None:
            self._cosine.step()
        if not (stalled and self.schedule == "adaptive"):
            return None
        if self.opt.lr > _ADAPTIVE_FLOOR:
            self.opt.lr /= 5.0
            return "lowered"
        return "spent"


# ---------------------------------------------------------------------- parameter checks
def _device_index(model: Any) -> Optional[int]:
    """The CUDA device number of ``model.device``, or None for the CPU."""
    return _cuda.parse_device(getattr(model, "device", "cpu"))


def _check_device(model: Any) -> None:
    """TypeError / ValueError for a malformed ``device``. Whether a CUDA device is usable is checked
    when the model first runs there (RuntimeError saying why), so that a model trained on a GPU
    loads anywhere and can be moved with ``set_params(device="cpu")``."""
    _device_index(model)


def _check_choice(model: Any, name: str, options: Any) -> None:
    """ValueError unless ``model.<name>`` is one of ``options``."""
    if getattr(model, name) not in options:
        raise ValueError(f"{name} must be one of {sorted(options)!r}, got {getattr(model, name)!r}")


def _check_flags(model: Any, *names: str) -> None:
    """TypeError unless each ``model.<name>`` is a bool (Python's or numpy's)."""
    for name in names:
        if not isinstance(getattr(model, name), (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {getattr(model, name)!r}")


def _check_optional_choice(model: Any, name: str, options: Sequence[str]) -> None:
    """ValueError unless ``model.<name>`` is None or one of the strings ``options``."""
    value = getattr(model, name)
    if not (value is None or (isinstance(value, str) and value in options)):
        names = ["None"] + [repr(o) for o in options]
        raise ValueError(f"{name} must be {', '.join(names[:-1])} or {names[-1]}, got {value!r}")


def _check_lr_schedule(model: Any) -> None:
    """ValueError unless ``model.lr_schedule`` is None or one of :data:`_LR_SCHEDULES`."""
    _check_optional_choice(model, "lr_schedule", _LR_SCHEDULES)


def _check_number(model: Any, name: str, low: float, high: float = math.inf, integer: bool = False,
                  low_open: bool = False, high_open: bool = False, none_ok: bool = False) -> None:
    """TypeError / ValueError unless ``model.<name>`` is a number (an integer) in the given range."""
    v = getattr(model, name)
    if v is None and none_ok:
        return
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(v, bool) or not isinstance(v, kind):
        raise TypeError(f"{name} must be {'an integer' if integer else 'a real number'}, got {v!r}")
    ok_low = v > low if low_open else v >= low
    ok_high = v < high if high_open else v <= high
    if not (ok_low and ok_high and not (isinstance(v, float) and math.isnan(v))):
        raise ValueError(f"{name} must lie in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}, got {v!r}")


# ---------------------------------------------------------------------- training pieces
# Shared with the models built directly on the compiled model (rnnkit.text).
def _make_rng(random_state: Any) -> np.random.Generator:
    """The generator for ``random_state``: None, an int, a Generator (used as is) or a RandomState."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    return np.random.default_rng(random_state)


def _init_params(spec: Any, hidden_size: int, dtype: np.dtype, rng: np.random.Generator) -> np.ndarray:
    """A new aligned parameter buffer for ``spec``, drawn like PyTorch's defaults.

    The stack uniform in ±1/sqrt(hidden_size), the head uniform in ±1/sqrt(features)
    (``nn.Linear``), the embedding table (if any) standard normal (``nn.Embedding``).
    """
    flat = _aligned_zeros(spec.param_count, dtype)
    head, embedding = spec.head_offset, spec.embedding_offset
    bound = 1.0 / math.sqrt(hidden_size)
    flat[:head] = rng.uniform(-bound, bound, head)
    head_bound = 1.0 / math.sqrt(spec.features)
    flat[head:embedding] = rng.uniform(-head_bound, head_bound, embedding - head)
    flat[embedding:] = rng.standard_normal(flat.size - embedding)
    return flat


class _BatchStep:
    """One training step of a compiled model: loss and gradients in C++, clipping, optimizer step.

    A step whose loss or resulting weights are not finite is undone and raises ValueError
    with ``diverged()``'s message. With a device model (``run`` the loss_and_grad of
    rnnkit.cuda's model calls) the whole step runs on the device, the optimizer's state kept
    there: call :meth:`sync` before reading ``opt.state``. A ``grad_hook`` needs the gradients
    here, so it keeps the clipping and the step on the host.
    """

    def __init__(self, spec: Any, params: np.ndarray, grads: np.ndarray, opt: optim.Optimizer, *,
                 dropout: float, clip_norm: Optional[float], clip_value: Optional[float], n_threads: int,
                 diverged: Any, grad_hook: Optional[Callable[[float], float]] = None,
                 run: Optional[Callable[..., float]] = None) -> None:
        self.spec, self.params, self.grads, self.opt = spec, params, grads, opt
        self.dropout, self.clip_norm, self.clip_value, self.n_threads = dropout, clip_norm, clip_value, n_threads
        self.diverged = diverged
        self.grad_hook = grad_hook
        # the CPU core's loss_and_grad, or a device model's with the same signature
        self.run = run if run is not None else kernel("model_loss_and_grad", params.dtype)
        self.backup = np.empty_like(params)
        device = getattr(self.run, "__self__", None)
        can_step = getattr(device, "can_step", None)
        self.device = device if grad_hook is None and can_step is not None and can_step(opt, params) else None
        self.state_on_device = False
        self.params_on_device = False  # the device holds what self.params hold (set by a device step)

    def __call__(self, x: np.ndarray, lengths: Optional[np.ndarray], labels: Optional[np.ndarray],
                 values: Optional[np.ndarray], key: int, weights: Optional[np.ndarray] = None) -> float:
        """Train on one batch; returns its mean loss (before the step).

        ``weights`` (one per sequence, the parameters' dtype) multiply the sequences' losses; the
        loss stays a mean over the batch's rows.
        """
        if self.device is not None:
            return self._device_step(x, lengths, labels, values, key, weights)
        loss = self.run(self.spec, self.params, x, lengths, labels, values, self.grads, self.dropout, key,
                        self.n_threads, weights=weights)
        return self.finish(loss)

    def _device_step(self, x: np.ndarray, lengths: Optional[np.ndarray], labels: Optional[np.ndarray],
                     values: Optional[np.ndarray], key: int, weights: Optional[np.ndarray]) -> float:
        if not self.state_on_device:
            self.device.push_optimizer_state(self.opt)
            self.state_on_device = True
        self.backup[...] = self.params
        clip_value = None if self.clip_value is None else float(self.clip_value)
        clip_norm = None if self.clip_norm is None else float(self.clip_norm)
        # Within one fit nothing else writes the parameters between steps (validation predicts copy
        # the same values in), so after the first step they are not copied to the device again.
        loss = self.device.train_step(self.params, x, lengths, labels, values, weights, self.dropout, key, clip_value,
                                      clip_norm, self.opt, params_resident=self.params_on_device)
        if not math.isfinite(loss):  # nothing was stepped
            raise ValueError(self.diverged())
        self.opt.step_count += 1
        if not np.isfinite(self.params).all():
            self.params[...] = self.backup
            self.params_on_device = False
            raise ValueError(self.diverged())
        self.params_on_device = True
        return loss

    def sync(self) -> None:
        """Copy the optimizer's state back from the device, where device steps keep it."""
        if self.state_on_device:
            self.device.pull_optimizer_state(self.opt)

    def finish(self, loss: float) -> float:
        """Clip the gradients now in ``grads`` and step; returns the batch's loss.

        ``grad_hook(loss)``, where given, runs first: it may replace the gradients in place and
        returns the loss to use (:mod:`rnnkit.distributed` averages both over processes there).
        """
        if self.grad_hook is not None:
            loss = self.grad_hook(loss)
        if not math.isfinite(loss):
            raise ValueError(self.diverged())
        if self.clip_value is not None:
            clip_grad_value(self.grads, float(self.clip_value))
        if self.clip_norm is not None:
            clip_grad_norm(self.grads, float(self.clip_norm))
        self.backup[...] = self.params
        self.opt.step()
        if not np.isfinite(self.params).all():
            self.params[...] = self.backup
            raise ValueError(self.diverged())
        return loss


def _progress(total: int, verbose: int, unit: str = "epoch") -> Any:
    """A progress bar on stderr when verbose and stderr is a terminal: tqdm's where it is installed."""
    if not verbose or not sys.stderr.isatty():
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Bar(total, unit)
    return tqdm(total=total, unit=unit, leave=False)


class _Bar:
    """A minimal stand-in for the part of tqdm's interface used here (no dependency needed)."""

    def __init__(self, total: int, unit: str) -> None:
        self.total, self.unit, self.n, self.postfix = max(1, total), unit, 0, ""
        self.start = self.shown = time.perf_counter()
        self._draw()

    def _draw(self) -> None:
        import shutil

        width = shutil.get_terminal_size((80, 24)).columns - 1
        frac = min(1.0, self.n / self.total)
        rate = self.n / max(time.perf_counter() - self.start, 1e-9)
        head = f"{100 * frac:3.0f}% |"
        tail = f"| {self.n}/{self.total} [{rate:.1f} {self.unit}/s{', ' + self.postfix if self.postfix else ''}]"
        cells = max(0, min(30, width - len(head) - len(tail)))
        line = head + "#" * int(frac * cells) + " " * (cells - int(frac * cells)) + tail
        sys.stderr.write("\r" + line[:width].ljust(width))
        sys.stderr.flush()
        self.shown = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.perf_counter() - self.shown >= 0.1 or self.n >= self.total:
            self._draw()

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s
        if refresh:
            self._draw()

    def write(self, message: str, file: Any = None) -> None:
        self._clear()
        print(message, file=file or sys.stdout, flush=True)
        self._draw()

    def _clear(self) -> None:
        import shutil

        sys.stderr.write("\r" + " " * (shutil.get_terminal_size((80, 24)).columns - 1) + "\r")
        sys.stderr.flush()

    def close(self) -> None:
        self._clear()


def _report_epoch(bar: Any, message: str, advance: int = 0, keep: bool = False) -> None:
    """Show an epoch's summary: on the progress bar (``keep``: also as a line above it), or as a printed line."""
    if bar is None:
        print(message, flush=True)
        return
    if keep:
        bar.write(message, file=sys.stdout)
    bar.set_postfix_str(message)
    bar.update(advance)


def _warn_interrupted(model: Any, stacklevel: int) -> None:
    warnings.warn(
        f"{type(model).__name__}: training interrupted after {model.n_iter_} epoch(s); keeping the best weights so far.",
        UserWarning,
        stacklevel=stacklevel,
    )
