"""Learning-rate schedules with ``torch.optim.lr_scheduler``'s semantics and arithmetic.

A scheduler sets its optimizer's ``lr``. Call ``step()`` once per epoch (or once per batch,
for a schedule counted in batches), after that epoch's optimizer steps::

    opt = rnnkit.optim.SGD([lstm], lr=0.1, momentum=0.9)
    sched = rnnkit.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=50)
    for epoch in range(50):
        for x, g in batches:
            lstm.forward(x, training=True); lstm.backward(g); opt.step()
        sched.step()

Every schedule computes its learning rates with the same float operations, in the same order,
as PyTorch's (the recursive forms, where PyTorch uses them), so the sequences agree exactly.
rnnkit's optimizers have one learning rate (no parameter groups): ``get_last_lr()`` returns a
list of one float, what PyTorch returns for an optimizer with one group.

Checkpoints: ``optimizer.state_dict()`` carries the learning rate and ``scheduler.state_dict()``
the schedule's position; make both anew (``last_epoch=-1``) and load both to resume.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Any, Callable, Iterable

from .._checks import check_float, check_int
from . import Optimizer


def _real(value: Any, name: str, low: float, high: float = math.inf, low_open: bool = False,
          high_open: bool = False) -> float:
    value = check_float(value, name)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below and math.isfinite(value)):
        bound = ("(" if low_open else "[") + f"{low}, {high}" + (")" if high_open else "]")
        raise ValueError(f"{name} must lie in {bound}, got {value}")
    return value


def _check_optimizer(optimizer: Any) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an rnnkit.optim optimizer (SGD, Adam, AdamW or RMSprop), got "
                        f"{type(optimizer).__name__}")


class LRScheduler:
    """Base class: sets ``optimizer.lr`` from ``get_lr()`` at every :meth:`step`.

    Parameters
    ----------
    optimizer : rnnkit.optim.Optimizer
    last_epoch : int
        Index of the last epoch run; -1 (default) starts the schedule, and records the
        optimizer's ``lr`` as its ``initial_lr`` (the schedule's base) unless it has one.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        last_epoch = check_int(last_epoch, "last_epoch", -1)
        if last_epoch == -1:
            if optimizer.initial_lr is None:
                optimizer.initial_lr = optimizer.lr
        elif optimizer.initial_lr is None:
            raise ValueError("last_epoch >= 0 resumes a schedule, but the optimizer has no initial_lr: make the "
                             "scheduler with last_epoch=-1 and load its state_dict (and the optimizer's) instead")
        self.optimizer = optimizer
        self.base_lrs = [float(optimizer.initial_lr)]
        self.last_epoch = last_epoch
        self._optimizer_steps = optimizer.step_count
        self._step_count = 0
        self._is_initial = True
        self.step()
        self._is_initial = False

    def get_lr(self) -> list[float]:
        """The learning rate for epoch ``last_epoch`` (called by :meth:`step`)."""
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The learning rate set by the last :meth:`step`, as a list of one float."""
        return list(self._last_lr)

    def step(self) -> None:
        """Advance one epoch and set the optimizer's learning rate."""
        if self._step_count == 1 and self.optimizer.step_count == self._optimizer_steps:
            warnings.warn("lr_scheduler.step() was called before optimizer.step(): call it after the epoch's "
                          "optimizer steps, or the schedule's first learning rate is skipped (as in PyTorch)",
                          UserWarning, stacklevel=2)
        self._step_count += 1
        self.last_epoch += 1
        lr = float(self.get_lr()[0])
        if not (math.isfinite(lr) and lr >= 0):
            raise ValueError(f"{type(self).__name__}: the schedule gave the learning rate {lr} for epoch "
                             f"{self.last_epoch}; it must be finite and >= 0")
        self.optimizer.lr = lr
        self._last_lr = [lr]

    def state_dict(self) -> dict:
        """The schedule's position and settings (everything but the optimizer)."""
        return {key: value for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        unknown = set(state_dict) - (set(self.__dict__) - {"optimizer"})
        if unknown:
            raise ValueError(f"state_dict: keys {sorted(unknown)} are not {type(self).__name__}'s")
        self.__dict__.update(state_dict)

    def _lr(self) -> float:
        return self.optimizer.lr


class LambdaLR(LRScheduler):
    """``lr = initial_lr * lr_lambda(epoch)`` (``torch.optim.lr_scheduler.LambdaLR``)."""

    def __init__(self, optimizer: Optimizer, lr_lambda: Callable[[int], float], last_epoch: int = -1) -> None:
        if not callable(lr_lambda):
            raise TypeError(f"lr_lambda must be callable (epoch -> factor), got {lr_lambda!r}")
        self.lr_lambda = lr_lambda
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [self.base_lrs[0] * self.lr_lambda(self.last_epoch)]

    def state_dict(self) -> dict:
        """As the base class's, without ``lr_lambda`` (a function is not state; PyTorch keeps
        only callable objects' ``__dict__``)."""
        state = super().state_dict()
        state.pop("lr_lambda")
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """As the base class's; this scheduler keeps its own ``lr_lambda``."""
        super().load_state_dict({k: v for k, v in dict(state_dict).items() if k != "lr_lambda"})


class StepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.step_size = check_int(step_size, "step_size", 1)
        self.gamma = _real(gamma, "gamma", 0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [self._lr()]
        return [self._lr() * self.gamma]


class MultiStepLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` at each epoch listed in ``milestones``
    (by ``gamma ** k`` where an epoch is listed k times)."""

    def __init__(self, optimizer: Optimizer, milestones: Iterable[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        try:
            listed = list(milestones)
        except TypeError:
            raise TypeError(f"milestones must be an iterable of ints, got {milestones!r}") from None
        self.milestones = Counter(check_int(m, "milestones[]", 0) for m in listed)
        self.gamma = _real(gamma, "gamma", 0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch not in self.milestones:
            return [self._lr()]
        return [self._lr() * self.gamma ** self.milestones[self.last_epoch]]


class ExponentialLR(LRScheduler):
    """Multiply the learning rate by ``gamma`` every epoch."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = _real(gamma, "gamma", 0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [self._lr()] if self._is_initial else [self._lr() * self.gamma]


class LinearLR(LRScheduler):
    """Scale the learning rate by a factor going linearly from ``start_factor`` to
    ``end_factor`` over ``total_iters`` epochs (a warm-up, with the defaults)."""

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = -1) -> None:
        self.start_factor = _real(start_factor, "start_factor", 0.0, 1.0, low_open=True)
        self.end_factor = _real(end_factor, "end_factor", 0.0, 1.0)
        self.total_iters = check_int(total_iters, "total_iters", 1)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [self._lr() * self.start_factor]
        if self._is_initial or self.last_epoch > self.total_iters:
            return [self._lr()]
        change = self.end_factor - self.start_factor
        return [self._lr() * (1.0 + change / (self.total_iters * self.start_factor + (self.last_epoch - 1) * change))]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the initial learning rate to ``eta_min`` over ``T_max`` epochs
    (PyTorch's recursive form, which rises again past ``T_max``)."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max = check_int(T_max, "T_max", 1)
        self.eta_min = _real(eta_min, "eta_min", 0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        base, eta_min, epoch, period = self.base_lrs[0], self.eta_min, self.last_epoch, self.T_max
        if self._is_initial:
            return [self._lr()]
        if self._step_count == 1 and epoch > 0:  # resumed at last_epoch >= 0: the closed form
            return [eta_min + (base - eta_min) * (1 + math.cos(epoch * math.pi / period)) / 2]
        if (epoch - 1 - period) % (2 * period) == 0:
            return [self._lr() + (base - eta_min) * (1 - math.cos(math.pi / period)) / 2]
        return [(1 + math.cos(math.pi * epoch / period)) / (1 + math.cos(math.pi * (epoch - 1) / period))
                * (self._lr() - eta_min) + eta_min]


class ReduceLROnPlateau(LRScheduler):
    """Multiply the learning rate by ``factor`` once a metric has not improved for more than
    ``patience`` epochs (``torch.optim.lr_scheduler.ReduceLROnPlateau``): ``step(metric)``.

    Parameters
    ----------
    optimizer : rnnkit.optim.Optimizer
    mode : {"min", "max"}
        Whether the metric improves by falling (a loss) or by rising (an accuracy).
    factor : float
        In (0, 1).
    patience : int
        Epochs without improvement tolerated; the next one lowers the learning rate.
    threshold : float
        The least change that counts as an improvement, relative (``threshold_mode="rel"``:
        ``best * (1 -/+ threshold)``) or absolute (``"abs"``: ``best -/+ threshold``).
    threshold_mode : {"rel", "abs"}
    cooldown : int
        Epochs after a reduction during which no epoch counts as bad.
    min_lr : float
        The learning rate is never lowered below this.
    eps : float
        A reduction smaller than this is not made.
    """

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0, min_lr: float = 0.0,
                 eps: float = 1e-8) -> None:
        # No LRScheduler.__init__: there is no initial step, and no initial_lr is recorded.
        _check_optimizer(optimizer)
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.optimizer = optimizer
        self.mode, self.threshold_mode = mode, threshold_mode
        self.factor = _real(factor, "factor", 0.0, 1.0, low_open=True, high_open=True)
        self.patience = check_int(patience, "patience", 0)
        self.threshold = _real(threshold, "threshold", 0.0)
        self.cooldown = check_int(cooldown, "cooldown", 0)
        self.min_lr = _real(min_lr, "min_lr", 0.0)
        self.eps = _real(eps, "eps", 0.0)
        self.last_epoch = 0
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self._last_lr = [optimizer.lr]

    def _is_better(self, value: float) -> bool:
        if self.mode == "min":
            return value < (self.best * (1.0 - self.threshold) if self.threshold_mode == "rel"
                            else self.best - self.threshold)
        return value > (self.best * (self.threshold + 1.0) if self.threshold_mode == "rel"
                        else self.best + self.threshold)

    def get_lr(self) -> list[float]:
        return [self.optimizer.lr]

    def step(self, metrics: float) -> None:  # type: ignore[override]
        """Record this epoch's metric and lower the learning rate if it has stalled."""
        current = check_float(metrics, "metrics")
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            old = float(self.optimizer.lr)
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                self.optimizer.lr = new
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [self.optimizer.lr]


__all__ = ["LRScheduler", "LambdaLR", "StepLR", "MultiStepLR", "ExponentialLR", "LinearLR", "CosineAnnealingLR",
           "ReduceLROnPlateau"]
