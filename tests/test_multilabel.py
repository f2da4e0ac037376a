"""Multi-label classification: RNNClassifier fitted on an indicator matrix y (n, n_labels) of 0
and 1 (scikit-learn's "multilabel-indicator"), through the compiled sigmoid head
(binary_cross_entropy; its loss and gradient against PyTorch are in test_model_core.py)."""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

import rnnkit
from rnnkit import RNNClassifier

from conftest import order_task


def multilabel_task(n=160, steps=8, seed=0):
    """Three labels per sequence: the order of two markers (needs memory), whether a marker
    lies in the first two steps, and whether the sequence's feature 2 sums above 0."""
    X, order = order_task(n, steps, seed)
    rng = np.random.default_rng(seed + 1)
    X = np.concatenate([X, rng.normal(scale=0.5, size=(n, steps, 1))], axis=2)
    early = (np.abs(X[:, :2, :2]).max(axis=(1, 2)) > 0.5).astype(int)
    positive = (X[:, :, 2].sum(axis=1) > 0).astype(int)
    return X, np.stack([order, early, positive], axis=1)


def _fit(model, X, y, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        return model.fit(X, y, **kw)


@pytest.fixture(scope="module")
def fitted():
    X, Y = multilabel_task(n=320)
    model = _fit(RNNClassifier(hidden_size=16, max_epochs=60, learning_rate=0.02, batch_size=16, random_state=0,
                               n_threads=1), X[:240], Y[:240])
    return model, X, Y


def test_learns_several_labels_at_once(fitted):
    model, X, Y = fitted
    pred = model.predict(X[240:])
    assert pred.shape == (80, 3) and pred.dtype == np.int64 and set(np.unique(pred)) <= {0, 1}
    # every label, held out (their base rates: 0.55, 0.43, 0.48); seeds 0-3 gave 1.0, 0.91-1.0, 0.85-0.89
    assert ((pred == Y[240:]).mean(axis=0) >= [0.95, 0.85, 0.75]).all()
    assert model.score(X[240:], Y[240:]) >= 0.7  # subset accuracy, all three right: 0.78-0.89
    assert model.classes_.tolist() == [0, 1, 2] and model._spec.loss == "binary_cross_entropy"


def test_probabilities_and_labels_agree(fitted):
    model, X, _ = fitted
    proba = model.predict_proba(X)
    assert proba.shape == (320, 3) and (proba > 0).all() and (proba < 1).all()
    assert not np.allclose(proba.sum(axis=1), 1.0)  # independent labels, not a softmax
    np.testing.assert_array_equal(model.predict(X), (proba > 0.5).astype(int))


def test_score_is_sklearns_subset_accuracy(fitted):
    metrics = pytest.importorskip("sklearn.metrics")
    model, X, Y = fitted
    w = np.random.default_rng(3).uniform(0, 2, 320)
    pred = model.predict(X)
    assert model.score(X, Y) == pytest.approx(metrics.accuracy_score(Y, pred), abs=1e-15)
    assert model.score(X, Y, sample_weight=w) == pytest.approx(metrics.accuracy_score(Y, pred, sample_weight=w),
                                                               abs=1e-15)
    with pytest.raises(ValueError, match="expected \\(320, 3\\)"):
        model.score(X, Y[:, :2])


def test_streaming_steps_give_the_probabilities_of_the_prefix(fitted):
    model, X, _ = fitted
    state = None
    for t in range(4):
        proba, state = model.predict_proba_step(X[:5, t], state)
    np.testing.assert_allclose(proba, model.predict_proba(X[:5, :4]), rtol=1e-5, atol=1e-6)
    labels, _ = model.predict_step(X[:5, 4], state)
    np.testing.assert_array_equal(labels, model.predict(X[:5, :5]))


def test_files_pickles_and_clones_keep_it(fitted, tmp_path):
    model, X, _ = fitted
    model.save(tmp_path / "m.npz")
    for copy in (rnnkit.load(tmp_path / "m.npz"), pickle.loads(pickle.dumps(model))):
        assert copy._multilabel
        np.testing.assert_array_equal(copy.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(rnnkit.freeze(model).predict(X), model.predict(X))
    sklearn_base = pytest.importorskip("sklearn.base")
    assert not sklearn_base.clone(model)._multilabel  # a clone is unfitted


def test_onnx_export_ends_in_a_sigmoid(fitted):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import rnnkit.onnx

    model, X, _ = fitted
    graph = rnnkit.onnx.export(model)
    assert "Sigmoid" in [node.op_type for node in graph.graph.node]
    proba = ort.InferenceSession(graph.SerializeToString()).run(["probabilities"],
                                                               {"input": X[:9].astype(np.float32)})[0]
    np.testing.assert_allclose(proba, model.predict_proba(X[:9]), rtol=1e-5, atol=1e-6)


def test_weights_partial_fit_and_early_stopping():
    X, Y = multilabel_task(n=64)
    kw = dict(hidden_size=6, max_epochs=3, batch_size=64, random_state=0, n_threads=1)
    plain = _fit(RNNClassifier(**kw), X, Y)
    w = np.ones(64)
    w[:8] = 0.0
    weighted = _fit(RNNClassifier(**kw), X, Y, sample_weight=w)
    dropped = _fit(RNNClassifier(**kw), X[8:], Y[8:])
    assert not np.array_equal(weighted._params_flat, plain._params_flat)
    # one batch an epoch: rows of weight 0 do not count (the input scaling is weighted too)
    np.testing.assert_allclose(weighted.loss_curve_, dropped.loss_curve_, rtol=1e-5)

    model = RNNClassifier(**kw)
    for _ in range(2):
        model.partial_fit(X, Y, classes=[0, 1, 2])
    assert model.n_iter_ == 2 and model.predict(X).shape == (64, 3)

    early = _fit(RNNClassifier(early_stopping=True, validation_fraction=0.25, **{**kw, "max_epochs": 4}), X, Y)
    assert len(early.validation_scores_) == 4 and all(0.0 <= s <= 1.0 for s in early.validation_scores_)


def test_text_classifier_tags_texts():
    from rnnkit.text import TextClassifier

    texts = ["good plot", "bad plot", "good music", "bad music"] * 8
    tags = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 1, 1]] * 8)  # good, bad, about music
    clf = _fit(TextClassifier(hidden_size=8, embedding_dim=8, max_epochs=40, learning_rate=0.03, random_state=0,
                              n_threads=1), texts, tags)
    np.testing.assert_array_equal(clf.predict(["good music", "bad plot"]), [[1, 0, 1], [0, 1, 0]])


@pytest.mark.parametrize("make,y_edit,match", [
    (dict(class_weight="balanced"), None, "class_weight is not supported with a multi-label y"),
    (dict(), lambda Y: Y * 2, "indicator matrix of 0 and 1"),
    (dict(), lambda Y: Y.astype(str), "indicator matrix of 0 and 1"),
    (dict(), lambda Y: Y[:-1], "inconsistent numbers of samples"),
    (dict(output="sequence"), lambda Y: np.repeat(Y[:, None, :], 8, axis=1)[:, :, :1, None],
     "one label per step, or one row of 0 and 1 per step"),
    (dict(output="sequence"), lambda Y: np.repeat(Y[:, None, :], 8, axis=1) * 3, "indicator matrix of 0 and 1"),
])
def test_refused_before_anything_changes(make, y_edit, match):
    X, Y = multilabel_task(n=32)
    model = RNNClassifier(hidden_size=4, max_epochs=1, random_state=0, n_threads=1, **make)
    with pytest.raises(ValueError, match=match):
        model.fit(X, Y if y_edit is None else y_edit(Y))
    assert not hasattr(model, "classes_") and not hasattr(model, "n_features_in_")


def test_later_fits_must_keep_the_label_columns():
    X, Y = multilabel_task(n=32)
    model = RNNClassifier(hidden_size=4, max_epochs=1, random_state=0, n_threads=1)
    with pytest.raises(ValueError, match="classes must be the label columns 0..2"):
        model.partial_fit(X, Y, classes=["a", "b", "c"])
    model.partial_fit(X, Y, classes=[0, 1, 2])
    before = model._params_flat.copy()
    with pytest.raises(ValueError, match=r"y has shape \(32, 2\), but the first fit had 3 label columns"):
        model.partial_fit(X, Y[:, :2])
    with pytest.raises(ValueError, match="multi-label indicator matrix \\(n_samples, 3\\)"):
        model.partial_fit(X, Y[:, 0])
    np.testing.assert_array_equal(model._params_flat, before)
    single = RNNClassifier(hidden_size=4, max_epochs=1, random_state=0, n_threads=1, warm_start=True)
    _fit(single, X, Y[:, 0])
    with pytest.raises(ValueError, match="the first fit had one label per sequence"):
        single.fit(X, Y)


def test_distributed_fit_refuses_it():
    from rnnkit import distributed

    class TwoRanks:
        def Get_size(self):
            return 2

        def Get_rank(self):
            return 0

        def allgather(self, value):
            return [value, value]

    X, Y = multilabel_task(n=32)
    with pytest.raises(ValueError, match="multi-label y .* not supported with several ranks"):
        distributed.fit(RNNClassifier(hidden_size=4, max_epochs=1), X, Y, comm=TwoRanks())
    X, Y = echo_task(n=32)
    with pytest.raises(ValueError, match="multi-label y .* not supported with several ranks"):
        distributed.fit(RNNClassifier(hidden_size=4, max_epochs=1, output="sequence"), X, Y, comm=TwoRanks())


def test_device_model_fits_as_the_cpu(device):
    X, Y = multilabel_task(n=48)
    kw = dict(cell="gru", hidden_size=6, max_epochs=3, batch_size=16, random_state=0, dtype="float64", n_threads=1)
    cpu = _fit(RNNClassifier(**kw), X, Y)
    dev = _fit(RNNClassifier(device=device, **kw), X, Y)
    np.testing.assert_allclose(dev.loss_curve_, cpu.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(dev.predict_proba(X), cpu.predict_proba(X), rtol=1e-9)


def echo_task(n=200, steps=12, seed=0):
    """Per step, three labels at once (a piano roll's shape): label j is on where feature j
    exceeds 1 at this step or the one before, so each step needs the last one remembered."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, steps, 3))
    on = X > 1.0
    Y = (on | np.concatenate([np.zeros((n, 1, 3), bool), on[:, :-1]], axis=1)).astype(int)
    return X, Y


@pytest.fixture(scope="module")
def tagger():
    X, Y = echo_task()
    model = _fit(RNNClassifier(output="sequence", hidden_size=16, max_epochs=40, learning_rate=0.01,
                               random_state=0, n_threads=1), X[:150], Y[:150])
    return model, X, Y


def test_tags_several_labels_per_step(tagger):
    model, X, Y = tagger
    pred = model.predict(X[150:])
    assert pred.shape == (50, 12, 3) and pred.dtype == np.int64
    # every label at every step, held out; remembering the previous step is needed (the base
    # rates are about 0.30, so "always off" gives 0.70)
    assert (pred == Y[150:]).mean(axis=(0, 1)).min() >= 0.9
    assert model.score(X[150:], Y[150:]) >= 0.75  # all three right at a step: 0.86-0.88 at seeds 0-3


def test_ragged_tagging_scores_the_valid_steps(tagger):
    metrics = pytest.importorskip("sklearn.metrics")
    model, X, Y = tagger
    lengths = [12 - i % 5 for i in range(20)]
    Xl = [X[150 + i, :n] for i, n in enumerate(lengths)]
    Yl = [Y[150 + i, :n] for i, n in enumerate(lengths)]
    pred = model.predict(Xl)
    assert [p.shape for p in pred] == [(n, 3) for n in lengths]
    for i, n in enumerate(lengths):
        np.testing.assert_array_equal(pred[i], model.predict(X[150 + i : 151 + i, :n])[0])
    w = np.linspace(0.5, 2.0, 20)
    steps_w = np.repeat(w, lengths)
    expected = metrics.accuracy_score(np.concatenate(Yl), np.concatenate(pred), sample_weight=steps_w)
    assert model.score(Xl, Yl, sample_weight=w) == pytest.approx(expected, abs=1e-15)


def test_tagging_steps_and_onnx_agree(tagger):
    model, X, _ = tagger
    state, probs = None, []
    for t in range(6):
        p, state = model.predict_proba_step(X[:4, t], state)
        probs.append(p)
    np.testing.assert_allclose(np.stack(probs, axis=1), model.predict_proba(X[:4, :6]), rtol=1e-5, atol=1e-6)
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import rnnkit.onnx

    graph = rnnkit.onnx.export(model)
    out = ort.InferenceSession(graph.SerializeToString()).run(["probabilities"], {"input": X[:4].astype(np.float32)})
    np.testing.assert_allclose(out[0], model.predict_proba(X[:4]), rtol=1e-5, atol=1e-6)


def test_tagging_needs_the_same_labels_later(tagger):
    model, X, Y = tagger
    with pytest.raises(ValueError, match=r"multi-label indicator matrix \(n_samples, n_steps, 3\)"):
        model.set_params(warm_start=True).fit(X[:10], Y[:10, :, 0])
    model.set_params(warm_start=False)
    with pytest.raises(ValueError, match=r"y has shape \(5, 12, 2\), expected \(5, 12, 3\)"):
        model.score(X[:5], Y[:5, :, :2])


def test_padding_in_a_padded_y_is_ignored():
    """Ragged X with y padded to T: what y holds past each length (here -1) is never read."""
    X, Y = echo_task(n=24)
    lengths = [12 - i % 4 for i in range(24)]
    Xl = [X[i, :n] for i, n in enumerate(lengths)]
    padded = Y.copy()
    for i, n in enumerate(lengths):
        padded[i, n:] = -1
    kw = dict(output="sequence", hidden_size=4, max_epochs=2, random_state=0, n_threads=1)
    a = _fit(RNNClassifier(**kw), Xl, padded)
    b = _fit(RNNClassifier(**kw), Xl, [Y[i, :n] for i, n in enumerate(lengths)])
    np.testing.assert_array_equal(a._params_flat, b._params_flat)
