"""Weighted losses: the compiled model's weighted loss against PyTorch and finite differences,
and the estimators' ``sample_weight`` (fit / partial_fit / score) and ``class_weight``.

The compiled loss takes one weight per output row (as the labels: (B,) or (B, T)); the loss of
a batch is the weighted mean over its rows, sum(w * loss) / sum(w) (PyTorch's
``CrossEntropyLoss(weight=...)``, scikit-learn's MLP). The estimators give each row its
sequence's sample weight times its label's class weight.
"""
from __future__ import annotations

import numpy as np
import pytest

import rnnkit
from rnnkit import RNNClassifier, RNNRegressor
from rnnkit._backend import core

from conftest import order_task, require_torch

N_OUT = 3


def _spec(cell, loss, readout, D=3, H=4, layers=2, bi=True):
    return core.ModelSpec(core.LayerSpec(cell, D, H, layers, bi, True), N_OUT, loss, readout, 0)


def _problem(spec, readout, loss, dtype="float64", B=4, T=5, seed=0):
    rng = np.random.default_rng(seed)
    params = rng.uniform(-0.5, 0.5, spec.param_count).astype(dtype)
    x = rng.standard_normal((B, T, 3)).astype(dtype)
    lens = np.array([T, 2, 4, 3][:B], dtype=np.int64)
    shape = (B, T) if readout == "sequence" else (B,)
    labels = rng.integers(0, N_OUT, shape).astype(np.int64) if loss == "cross_entropy" else None
    values = rng.standard_normal(shape + (N_OUT,)).astype(dtype) if loss == "squared_error" else None
    if loss == "binary_cross_entropy":  # multi-label targets: 0/1 and some soft ones
        values = np.where(rng.random(shape + (N_OUT,)) < 0.3, rng.random(shape + (N_OUT,)),
                          rng.integers(0, 2, shape + (N_OUT,))).astype(dtype)
    weights = rng.uniform(0.2, 3.0, shape).astype(dtype)  # one per output row
    return params, x, lens, labels, values, weights


def _loss(spec, params, x, lens, labels, values, weights):
    g = np.zeros_like(params)
    run = core.model_loss_and_grad_float64 if params.dtype == np.float64 else core.model_loss_and_grad_float32
    return run(spec, params, x, lens, labels, values, g, 0.0, 0, 1, weights=weights), g


CASES = [
    ("lstm", "cross_entropy", "last"),
    ("gru", "cross_entropy", "sequence"),
    ("rnn_tanh", "squared_error", "last"),
    ("lstm", "squared_error", "sequence"),
    ("gru", "binary_cross_entropy", "last"),
    ("rnn_tanh", "binary_cross_entropy", "sequence"),
]


# ------------------------------------------------------------------ the compiled loss
@pytest.mark.parametrize("cell,loss,readout", CASES)
def test_weighted_loss_and_gradients_match_torch(cell, loss, readout):
    torch = require_torch()
    spec = _spec(cell, loss, readout)
    params, x, lens, labels, values, weights = _problem(spec, readout, loss)
    ours, grad = _loss(spec, params, x, lens, labels, values, weights)

    module = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn_tanh": torch.nn.RNN}[cell]
    layer = module(3, 4, 2, batch_first=True, bidirectional=True).double()
    named = list(layer.named_parameters())
    flat = torch.tensor(params, requires_grad=True)
    offset = 0
    tensors = {}
    for name, p in named:
        tensors[name] = flat[offset : offset + p.numel()].reshape(p.shape)
        offset += p.numel()
    assert offset == spec.head_offset
    w_head = flat[spec.head_offset : spec.head_offset + N_OUT * 8].reshape(N_OUT, 8)
    b_head = flat[spec.head_offset + N_OUT * 8 : spec.embedding_offset]
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.tensor(x), torch.tensor(lens), batch_first=True,
                                                     enforce_sorted=False)
    out, state = torch.func.functional_call(layer, tensors, (packed,))
    if readout == "last":
        h_n = state[0] if cell == "lstm" else state
        feats = torch.cat([h_n[-2], h_n[-1]], dim=1)  # the top layer's two directions
        valid = torch.ones(x.shape[0], dtype=torch.bool)
    else:
        feats, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        feats = feats.reshape(-1, 8)
        valid = torch.tensor((np.arange(x.shape[1])[None, :] < lens[:, None]).ravel())
    logits = feats @ w_head.T + b_head
    if loss == "cross_entropy":
        per_row = torch.nn.functional.cross_entropy(logits, torch.tensor(labels.reshape(-1)), reduction="none")
    elif loss == "binary_cross_entropy":
        per_row = torch.nn.functional.binary_cross_entropy_with_logits(
            logits, torch.tensor(values.reshape(-1, N_OUT)), reduction="none").mean(dim=1)
    else:
        per_row = 0.5 * ((logits - torch.tensor(values.reshape(-1, N_OUT))) ** 2).mean(dim=1)
    row_w = torch.tensor(weights.reshape(-1))
    ref = (row_w * per_row)[valid].sum() / row_w[valid].sum()
    ref.backward()
    assert ours == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(grad, flat.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("cell,loss,readout", CASES)
def test_weighted_gradient_matches_finite_differences(cell, loss, readout):
    spec = _spec(cell, loss, readout)
    params, x, lens, labels, values, weights = _problem(spec, readout, loss, seed=1)
    weights[2] = 0.0
    _, grad = _loss(spec, params, x, lens, labels, values, weights)
    rng = np.random.default_rng(2)
    picks = list(rng.choice(spec.head_offset, 20, replace=False)) + list(range(spec.head_offset, spec.param_count, 4))
    eps = 1e-6
    for i in picks:
        p1, p2 = params.copy(), params.copy()
        p1[i] += eps
        p2[i] -= eps
        numeric = (_loss(spec, p1, x, lens, labels, values, weights)[0]
                   - _loss(spec, p2, x, lens, labels, values, weights)[0]) / (2 * eps)
        assert abs(numeric - grad[i]) <= 1e-7 + 1e-5 * abs(numeric), (i, numeric, grad[i])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell,loss,readout", CASES)
def test_unit_weights_are_the_unweighted_loss_bit_for_bit(cell, loss, readout, dtype):
    spec = _spec(cell, loss, readout)
    params, x, lens, labels, values, _ = _problem(spec, readout, loss, dtype)
    l0, g0 = _loss(spec, params, x, lens, labels, values, None)
    row_shape = x.shape[:2] if readout == "sequence" else x.shape[:1]
    l1, g1 = _loss(spec, params, x, lens, labels, values, np.ones(row_shape, dtype))
    assert l0 == l1
    np.testing.assert_array_equal(g0, g1)


@pytest.mark.parametrize("cell,loss,readout", CASES)
def test_a_zero_weight_sequence_does_not_count(cell, loss, readout):
    """Its targets can be anything; the rest get the loss and gradients of the batch without it."""
    spec = _spec(cell, loss, readout)
    params, x, lens, labels, values, weights = _problem(spec, readout, loss)
    weights[1] = 0.0
    base = _loss(spec, params, x, lens, labels, values, weights)
    other = (None if labels is None else (N_OUT - 1) - labels,
             None if values is None else (1.0 - values if loss == "binary_cross_entropy" else values + 5.0))
    changed = _loss(spec, params, x, lens, *other[:1], other[1], weights)
    labels2 = None if labels is None else labels.copy()
    values2 = None if values is None else values.copy()
    if labels2 is not None:
        labels2[1] = other[0][1]
    if values2 is not None:
        values2[1] = other[1][1]
    moved = _loss(spec, params, x, lens, labels2, values2, weights)
    assert moved[0] == base[0]
    np.testing.assert_array_equal(moved[1], base[1])
    assert changed[0] != base[0]  # the other sequences' targets do count
    keep = np.array([0, 2, 3])
    sub = _loss(spec, params, x[keep], lens[keep], None if labels is None else labels[keep],
                None if values is None else values[keep], weights[keep])
    assert sub[0] == pytest.approx(base[0], rel=1e-12)
    np.testing.assert_allclose(sub[1], base[1], rtol=1e-9, atol=1e-13)


def test_all_zero_weights_give_zero_loss_and_gradients():
    spec = _spec("gru", "cross_entropy", "last")
    params, x, lens, labels, values, _ = _problem(spec, "last", "cross_entropy")
    loss, grad = _loss(spec, params, x, lens, labels, values, np.zeros(labels.shape))
    assert loss == 0.0
    assert not grad.any()


@pytest.mark.parametrize("weights,match", [
    (np.ones(3), "one weight per output row"),
    (np.ones((4, 2)), "one weight per output row"),
    (np.array([1.0, -1.0, 1.0, 1.0]), "finite weights >= 0"),
    (np.array([1.0, np.nan, 1.0, 1.0]), "finite weights >= 0"),
    (np.array([1.0, np.inf, 1.0, 1.0]), "finite weights >= 0"),
])
def test_the_compiled_call_refuses_bad_weights(weights, match):
    spec = _spec("lstm", "cross_entropy", "last")
    params, x, lens, labels, values, _ = _problem(spec, "last", "cross_entropy")
    g = np.zeros_like(params)
    with pytest.raises(ValueError, match=match):
        core.model_loss_and_grad_float64(spec, params, x, lens, labels, values, g, 0.0, 0, 1, weights=weights)
    assert not g.any()


# ------------------------------------------------------------------ the estimators
@pytest.mark.parametrize("make", [
    lambda: RNNClassifier(hidden_size=6, max_epochs=3, batch_size=16, random_state=0, n_threads=1),
    lambda: RNNRegressor(cell="gru", hidden_size=6, max_epochs=3, batch_size=16, random_state=0, n_threads=1,
                         output="sequence", dropout=0.0),
])
def test_unit_or_constant_weights_leave_the_fit_as_it_was(make):
    X, y = order_task(n=80)
    if isinstance(make(), RNNRegressor):
        y = np.cumsum(X[:, :, 0], axis=1)
    base = make().fit(X, y)
    for w in (np.ones(len(X)), 1.0, 2.5):  # only the weights' ratios matter
        est = make().fit(X, y, sample_weight=w)
        np.testing.assert_array_equal(est._params_flat, base._params_flat, err_msg=f"sample_weight={w!r}")


def test_zero_weight_sequences_are_ignored_whatever_they_hold():
    X, y = order_task(n=64)
    w = np.ones(len(X))
    w[::4] = 0.0
    kw = dict(hidden_size=6, max_epochs=3, batch_size=16, random_state=0, n_threads=1, dtype="float64")
    a = RNNClassifier(**kw).fit(X, y, sample_weight=w)
    X2, y2 = X.copy(), y.copy()
    X2[::4] = 50.0 * np.random.default_rng(1).standard_normal(X2[::4].shape)  # would move the scaling
    y2[::4] = 1 - y2[::4]
    b = RNNClassifier(**kw).fit(X2, y2, sample_weight=w)
    np.testing.assert_array_equal(a._params_flat, b._params_flat)
    np.testing.assert_array_equal(a._x_mean, b._x_mean)
    c = RNNClassifier(**kw).fit(X2, y2)  # without the weights those sequences do count
    assert not np.array_equal(c._params_flat, a._params_flat)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_fit_reaches_the_weighted_optimum(dtype):
    """With one input for every sequence, the best constant is the weighted mean of the targets
    (regression) and the weighted class frequencies (classification)."""
    n = 64
    X = np.zeros((n, 4, 1)) + np.linspace(0, 1, 4)[None, :, None]
    y = np.tile([0.0, 1.0], n // 2)
    w = np.where(y == 1.0, 3.0, 1.0)
    kw = dict(cell="gru", hidden_size=4, max_epochs=150, batch_size=16, learning_rate=0.02, random_state=0,
              n_threads=1, dtype=dtype)
    reg = RNNRegressor(**kw).fit(X, y, sample_weight=w)
    assert reg.predict(X[:1])[0] == pytest.approx(0.75, abs=0.03)
    assert RNNRegressor(**kw).fit(X, y).predict(X[:1])[0] == pytest.approx(0.5, abs=0.03)
    clf = RNNClassifier(**kw).fit(X, y.astype(int), sample_weight=w)
    assert clf.predict_proba(X[:1])[0] == pytest.approx([0.25, 0.75], abs=0.03)
    assert clf.predict(X[:1])[0] == 1


def test_score_weights_as_sklearn_metrics():
    metrics = pytest.importorskip("sklearn.metrics")
    X, y = order_task(n=80)
    w = np.random.default_rng(4).uniform(0, 2, len(X))
    clf = RNNClassifier(hidden_size=6, max_epochs=2, random_state=0, n_threads=1).fit(X, y)
    assert clf.score(X, y, sample_weight=w) == pytest.approx(metrics.accuracy_score(y, clf.predict(X), sample_weight=w))
    assert clf.score(X, y, sample_weight=w) != pytest.approx(clf.score(X, y))
    targets = np.stack([X[:, :, 0].sum(1), X[:, :, 1].max(1)], axis=1)
    reg = RNNRegressor(hidden_size=6, max_epochs=2, random_state=0, n_threads=1).fit(X, targets)
    assert reg.score(X, targets, sample_weight=w) == pytest.approx(
        metrics.r2_score(targets, reg.predict(X), sample_weight=w), rel=1e-12)
    # output="sequence": every valid step carries its sequence's weight
    lengths = np.random.default_rng(5).integers(2, 9, len(X))
    seqs = [x[:n] for x, n in zip(X, lengths)]
    ys = [np.cumsum(s[:, 0]) for s in seqs]
    seq = RNNRegressor(hidden_size=6, max_epochs=2, random_state=0, n_threads=1, output="sequence").fit(seqs, ys)
    pred = seq.predict(seqs)
    flat_w = np.concatenate([np.full(n, wi) for n, wi in zip(lengths, w)])
    assert seq.score(seqs, ys, sample_weight=w) == pytest.approx(
        metrics.r2_score(np.concatenate(ys), np.concatenate(pred), sample_weight=flat_w), rel=1e-12)


def test_partial_fit_and_grid_search_take_weights():
    model_selection = pytest.importorskip("sklearn.model_selection")
    X, y = order_task(n=80)
    w = np.random.default_rng(6).uniform(0.5, 2, len(X))
    kw = dict(hidden_size=6, random_state=0, n_threads=1, batch_size=16)
    a = RNNClassifier(**kw).partial_fit(X, y, classes=[0, 1], sample_weight=w)
    b = RNNClassifier(**kw).partial_fit(X, y, classes=[0, 1])
    assert not np.array_equal(a._params_flat, b._params_flat)
    search = model_selection.GridSearchCV(RNNClassifier(max_epochs=2, **kw), {"hidden_size": [4, 6]}, cv=2)
    search.fit(X, y, sample_weight=w)
    assert search.best_params_["hidden_size"] in (4, 6)


def test_early_stopping_scores_the_held_out_weights(monkeypatch):
    X, y = order_task(n=80)
    kw = dict(hidden_size=6, max_epochs=3, random_state=0, n_threads=1, early_stopping=True, validation_fraction=0.25)
    w = np.random.default_rng(7).uniform(0.1, 3, len(X))
    held_out = []
    score = RNNClassifier._validation_score

    def recording(self, seqs, codes, weights=None):
        held_out.append(seqs.x)
        return score(self, seqs, codes, weights)

    monkeypatch.setattr(RNNClassifier, "_validation_score", recording)
    a = RNNClassifier(**kw).fit(X, y, sample_weight=w)
    b = RNNClassifier(**kw).fit(X, y)
    assert a.validation_scores_ != b.validation_scores_
    x32 = X.astype(np.float32)
    held = np.array([next(i for i in range(len(X)) if np.array_equal(x32[i], row)) for row in held_out[0]])
    assert held.size == 20
    # the restored best weights score, on the held-out rows with their weights, the best validation score
    assert a.best_validation_score_ == pytest.approx(a.score(X[held], y[held], sample_weight=w[held]), rel=1e-12)
    assert a.best_validation_score_ != pytest.approx(a.score(X[held], y[held]), rel=1e-6)
    w_zero = np.ones(len(X))
    w_zero[held] = 0.0
    with pytest.raises(ValueError, match="held out for early stopping has weight 0"):
        RNNClassifier(**kw).fit(X, y, sample_weight=w_zero)


@pytest.mark.parametrize("sample_weight,error,match", [
    (np.ones(5), ValueError, r"sample_weight.shape == \(5,\), expected \(80,\)"),
    (np.ones((80, 1)), ValueError, r"expected \(80,\)"),
    (np.full(80, -1.0), ValueError, "sample_weight must be >= 0"),
    (np.r_[np.nan, np.ones(79)], ValueError, "sample_weight contains NaN or Inf"),
    (np.zeros(80), ValueError, "sample_weight sums to zero"),
    (np.array(["a"] * 80), TypeError, "sample_weight must be an array of real numbers"),
])
def test_bad_sample_weight_is_refused_and_the_model_kept(sample_weight, error, match):
    X, y = order_task(n=80)
    model = RNNClassifier(hidden_size=6, max_epochs=2, random_state=0, n_threads=1).fit(X, y)
    before = model._params_flat.copy(), model.predict_proba(X)
    with pytest.raises(error, match=match):
        model.fit(X, y, sample_weight=sample_weight)
    with pytest.raises(error, match=match):
        model.partial_fit(X, y, sample_weight=sample_weight)
    with pytest.raises(error, match=match):
        model.score(X, y, sample_weight=sample_weight)
    np.testing.assert_array_equal(model._params_flat, before[0])
    np.testing.assert_array_equal(model.predict_proba(X), before[1])


def test_text_classifier_takes_weights():
    texts = ["good film", "great film", "bad film", "awful film"] * 8
    y = [1, 1, 0, 0] * 8
    w = np.tile([1.0, 1.0, 0.0, 0.0], 8)
    kw = dict(hidden_size=4, embedding_dim=4, max_epochs=2, random_state=0, n_threads=1)
    from rnnkit.text import TextClassifier

    a = TextClassifier(**kw).fit(texts, y, sample_weight=w)
    b = TextClassifier(**kw).fit(texts, y)
    assert not np.array_equal(a._params_flat, b._params_flat)


# ------------------------------------------------------------------ class_weight
def test_class_weight_is_a_sample_weight_per_label():
    """Without input scaling (token ids) the two give the same loss weights, bit for bit."""
    from rnnkit.text import TextClassifier

    texts = ["good film", "great plot", "bad film", "awful plot", "fine", "dull"] * 6
    y = np.array(["pos", "pos", "neg", "neg", "pos", "neg"] * 6)
    kw = dict(hidden_size=4, embedding_dim=4, max_epochs=2, batch_size=8, random_state=0, n_threads=1)
    a = TextClassifier(class_weight={"neg": 3.0}, **kw).fit(texts, y)
    b = TextClassifier(**kw).fit(texts, y, sample_weight=np.where(y == "neg", 3.0, 1.0))
    np.testing.assert_array_equal(a._params_flat, b._params_flat)
    c = TextClassifier(**kw).fit(texts, y)
    assert not np.array_equal(a._params_flat, c._params_flat)


def test_balanced_is_sklearns_balanced():
    utils = pytest.importorskip("sklearn.utils.class_weight")
    X, y = order_task(n=90)
    y = np.where(np.arange(90) < 70, y, 2)  # three classes, imbalanced
    kw = dict(hidden_size=6, max_epochs=2, batch_size=16, random_state=0, n_threads=1)
    weights = utils.compute_class_weight("balanced", classes=np.unique(y), y=y)
    a = RNNClassifier(class_weight="balanced", **kw).fit(X, y)
    b = RNNClassifier(class_weight=dict(zip(np.unique(y).tolist(), weights)), **kw).fit(X, y)
    np.testing.assert_array_equal(a._params_flat, b._params_flat)
    assert not np.array_equal(a._params_flat, RNNClassifier(**kw).fit(X, y)._params_flat)


def test_balanced_counts_the_valid_steps_of_a_tagger():
    rng = np.random.default_rng(8)
    lengths = rng.integers(2, 9, 40)
    X = [rng.normal(size=(n, 2)) for n in lengths]
    y = [(x[:, 0] > 0.8).astype(int) for x in X]  # class 1 is rare
    steps = np.concatenate(y)
    counts = np.bincount(steps)
    kw = dict(hidden_size=5, max_epochs=2, batch_size=8, random_state=0, n_threads=1, output="sequence")
    a = RNNClassifier(class_weight="balanced", **kw).fit(X, y)
    b = RNNClassifier(class_weight={0: steps.size / (2 * counts[0]), 1: steps.size / (2 * counts[1])}, **kw).fit(X, y)
    np.testing.assert_array_equal(a._params_flat, b._params_flat)


def test_class_weight_reaches_the_weighted_optimum():
    n = 64
    X = np.zeros((n, 4, 1)) + np.linspace(0, 1, 4)[None, :, None]
    y = np.tile([0, 1], n // 2)
    clf = RNNClassifier(cell="gru", hidden_size=4, max_epochs=150, batch_size=16, learning_rate=0.02, random_state=0,
                        n_threads=1, class_weight={1: 3.0}).fit(X, y)
    assert clf.predict_proba(X[:1])[0] == pytest.approx([0.25, 0.75], abs=0.03)


@pytest.mark.parametrize("class_weight,match", [
    ("auto", "class_weight must be None, 'balanced' or a dict"),
    ([1.0, 2.0], "class_weight must be None, 'balanced' or a dict"),
    ({0: -1.0}, "the weight of class 0 must be a finite number >= 0"),
    ({0: float("nan")}, "the weight of class 0 must be a finite number >= 0"),
    ({0: "2"}, "the weight of class 0 must be a finite number >= 0"),
    ({5: 2.0}, "names the label 5, which is not one of the classes"),
    ({"0": 2.0}, "names the label '0', which is not one of the classes"),
    ({0: 0.0, 1: 0.0}, "class_weight gives every class weight 0"),
])
def test_bad_class_weight_is_refused(class_weight, match):
    X, y = order_task(n=40)
    with pytest.raises(ValueError, match=match):
        RNNClassifier(hidden_size=4, max_epochs=1, n_threads=1, class_weight=class_weight).fit(X, y)


def test_partial_fit_takes_a_dict_but_not_balanced():
    X, y = order_task(n=40)
    with pytest.raises(ValueError, match="'balanced' is not supported for partial_fit"):
        RNNClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1])
    RNNClassifier(hidden_size=4, class_weight={1: 2.0}, n_threads=1).partial_fit(X, y, classes=[0, 1])


def test_class_weight_survives_save_load_and_clone(tmp_path):
    X, y = order_task(n=40)
    model = RNNClassifier(hidden_size=4, max_epochs=1, n_threads=1, random_state=0, class_weight={1: 2.0, 0: 0.5})
    model.fit(X, y)
    model.save(tmp_path / "m.rnnkit")
    loaded = rnnkit.load(tmp_path / "m.rnnkit")
    assert loaded.class_weight == {1: 2.0, 0: 0.5}
    assert all(type(k) is int for k in loaded.class_weight)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    base = pytest.importorskip("sklearn.base")
    again = base.clone(loaded).fit(X, y)
    np.testing.assert_array_equal(again._params_flat, model._params_flat)


def test_weights_that_leave_no_training_row_are_refused():
    X, y = order_task(n=40)
    with pytest.raises(ValueError, match="give every training sequence weight 0"):
        RNNClassifier(hidden_size=4, max_epochs=1, n_threads=1, class_weight={0: 0.0}).fit(
            X, y, sample_weight=(y == 0).astype(float))
