"""Ctrl-C during ``fit``: a KeyboardInterrupt at a random batch, at a random point of the batch
(before the step, between gradients and update, after the update, during validation), leaves a
usable model: ``fit`` returns it with a warning, its weights are finite, it predicts, it saves
and loads, and it trains on. (test_estimators_api.py checks fixed points and the kept epochs.)
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import rnnkit
import rnnkit._fitting as fitting_mod
import rnnkit.optim

pytestmark = pytest.mark.filterwarnings("ignore::rnnkit.exceptions.ConvergenceWarning")

POINTS = ("batch_start", "after_gradients", "after_update", "validation")
N_CASES = 24


class _Interrupter:
    """Counts calls of one patched function and raises KeyboardInterrupt at call ``at``."""

    def __init__(self, at: int, after: bool = False) -> None:
        self.at, self.after, self.calls = at, after, 0

    def wrap(self, original):
        def patched(*args, **kwargs):
            self.calls += 1
            if self.calls == self.at and not self.after:
                raise KeyboardInterrupt
            result = original(*args, **kwargs)
            if self.calls == self.at and self.after:
                raise KeyboardInterrupt
            return result

        return patched


def _case(seed: int):
    rng = np.random.default_rng(seed)
    classifier = bool(rng.integers(2))
    output = ("last", "sequence")[int(rng.integers(2))]
    point = POINTS[int(rng.integers(len(POINTS)))]
    n, T, D = 40, int(rng.integers(2, 8)), int(rng.integers(1, 4))
    X = rng.standard_normal((n, T, D))
    if classifier:
        y = (X[..., 0] > 0).astype(int) if output == "sequence" else (X[:, :, 0].sum(axis=1) > 0).astype(int)
    else:
        y = X[..., 0].cumsum(axis=1) if output == "sequence" else X[:, :, 0].sum(axis=1)
    kw = dict(cell=("lstm", "gru", "rnn")[int(rng.integers(3))], hidden_size=6, output=output, max_epochs=6,
              batch_size=8, optimizer=("adam", "sgd", "rmsprop", "adamw")[int(rng.integers(4))],
              early_stopping=point == "validation" or bool(rng.integers(2)), n_iter_no_change=50,
              random_state=seed, n_threads=1, dtype=("float32", "float64")[int(rng.integers(2))])
    est = (rnnkit.RNNClassifier if classifier else rnnkit.RNNRegressor)(**kw)
    batches_per_epoch = -(-(n - (4 if kw["early_stopping"] else 0)) // 8)
    total = kw["max_epochs"] if point == "validation" else kw["max_epochs"] * batches_per_epoch
    return est, X, y, point, int(rng.integers(1, total + 1))


@pytest.mark.parametrize("seed", range(N_CASES))
def test_interrupt_at_a_random_batch_leaves_a_usable_model(monkeypatch, tmp_path, seed):
    est, X, y, point, at = _case(seed)
    interrupter = _Interrupter(at, after=point == "after_update")
    if point == "batch_start":
        monkeypatch.setattr(fitting_mod._BatchStep, "__call__", interrupter.wrap(fitting_mod._BatchStep.__call__))
    elif point == "after_gradients":
        monkeypatch.setattr(fitting_mod, "clip_grad_norm", interrupter.wrap(fitting_mod.clip_grad_norm))
    elif point == "after_update":
        monkeypatch.setattr(rnnkit.optim.Optimizer, "step", interrupter.wrap(rnnkit.optim.Optimizer.step))
    else:
        monkeypatch.setattr(type(est), "_validation_score", interrupter.wrap(type(est)._validation_score))

    with pytest.warns(UserWarning, match="interrupted"):
        returned = est.fit(X, y)
    assert returned is est and interrupter.calls == at
    monkeypatch.undo()

    assert np.isfinite(est._params_flat).all()
    assert est.n_iter_ == len(est.loss_curve_) and np.isfinite(est.loss_curve_).all()
    pred = est.predict(X)
    assert np.shape(pred) == np.shape(y)
    if isinstance(est, rnnkit.RNNClassifier):
        assert set(np.unique(pred)) <= set(est.classes_)
    else:
        assert np.isfinite(pred).all()

    est.save(tmp_path / "m.npz")
    loaded = rnnkit.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(loaded.predict(X), pred)

    n_iter = est.n_iter_
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no further interrupt warning
        est.partial_fit(X, y)
    assert est.n_iter_ == n_iter + 1 and np.isfinite(est._params_flat).all()
