"""rnnkit.forecast: RNNForecaster learns, its transforms round-trip, exogenous input, persistence, bad input.

Run with ``pytest -s`` to see the back-test errors reached.
"""
from __future__ import annotations

import numpy as np
import pytest

import rnnkit
from rnnkit.exceptions import NotFittedError
from rnnkit.forecast import RNNForecaster, SeasonalNaive, backtest, detect_season, mae, mape, seasonal_naive
from rnnkit.forecast._transforms import SeriesTransform, choose_differencing, kpss_statistic

pytestmark = pytest.mark.filterwarnings("ignore::rnnkit.exceptions.ConvergenceWarning")

SMALL = dict(hidden_size=16, max_epochs=40, learning_rate=1e-2, batch_size=16, random_state=0, n_threads=1)


def seasonal_trend(n=168, period=12, noise=0.3, seed=0):
    """A monthly-like series: linear trend + a seasonal shape that is not a pure sine + noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    season = 3.0 * np.sin(2 * np.pi * t / period) + 1.5 * np.cos(4 * np.pi * t / period)
    return 20.0 + 0.08 * t + season + noise * rng.standard_normal(n)


# ---------------------------------------------------------------------- learning
def test_beats_seasonal_naive_on_held_out_windows():
    y = seasonal_trend()
    model = RNNForecaster(window=24, horizon=12, seasonal_period=12, **SMALL)
    result = backtest(model, y, n_windows=2)
    print(f"\n[seasonal + trend] back-test MAE {result.mae:.3f} (MAPE {result.mape:.2f}%), "
          f"seasonal naive {result.baseline_mae:.3f} ({result.baseline_mape:.2f}%)")
    assert result.forecasts.shape == result.actuals.shape == (2, 12)
    np.testing.assert_array_equal(result.origins, [len(y) - 24, len(y) - 12])
    # the trend alone costs seasonal naive about 12 * 0.08 ~ 0.96 per step
    assert result.mae < 0.7 * result.baseline_mae
    # and the forecaster got the trend's direction from the differenced series
    fitted = RNNForecaster(window=24, horizon=12, seasonal_period=12, **SMALL).fit(y)
    assert fitted.differencing_ == 1
    forecast = fitted.predict()
    assert forecast.shape == (12,)
    assert forecast.mean() > y[-12:].mean()


def test_predict_shorter_horizon_is_a_prefix():
    y = seasonal_trend(96)
    model = RNNForecaster(window=12, horizon=6, seasonal_period=12, **{**SMALL, "max_epochs": 5}).fit(y)
    np.testing.assert_array_equal(model.predict(3), model.predict()[:3])
    assert model.predict(1).shape == (1,)


# ---------------------------------------------------------------------- transforms
@pytest.mark.parametrize("order", [0, 1, 2])
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("lag", [0, 4])
def test_transform_round_trip(order, log, lag):
    rng = np.random.default_rng(1)
    y = 50.0 + np.cumsum(rng.standard_normal(80))
    transform = SeriesTransform(order, log, lag).fit(y[:60])
    z = transform.forward(y)
    assert z.size == y.size - transform.lost
    assert abs(transform.forward(y[:60]).mean()) < 1e-9  # standardised on the fitted part
    cut = 60 - transform.lost
    back = transform.inverse(z[cut:], y[:60])
    np.testing.assert_allclose(back, y[60:], rtol=1e-10)
    # a batch of forecasts (rows) is undone row by row
    both = transform.inverse(np.stack([z[cut:], z[cut:]]), y[:60])
    np.testing.assert_allclose(both, np.stack([y[60:], y[60:]]), rtol=1e-10)
    state = SeriesTransform.from_state(transform.state())
    np.testing.assert_array_equal(state.forward(y), z)


@pytest.mark.parametrize("differencing", [0, 1])
def test_forecasts_follow_an_affine_change_of_units(differencing):
    """Scaling inside: the network sees the same standardised data, so forecasts map exactly."""
    y = seasonal_trend(72)
    kw = dict(window=12, horizon=4, differencing=differencing, **{**SMALL, "max_epochs": 5, "dtype": "float64"})
    base = RNNForecaster(**kw).fit(y).predict()
    shifted = RNNForecaster(**kw).fit(1000.0 + 50.0 * y).predict()
    np.testing.assert_allclose(shifted, 1000.0 + 50.0 * base, rtol=1e-9)


def test_auto_differencing_uses_a_kpss_test():
    rng = np.random.default_rng(0)
    walk = np.cumsum(rng.standard_normal(300))
    noise = rng.standard_normal(300)
    assert kpss_statistic(walk) > 0.463 > kpss_statistic(noise)
    assert choose_differencing(walk) == 1 and choose_differencing(noise) == 0
    kw = dict(window=8, horizon=2, **{**SMALL, "max_epochs": 1})
    assert RNNForecaster(**kw).fit(walk).differencing_ == 1
    assert RNNForecaster(**kw).fit(noise).differencing_ == 0
    assert RNNForecaster(differencing=None, **kw).fit(walk).differencing_ == 0
    assert RNNForecaster(differencing=1, **kw).fit(noise).differencing_ == 1


def test_log_and_seasonal_differencing_forecast_positive_values():
    y = np.exp(0.01 * np.arange(120) + 0.2 * np.sin(2 * np.pi * np.arange(120) / 12)) * 100
    model = RNNForecaster(window=24, horizon=6, seasonal_period=12, seasonal_differencing=True, log=True,
                          **{**SMALL, "max_epochs": 5}).fit(y)
    forecast = model.predict()
    assert (forecast > 0).all() and np.isfinite(forecast).all()
    assert model.n_windows_ == 120 - 12 - model.differencing_ - 24 - 6 + 1


def test_seasonal_naive_and_metrics():
    y = np.arange(1.0, 13.0)
    np.testing.assert_array_equal(seasonal_naive(y, 6, 4), [9, 10, 11, 12, 9, 10])
    np.testing.assert_array_equal(seasonal_naive(y, 3), [12, 12, 12])
    np.testing.assert_array_equal(SeasonalNaive(2, 3).fit(y).predict(), [10, 11])
    assert mae([1, 2], [2, 4]) == 1.5
    assert mape([1, 2], [2, 4]) == pytest.approx(100.0)
    assert np.isnan(mape([0, 2], [1, 2]))
    assert detect_season(seasonal_trend(144)) == 12
    assert detect_season(np.random.default_rng(0).standard_normal(100)) == 1


def test_backtest_of_the_baseline_against_itself():
    y = seasonal_trend(60)
    result = backtest(SeasonalNaive(6, 12), y, test_size=18)
    assert result.origins.tolist() == [42, 48, 54]
    assert result.mae == result.baseline_mae and result.mape == result.baseline_mape
    assert result.as_dict()["n_windows"] == 3


# ---------------------------------------------------------------------- exogenous input
def test_exogenous_input_is_used():
    """y follows a known-in-advance driver X (e.g. a promotion calendar): without X it is unpredictable."""
    rng = np.random.default_rng(3)
    n = 200
    X = rng.integers(0, 2, n).astype(float)
    y = 10.0 + 4.0 * X + 0.2 * rng.standard_normal(n)
    kw = dict(window=6, horizon=3, differencing=0, **{**SMALL, "max_epochs": 30})
    with_x = backtest(RNNForecaster(**kw), y, X, n_windows=4)
    without = backtest(RNNForecaster(**kw), y, n_windows=4)
    print(f"\n[exogenous] MAE with X {with_x.mae:.3f}, without {without.mae:.3f}")
    assert with_x.mae < 0.5 * without.mae
    model = RNNForecaster(**kw).fit(y[:-3], X[:-3])
    assert model.n_exog_ == 1
    forecast = model.predict(X=X[-3:])
    np.testing.assert_allclose(forecast, y[-3:], atol=1.0)
    np.testing.assert_array_equal(model.predict(2, X=X[-3:]), forecast[:2])
    with pytest.raises(ValueError, match="exogenous X"):
        model.predict()
    with pytest.raises(ValueError, match="at least 3 rows"):
        model.predict(X=X[-2:])
    with pytest.raises(ValueError, match="columns"):
        model.predict(X=np.ones((3, 2)))


# ---------------------------------------------------------------------- persistence
@pytest.mark.parametrize("exog", [False, True])
def test_save_load_is_bit_identical(tmp_path, exog):
    y = seasonal_trend(80)
    X = np.stack([np.sin(np.arange(83.0)), np.arange(83.0) % 3], axis=1) if exog else None
    model = RNNForecaster(window=12, horizon=3, seasonal_period=12, log=True, **{**SMALL, "max_epochs": 3})
    model.fit(y, X[:80] if exog else None)
    future = X[80:] if exog else None
    path = tmp_path / "forecaster.npz"
    model.save(path)
    loaded = rnnkit.load(path)
    assert type(loaded) is RNNForecaster
    assert loaded.get_params() == model.get_params()
    assert loaded.differencing_ == model.differencing_ and loaded.n_exog_ == model.n_exog_
    np.testing.assert_array_equal(loaded.predict(X=future), model.predict(X=future))
    np.testing.assert_array_equal(loaded.regressor_._params_flat, model.regressor_._params_flat)
    assert loaded.loss_curve_ == model.loss_curve_


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("params, y, match", [
    (dict(window=0), None, "window must be a positive integer"),
    (dict(horizon=1.5), None, "horizon must be a positive integer"),
    (dict(differencing=2), None, "differencing must be"),
    (dict(seasonal_period=0), None, "seasonal_period"),
    (dict(seasonal_differencing=True), None, "needs a seasonal_period"),
    (dict(window=30, horizon=12), np.arange(40.0), "need at least 43"),
    (dict(), [1.0, np.nan] * 20, "NaN or infinity .first at position 1"),
    (dict(), np.ones((10, 2)), "1-D series"),
    (dict(), ["a"] * 40, "must hold numbers"),
    (dict(log=True), np.arange(-5.0, 35.0), "strictly positive"),
    (dict(cell="transformer"), None, "cell must be one of"),
])
def test_bad_parameters_and_series(params, y, match):
    y = seasonal_trend(40) if y is None else y
    model = RNNForecaster(**{"window": 4, "horizon": 2, **SMALL, "max_epochs": 1, **params})
    with pytest.raises((ValueError, TypeError), match=match):
        model.fit(y)


def test_bad_use_after_fit():
    with pytest.raises(NotFittedError):
        RNNForecaster().predict()
    y = seasonal_trend(40)
    model = RNNForecaster(window=4, horizon=2, **{**SMALL, "max_epochs": 1}).fit(y)
    for horizon in (0, 3, 1.0):
        with pytest.raises(ValueError, match="horizon must be an integer from 1 to 2"):
            model.predict(horizon)
    with pytest.raises(ValueError, match="fitted without exogenous"):
        model.predict(X=np.ones((2, 1)))
    with pytest.raises(ValueError, match="aligned with y"):
        RNNForecaster(window=4, horizon=2).fit(y, np.ones((39, 1)))
    with pytest.raises(ValueError, match="not both"):
        backtest(model, y, n_windows=1, test_size=2)
    with pytest.raises(ValueError, match="multiple of the horizon"):
        backtest(model, y, test_size=3)
    with pytest.raises(ValueError, match="too few"):
        backtest(model, y, n_windows=20)
