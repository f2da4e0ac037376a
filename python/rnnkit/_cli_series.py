"""``rnnkit forecast`` and ``rnnkit classify``: time-series commands of the ``rnnkit`` CLI."""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from typing import Any, Optional

import numpy as np

from .cli import UserError, positive_float, positive_int

_FORECAST_HELP = """\
Forecast the next H values of a series in a CSV file with an RNN (direct multi-step: one
network predicts all H steps at once from the last W values), after back-testing it.

The CSV file needs a header row. The series is --column (by default the only column besides
the date column); the date column (by default the first column, when its values are not
numbers) labels the forecast steps and sets the default season (monthly data: 12).

Back-test: the last N*H values are split into N windows of H; for each, the model is
trained on everything before it and forecasts it. MAE and MAPE are printed next to the
seasonal-naive baseline (repeat the value one season earlier) on the same windows. Then the
model is trained on the whole series and forecasts the next H values.

Exogenous columns (--exog a,b): their values at the forecast steps come from the last rows
of the file, where the series' cell is left empty (at least H such rows).
"""

_FORECAST_EPILOG = """\
example:
  rnnkit forecast airline.csv --column Passengers --horizon 12 --log --plot airline.png
"""

_CLASSIFY_HELP = """\
Train a recurrent sequence classifier on TRAIN and report its accuracy and confusion matrix
on TEST.

Files: the UCR/UEA archive's .ts format (univariate or multivariate, equal or unequal
length, class labels), or CSV/TSV in one of two layouts:
  wide: one sequence per row, label first: label,v1,v2,...  (rows may differ in length;
        a header row is allowed)
  long: a header with columns id and label (and optionally time); one row per time step;
        every other column is a feature (multivariate, any length)
Missing values (?, empty, NaN) inside a sequence are filled by linear interpolation.
"""

_CLASSIFY_EPILOG = """\
example:
  rnnkit classify JapaneseVowels_TRAIN.ts JapaneseVowels_TEST.ts --seed 0
"""


def _model_options(parser: argparse.ArgumentParser, hidden: int, epochs: int, lr: float, batch: int) -> None:
    group = parser.add_argument_group("model and training")
    group.add_argument("--cell", choices=("lstm", "gru", "rnn"), default="lstm", help="recurrent cell (default: lstm)")
    group.add_argument("--hidden", type=positive_int, default=hidden, help=f"hidden units (default: {hidden})")
    group.add_argument("--layers", type=positive_int, default=1, help="stacked recurrent layers (default: 1)")
    group.add_argument("--epochs", type=positive_int, default=epochs, help=f"training epochs (default: {epochs})")
    group.add_argument("--lr", type=positive_float, default=lr, help=f"Adam learning rate (default: {lr})")
    group.add_argument("--batch-size", type=positive_int, default=batch, help=f"mini-batch size (default: {batch})")
    group.add_argument("--lr-schedule", choices=("adaptive", "cosine"), help="change the learning rate over the "
                       "epochs: adaptive divides it by 5 where training would stop for want of improvement, "
                       "cosine anneals it to 0 over --epochs (default: constant)")
    group.add_argument("--seed", type=int, default=0, help="random seed; same seed and threads, same result (default: 0)")
    group.add_argument("--threads", type=positive_int, default=1, help="threads for the C++ core (default: 1, the "
                       "fastest for small data; more pay off with large batches and hidden sizes)")
    group.add_argument("--save", metavar="MODEL", help="also save the final model here (.npz; rnnkit.load reads it)")
    group.add_argument("-v", "--verbose", action="store_true", help="print the loss after each epoch")


def register(subparsers: Any) -> None:
    fc = subparsers.add_parser(
        "forecast", help="forecast a series in a CSV file; back-test against seasonal-naive",
        description=_FORECAST_HELP, epilog=_FORECAST_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    fc.add_argument("csv", metavar="CSV", help="CSV file with a header row")
    fc.add_argument("--column", help="the series' column (default: the only non-date column)")
    fc.add_argument("--date-column", help="column labelling the steps (default: the first column if not numeric)")
    fc.add_argument("--horizon", "-H", type=positive_int, required=True, help="steps to forecast")
    fc.add_argument("--window", "-W", type=positive_int, help="past values the model reads (default: "
                    "max(2 seasons, horizon), shortened for short series)")
    fc.add_argument("--season", type=positive_int, help="season length, e.g. 12 for monthly data (default: from the "
                    "dates, else the autocorrelation's peak; 1 = no season)")
    fc.add_argument("--log", action="store_true", help="model log(y): for positive series whose seasonal swings grow "
                    "with the level")
    fc.add_argument("--differencing", choices=("auto", "0", "1"), default="auto",
                    help="model first differences (1), levels (0), or decide by a KPSS test (auto, the default)")
    fc.add_argument("--exog", help="comma-separated exogenous columns (see above)")
    fc.add_argument("--backtest", type=int, default=3, metavar="N", help="back-test windows of H steps (default: 3; 0 "
                    "skips the back-test)")
    fc.add_argument("--plot", metavar="PNG", help="draw history, back-test and forecast to this image (needs "
                    "matplotlib: pip install 'rnnkit[plot]')")
    _model_options(fc, hidden=32, epochs=200, lr=3e-3, batch=16)
    fc.set_defaults(func=_forecast)

    cl = subparsers.add_parser(
        "classify", help="train a sequence classifier on TRAIN, report accuracy on TEST (.ts or CSV)",
        description=_CLASSIFY_HELP, epilog=_CLASSIFY_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    cl.add_argument("train", metavar="TRAIN", help="labelled training sequences (.ts, .csv or .tsv)")
    cl.add_argument("test", metavar="TEST", help="labelled test sequences, same format and features")
    cl.add_argument("--bidirectional", action="store_true", help="read each sequence in both directions")
    cl.add_argument("--patience", type=positive_int, default=30, help="stop early when the training loss has not "
                    "improved for this many epochs (default: 30)")
    cl.add_argument("--balanced", action="store_true", help="weigh each class's loss by its inverse frequency in "
                    "TRAIN (class_weight='balanced'), for imbalanced classes")
    _model_options(cl, hidden=64, epochs=150, lr=3e-3, batch=16)
    cl.set_defaults(func=_classify)


# ---------------------------------------------------------------------- shared
def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory, not a data file")


def _fit_quietly(verbose: bool, fit: Any) -> Any:
    """Run ``fit()``; the max_epochs warning is noise for a command with a fixed epoch count."""
    from .exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        if not verbose:
            warnings.simplefilter("ignore", ConvergenceWarning)
        return fit()


# ---------------------------------------------------------------------- forecast
def _parse_dates(labels: Optional[list]) -> Optional[np.ndarray]:
    """Dates as datetime64 (monthly data as months), or numbers (years), or None."""
    if not labels or len(labels) < 2:
        return None
    try:
        values = np.array(labels, dtype=np.float64)
        return values
    except ValueError:
        pass
    try:
        dates = np.array(labels, dtype="datetime64")
    except ValueError:
        return None
    if np.datetime_data(dates.dtype)[0] in ("D", "h", "m", "s") and (dates.astype("datetime64[D]") == dates).all():
        days = dates.astype("datetime64[D]")
        months = days.astype("datetime64[M]")
        if (months.astype("datetime64[D]") == days).all() and np.unique(np.diff(months).astype(int)).size == 1:
            return months  # the first of each month: monthly data
        return days
    return dates


def _regular_step(values: np.ndarray) -> Optional[Any]:
    steps = np.diff(values)
    if steps.size and (steps == steps[0]).all() and steps[0] > steps[0] * 0:
        return steps[0]
    return None


def _season_from_dates(dates: Optional[np.ndarray]) -> Optional[int]:
    if dates is None or dates.dtype.kind != "M":
        return None
    step = _regular_step(dates)
    if step is None:
        return None
    unit = np.datetime_data(dates.dtype)[0]
    count = int(step.astype(int))
    table = {("M", 1): 12, ("M", 3): 4, ("D", 1): 7, ("D", 7): 52, ("h", 1): 24}
    return table.get((unit, count))


def _future_labels(dates: Optional[np.ndarray], labels: Optional[list], h: int) -> list:
    if dates is not None:
        step = _regular_step(dates)
        if step is not None:
            future = dates[-1] + step * np.arange(1, h + 1)
            if dates.dtype.kind == "f" and all(float(x).is_integer() for x in dates):
                return [str(int(v)) for v in future]
            return [str(v) for v in future]
    last = labels[-1] if labels else None
    return [f"{last} + {k}" if last is not None else f"t+{k}" for k in range(1, h + 1)]


def _forecast(args: argparse.Namespace) -> int:
    from .datasets import read_series_csv
    from .forecast import RNNForecaster, backtest, detect_season

    _check_file(args.csv)
    exog = [c.strip() for c in args.exog.split(",") if c.strip()] if args.exog else None
    data = read_series_csv(args.csv, args.column, date_column=args.date_column, exog=exog)
    y, h = data.y, args.horizon
    if exog is not None and (data.X_future is None or data.X_future.shape[0] < h):
        have = 0 if data.X_future is None else data.X_future.shape[0]
        raise UserError(f"{args.csv}: --exog needs the future values of {', '.join(exog)} for all {h} forecast steps: "
                        f"{h} rows at the end with {data.name} empty (found {have})")
    if args.backtest < 0:
        raise UserError("--backtest must be 0 or more")
    dates = _parse_dates(data.dates)
    if args.season is not None:
        season, how = args.season, "given"
    else:
        season = _season_from_dates(dates)
        how = "from the dates"
        if season is None:
            season, how = detect_season(y[: y.size - args.backtest * h]), "from the autocorrelation"
    season = season if season and season < y.size // 2 else 1

    train_n = y.size - args.backtest * h
    room = train_n - h - 1 - 8  # leave at least 8 training windows (and one step for differencing)
    window = args.window if args.window is not None else min(max(2 * season, h), room)
    if window < 1 or train_n < window + h + 1:
        raise UserError(
            f"{args.csv}: {y.size} values are too few for horizon {h}"
            f"{f', window {args.window}' if args.window else ''} and {args.backtest} back-test window(s); "
            "use a shorter --horizon/--window or fewer --backtest windows")
    model = RNNForecaster(
        window=window, horizon=h, cell=args.cell, hidden_size=args.hidden, num_layers=args.layers,
        differencing="auto" if args.differencing == "auto" else int(args.differencing),
        seasonal_period=season if season > 1 else None, log=args.log, max_epochs=args.epochs,
        learning_rate=args.lr, lr_schedule=args.lr_schedule, batch_size=args.batch_size, random_state=args.seed,
        n_threads=args.threads, verbose=int(args.verbose))
    if args.log and (y <= 0).any():
        raise UserError(f"{args.csv}: --log needs positive values, but {data.name} has values <= 0")

    print(f"{data.name}: {y.size} values from {args.csv}; horizon {h}, window {window}, "
          f"season {season} ({how}){', log' if args.log else ''}; {args.cell.upper()}({args.hidden})")
    result = None
    if args.backtest:
        t0 = time.perf_counter()
        result = _fit_quietly(args.verbose, lambda: backtest(model, y, data.X, n_windows=args.backtest,
                                                              seasonal_period=season))
        print(f"\nback-test: the last {args.backtest} x {h} values, refitting before each window "
              f"({time.perf_counter() - t0:.1f} s)")
        print(f"  {'model':<22}{'MAE':>12}{'MAPE %':>10}")
        print(f"  {'rnnkit ' + args.cell:<22}{result.mae:>12.4g}{result.mape:>10.2f}")
        print(f"  {f'seasonal naive ({season})':<22}{result.baseline_mae:>12.4g}{result.baseline_mape:>10.2f}")
        if result.baseline_mae > 0:
            change = 100.0 * (result.mae / result.baseline_mae - 1.0)
            print(f"  MAE {'better' if change < 0 else 'worse'} than seasonal naive by {abs(change):.1f}%")

    t0 = time.perf_counter()
    _fit_quietly(args.verbose, lambda: model.fit(y, data.X))
    forecast = model.predict(X=None if exog is None else data.X_future[:h])
    labels = data.future_dates if exog is not None and data.future_dates and all(data.future_dates[:h]) else None
    labels = labels[:h] if labels else _future_labels(dates, data.dates, h)
    print(f"\nforecast (trained on all {y.size} values in {time.perf_counter() - t0:.1f} s, "
          f"differencing {model.differencing_}):")
    width = max(len(s) for s in labels)
    for label, value in zip(labels, forecast):
        print(f"  {label:<{width}}  {value:.6g}")
    if args.save:
        model.save(args.save)
        print(f"\nmodel saved to {args.save}")
    if args.plot:
        _plot(args.plot, data, dates, labels, forecast, result)
        print(f"plot written to {args.plot}")
    return 0


_PLOT_HISTORY = 240


def _plot(path: str, data: Any, dates: Optional[np.ndarray], labels: list, forecast: np.ndarray, result: Any) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("--plot needs matplotlib, which is not installed: pip install 'rnnkit[plot]' "
                        "(or pip install matplotlib)") from None
    y = data.y
    n, h = y.size, forecast.size
    if dates is not None and _regular_step(dates) is not None:
        step = _regular_step(dates)
        axis = np.concatenate([dates, dates[-1] + step * np.arange(1, h + 1)])
    else:
        axis = np.arange(n + h)
    start = max(0, n - _PLOT_HISTORY)  # a long history would squeeze the forecast into a corner
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(axis[start:n], y[start:], color="black", lw=1.2,
            label=f"{data.name} (history{f', last {n - start}' if start else ''})")
    if result is not None:
        for i, origin in enumerate(result.origins):
            span = axis[origin : origin + result.forecasts.shape[1]]
            ax.plot(span, result.forecasts[i], color="tab:blue", lw=1.5, label="back-test forecast" if i == 0 else None)
            ax.plot(span, result.baseline_forecasts[i], color="tab:gray", ls="--", lw=1,
                    label="seasonal naive" if i == 0 else None)
        ax.axvline(axis[result.origins[0]], color="tab:gray", lw=0.8, ls=":")
    ax.plot(axis[n - 1 : n + h], np.concatenate([y[-1:], forecast]), color="tab:red", lw=1.8, label="forecast")
    title = f"{data.name}: forecast of {h} steps"
    if result is not None:
        title += f" (back-test MAE {result.mae:.4g} vs seasonal naive {result.baseline_mae:.4g})"
    ax.set_title(title)
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------- classify
def _describe(name: str, X: Any, y: np.ndarray) -> str:
    lengths = [len(s) for s in X]
    width = X[0].shape[1]
    span = f"length {min(lengths)}" if min(lengths) == max(lengths) else f"length {min(lengths)}-{max(lengths)}"
    return f"{os.path.basename(name)}: {len(lengths)} sequences, {width} feature(s), {span}, {np.unique(y).size} classes"


def _label_order(labels: np.ndarray) -> list:
    """Labels sorted as numbers when they all are numbers, else as text."""
    unique = list(np.unique(labels))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique


def _confusion(truth: np.ndarray, pred: np.ndarray) -> str:
    labels = _label_order(np.concatenate([truth, pred]))
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(truth, pred):
        matrix[index[t], index[p]] += 1
    names = [str(label) for label in labels]
    width = max(max(len(s) for s in names), len(str(matrix.max())), 3)
    lines = ["confusion matrix (rows: true class, columns: predicted):",
             " " * (width + 2) + " ".join(f"{s:>{width}}" for s in names)]
    for name, row in zip(names, matrix):
        lines.append(f"{name:>{width}}  " + " ".join(f"{v:>{width}}" for v in row))
    return "\n".join(lines)


def _classify(args: argparse.Namespace) -> int:
    from .datasets import load_sequences
    from .estimators import RNNClassifier

    for path in (args.train, args.test):
        _check_file(path)
    X_train, y_train = load_sequences(args.train)
    X_test, y_test = load_sequences(args.test)
    if X_train[0].shape[1] != X_test[0].shape[1]:
        raise UserError(f"{args.test}: sequences have {X_test[0].shape[1]} feature(s), but those in {args.train} "
                        f"have {X_train[0].shape[1]}")
    if np.unique(y_train).size < 2:
        raise UserError(f"{args.train}: a classifier needs at least 2 classes, found only {np.unique(y_train)[0]!r}")
    print(_describe(args.train, X_train, y_train))
    print(_describe(args.test, X_test, y_test))
    unseen = np.setdiff1d(np.unique(y_test), np.unique(y_train))
    if unseen.size:
        print(f"note: test labels never seen in training (always counted wrong): {', '.join(map(str, unseen))}")
    clf = RNNClassifier(cell=args.cell, hidden_size=args.hidden, num_layers=args.layers,
                        bidirectional=args.bidirectional, max_epochs=args.epochs, learning_rate=args.lr,
                        lr_schedule=args.lr_schedule, n_iter_no_change=args.patience,
                        class_weight="balanced" if args.balanced else None, batch_size=args.batch_size, random_state=args.seed, n_threads=args.threads,
                        verbose=int(args.verbose))
    t0 = time.perf_counter()
    _fit_quietly(args.verbose, lambda: clf.fit(X_train, y_train))
    elapsed = time.perf_counter() - t0
    pred = clf.predict(X_test)
    correct = int(np.sum(pred == y_test))
    print(f"{args.cell.upper()}({args.hidden}{', bidirectional' if args.bidirectional else ''}): "
          f"{clf.n_iter_} epochs in {elapsed:.1f} s, final training loss {clf.loss_curve_[-1]:.4f}")
    print(f"\ntest accuracy: {correct / len(y_test):.4f} ({correct}/{len(y_test)})\n")
    print(_confusion(y_test, pred))
    if args.save:
        clf.save(args.save)
        print(f"\nmodel saved to {args.save}")
    sys.stdout.flush()
    return 0
