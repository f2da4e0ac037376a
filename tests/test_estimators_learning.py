"""The estimators really learn sequence structure.

(a) An order-dependent classification task that a bag-of-features model cannot solve.
(b) A per-step regression task (delayed copy) with output="sequence".

Run with ``pytest -s`` to see the accuracy / error reached and the time per epoch.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from rnnkit import RNNClassifier, RNNRegressor

pytestmark = pytest.mark.filterwarnings("ignore::rnnkit.exceptions.ConvergenceWarning")


def order_task(n, T=32, n_symbols=8, seed=0):
    """One-hot symbol sequences; symbol 0 (A) and symbol 1 (B) each occur exactly once at random
    positions among random distractor symbols. Label: 1 if A comes before B.

    Every sequence holds the same multiset of "A" and "B", so any function of the time-averaged
    features carries no information about the label.
    """
    rng = np.random.default_rng(seed)
    sym = rng.integers(2, n_symbols, size=(n, T))
    pos = np.array([rng.choice(T, size=2, replace=False) for _ in range(n)])
    rows = np.arange(n)
    sym[rows, pos[:, 0]] = 0
    sym[rows, pos[:, 1]] = 1
    X = np.eye(n_symbols)[sym]  # (n, T, n_symbols)
    y = (pos[:, 0] < pos[:, 1]).astype(int)
    return X, y


def test_order_dependent_classification():
    pytest.importorskip("sklearn", reason="scikit-learn is not installed: the bag-of-features baseline "
                        "uses LogisticRegression (pip install scikit-learn)")
    from sklearn.linear_model import LogisticRegression

    X_train, y_train = order_task(1600, seed=0)
    X_test, y_test = order_task(800, seed=1)
    assert 0.4 < y_train.mean() < 0.6

    baseline = LogisticRegression(max_iter=1000).fit(X_train.mean(axis=1), y_train)
    baseline_acc = baseline.score(X_test.mean(axis=1), y_test)

    clf = RNNClassifier(cell="lstm", hidden_size=32, learning_rate=0.01, batch_size=32, max_epochs=25,
                        early_stopping=True, validation_fraction=0.1, n_iter_no_change=5, random_state=0,
                        n_threads=1)
    t0 = time.perf_counter()
    clf.fit(X_train, y_train)
    elapsed = time.perf_counter() - t0
    acc = clf.score(X_test, y_test)
    print(f"\n[order task] T=32, 1600 train / 800 test: LSTM(32) test accuracy {acc:.4f} after {clf.n_iter_} epochs "
          f"({elapsed / clf.n_iter_:.3f} s/epoch, {elapsed:.1f} s); bag-of-features LogisticRegression {baseline_acc:.4f}")
    assert baseline_acc < 0.7, "the task leaks order-free information"
    assert acc >= 0.95


def test_delayed_copy_regression():
    delay, T = 4, 30
    rng = np.random.default_rng(0)

    def make(n):
        X = rng.standard_normal((n, T, 1))
        y = np.zeros((n, T))
        y[:, delay:] = X[:, :-delay, 0]
        return X, y

    X_train, y_train = make(1200)
    X_test, y_test = make(400)
    reg = RNNRegressor(cell="lstm", hidden_size=32, output="sequence", learning_rate=0.01, batch_size=32,
                       max_epochs=30, random_state=0, n_threads=1)
    t0 = time.perf_counter()
    reg.fit(X_train, y_train)
    elapsed = time.perf_counter() - t0
    r2 = reg.score(X_test, y_test)
    pred = reg.predict(X_test)
    assert pred.shape == y_test.shape
    mse = float(np.mean((pred[:, delay:] - y_test[:, delay:]) ** 2))  # targets have variance 1
    print(f"\n[delayed copy] delay {delay}, T={T}, 1200 train / 400 test: LSTM(32) test R^2 {r2:.4f}, "
          f"MSE {mse:.4f} after {reg.n_iter_} epochs ({elapsed / reg.n_iter_:.3f} s/epoch, {elapsed:.1f} s)")
    assert r2 > 0.95
    assert mse < 0.05
