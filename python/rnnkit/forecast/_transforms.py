"""The reversible transforms a forecaster applies to a series: log, differencing, scaling.

Each transform maps the observed series to the one the network sees and back. They are kept
as plain numbers and small arrays so that a model file stores them without pickle.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

# KPSS (level stationarity) 5% critical value, Kwiatkowski et al. (1992), table 1.
_KPSS_CRITICAL_5PCT = 0.463


def as_series(y: Any, name: str = "y") -> np.ndarray:
    """A 1-D float64 array of finite values (a pandas Series or a column vector is accepted)."""
    if hasattr(y, "toarray") and hasattr(y, "nnz"):
        raise TypeError(f"{name}: sparse input is not supported; pass a dense array")
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D series of numbers, got an array of shape {arr.shape}")
    if arr.dtype.kind == "c":
        raise ValueError(f"{name}: complex values are not supported")
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold numbers: {exc}") from exc
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name} contains NaN or infinity (first at position {int(bad[0])}); fill or drop missing values first")
    return arr


def as_exog(X: Any, n_rows: Optional[int], name: str = "X") -> np.ndarray:
    """Exogenous values as an (n, k) float64 array of finite values; n checked when given."""
    if hasattr(X, "toarray") and hasattr(X, "nnz"):
        raise TypeError(f"{name}: sparse input is not supported; pass a dense array")
    arr = np.asarray(X)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be (n_steps,) or (n_steps, n_features), got shape {arr.shape}")
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold numbers: {exc}") from exc
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity")
    if n_rows is not None and arr.shape[0] != n_rows:
        raise ValueError(f"{name} has {arr.shape[0]} rows, but y has {n_rows} values: X must be aligned with y")
    return arr


def kpss_statistic(y: np.ndarray) -> float:
    """The KPSS statistic for level stationarity with a Bartlett-kernel long-run variance.

    Large values (above about 0.463 at the 5% level) say the series has a stochastic trend and
    should be differenced.
    """
    n = y.size
    resid = y - y.mean()
    partial = np.cumsum(resid)
    lags = min(n - 1, int(math.ceil(12.0 * (n / 100.0) ** 0.25)))
    variance = float(resid @ resid) / n
    for lag in range(1, lags + 1):
        weight = 1.0 - lag / (lags + 1.0)
        variance += 2.0 * weight * float(resid[lag:] @ resid[:-lag]) / n
    if variance <= 0.0:
        return 0.0
    return float(partial @ partial) / (n * n * variance)


def choose_differencing(y: np.ndarray) -> int:
    """0 or 1: difference once when the KPSS test rejects level stationarity at 5%."""
    if y.size < 8 or np.ptp(y) == 0.0:
        return 0
    return int(kpss_statistic(y) > _KPSS_CRITICAL_5PCT)


class SeriesTransform:
    """log (optional) -> ``order``-fold differencing -> seasonal differencing at ``seasonal_lag``
    (optional) -> standardisation, and the way back.

    ``forward`` is fitted on the training series; ``inverse`` turns a forecast of the
    transformed series that continues right after ``history`` back into the original units.
    """

    def __init__(self, order: int = 0, log: bool = False, seasonal_lag: int = 0) -> None:
        self.order = int(order)
        self.log = bool(log)
        self.seasonal_lag = int(seasonal_lag)
        self.mean = 0.0
        self.scale = 1.0

    @property
    def lost(self) -> int:
        """How many values shorter the transformed series is."""
        return self.order + self.seasonal_lag

    def _pre(self, y: np.ndarray) -> np.ndarray:
        if self.log:
            if (y <= 0).any():
                raise ValueError("log=True needs a strictly positive series")
            y = np.log(y)
        y = np.diff(y, n=self.order) if self.order else y
        return y[self.seasonal_lag :] - y[: y.size - self.seasonal_lag] if self.seasonal_lag else y

    def fit(self, y: np.ndarray) -> "SeriesTransform":
        z = self._pre(y)
        self.mean = float(z.mean())
        std = float(z.std())
        self.scale = std if std > 1e-12 * max(1.0, abs(self.mean)) else 1.0
        return self

    def forward(self, y: np.ndarray) -> np.ndarray:
        """The transformed series: ``lost`` values shorter than ``y``."""
        return (self._pre(y) - self.mean) / self.scale

    def inverse(self, z: np.ndarray, history: np.ndarray) -> np.ndarray:
        """Undo the transform for values ``z`` (last axis: steps) that follow ``history``."""
        values = np.asarray(z, dtype=np.float64) * self.scale + self.mean
        base = np.log(history) if self.log else np.asarray(history, dtype=np.float64)
        if self.seasonal_lag:
            m = self.seasonal_lag
            past = np.diff(base, n=self.order) if self.order else base
            full = np.concatenate([np.broadcast_to(past[-m:], values.shape[:-1] + (m,)), values], axis=-1)
            for k in range(values.shape[-1]):  # w[t] = z[t] + w[t - m], forecasts included
                full[..., m + k] += full[..., k]
            values = full[..., m:]
        for k in range(self.order, 0, -1):  # integrate from the innermost difference outwards
            last = np.diff(base, n=k - 1)[-1]
            values = last + np.cumsum(values, axis=-1)
        return np.exp(values) if self.log else values

    def state(self) -> dict:
        return {"order": self.order, "log": self.log, "seasonal_lag": self.seasonal_lag, "mean": self.mean,
                "scale": self.scale}

    @classmethod
    def from_state(cls, state: dict) -> "SeriesTransform":
        obj = cls(state["order"], state["log"], state.get("seasonal_lag", 0))
        obj.mean, obj.scale = float(state["mean"]), float(state["scale"])
        return obj


def detect_season(y: np.ndarray, max_period: Optional[int] = None) -> int:
    """The lag (>= 2) of the highest autocorrelation peak of the differenced series, or 1 if weak.

    A peak counts when it is a local maximum above 0.3; a multiple of a shorter
    qualifying peak is not preferred over it.
    """
    z = np.diff(y) if y.size > 3 else y
    n = z.size
    if n < 8:
        return 1
    max_period = min(max_period or n // 2, n // 2)
    z = z - z.mean()
    denom = float(z @ z)
    if denom == 0.0:
        return 1
    acf = np.array([float(z[k:] @ z[:-k]) / denom for k in range(1, max_period + 1)])
    best, best_value = 1, 0.3
    for lag in range(2, max_period):
        value = acf[lag - 1]
        if value > best_value and value >= acf[lag - 2] and value >= acf[lag]:
            if best > 1 and lag % best == 0:
                continue
            best, best_value = lag, value
    return best
