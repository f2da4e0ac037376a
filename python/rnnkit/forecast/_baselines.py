"""The seasonal-naive baseline: every forecast repeats the value one season earlier."""

from __future__ import annotations

import numbers
from typing import Any, Optional

import numpy as np

from ._transforms import as_series


def seasonal_naive(y: Any, horizon: int, seasonal_period: Optional[int] = None) -> np.ndarray:
    """Forecast ``horizon`` steps after ``y`` by repeating its last season.

    ``seasonal_period`` None or 1 gives the naive forecast (the last value, repeated).
    """
    y = as_series(y)
    m = 1 if seasonal_period is None else int(seasonal_period)
    if isinstance(horizon, bool) or not isinstance(horizon, numbers.Integral) or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    if m < 1:
        raise ValueError(f"seasonal_period must be a positive integer, got {seasonal_period!r}")
    if y.size < m:
        raise ValueError(f"seasonal-naive needs at least one season ({m} values) of history, got {y.size}")
    last_season = y[y.size - m :]
    return last_season[np.arange(horizon) % m].copy()


class SeasonalNaive:
    """Seasonal-naive forecaster with the ``fit(y, X=None)`` / ``predict(horizon, X=None)`` API.

    The exogenous series, if any, is ignored.
    """

    def __init__(self, horizon: int = 1, seasonal_period: Optional[int] = None) -> None:
        self.horizon = horizon
        self.seasonal_period = seasonal_period

    def get_params(self, deep: bool = True) -> dict:
        return {"horizon": self.horizon, "seasonal_period": self.seasonal_period}

    def set_params(self, **params: Any) -> "SeasonalNaive":
        for key, value in params.items():
            if key not in self.get_params():
                raise ValueError(f"Invalid parameter {key!r} for SeasonalNaive")
            setattr(self, key, value)
        return self

    def fit(self, y: Any, X: Any = None) -> "SeasonalNaive":
        self.y_ = as_series(y)
        seasonal_naive(self.y_, 1, self.seasonal_period)  # validates the season against the data
        return self

    def predict(self, horizon: Optional[int] = None, X: Any = None) -> np.ndarray:
        if not hasattr(self, "y_"):
            raise ValueError("This SeasonalNaive instance is not fitted yet; call fit(y) first.")
        return seasonal_naive(self.y_, self.horizon if horizon is None else horizon, self.seasonal_period)

    def __repr__(self) -> str:
        return f"SeasonalNaive(horizon={self.horizon!r}, seasonal_period={self.seasonal_period!r})"
