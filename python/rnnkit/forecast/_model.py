"""RNNForecaster: direct multi-step forecasting with a recurrent network trained in C++."""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import io as _io
from .._fitting import _Base, _check_flags
from ..estimators import RNNRegressor
from ..exceptions import not_fitted_error
from ._transforms import SeriesTransform, as_exog, as_series, choose_differencing


class RNNForecaster(_Base):
    """Forecast the next ``horizon`` values of a series from its last ``window`` values.

    A recurrent network (an :class:`rnnkit.RNNRegressor`, trained by BPTT in C++) reads a
    window of the (transformed) series and predicts all ``horizon`` future values at once
    (the *direct* strategy: no forecast is fed back as input, so errors do not compound).
    Training windows are every stretch of ``window + horizon`` consecutive values of ``y``.

    Inside, the series is optionally log-transformed, differenced and standardised; every
    transform is undone on the forecasts, which come back in the units of ``y``.

    Parameters
    ----------
    window : int
        Past values the network reads for each forecast.
    horizon : int
        Steps predicted at once (the most that :meth:`predict` can return).
    cell : {"lstm", "gru", "rnn", "rnn_relu"}
    hidden_size, num_layers : int
    differencing : None, 0, 1 or "auto"
        Model first differences (1), levels (None or 0), or let a KPSS test on the training
        series decide ("auto": difference when level stationarity is rejected at 5%).
        Differencing lets the network forecast trends beyond the range seen in training.
    seasonal_period : int or None
        Season length (12 for monthly data with a yearly cycle). When > 1, each step also
        carries its phase in the season (sine and cosine) as input.
    seasonal_differencing : bool
        Also difference at the seasonal lag (``y[t] - y[t - seasonal_period]``, after any
        first difference), as in the classical "airline" model.
    log : bool
        Model the logarithm of ``y`` (strictly positive series whose seasonal swings grow with
        the level, i.e. multiplicative seasonality).
    n_threads : int or None
        Threads for the C++ core. The default, 1, is usually fastest: a series gives small
        batches, where more threads only add synchronisation (None: OpenMP's maximum).
    max_epochs, learning_rate, batch_size, weight_decay, dropout, early_stopping, random_state,
    verbose, dtype, device, lr_schedule
        Passed to the inner :class:`rnnkit.RNNRegressor`.

    Attributes
    ----------
    differencing_ : int
        The differencing order used (0 or 1).
    regressor_ : RNNRegressor
        The trained network.
    n_windows_ : int
        Training windows cut from ``y``.
    n_exog_ : int
        Exogenous columns (0 without X).
    loss_curve_ : list of float
        Training loss per epoch (on the standardised scale).

    Exogenous input
    ---------------
    ``fit(y, X)`` takes X aligned with y (one row per value of y). The network then reads
    ``window + horizon`` steps: the past window with y and X, followed by the ``horizon``
    future steps with X only, so ``predict(X=...)`` needs the future X for all ``horizon``
    steps the model was trained for.
    """

    def __init__(
        self,
        window: int = 24,
        horizon: int = 1,
        cell: str = "lstm",
        hidden_size: int = 32,
        num_layers: int = 1,
        differencing: Any = "auto",
        seasonal_period: Optional[int] = None,
        seasonal_differencing: bool = False,
        log: bool = False,
        max_epochs: int = 200,
        learning_rate: float = 3e-3,
        batch_size: int = 16,
        weight_decay: float = 0.0,
        dropout: float = 0.0,
        early_stopping: bool = False,
        random_state: Optional[int] = None,
        n_threads: Optional[int] = 1,
        verbose: int = 0,
        dtype: str = "float32",
        device: str = "cpu",
        lr_schedule: Optional[str] = None,
    ) -> None:
        self.window = window
        self.horizon = horizon
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.differencing = differencing
        self.seasonal_period = seasonal_period
        self.seasonal_differencing = seasonal_differencing
        self.log = log
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.early_stopping = early_stopping
        self.random_state = random_state
        self.n_threads = n_threads
        self.verbose = verbose
        self.dtype = dtype
        self.device = device
        self.lr_schedule = lr_schedule

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> None:
        for name in ("window", "horizon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.differencing not in (None, 0, 1, "auto") or isinstance(self.differencing, bool):
            raise ValueError(f"differencing must be None, 0, 1 or 'auto', got {self.differencing!r}")
        m = self.seasonal_period
        if m is not None and (isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1):
            raise ValueError(f"seasonal_period must be None or a positive integer, got {m!r}")
        _check_flags(self, "log", "seasonal_differencing")
        if self.seasonal_differencing and (m is None or m < 2):
            raise ValueError("seasonal_differencing=True needs a seasonal_period of 2 or more")

    def _check_fitted(self) -> None:
        if not hasattr(self, "regressor_"):
            raise not_fitted_error(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate arguments "
                "before using this estimator."
            )

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "regressor_")

    # ------------------------------------------------------------------ features
    def _phase_features(self, positions: np.ndarray) -> np.ndarray:
        m = self.seasonal_period
        if m is None or m < 2:
            return np.zeros((positions.size, 0))
        angle = 2.0 * math.pi * (positions % m) / m
        return np.stack([np.sin(angle), np.cos(angle)], axis=1)

    def _step_features(self, z: np.ndarray, exog: Optional[np.ndarray], start: int) -> np.ndarray:
        """Per-step inputs for transformed values ``z`` whose first value is original index ``start``.

        Columns: the value; with exogenous input an "observed" flag and X; the seasonal phase.
        """
        positions = np.arange(start, start + z.size)
        cols = [z[:, None]]
        if exog is not None:
            cols += [np.ones((z.size, 1)), exog]
        cols.append(self._phase_features(positions))
        return np.concatenate(cols, axis=1)

    def _future_features(self, exog: np.ndarray, start: int) -> np.ndarray:
        """Inputs for the forecast steps (exogenous models only): y unknown, flag 0, future X."""
        n = exog.shape[0]
        return np.concatenate([np.zeros((n, 2)), exog, self._phase_features(np.arange(start, start + n))], axis=1)

    def _make_regressor(self) -> RNNRegressor:
        return RNNRegressor(
            cell=self.cell, hidden_size=self.hidden_size, num_layers=self.num_layers, dropout=self.dropout,
            output="last", learning_rate=self.learning_rate, weight_decay=self.weight_decay,
            batch_size=self.batch_size, max_epochs=self.max_epochs, early_stopping=self.early_stopping,
            random_state=self.random_state, verbose=self.verbose, n_threads=self.n_threads, dtype=self.dtype,
            device=self.device, lr_schedule=self.lr_schedule,
        )

    # ------------------------------------------------------------------ API
    def fit(self, y: Any, X: Any = None) -> "RNNForecaster":
        """Train on the series ``y`` (1-D), with optional exogenous ``X`` aligned with it."""
        self._check_params()
        y = as_series(y)
        exog = None if X is None else as_exog(X, y.size)
        window, horizon = int(self.window), int(self.horizon)
        seasonal_lag = int(self.seasonal_period) if self.seasonal_differencing else 0
        if self.differencing == "auto":  # test what is left after the log and the seasonal difference
            order = choose_differencing(SeriesTransform(0, bool(self.log), seasonal_lag)._pre(y))
        else:
            order = int(self.differencing or 0)
        needed = window + horizon + order + seasonal_lag
        if y.size < needed:
            raise ValueError(
                f"y has {y.size} values; window={window} and horizon={horizon}"
                f"{' with differencing' if order + seasonal_lag else ''} need at least {needed}"
            )
        transform = SeriesTransform(order, bool(self.log), seasonal_lag).fit(y)
        z = transform.forward(y)
        lost = transform.lost
        ex = None if exog is None else exog[lost:]
        steps = self._step_features(z, ex, start=lost)
        length = window + (horizon if exog is not None else 0)
        inputs = sliding_window_view(steps, length, axis=0).transpose(0, 2, 1)  # (n_windows, length, C)
        n_windows = z.size - window - horizon + 1
        inputs = np.array(inputs[:n_windows])
        if exog is not None:
            inputs[:, window:, :2] = 0.0  # the future part: y unknown, "observed" flag off
        targets = sliding_window_view(z[window:], horizon)[:n_windows]
        regressor = self._make_regressor().fit(inputs, targets)

        self.regressor_ = regressor
        self.differencing_ = order
        self.n_windows_ = n_windows
        self.n_exog_ = 0 if exog is None else exog.shape[1]
        self.n_obs_ = y.size
        self._transform = transform
        self._history_y = y[-(window + lost):].copy()
        self._history_X = None if exog is None else exog[-window:].copy()
        return self

    @property
    def loss_curve_(self) -> list:
        self._check_fitted()
        return self.regressor_.loss_curve_

    def predict(self, horizon: Optional[int] = None, X: Any = None) -> np.ndarray:
        """The next ``horizon`` values after the training series (default: all ``self.horizon``).

        ``X``: the future exogenous values, at least ``self.horizon`` rows (required when the
        model was fitted with X).
        """
        self._check_fitted()
        h = int(self.horizon) if horizon is None else horizon
        if isinstance(h, bool) or not isinstance(h, numbers.Integral) or not 1 <= h <= self.horizon:
            raise ValueError(
                f"horizon must be an integer from 1 to {self.horizon} (the horizon this model was trained for; "
                f"direct forecasts do not extend past it), got {horizon!r}"
            )
        window = int(self.window)
        z = self._transform.forward(self._history_y)
        start = self.n_obs_ - window
        if self.n_exog_:
            if X is None:
                raise ValueError(f"this model was fitted with exogenous X: pass the future X ({self.horizon} rows)")
            future = as_exog(X, None)
            if future.shape[1] != self.n_exog_:
                raise ValueError(f"X has {future.shape[1]} columns, but the model was fitted with {self.n_exog_}")
            if future.shape[0] < self.horizon:
                raise ValueError(
                    f"X has {future.shape[0]} rows; the model reads the future X for all {self.horizon} steps of its "
                    f"horizon, so pass at least {self.horizon} rows"
                )
            sequence = np.concatenate([
                self._step_features(z, self._history_X, start),
                self._future_features(future[: self.horizon], self.n_obs_),
            ])
        else:
            if X is not None:
                raise ValueError("X was given, but this model was fitted without exogenous input")
            sequence = self._step_features(z, None, start)
        scaled = np.asarray(self.regressor_.predict(sequence[None]), dtype=np.float64).reshape(-1)
        return self._transform.inverse(scaled, self._history_y)[:h]

    # ------------------------------------------------------------------ persistence
    def save(self, path: Any) -> None:
        """Save to ``path`` in rnnkit's model format (read back with :func:`rnnkit.load`)."""
        _io.save(self, path)

    def _export(self) -> tuple:
        self._check_fitted()
        params = _io.portable_params(self.get_params())
        reg_meta, reg_arrays = _io.estimator_payload(self.regressor_)
        meta = {
            "params": params,
            "fitted": {"differencing_": self.differencing_, "n_windows_": self.n_windows_, "n_exog_": self.n_exog_,
                       "n_obs_": self.n_obs_, "transform": self._transform.state()},
            "regressor": reg_meta,
        }
        arrays = {"history_y": self._history_y, **{f"regressor__{k}": v for k, v in reg_arrays.items()}}
        if self._history_X is not None:
            arrays["history_X"] = self._history_X
        return meta, arrays

    @classmethod
    def _import(cls, meta: dict, arrays: dict) -> "RNNForecaster":
        model = cls(**_io.params_from_portable(meta["params"]))
        fitted = meta["fitted"]
        prefix = "regressor__"
        model.regressor_ = _io.restore_estimator(
            meta["regressor"], {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
        model.differencing_ = int(fitted["differencing_"])
        model.n_windows_ = int(fitted["n_windows_"])
        model.n_exog_ = int(fitted["n_exog_"])
        model.n_obs_ = int(fitted["n_obs_"])
        model._transform = SeriesTransform.from_state(fitted["transform"])
        model._history_y = np.asarray(arrays["history_y"], dtype=np.float64)
        model._history_X = np.asarray(arrays["history_X"], dtype=np.float64) if "history_X" in arrays else None
        return model
