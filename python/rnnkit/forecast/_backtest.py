"""Back-testing: refit on an expanding window, forecast the next stretch, score it."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ._baselines import SeasonalNaive
from ._transforms import as_exog, as_series


def mae(actual: Any, forecast: Any) -> float:
    """Mean absolute error."""
    a, f = np.asarray(actual, dtype=np.float64), np.asarray(forecast, dtype=np.float64)
    return float(np.mean(np.abs(a - f)))


def mape(actual: Any, forecast: Any) -> float:
    """Mean absolute percentage error, in percent (NaN when an actual value is 0)."""
    a, f = np.asarray(actual, dtype=np.float64), np.asarray(forecast, dtype=np.float64)
    if (a == 0).any():
        return float("nan")
    return float(np.mean(np.abs((a - f) / a)) * 100.0)


@dataclass
class BacktestResult:
    """Scores and forecasts of a back-test; ``baseline_*`` are the seasonal-naive ones."""

    mae: float
    mape: float
    baseline_mae: float
    baseline_mape: float
    origins: np.ndarray  # index in y of each window's first forecast value
    actuals: np.ndarray  # (n_windows, horizon)
    forecasts: np.ndarray  # (n_windows, horizon)
    baseline_forecasts: np.ndarray  # (n_windows, horizon)
    seasonal_period: int = 1
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"mae": self.mae, "mape": self.mape, "baseline_mae": self.baseline_mae,
                "baseline_mape": self.baseline_mape, "n_windows": int(self.origins.size),
                "horizon": int(self.actuals.shape[1]), "seasonal_period": self.seasonal_period}


def _clone(model: Any) -> Any:
    return type(model)(**model.get_params())


def backtest(
    model: Any,
    y: Any,
    X: Any = None,
    *,
    n_windows: Optional[int] = None,
    test_size: Optional[int] = None,
    horizon: Optional[int] = None,
    seasonal_period: Optional[int] = None,
) -> BacktestResult:
    """Score ``model`` on the end of ``y`` the way it would be used: forecasting unseen values.

    The last ``n_windows * horizon`` values (or the last ``test_size``, a multiple of
    ``horizon``) are split into consecutive windows of ``horizon`` steps. For each, a fresh
    copy of ``model`` (same parameters) is fitted on everything before the window and
    forecasts it. Scores are pooled over all windows. The seasonal-naive baseline
    (``seasonal_period``, default the model's) is scored on the same windows.

    ``model`` is any object with ``get_params()``, ``fit(y, X=None)`` and
    ``predict(horizon, X=None)``: an :class:`RNNForecaster`, a :class:`SeasonalNaive`, or
    a wrapper around another library's model. ``horizon`` defaults to ``model.horizon``.
    """
    y = as_series(y)
    exog = None if X is None else as_exog(X, y.size)
    h = horizon if horizon is not None else getattr(model, "horizon", None)
    if isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1:
        raise ValueError(f"horizon must be a positive integer, got {h!r}")
    if n_windows is not None and test_size is not None:
        raise ValueError("pass n_windows or test_size, not both")
    if test_size is not None:
        if isinstance(test_size, bool) or not isinstance(test_size, numbers.Integral) or test_size < h or test_size % h:
            raise ValueError(f"test_size must be a positive multiple of the horizon ({h}), got {test_size!r}")
        n_windows = test_size // h
    if n_windows is None:
        n_windows = 1
    if isinstance(n_windows, bool) or not isinstance(n_windows, numbers.Integral) or n_windows < 1:
        raise ValueError(f"n_windows must be a positive integer, got {n_windows!r}")
    model_horizon = getattr(model, "horizon", h)
    if exog is not None and model_horizon > h:
        raise ValueError(f"with exogenous X the back-test horizon ({h}) must equal the model's ({model_horizon})")
    first = y.size - n_windows * h
    m = seasonal_period if seasonal_period is not None else getattr(model, "seasonal_period", None)
    m = int(m) if m else 1
    if first < 2 or first < m:
        raise ValueError(f"y has {y.size} values: too few to hold out {n_windows} window(s) of {h} and keep a history")

    origins = first + h * np.arange(n_windows)
    actuals, forecasts, naive = [], [], []
    for origin in origins:
        fitted = _clone(model)
        if exog is None:
            fitted.fit(y[:origin])
            forecast = fitted.predict(h)
        else:
            fitted.fit(y[:origin], exog[:origin])
            forecast = fitted.predict(h, X=exog[origin : origin + h])
        actuals.append(y[origin : origin + h])
        forecasts.append(np.asarray(forecast, dtype=np.float64).reshape(-1)[:h])
        naive.append(SeasonalNaive(h, m).fit(y[:origin]).predict(h))
    a, f, b = np.array(actuals), np.array(forecasts), np.array(naive)
    return BacktestResult(mae(a, f), mape(a, f), mae(a, b), mape(a, b), origins, a, f, b, m)
