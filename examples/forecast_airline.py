"""Forecasting real series with rnnkit.forecast.RNNForecaster, against classical baselines.

Needs the optional packages that carry the data and the baselines (not rnnkit's dependencies):

    pip install sktime statsmodels      # sktime: the airline series; statsmodels: CO2, Holt-Winters, SARIMA

Series: the airline passengers (monthly, 1949-1960, 144 values, bundled in sktime) and the
Mauna Loa CO2 series (weekly 1958-2001 in statsmodels, averaged to 526 monthly values, the
five empty months interpolated). Each is back-tested the same way: the last 3 x 12 months,
each year forecast 12 months ahead by a model fitted on everything before it.

Models: the LSTM forecaster (direct 12-step output; the defaults of ``rnnkit forecast``),
seasonal naive, and statsmodels' Holt-Winters exponential smoothing and SARIMA "airline
model" variants; the best classical one (chosen on these same windows, which flatters it)
is reported.

    python examples/forecast_airline.py                   # both series, 5 seeds
    python examples/forecast_airline.py --series airline --seeds 1
    python examples/forecast_airline.py --write-csv /tmp  # CSV files for the rnnkit forecast command
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

from rnnkit.forecast import RNNForecaster, backtest

HORIZON, SEASON, WINDOWS = 12, 12, 3


def airline() -> tuple:
    import pandas as pd
    import sktime.datasets

    path = os.path.join(os.path.dirname(sktime.datasets.__file__), "data", "Airline", "Airline.csv")
    frame = pd.read_csv(path)
    return frame["Date"].tolist(), frame["Passengers"].to_numpy(np.float64), path


def co2() -> tuple:
    import statsmodels.api as sm

    weekly = sm.datasets.co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean().interpolate()
    return [d.strftime("%Y-%m") for d in monthly.index], monthly.to_numpy(np.float64), None


SERIES = {"airline": (airline, "Passengers", True), "co2": (co2, "co2", False)}


class Classical:
    """A statsmodels model behind the fit(y) / predict(horizon) interface that backtest() uses."""

    def __init__(self, kind: str, log: bool = False, horizon: int = HORIZON, seasonal_period: int = SEASON) -> None:
        self.kind, self.log, self.horizon, self.seasonal_period = kind, log, horizon, seasonal_period

    def get_params(self) -> dict:
        return {"kind": self.kind, "log": self.log, "horizon": self.horizon, "seasonal_period": self.seasonal_period}

    def fit(self, y, X=None):
        from statsmodels.tsa.holtwinters import ExponentialSmoothing
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        data = np.log(y) if self.log else y
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if self.kind.startswith("hw"):
                _, seasonal, damped = self.kind.split("-")
                self.result_ = ExponentialSmoothing(data, trend="add", seasonal=seasonal, damped_trend=damped == "damped",
                                                    seasonal_periods=self.seasonal_period).fit()
            else:
                self.result_ = SARIMAX(data, order=(0, 1, 1), seasonal_order=(0, 1, 1, self.seasonal_period)).fit(disp=False)
        return self

    def predict(self, horizon=None, X=None):
        f = np.asarray(self.result_.forecast(horizon or self.horizon))
        return np.exp(f) if self.log else f

    def __str__(self) -> str:
        if self.kind == "sarima":
            return f"SARIMA(0,1,1)(0,1,1){self.seasonal_period}{' on log' if self.log else ''}"
        _, seasonal, damped = self.kind.split("-")
        return f"Holt-Winters {seasonal} season{', damped' if damped == 'damped' else ''}{' on log' if self.log else ''}"


CLASSICAL = [Classical("hw-add-plain"), Classical("hw-mul-plain"), Classical("hw-add-damped"),
             Classical("hw-mul-damped"), Classical("hw-add-plain", log=True), Classical("sarima"),
             Classical("sarima", log=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", nargs="+", choices=sorted(SERIES), default=sorted(SERIES))
    parser.add_argument("--seeds", type=int, default=5, help="LSTM seeds (0..N-1); seed 0 is what the command gives")
    parser.add_argument("--lr-schedule", choices=("adaptive", "cosine"), default=None)
    parser.add_argument("--write-csv", metavar="DIR", help="write each series as DIR/NAME.csv and exit")
    args = parser.parse_args()

    for name in args.series:
        load, column, log = SERIES[name]
        dates, y, _ = load()
        if args.write_csv:
            path = os.path.join(args.write_csv, f"{name}.csv")
            with open(path, "w") as fh:
                fh.write(f"month,{column}\n" + "".join(f"{d},{v:.6g}\n" for d, v in zip(dates, y)))
            print(f"wrote {path}: rnnkit forecast {path} --column {column} --horizon {HORIZON}{' --log' if log else ''}")
            continue
        print(f"\n== {name}: {y.size} monthly values, back-test on the last {WINDOWS} x {HORIZON} months ==")
        rows = []
        t0 = time.perf_counter()
        scores = []
        for seed in range(args.seeds):
            model = RNNForecaster(window=2 * SEASON, horizon=HORIZON, seasonal_period=SEASON, log=log,
                                  lr_schedule=args.lr_schedule, random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = backtest(model, y, n_windows=WINDOWS)
            scores.append((result.mae, result.mape))
        scores = np.array(scores)
        per_fit = (time.perf_counter() - t0) / (args.seeds * WINDOWS)
        rows.append((f"rnnkit LSTM(32){', log' if log else ''}, seed 0", scores[0, 0], scores[0, 1]))
        if args.seeds > 1:
            rows.append((f"  mean ± sd over {args.seeds} seeds",
                         f"{scores[:, 0].mean():.3f} ± {scores[:, 0].std():.3f}",
                         f"{scores[:, 1].mean():.2f} ± {scores[:, 1].std():.2f}"))
        rows.append((f"seasonal naive ({SEASON})", result.baseline_mae, result.baseline_mape))
        classical = []
        for model in CLASSICAL:
            r = backtest(model, y, n_windows=WINDOWS)
            classical.append((r.mae, r.mape, str(model)))
        best = min(classical)
        rows.append((f"best classical: {best[2]}", best[0], best[1]))
        width = max(len(r[0]) for r in rows)
        print(f"{'model':<{width}}  {'MAE':>16}  {'MAPE %':>14}")
        for label, m, p in rows:
            m = m if isinstance(m, str) else f"{m:.3f}"
            p = p if isinstance(p, str) else f"{p:.2f}"
            print(f"{label:<{width}}  {m:>16}  {p:>14}")
        print(f"(LSTM: {per_fit:.1f} s per fit; all classical: "
              + ", ".join(f"{c[2]} {c[0]:.3f}" for c in sorted(classical)) + ")")


if __name__ == "__main__":
    main()
