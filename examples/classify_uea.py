"""Sequence classification on UEA archive problems with rnnkit.RNNClassifier.

Needs the optional package that carries the data (not an rnnkit dependency):

    pip install sktime            # ships JapaneseVowels and BasicMotions as .ts files
    pip install sktime numba      # also for --baselines (1-NN DTW and MiniRocket, measured here)

The .ts files are read with rnnkit's own reader (rnnkit.datasets.load_ts), with the
train/test splits as shipped. JapaneseVowels: 9 speakers, 12 LPC coefficients, lengths
7-29 (fed as variable-length sequences); BasicMotions: 4 activities, 6 accelerometer and
gyroscope channels, length 100. The LSTM uses the defaults of ``rnnkit classify``.

    python examples/classify_uea.py                     # both problems, 5 seeds
    python examples/classify_uea.py --bidirectional
    python examples/classify_uea.py --baselines --seeds 1
    python examples/classify_uea.py --paths             # the files, for the rnnkit classify command
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

from rnnkit import RNNClassifier
from rnnkit.datasets import load_ts


def ts_paths(name: str) -> tuple:
    import sktime.datasets

    folder = os.path.join(os.path.dirname(sktime.datasets.__file__), "data", name)
    return os.path.join(folder, f"{name}_TRAIN.ts"), os.path.join(folder, f"{name}_TEST.ts")


def padded(X) -> np.ndarray:
    """(n, D, T) for sktime: pad shorter sequences by repeating their last step."""
    length = max(len(s) for s in X)
    return np.stack([np.pad(s, ((0, length - len(s)), (0, 0)), mode="edge").T for s in X])


def baselines(X_train, y_train, X_test, y_test) -> dict:
    from sktime.classification.distance_based import KNeighborsTimeSeriesClassifier
    from sktime.classification.kernel_based import RocketClassifier

    A, B = padded(X_train), padded(X_test)
    out = {}
    for label, model in (("1-NN DTW (sktime)", KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw")),
                         ("MiniRocket (sktime)", RocketClassifier(rocket_transform="minirocket", random_state=0))):
        t0 = time.perf_counter()
        model.fit(A, y_train)
        out[label] = (float(np.mean(model.predict(B) == y_test)), time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["JapaneseVowels", "BasicMotions"])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1; seed 0 is what the command gives")
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--lr-schedule", choices=("adaptive", "cosine"), default=None)
    parser.add_argument("--baselines", action="store_true", help="also 1-NN DTW and MiniRocket from sktime")
    parser.add_argument("--paths", action="store_true", help="print the rnnkit classify command for each and exit")
    args = parser.parse_args()

    for name in args.datasets:
        train, test = ts_paths(name)
        if args.paths:
            print(f"rnnkit classify {train} {test}{' --bidirectional' if args.bidirectional else ''}")
            continue
        X_train, y_train = load_ts(train)
        X_test, y_test = load_ts(test)
        accs, seconds = [], []
        for seed in range(args.seeds):
            clf = RNNClassifier(hidden_size=args.hidden, bidirectional=args.bidirectional, max_epochs=args.epochs,
                                learning_rate=3e-3, lr_schedule=args.lr_schedule, batch_size=16, n_iter_no_change=30,
                                random_state=seed, n_threads=1)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                clf.fit(X_train, y_train)
            seconds.append(time.perf_counter() - t0)
            accs.append(clf.score(X_test, y_test))
        cell = f"{'Bi' if args.bidirectional else ''}LSTM({args.hidden})"
        print(f"{name}: {len(y_train)} train / {len(y_test)} test, {np.unique(y_train).size} classes")
        print(f"  rnnkit {cell}: seed 0 {accs[0]:.4f}"
              + (f"; mean ± sd over {args.seeds} seeds {np.mean(accs):.4f} ± {np.std(accs):.4f} "
                 f"(min {np.min(accs):.4f}, max {np.max(accs):.4f})" if args.seeds > 1 else "")
              + f"; {np.mean(seconds):.1f} s per fit")
        if args.baselines:
            for label, (acc, sec) in baselines(X_train, y_train, X_test, y_test).items():
                print(f"  {label}: {acc:.4f} ({sec:.1f} s)")


if __name__ == "__main__":
    main()
