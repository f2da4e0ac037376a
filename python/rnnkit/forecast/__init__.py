"""Forecasting: :class:`RNNForecaster`, the seasonal-naive baseline and back-testing.

>>> from rnnkit.forecast import RNNForecaster, backtest
>>> model = RNNForecaster(window=24, horizon=12, seasonal_period=12, random_state=0)
>>> model.fit(y).predict()            # the next 12 values            # doctest: +SKIP
>>> backtest(model, y, n_windows=3)   # MAE/MAPE on the last 3 x 12   # doctest: +SKIP
"""

from ._backtest import BacktestResult, backtest, mae, mape
from ._baselines import SeasonalNaive, seasonal_naive
from ._model import RNNForecaster
from ._transforms import detect_season

__all__ = ["BacktestResult", "RNNForecaster", "SeasonalNaive", "backtest", "detect_season", "mae", "mape",
           "seasonal_naive"]
