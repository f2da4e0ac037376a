"""Behaviour of RNNClassifier / RNNRegressor: input forms, targets, training controls, errors,
persistence and interplay with scikit-learn utilities.

Everything here is small (a few dozen sequences, hidden sizes <= 16, a few epochs) so the
module stays fast; the "does it really learn" tests live in test_estimators_learning.py.
"""
from __future__ import annotations

import json
import pickle
import warnings

import numpy as np
import pytest

import rnnkit
import rnnkit._fitting as fitting_mod
from rnnkit._backend import core as core_mod
from rnnkit import RNNClassifier, RNNRegressor
from rnnkit.exceptions import ConvergenceWarning, DataConversionWarning, NotFittedError

from conftest import TORCH_MISSING_REASON

SKLEARN_MISSING_REASON = "scikit-learn is not installed (pip install scikit-learn): this test uses its utilities"

FAST = dict(hidden_size=8, max_epochs=3, random_state=0, n_threads=1, batch_size=8)


# short max_epochs always end with a ConvergenceWarning; it is tested on its own below
pytestmark = pytest.mark.filterwarnings("ignore::rnnkit.exceptions.ConvergenceWarning")


# ----------------------------------------------------------------------------- data
def cls_data(n=48, T=7, D=3, n_classes=2, seed=0, labels=None):
    """3-D X with a label that depends on the first feature's sum over time."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, D))
    s = X[:, :, 0].sum(axis=1)
    edges = np.quantile(s, np.linspace(0, 1, n_classes + 1)[1:-1])
    y = np.searchsorted(edges, s)
    if labels is not None:
        y = np.asarray(labels, dtype=object)[y]
    return X, y


def reg_data(n=48, T=7, D=3, n_outputs=None, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, D))
    y = X[:, :, 0].sum(axis=1) + 0.5 * X[:, -1, 1]
    if n_outputs is not None:
        y = np.stack([y * (k + 1) + k for k in range(n_outputs)], axis=1)
    return X, y


def ragged(n=20, D=2, low=2, high=12, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(low, high + 1, size=n)
    lengths[0], lengths[1] = low, high  # both extremes present
    return [rng.standard_normal((int(t), D)) for t in lengths]


def all_params(est):
    """Every trained parameter, through the public inspection attributes."""
    head = est.head_
    return np.concatenate([est.rnn_.flat_params.ravel(), head["weight"].ravel(), head["bias"].ravel()])


# ----------------------------------------------------------------------------- input forms
def test_3d_input_shapes_and_attributes():
    X, y = cls_data(D=3)
    clf = RNNClassifier(**FAST).fit(X, y)
    assert clf.n_features_in_ == 3
    assert clf.predict(X).shape == (len(X),)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X))
    assert len(clf.loss_curve_) == clf.n_iter_ == 3
    assert clf.t_ == 3 * len(X)
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ == [] and clf.best_validation_score_ is None
    assert clf.stopped_early_ is False
    assert 0.0 <= clf.score(X, y) <= 1.0


def test_2d_input_is_univariate_sequences():
    X, y = cls_data(D=1)
    X2 = X[:, :, 0]
    clf = RNNClassifier(**FAST).fit(X2, y)
    assert clf.n_features_in_ == X2.shape[1]  # sklearn's "features" are the columns
    p2 = clf.predict_proba(X2)
    # (n, T) and (n, T, 1) are the same data
    np.testing.assert_array_equal(p2, clf.predict_proba(X2[:, :, None]))
    clf3 = RNNClassifier(**FAST).fit(X2[:, :, None], y)
    assert clf3.n_features_in_ == 1
    np.testing.assert_array_equal(clf3.predict_proba(X2[:, :, None]), p2)
    with pytest.raises(ValueError, match="features"):
        clf.predict(np.zeros((3, X2.shape[1] + 2)))


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "rnn_relu"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_padding_never_changes_a_result_classifier(cell, bidirectional, dtype):
    seqs = ragged(n=20, D=2)
    y = np.array([int(s[:, 0].sum() > 0) for s in seqs])
    clf = RNNClassifier(cell=cell, bidirectional=bidirectional, num_layers=2, dtype=dtype, **FAST).fit(seqs, y)
    batch = clf.predict_proba(seqs)
    assert batch.shape == (len(seqs), 2)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    for i, s in enumerate(seqs):
        alone = clf.predict_proba([s])
        np.testing.assert_allclose(batch[i], alone[0], rtol=rtol, atol=rtol * 1e-2,
                                   err_msg=f"sequence {i} (length {len(s)})")
    # the same sequences in a different company (longer neighbours => more padding)
    others = seqs + [np.random.default_rng(9).standard_normal((40, 2)) * 50]
    np.testing.assert_allclose(clf.predict_proba(others)[:-1], batch, rtol=rtol, atol=rtol * 1e-2)
    labels = clf.predict(seqs)
    np.testing.assert_array_equal(labels, clf.classes_[batch.argmax(axis=1)])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_never_changes_a_result_regressor_sequence(bidirectional):
    seqs = ragged(n=16, D=3, seed=3)
    y = [np.cumsum(s[:, 0]) for s in seqs]
    reg = RNNRegressor(output="sequence", bidirectional=bidirectional, dtype="float64", **FAST).fit(seqs, y)
    batch = reg.predict(seqs)
    assert isinstance(batch, list) and len(batch) == len(seqs)
    for i, s in enumerate(seqs):
        assert batch[i].shape == (len(s),)
        alone = reg.predict([s])[0]
        assert alone.shape == (len(s),)
        np.testing.assert_allclose(batch[i], alone, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls", [RNNClassifier, RNNRegressor])
def test_sequence_output_list_input_gives_list(cls):
    """predict's docstring: with output="sequence", list input gives a list -- also when the
    sequences in the list happen to share one length (a single sequence, a CV fold, ...)."""
    seqs = ragged(n=12, D=2, seed=3)
    y = [(s[:, 0] > 0).astype(int) for s in seqs] if cls is RNNClassifier else [np.cumsum(s[:, 0]) for s in seqs]
    est = cls(output="sequence", **FAST).fit(seqs, y)
    assert isinstance(est.predict(seqs), list)
    same_length = [seqs[0], seqs[0] + 1.0]
    for X in ([seqs[1]], same_length):
        pred = est.predict(X)
        assert isinstance(pred, list), f"list of {len(X)} equal-length sequences gave {type(pred).__name__}"
        assert [p.shape for p in pred] == [(len(s),) for s in X]


def test_equal_length_list_equals_3d_array():
    X, y = cls_data(D=2)
    clf = RNNClassifier(**FAST).fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(list(X)), clf.predict_proba(X))
    # 1-D sequences in a list are univariate
    X1, y1 = cls_data(D=1)
    clf1 = RNNClassifier(**FAST).fit(X1, y1)
    np.testing.assert_array_equal(clf1.predict_proba([s[:, 0] for s in X1]), clf1.predict_proba(X1))


def test_ragged_list_with_mixed_feature_counts_rejected():
    seqs = ragged(n=6, D=2)
    seqs[3] = np.zeros((4, 3))
    with pytest.raises(ValueError, match="features"):
        RNNClassifier(**FAST).fit(seqs, [0, 1] * 3)


def test_ragged_predict_with_wrong_feature_count():
    seqs = ragged(n=10, D=2)
    reg = RNNRegressor(**FAST).fit(seqs, np.arange(10.0))
    with pytest.raises(ValueError, match="features"):
        reg.predict([np.zeros((5, 3))])
    # sequences of unseen length are fine
    assert reg.predict([np.zeros((30, 2))]).shape == (1,)


# ----------------------------------------------------------------------------- targets
def test_string_labels_multiclass():
    X, y = cls_data(n=60, n_classes=3, labels=["dog", "cat", "emu"])
    clf = RNNClassifier(**FAST).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, ["cat", "dog", "emu"])
    pred = clf.predict(X)
    assert pred.shape == (60,) and set(pred) <= {"cat", "dog", "emu"}
    proba = clf.predict_proba(X)
    assert proba.shape == (60, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(pred, clf.classes_[proba.argmax(axis=1)])
    # numpy unicode labels too
    clf_u = RNNClassifier(**FAST).fit(X, y.astype(str))
    np.testing.assert_array_equal(clf_u.predict(X), pred)


@pytest.mark.parametrize("n_classes", [2, 5])
def test_binary_and_multiclass(n_classes):
    X, y = cls_data(n=60, n_classes=n_classes)
    y = y * 10 - 3  # non-contiguous integer labels
    clf = RNNClassifier(**FAST).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, np.arange(n_classes) * 10 - 3)
    assert clf.predict_proba(X).shape == (60, n_classes)
    assert set(clf.predict(X)) <= set(clf.classes_)
    assert clf.head_["weight"].shape == (n_classes, 8) and clf.head_["bias"].shape == (n_classes,)


def test_column_vector_y_warns_and_is_raveled():
    X, y = cls_data()
    with pytest.warns(DataConversionWarning):
        clf = RNNClassifier(**FAST).fit(X, y[:, None])
    np.testing.assert_array_equal(clf.predict(X), RNNClassifier(**FAST).fit(X, y).predict(X))


def test_multi_output_regressor():
    X, Y = reg_data(n_outputs=3)
    reg = RNNRegressor(**FAST).fit(X, Y)
    pred = reg.predict(X)
    assert pred.shape == (len(X), 3)
    assert reg.head_["weight"].shape == (3, 8)
    assert np.isfinite(reg.score(X, Y))
    # targets are standardised inside: a positive affine change of a target changes its
    # predictions the same way (up to float32 rounding), whatever its scale
    a, b = np.array([1.0, 1e4, 1e-3]), np.array([0.0, 5e5, 7.0])
    big = RNNRegressor(**FAST).fit(X, Y * a + b).predict(X)
    expected = reg.predict(X) * a + b
    for k in range(3):
        np.testing.assert_allclose(big[:, k], expected[:, k], rtol=0, atol=1e-3 * a[k] * Y[:, k].std(),
                                   err_msg=f"output {k}")
    # 1-D y -> 1-D predictions; (n, 1) y -> (n, 1) predictions
    assert RNNRegressor(**FAST).fit(X, Y[:, 0]).predict(X).shape == (len(X),)
    assert RNNRegressor(**FAST).fit(X, Y[:, :1]).predict(X).shape == (len(X), 1)
    with pytest.raises(ValueError):
        reg.partial_fit(X, Y[:, :2])  # wrong number of outputs


def test_regressor_y_errors():
    X, y = reg_data()
    bad = y.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        RNNRegressor(**FAST).fit(X, bad)
    bad[3] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        RNNRegressor(**FAST).fit(X, bad)
    with pytest.raises(ValueError):
        RNNRegressor(**FAST).fit(X, np.array(["a"] * len(X), dtype=object))
    with pytest.raises(ValueError):
        RNNRegressor(**FAST).fit(X, np.zeros((len(X), 2, 2)))


# ----------------------------------------------------------------------------- output="sequence"
def _tagging_data(n=30, T=9, D=2, seed=0, ragged_lengths=False):
    rng = np.random.default_rng(seed)
    if ragged_lengths:
        X = ragged(n=n, D=D, low=3, high=T, seed=seed)
        y = [np.where(s[:, 0] > 0, "pos", "neg") for s in X]
    else:
        X = rng.standard_normal((n, T, D))
        y = np.where(X[:, :, 0] > 0, "pos", "neg")
    return X, y


def test_sequence_output_classifier_array():
    X, y = _tagging_data()
    clf = RNNClassifier(output="sequence", **FAST).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, ["neg", "pos"])
    pred = clf.predict(X)
    assert pred.shape == y.shape
    proba = clf.predict_proba(X)
    assert proba.shape == y.shape + (2,)
    np.testing.assert_allclose(proba.sum(axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(pred, clf.classes_[proba.argmax(axis=-1)])
    assert clf.score(X, y) == pytest.approx(np.mean(pred == y))
    with pytest.raises(ValueError):
        RNNClassifier(output="sequence", **FAST).fit(X, y[:, :-1])  # one label short per sequence
    with pytest.raises(ValueError):
        RNNClassifier(output="sequence", **FAST).fit(X, y[:, 0])  # one label per sequence


def test_sequence_output_classifier_ragged():
    X, y = _tagging_data(ragged_lengths=True)
    clf = RNNClassifier(output="sequence", **FAST).fit(X, y)
    pred = clf.predict(X)
    proba = clf.predict_proba(X)
    assert isinstance(pred, list) and isinstance(proba, list)
    for s, p, pr in zip(X, pred, proba):
        assert p.shape == (len(s),) and pr.shape == (len(s), 2)
    acc = np.mean(np.concatenate([p == t for p, t in zip(pred, y)]))
    assert clf.score(X, y) == pytest.approx(acc)
    bad = list(y)
    bad[2] = bad[2][:-1]
    with pytest.raises(ValueError):
        RNNClassifier(output="sequence", **FAST).fit(X, bad)
    with pytest.raises(ValueError):
        RNNClassifier(output="sequence", **FAST).fit(X, y[:-1])


def test_sequence_output_regressor_array_and_multioutput():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 8, 2))
    y = np.cumsum(X[:, :, 0], axis=1)
    reg = RNNRegressor(output="sequence", **FAST).fit(X, y)
    assert reg.predict(X).shape == (30, 8)
    assert np.isfinite(reg.score(X, y))
    Y = np.stack([y, -2 * y + 1], axis=-1)
    reg2 = RNNRegressor(output="sequence", **FAST).fit(X, Y)
    assert reg2.predict(X).shape == (30, 8, 2)
    assert reg2.head_["weight"].shape[0] == 2


def test_ragged_per_step_targets_of_mixed_dtypes():
    """The per-step targets of all sequences are combined without truncation: a first sequence of
    short strings (or of integers) must not cut the labels (values) of later sequences."""
    rng = np.random.default_rng(0)
    X = [rng.standard_normal((t, 2)) for t in (3, 5, 4, 6)]
    y = [np.array(["no"] * 3), np.array(["yes", "no", "yes", "no", "yes"]), np.array(["no", "yes", "no", "no"]),
         np.array(["yes"] * 6)]
    clf = RNNClassifier(output="sequence", **FAST).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, ["no", "yes"])
    assert clf.score(X, y) == pytest.approx(np.mean(np.concatenate([p == t for p, t in zip(clf.predict(X), y)])))
    yr = [np.array([0, 1, 2]), np.array([0.5, 1.5, 2.5, 3.5, 4.5]), np.array([0.25] * 4), np.array([9.75] * 6)]
    reg = RNNRegressor(output="sequence", **FAST).fit(X, yr)
    # a constant prediction at the targets' mean is what an R^2 of 0 means; check the mean was right
    flat = np.concatenate(yr)
    pred = np.concatenate(reg.predict(X))
    r2 = 1 - ((flat - pred) ** 2).sum() / ((flat - flat.mean()) ** 2).sum()
    assert reg.score(X, yr) == pytest.approx(r2, rel=1e-6, abs=1e-9)


def test_sequence_output_regressor_ragged():
    X = ragged(n=14, D=2, seed=5)
    y = [np.cumsum(s[:, 1]) for s in X]
    reg = RNNRegressor(output="sequence", **FAST).fit(X, y)
    pred = reg.predict(X)
    assert [p.shape for p in pred] == [t.shape for t in y]
    truth = np.concatenate(y)
    flat = np.concatenate(pred)
    r2 = 1 - ((truth - flat) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    assert reg.score(X, y) == pytest.approx(r2, rel=1e-6, abs=1e-9)


# ----------------------------------------------------------------------------- partial_fit / warm_start
def test_partial_fit_classifier():
    X, y = cls_data(n=40, n_classes=3)
    clf = RNNClassifier(**FAST)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y)
    # the first batch need not show every class
    first = y != 2
    clf.partial_fit(X[first], y[first], classes=[0, 1, 2])
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 1 and clf.t_ == first.sum()
    clf.partial_fit(X, y)
    assert clf.n_iter_ == 2 and len(clf.loss_curve_) == 2 and clf.t_ == first.sum() + len(X)
    clf.partial_fit(X, y, classes=[2, 1, 0])  # same set, any order
    assert clf.n_iter_ == 3
    assert clf.predict_proba(X).shape == (40, 3)
    with pytest.raises(ValueError):
        clf.partial_fit(X, np.where(y == 2, 7, y))  # unseen label
    with pytest.raises(ValueError):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError):
        clf.partial_fit(X[:, :, :2], y)  # feature count changed


def test_failed_first_partial_fit_leaves_no_classes_behind():
    X, y = cls_data(n=20)
    clf = RNNClassifier(**FAST)
    with pytest.raises(ValueError):
        clf.partial_fit(X[:, :, :, None], y, classes=[0, 1, 2])  # 4-D X: refused
    with pytest.raises(ValueError):
        RNNClassifier(**{**FAST, "hidden_size": 0}).partial_fit(X, y, classes=[0, 1, 2])
    clf.fit(X, y)  # a later fit takes its classes from its own y
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    assert clf.predict_proba(X).shape == (20, 2)


def test_partial_fit_regressor_and_after_fit():
    X, y = reg_data()
    reg = RNNRegressor(**FAST)
    reg.partial_fit(X, y)
    reg.partial_fit(X, y)
    assert reg.n_iter_ == 2 and len(reg.loss_curve_) == 2
    reg.fit(X, y)  # a plain fit starts over
    assert reg.n_iter_ == 3 and len(reg.loss_curve_) == 3
    reg.partial_fit(X, y)  # ... and partial_fit continues it
    assert reg.n_iter_ == 4 and len(reg.loss_curve_) == 4


def test_partial_fit_equals_fit_epochs():
    """k partial_fit calls walk the same path as fit(max_epochs=k) (same seed, optimizer state kept)."""
    X, y = reg_data()
    a = RNNRegressor(**{**FAST, "max_epochs": 4}).fit(X, y)
    b = RNNRegressor(**FAST)
    for _ in range(4):
        b.partial_fit(X, y)
    assert b.loss_curve_ == a.loss_curve_
    np.testing.assert_array_equal(b.predict(X), a.predict(X))


def test_warm_start_continues():
    X, y = cls_data()
    clf = RNNClassifier(**FAST).fit(X, y)
    first = list(clf.loss_curve_)
    clf.set_params(warm_start=True)
    clf.fit(X, y)
    assert clf.n_iter_ == 6 and len(clf.loss_curve_) == 6
    assert clf.loss_curve_[:3] == first
    # continuing is the same as having trained 6 epochs in one go
    long = RNNClassifier(**{**FAST, "max_epochs": 6}).fit(X, y)
    assert clf.loss_curve_ == long.loss_curve_
    np.testing.assert_array_equal(clf.predict_proba(X), long.predict_proba(X))
    # without warm_start a refit starts over and reproduces the first fit
    clf.set_params(warm_start=False)
    clf.fit(X, y)
    assert clf.loss_curve_ == first


def test_fit_is_idempotent_and_refit_resets():
    X, y = cls_data()
    clf = RNNClassifier(**FAST)
    p1 = clf.fit(X, y).predict_proba(X)
    X2, y2 = cls_data(n_classes=3, D=4, seed=1)
    clf.fit(X2, y2)  # different shapes/classes: a fresh model
    assert clf.n_features_in_ == 4 and len(clf.classes_) == 3
    p3 = clf.fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(p1, p3)


# ----------------------------------------------------------------------------- early stopping
def _record_validation(monkeypatch, cls, probe):
    """Wrap _validation_score to remember (score, predictions on probe) after every epoch."""
    records = []
    original = cls._validation_score
    method = "predict_proba" if cls is RNNClassifier else "predict"

    def wrapped(self, *args, **kwargs):
        score = original(self, *args, **kwargs)
        records.append((score, np.array(getattr(self, method)(probe), copy=True)))
        return score

    monkeypatch.setattr(cls, "_validation_score", wrapped)
    return records


@pytest.mark.parametrize("cls", [RNNClassifier, RNNRegressor])
def test_early_stopping_restores_best_weights(monkeypatch, cls):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((80, 6, 2))
    signal = X[:, :, 0].sum(axis=1)
    if cls is RNNClassifier:
        y = (signal + 1.5 * rng.standard_normal(80) > 0).astype(int)  # noisy: validation accuracy wobbles
    else:
        y = signal + 2.0 * rng.standard_normal(80)
    probe = rng.standard_normal((10, 6, 2))
    records = _record_validation(monkeypatch, cls, probe)
    est = cls(hidden_size=16, learning_rate=0.05, max_epochs=60, early_stopping=True, validation_fraction=0.25,
              n_iter_no_change=4, tol=0.0, batch_size=8, random_state=0, n_threads=1).fit(X, y)
    scores = [s for s, _ in records]
    assert est.validation_scores_ == scores
    assert len(scores) == est.n_iter_ == len(est.loss_curve_)
    assert est.stopped_early_
    assert est.n_iter_ < 60
    best = int(np.argmax(scores))
    assert est.best_validation_score_ == scores[best]
    assert best < len(scores) - 1, "stopped on the best epoch: the check below would be vacuous"
    # predictions of the returned model are those of the best epoch, not of the last one
    final = est.predict_proba(probe) if cls is RNNClassifier else est.predict(probe)
    assert not np.array_equal(records[-1][1], records[best][1])
    np.testing.assert_array_equal(final, records[best][1])
    assert est.best_loss_ is None


def test_early_stopping_needs_two_samples():
    X, y = reg_data(n=1)
    with pytest.raises(ValueError):
        RNNRegressor(early_stopping=True, **FAST).fit(X, y)


def test_no_early_stopping_stops_on_plateau():
    X, y = reg_data()
    # with a huge tol no epoch counts as an improvement: training stops after n_iter_no_change + 1 epochs
    reg = RNNRegressor(**{**FAST, "max_epochs": 50}, tol=1e9, n_iter_no_change=2).fit(X, y)
    assert reg.stopped_early_ and reg.n_iter_ < 50


def test_convergence_warning_when_max_epochs_reached():
    X, y = reg_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        with pytest.raises(ConvergenceWarning):
            RNNRegressor(**FAST).fit(X, y)


# ----------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("cls", [RNNClassifier, RNNRegressor])
def test_same_seed_bit_identical(cls, n_threads):
    X, y = cls_data(n=64) if cls is RNNClassifier else reg_data(n=64)
    kw = {**FAST, "n_threads": n_threads, "dropout": 0.3, "num_layers": 2, "batch_size": 16}
    a = cls(**kw).fit(X, y)
    b = cls(**kw).fit(X, y)
    assert a.loss_curve_ == b.loss_curve_
    np.testing.assert_array_equal(all_params(a), all_params(b))
    pa = a.predict_proba(X) if cls is RNNClassifier else a.predict(X)
    pb = b.predict_proba(X) if cls is RNNClassifier else b.predict(X)
    np.testing.assert_array_equal(pa, pb)


def test_different_seed_differs():
    X, y = cls_data()
    a = RNNClassifier(**FAST).fit(X, y)
    b = RNNClassifier(**{**FAST, "random_state": 1}).fit(X, y)
    assert a.loss_curve_ != b.loss_curve_
    assert not np.array_equal(all_params(a), all_params(b))
    c = RNNClassifier(**{**FAST, "random_state": np.random.default_rng(0)}).fit(X, y)
    assert np.all(np.isfinite(c.loss_curve_))


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("cls", [RNNClassifier, RNNRegressor])
def test_not_fitted(cls, tmp_path):
    est = cls()
    X = np.zeros((2, 3, 1))
    for call in (lambda: est.predict(X), lambda: est.score(X, [0, 1]), lambda: est.save(tmp_path / "m.npz"),
                 lambda: est.rnn_, lambda: est.head_):
        with pytest.raises(NotFittedError):
            call()
    if cls is RNNClassifier:
        with pytest.raises(NotFittedError):
            est.predict_proba(X)
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)
    assert not hasattr(est, "rnn_")
    with pytest.raises(NotFittedError):
        rnnkit.io.save(est, tmp_path / "m2.npz")


def test_sklearn_not_fitted_error_compatible():
    sklearn = pytest.importorskip("sklearn", reason=SKLEARN_MISSING_REASON)
    from sklearn.utils.validation import check_is_fitted

    est = RNNRegressor()
    with pytest.raises(sklearn.exceptions.NotFittedError):
        check_is_fitted(est)
    X, y = reg_data()
    check_is_fitted(est.set_params(**FAST).fit(X, y))


@pytest.mark.parametrize("cls", [RNNClassifier, RNNRegressor])
def test_wrong_n_features_at_predict(cls):
    X, y = cls_data(D=3)
    est = cls(**FAST).fit(X, y)
    with pytest.raises(ValueError, match="3 features"):
        est.predict(X[:, :, :2])
    with pytest.raises(ValueError):
        est.predict(np.zeros((4, 7, 5)))
    with pytest.raises(ValueError):
        est.predict(X[0, 0])  # 1-D
    with pytest.raises(ValueError):
        est.predict(X[None])  # 4-D


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("form", ["3d", "2d", "list"])
def test_non_finite_X(bad, form):
    X, y = cls_data(D=1)
    Xb = X.copy()
    Xb[5, 3, 0] = bad
    Xf = {"3d": Xb, "2d": Xb[:, :, 0], "list": [s[: 3 + i % 4] for i, s in enumerate(Xb)]}[form]
    with pytest.raises(ValueError, match="NaN|infinity"):
        RNNClassifier(**FAST).fit(Xf, y)
    with pytest.raises(ValueError, match="NaN|infinity"):
        RNNRegressor(**FAST).fit(Xf, y.astype(float))
    clf = RNNClassifier(**FAST).fit(X, y)
    with pytest.raises(ValueError, match="NaN|infinity"):
        clf.predict(Xb if form != "2d" else Xb[:, :, 0])


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_values_overflowing_float32_rejected():
    X, y = cls_data()
    X[0, 0, 0] = 1e300  # finite in float64, inf once cast to the model's float32
    with pytest.raises(ValueError):
        RNNClassifier(**FAST).fit(X, y)


@pytest.mark.parametrize("device", ["cpu", "simulated"])
def test_inputs_overflowing_once_standardised_are_refused_by_predict(device, monkeypatch):
    """predict scales the inputs inside the compiled call (numpy's arithmetic, in C++): a value
    finite in float32 that overflows once standardised is refused with the estimator's message."""
    X, y = cls_data()
    if device == "simulated":
        monkeypatch.setenv("RNNKIT_CUDA_SIMULATE", "1")
    clf = RNNClassifier(**FAST, device="cpu" if device == "cpu" else "cuda").fit(1e-3 * X, y)  # scale ~1e-3
    bad = X.astype(np.float32)
    bad[1, 2, 0] = 1e36  # fine in float32, 1e39 once scaled
    with pytest.raises(ValueError, match="once standardised"):
        clf.predict(bad)
    np.testing.assert_array_equal(clf.predict(1e-3 * X), clf.predict((1e-3 * X).astype(np.float32)))


def test_single_class():
    X, _ = cls_data()
    with pytest.raises(ValueError, match="class"):
        RNNClassifier(**FAST).fit(X, np.ones(len(X), dtype=int))
    with pytest.raises(ValueError, match="class"):
        RNNClassifier(**FAST).partial_fit(X, np.ones(len(X)), classes=[1])


def test_continuous_labels_rejected():
    X, _ = cls_data()
    with pytest.raises(ValueError, match="Unknown label type"):
        RNNClassifier(**FAST).fit(X, np.linspace(0, 1, len(X)))


@pytest.mark.parametrize(
    "name, value, exc",
    [
        ("cell", "transformer", ValueError),
        ("output", "all", ValueError),
        ("optimizer", "lbfgs", ValueError),
        ("dtype", "float16", ValueError),
        ("hidden_size", 0, ValueError),
        ("hidden_size", 4.0, TypeError),
        ("num_layers", 0, ValueError),
        ("dropout", 1.0, ValueError),
        ("dropout", -0.1, ValueError),
        ("learning_rate", 0.0, ValueError),
        ("learning_rate", float("nan"), ValueError),
        ("learning_rate", "fast", TypeError),
        ("momentum", 1.5, ValueError),
        ("weight_decay", -1e-3, ValueError),
        ("batch_size", 0, ValueError),
        ("batch_size", True, TypeError),
        ("max_epochs", 0, ValueError),
        ("clip_norm", 0.0, ValueError),
        ("clip_value", -1.0, ValueError),
        ("validation_fraction", 0.0, ValueError),
        ("validation_fraction", 1.0, ValueError),
        ("n_iter_no_change", 0, ValueError),
        ("tol", -1.0, ValueError),
        ("verbose", -1, ValueError),
        ("n_threads", 0, ValueError),
        ("bidirectional", "yes", TypeError),
        ("early_stopping", 1, TypeError),
        ("random_state", "seed", TypeError),
        ("random_state", 1.5, TypeError),
    ],
)
@pytest.mark.parametrize("cls", [RNNClassifier, RNNRegressor])
def test_invalid_params_raise_at_fit(cls, name, value, exc):
    est = cls(**{**FAST, name: value})  # no validation in __init__ ...
    assert est.get_params()[name] is value
    X, y = cls_data()
    with pytest.raises(exc, match=name):  # ... but at fit
        est.fit(X, y)
    est2 = cls(**FAST).set_params(**{name: value})
    with pytest.raises(exc, match=name):
        est2.fit(X, y)


def test_invalid_params_raise_at_partial_fit():
    X, y = cls_data()
    with pytest.raises(ValueError, match="hidden_size"):
        RNNClassifier(hidden_size=-1).partial_fit(X, y, classes=[0, 1])


def test_unknown_params():
    with pytest.raises(TypeError):
        RNNClassifier(n_hidden=3)
    with pytest.raises(ValueError, match="n_hidden"):
        RNNRegressor().set_params(n_hidden=3)


def test_get_set_params_and_repr():
    clf = RNNClassifier(hidden_size=5, cell="gru")
    params = clf.get_params()
    assert params["hidden_size"] == 5 and params["cell"] == "gru" and params["max_epochs"] == 200
    assert set(params) == set(RNNRegressor().get_params()) | {"class_weight"}  # a classifier's own
    assert clf.set_params(hidden_size=7) is clf and clf.hidden_size == 7
    assert repr(clf) == "RNNClassifier(cell='gru', hidden_size=7)"
    assert repr(RNNRegressor()) == "RNNRegressor()"


@pytest.mark.parametrize("cls", [RNNClassifier, RNNRegressor])
def test_mismatched_lengths(cls):
    X, y = cls_data(n=20)
    with pytest.raises(ValueError, match="inconsistent|20"):
        cls(**FAST).fit(X, y[:-1])
    with pytest.raises(ValueError):
        cls(**FAST).fit(list(X[:-1]), y)
    with pytest.raises(ValueError):
        cls(**FAST).fit(X, None)
    est = cls(**FAST).fit(X, y)
    if cls is RNNClassifier:
        with pytest.raises(ValueError):
            est.partial_fit(X, y[:5])


def test_empty_and_degenerate_X():
    with pytest.raises(ValueError):
        RNNClassifier(**FAST).fit(np.zeros((0, 4, 2)), [])
    with pytest.raises(ValueError):
        RNNClassifier(**FAST).fit(np.zeros((3, 0, 2)), [0, 1, 0])
    with pytest.raises(ValueError):
        RNNClassifier(**FAST).fit([], [])
    with pytest.raises(ValueError):
        RNNClassifier(**FAST).fit([np.zeros((3, 1)), np.zeros((0, 1))], [0, 1])
    with pytest.raises(ValueError, match="Complex"):
        RNNRegressor(**FAST).fit(np.ones((4, 3, 1), dtype=complex), np.arange(4.0))


def test_sparse_X_rejected():
    sp = pytest.importorskip("scipy.sparse", reason="scipy is not installed")
    with pytest.raises(TypeError, match="sparse"):
        RNNRegressor(**FAST).fit(sp.csr_matrix(np.eye(4)), np.arange(4.0))


def test_integer_and_float64_X():
    X, y = cls_data()
    Xi = np.round(X * 3).astype(np.int64)
    clf = RNNClassifier(**FAST).fit(Xi, y)
    np.testing.assert_array_equal(clf.predict_proba(Xi), clf.predict_proba(Xi.astype(np.float64)))


# ----------------------------------------------------------------------------- divergence
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_divergence_raises_and_keeps_previous_weights(monkeypatch, dtype):
    """A huge learning rate blows the weights up: ValueError, and the weights of the last
    finite step are kept (the failing step is undone)."""
    snapshots = []
    name = f"model_loss_and_grad_{dtype}"
    original = getattr(core_mod, name)

    def recording(spec, params, *args, **kwargs):
        snapshots.append(np.array(params, copy=True))  # the weights the failing step started from
        return original(spec, params, *args, **kwargs)

    monkeypatch.setattr(core_mod, name, recording)
    X, y = reg_data(n=64)
    reg = RNNRegressor(hidden_size=8, optimizer="sgd", learning_rate=1e6, momentum=0.0, clip_norm=None,
                       max_epochs=50, batch_size=8, random_state=0, n_threads=1, dtype=dtype)
    with pytest.raises(ValueError, match="diverged"):
        reg.fit(X, y)
    assert len(snapshots) >= 1
    params = all_params(reg)
    assert np.isfinite(params).all()
    np.testing.assert_array_equal(params, snapshots[-1])
    # still a usable (if poor) model
    assert np.isfinite(reg.predict(X)).all()


# ----------------------------------------------------------------------------- Ctrl-C
def _interrupt_on_call(monkeypatch, n):
    calls = {"n": 0}
    original = fitting_mod.clip_grad_norm  # called by _BatchStep, which lives there

    def clip(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(fitting_mod, "clip_grad_norm", clip)
    return calls


@pytest.mark.parametrize("cls", [RNNClassifier, RNNRegressor])
def test_keyboard_interrupt_keeps_model(monkeypatch, cls):
    X, y = cls_data(n=32) if cls is RNNClassifier else reg_data(n=32)
    # 4 batches per epoch: the 11th clipping call is in the middle of epoch 3
    calls = _interrupt_on_call(monkeypatch, 11)
    est = cls(**{**FAST, "max_epochs": 10})
    with pytest.warns(UserWarning, match="interrupt"):
        returned = est.fit(X, y)
    assert returned is est
    assert calls["n"] == 11
    assert est.n_iter_ == 2 and len(est.loss_curve_) == 2
    assert est.best_loss_ == min(est.loss_curve_)
    pred = est.predict(X)
    assert pred.shape == (len(X),)
    if cls is RNNRegressor:
        assert np.isfinite(pred).all()
    # the model can keep training afterwards
    est.partial_fit(X, y)
    assert est.n_iter_ == 3


def test_keyboard_interrupt_in_first_epoch(monkeypatch):
    X, y = cls_data(n=32)
    _interrupt_on_call(monkeypatch, 1)
    with pytest.warns(UserWarning, match="interrupt"):
        clf = RNNClassifier(**FAST).fit(X, y)
    assert clf.n_iter_ == 0 and clf.loss_curve_ == [] and clf.best_loss_ is None
    assert clf.predict(X).shape == (32,)


def test_keyboard_interrupt_with_early_stopping_keeps_best(monkeypatch):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((80, 6, 2))
    y = X[:, :, 0].sum(axis=1) + 2.0 * rng.standard_normal(80)
    probe = rng.standard_normal((10, 6, 2))
    records = _record_validation(monkeypatch, RNNRegressor, probe)
    # 60 training sequences / 8 = 8 batches per epoch: interrupt in epoch 7
    _interrupt_on_call(monkeypatch, 8 * 6 + 3)
    reg = RNNRegressor(hidden_size=16, learning_rate=0.05, max_epochs=60, early_stopping=True,
                       validation_fraction=0.25, n_iter_no_change=50, batch_size=8, random_state=0, n_threads=1)
    with pytest.warns(UserWarning, match="interrupt"):
        reg.fit(X, y)
    assert reg.n_iter_ == 6 and len(reg.validation_scores_) == 6
    best = int(np.argmax(reg.validation_scores_))
    np.testing.assert_array_equal(reg.predict(probe), records[best][1])


# ----------------------------------------------------------------------------- copies and persistence
def _fitted_pair():
    Xc, yc = cls_data(n=40, n_classes=3, labels=["b", "a", "c"])
    clf = RNNClassifier(**FAST).fit(Xc, yc)
    Xr, yr = reg_data(n_outputs=2)
    reg = RNNRegressor(**{**FAST, "cell": "gru", "bidirectional": True}).fit(Xr, yr)
    return (clf, Xc, yc), (reg, Xr, yr)


def _outputs(est, X):
    return est.predict_proba(X) if isinstance(est, RNNClassifier) else est.predict(X)


def test_clone():
    pytest.importorskip("sklearn", reason=SKLEARN_MISSING_REASON)
    from sklearn.base import clone

    for (est, X, y) in _fitted_pair():
        c = clone(est)
        assert c.get_params() == est.get_params()
        assert not hasattr(c, "n_iter_") and not hasattr(c, "classes_")
        with pytest.raises(NotFittedError):
            c.predict(X)
        np.testing.assert_array_equal(_outputs(c.fit(X, y), X), _outputs(est, X))


def test_pickle_round_trip():
    for (est, X, y) in _fitted_pair():
        copy = pickle.loads(pickle.dumps(est))
        np.testing.assert_array_equal(_outputs(copy, X), _outputs(est, X))
        np.testing.assert_array_equal(copy.predict(X), est.predict(X))
        assert copy.loss_curve_ == est.loss_curve_
        # both continue identically (optimizer state and random stream travel along)
        est.partial_fit(X, y)
        copy.partial_fit(X, y)
        np.testing.assert_array_equal(_outputs(copy, X), _outputs(est, X))


def test_pickle_unfitted():
    est = RNNRegressor(hidden_size=3)
    copy = pickle.loads(pickle.dumps(est))
    assert copy.get_params() == est.get_params()
    assert not copy.__sklearn_is_fitted__()


@pytest.mark.parametrize("mmap_mode", [None, "r"])
def test_joblib_round_trip(tmp_path, mmap_mode):
    joblib = pytest.importorskip("joblib", reason="joblib is not installed")
    for i, (est, X, y) in enumerate(_fitted_pair()):
        path = tmp_path / f"model{i}.joblib"
        joblib.dump(est, path)
        copy = joblib.load(path, mmap_mode=mmap_mode)
        np.testing.assert_array_equal(_outputs(copy, X), _outputs(est, X))
        copy.partial_fit(X, y)  # read-only memory maps must not break further training
        est.partial_fit(X, y)
        np.testing.assert_array_equal(_outputs(copy, X), _outputs(est, X))


def test_save_load_classifier_string_classes(tmp_path):
    X, y = cls_data(n=40, n_classes=3, labels=["beta", "alpha", "gamma"])
    for labels in (y, y.astype(str)):
        clf = RNNClassifier(**{**FAST, "num_layers": 2}).fit(X, labels)
        path = tmp_path / "clf.npz"
        clf.save(path)
        loaded = rnnkit.load(path)
        assert type(loaded) is RNNClassifier
        assert loaded.get_params() == clf.get_params()
        np.testing.assert_array_equal(loaded.classes_, clf.classes_)
        assert loaded.classes_.dtype == clf.classes_.dtype
        np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
        np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
        assert loaded.loss_curve_ == clf.loss_curve_
        assert loaded.n_iter_ == clf.n_iter_ and loaded.n_features_in_ == clf.n_features_in_
        assert loaded.best_loss_ == clf.best_loss_


def test_save_load_regressor_multi_output(tmp_path):
    X, Y = reg_data(n_outputs=3)
    reg = RNNRegressor(**{**FAST, "cell": "rnn_relu", "dtype": "float64"}).fit(X, Y)
    path = str(tmp_path / "reg.npz")
    reg.save(path)
    loaded = rnnkit.load(path)
    assert type(loaded) is RNNRegressor
    assert loaded.dtype_ == np.float64
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
    # 1-D targets stay 1-D after loading
    reg1 = RNNRegressor(**FAST).fit(X, Y[:, 0])
    reg1.save(path)
    assert rnnkit.load(path).predict(X).shape == (len(X),)


def test_save_load_sequence_output_and_2d_input(tmp_path):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((20, 9))
    y = np.cumsum(X, axis=1)
    reg = RNNRegressor(output="sequence", **FAST).fit(X, y)
    reg.save(tmp_path / "s.npz")
    loaded = rnnkit.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
    with pytest.raises(ValueError):
        loaded.predict(X[:, :5])  # the same n_features_in_ check as the original


def test_loaded_model_keeps_training(tmp_path):
    X, y = cls_data(n=40)
    clf = RNNClassifier(**FAST).fit(X, y)
    clf.save(tmp_path / "m.npz")
    loaded = rnnkit.load(tmp_path / "m.npz")
    loaded.partial_fit(X, y)
    assert loaded.n_iter_ == clf.n_iter_ + 1
    loaded.set_params(warm_start=True).fit(X, y)
    assert loaded.n_iter_ == clf.n_iter_ + 1 + FAST["max_epochs"]


def _rewrite_npz(src, dst, edit_meta=None, drop=(), replace=None):
    with np.load(src, allow_pickle=False) as f:
        contents = {k: f[k] for k in f.files}
    meta = json.loads(str(contents["meta"]))
    if edit_meta is not None:
        edit_meta(meta)
    contents["meta"] = np.array(json.dumps(meta))
    for k in drop:
        contents.pop(k)
    contents.update(replace or {})
    with open(dst, "wb") as fh:
        np.savez(fh, **contents)


def test_newer_format_version_refused(tmp_path):
    X, y = reg_data()
    RNNRegressor(**FAST).fit(X, y).save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        version = json.loads(str(f["meta"]))["format_version"]
    assert version == rnnkit.io.FORMAT_VERSION

    def bump(meta):
        meta["format_version"] += 1

    _rewrite_npz(tmp_path / "m.npz", tmp_path / "newer.npz", edit_meta=bump)
    with pytest.raises(ValueError, match=f"version {version + 1}"):
        rnnkit.load(tmp_path / "newer.npz")
    # an untouched rewrite still loads (the rewriting itself is harmless)
    _rewrite_npz(tmp_path / "m.npz", tmp_path / "same.npz")
    rnnkit.load(tmp_path / "same.npz")


def _damage(kind, good, path):
    data = good.read_bytes()
    rng = np.random.default_rng(0)
    if kind == "random":
        path.write_bytes(rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "flipped":
        b = bytearray(data)
        for i in range(len(b) // 3, len(b) // 3 + 64):
            b[i] ^= 0xFF
        path.write_bytes(bytes(b))
    elif kind == "npy":
        with path.open("wb") as fh:
            np.save(fh, np.arange(10.0))
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"meta": 1}))
    elif kind == "text":
        path.write_text("hello, I am not a model\n")
    elif kind == "no_meta":
        with path.open("wb") as fh:
            np.savez(fh, params=np.zeros(3))
    elif kind == "bad_json":
        with np.load(good) as f:
            contents = {k: f[k] for k in f.files}
        contents["meta"] = np.array("{not json")
        with path.open("wb") as fh:
            np.savez(fh, **contents)
    elif kind == "wrong_format":
        _rewrite_npz(good, path, edit_meta=lambda m: m.update(format="something-else"))
    elif kind == "wrong_class":
        _rewrite_npz(good, path, edit_meta=lambda m: m.update({"class": "LinearRegression"}))
    elif kind == "missing_params":
        _rewrite_npz(good, path, drop=("params",))
    elif kind == "short_params":
        with np.load(good) as f:
            short = f["params"][:-3].copy()
        _rewrite_npz(good, path, replace={"params": short})
    elif kind == "nan_params":
        with np.load(good) as f:
            p = f["params"].copy()
        p[0] = np.nan
        _rewrite_npz(good, path, replace={"params": p})
    elif kind == "wrong_dtype_params":
        with np.load(good) as f:
            p = f["params"].astype(np.float64)
        _rewrite_npz(good, path, replace={"params": p})
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["random", "empty", "truncated", "flipped", "npy", "pickle", "text", "no_meta",
                                  "bad_json", "wrong_format", "wrong_class", "missing_params", "short_params",
                                  "nan_params", "wrong_dtype_params"])
def test_damaged_file_refused(tmp_path, kind):
    X, y = reg_data()
    good = tmp_path / "good.npz"
    RNNRegressor(**FAST).fit(X, y).save(good)
    bad = tmp_path / "bad.npz"
    _damage(kind, good, bad)
    with pytest.raises(ValueError):
        rnnkit.load(bad)


def test_missing_file():
    with pytest.raises((OSError, ValueError)):
        rnnkit.load("/nonexistent/dir/model.npz")


def test_save_needs_fitted_rnnkit_estimator(tmp_path):
    with pytest.raises(TypeError):
        rnnkit.io.save(object(), tmp_path / "x.npz")


# ----------------------------------------------------------------------------- inspection / torch
def test_rnn_and_head_are_copies():
    X, y = cls_data()
    clf = RNNClassifier(**FAST).fit(X, y)
    before = clf.predict_proba(X)
    clf.rnn_.flat_params[...] = 0.0
    clf.head_["weight"][...] = 0.0
    np.testing.assert_array_equal(clf.predict_proba(X), before)


@pytest.mark.parametrize("cell, bidirectional, num_layers", [("lstm", False, 2), ("lstm", True, 1),
                                                              ("gru", True, 2), ("rnn", False, 1)])
def test_state_dict_loads_into_torch_and_matches(cell, bidirectional, num_layers):
    """rnn_.state_dict() + head_ rebuild the model in PyTorch: same outputs as predict_proba."""
    torch = pytest.importorskip("torch", reason=TORCH_MISSING_REASON)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 6, 3))
    # standardise over every (sequence, step) so the estimator's internal scaling is the identity
    X = (X - X.reshape(-1, 3).mean(axis=0)) / X.reshape(-1, 3).std(axis=0)
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    clf = RNNClassifier(cell=cell, bidirectional=bidirectional, num_layers=num_layers, dtype="float64",
                        **FAST).fit(X, y)
    sd = clf.rnn_.state_dict()
    H = 8
    torch_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    tm = torch_cls(3, H, num_layers, batch_first=True, bidirectional=bidirectional).double()
    ref = tm.state_dict()
    assert list(sd) == list(ref)
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: tuple(v.shape) for k, v in ref.items()}
    tm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()}, strict=True)
    with torch.no_grad():
        _, h_n = tm(torch.from_numpy(X))
        if cell == "lstm":
            h_n = h_n[0]
        feats = torch.cat([h_n[-2], h_n[-1]], dim=1) if bidirectional else h_n[-1]
        logits = feats.numpy() @ clf.head_["weight"].T + clf.head_["bias"]
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(clf.predict_proba(X), proba, rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- scikit-learn utilities
def test_pipeline():
    pytest.importorskip("sklearn", reason=SKLEARN_MISSING_REASON)
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = cls_data()
    pipe = make_pipeline(FunctionTransformer(lambda Z: np.asarray(Z) * 2.0 + 1.0), RNNClassifier(**FAST))
    pipe.fit(X, y)
    assert pipe.predict(X).shape == (len(X),)
    assert 0.0 <= pipe.score(X, y) <= 1.0
    # the scaler inside makes an affine input change invisible
    direct = RNNClassifier(**FAST).fit(X, y)
    np.testing.assert_allclose(pipe.predict_proba(X), direct.predict_proba(X), rtol=1e-4, atol=1e-6)


def test_grid_search_parallel():
    pytest.importorskip("sklearn", reason=SKLEARN_MISSING_REASON)
    from sklearn.model_selection import GridSearchCV

    X, y = reg_data(n=60)
    gs = GridSearchCV(RNNRegressor(**FAST), {"hidden_size": [4, 8], "cell": ["lstm", "gru"]}, cv=3, n_jobs=2)
    gs.fit(X, y)
    assert gs.best_params_["hidden_size"] in (4, 8)
    assert np.isfinite(gs.cv_results_["mean_test_score"]).all()
    assert gs.predict(X).shape == (60,)


def test_cross_val_score_ragged_and_strings():
    pytest.importorskip("sklearn", reason=SKLEARN_MISSING_REASON)
    from sklearn.model_selection import cross_val_score

    X = ragged(n=36, D=2, seed=1)
    y = np.array(["up" if s[:, 0].sum() > 0 else "down" for s in X], dtype=object)
    scores = cross_val_score(RNNClassifier(**FAST), X, y, cv=3)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))
    Xr, yr = reg_data(n=36)
    scores = cross_val_score(RNNRegressor(**FAST), Xr, yr, cv=3, scoring="neg_mean_squared_error")
    assert np.isfinite(scores).all()


def test_verbose_prints_one_line_per_epoch(capsys):
    X, y = reg_data()
    RNNRegressor(**{**FAST, "verbose": 1}).fit(X, y)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("Epoch")]
    assert len(lines) == FAST["max_epochs"]
    assert lines[0].startswith("Epoch 1: loss")
    RNNRegressor(**FAST).fit(X, y)
    assert capsys.readouterr().out == ""


def test_the_classifier_restates_the_shared_parameters_exactly():
    """RNNClassifier spells out _RNNBase's parameters (scikit-learn reads them off __init__'s
    signature) and adds class_weight: the two lists must not drift apart."""
    import inspect

    from rnnkit._estimator_base import _RNNBase

    shared = inspect.signature(_RNNBase.__init__).parameters
    own = inspect.signature(RNNClassifier.__init__).parameters
    assert list(own) == list(shared) + ["class_weight"]
    for name, p in shared.items():
        assert (own[name].default, own[name].annotation, own[name].kind) == (p.default, p.annotation, p.kind), name
    clf = RNNClassifier(**{name: f"<{name}>" for name in list(shared)[1:]})
    assert all(getattr(clf, name) == f"<{name}>" for name in list(shared)[1:])  # each passed through


@pytest.mark.parametrize("cls", [RNNClassifier, RNNRegressor])
def test_a_refused_refit_leaves_the_fitted_model_as_it_was(cls):
    """Bad input found after X was read (y, sample_weight, an early-stopping split with no
    weight) raises, and the estimator keeps its fitted state: features, scaling, weights, RNG."""
    rng = np.random.default_rng(0)
    X3, X5 = rng.standard_normal((40, 6, 3)), rng.standard_normal((40, 6, 5))
    y = rng.integers(0, 2, 40)
    model = cls(hidden_size=4, max_epochs=2, random_state=0, n_threads=1).fit(X3, y)
    state = pickle.dumps(model)
    before = model.predict(X3)
    one = np.zeros(40)
    one[0] = 1.0  # one sequence weighs anything: it cannot be both trained on and held out
    attempts = [  # (parameters, fit arguments, message)
        ({}, dict(X=X5, y=y[:-1]), "inconsistent numbers of samples"),
        ({}, dict(X=X5, y=y, sample_weight=-np.ones(40)), "sample_weight must be >= 0"),
        # warm start: the split draws from the fitted generator, which must be put back
        (dict(warm_start=True, early_stopping=True, validation_fraction=0.5), dict(X=X3, y=y, sample_weight=one),
         "weight 0"),
    ]
    for params, kwargs, match in attempts:
        model.set_params(**params)
        with pytest.raises(ValueError, match=match):
            model.fit(**kwargs)
        model.set_params(warm_start=False, early_stopping=False, validation_fraction=0.1)
        assert model.n_features_in_ == 3
        np.testing.assert_array_equal(model.predict(X3), before)
    model.set_params(warm_start=True)
    model.fit(X3, y)  # continues from the generator and weights as they were
    reference = pickle.loads(state).set_params(warm_start=True).fit(X3, y)
    np.testing.assert_array_equal(model._params_flat, reference._params_flat)


@pytest.mark.parametrize("cls", [RNNClassifier, RNNRegressor])
def test_scale_inputs_false_reads_the_inputs_as_given(cls, tmp_path):
    """With scale_inputs=False the model sees X itself: it equals a scaled fit on inputs that
    are already standardised to mean 0 and deviation 1 exactly (the scaling is then x itself)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6, 3)) * 5.0 + 2.0
    y = (X[:, :, 0].sum(axis=1) > 12).astype(int)
    kw = dict(hidden_size=4, max_epochs=2, random_state=0, n_threads=1, dtype="float64")
    raw = cls(scale_inputs=False, **kw).fit(X, y)
    np.testing.assert_array_equal(raw._x_mean, 0.0)
    np.testing.assert_array_equal(raw._x_scale, 1.0)
    scaled = cls(**kw).fit(X, y)
    assert not np.array_equal(raw._params_flat, scaled._params_flat)
    Z = (X - scaled._x_mean) / scaled._x_scale  # what the scaled fit's model reads
    again = cls(scale_inputs=False, **kw).fit(Z, y)
    np.testing.assert_allclose(again.predict_proba(Z) if cls is RNNClassifier else again.predict(Z),
                               scaled.predict_proba(X) if cls is RNNClassifier else scaled.predict(X), rtol=1e-9)
    raw.save(tmp_path / "m.npz")
    assert rnnkit.load(tmp_path / "m.npz").scale_inputs is False
    with pytest.raises(TypeError, match="scale_inputs must be a bool"):
        cls(scale_inputs="no").fit(X, y)
