"""The estimators and task models with ``device="cuda"``: the device model (stack + head +
loss, cpp/cuda/model_driver.hpp) against the CPU engine's, call by call and over whole fits.

Each test runs on the host simulation of the device backend (``RNNKIT_CUDA_SIMULATE=1``, every
machine) and on a real GPU where one is usable (see conftest's ``device`` fixture). A fit is a
long chain of rounded steps, so whole fits are compared in float64, where the device and CPU
results agree to rounding; float32-only models are compared call by call (1e-5).
"""
from __future__ import annotations

import numpy as np
import pytest

import rnnkit
from rnnkit import RNNClassifier, RNNRegressor
from rnnkit._backend import core
from rnnkit.cuda import _model_calls

from conftest import RTOL, assert_close_rel, model_problem, order_task


MODEL_CASES = [
    # cell, bidirectional, layers, n_outputs, loss, readout, vocab, lengths
    ("lstm", False, 1, 3, "cross_entropy", "last", 0, None),
    ("gru", True, 2, 2, "squared_error", "last", 0, [4, 2, 5]),
    ("rnn_tanh", True, 1, 4, "cross_entropy", "sequence", 0, [5, 1, 3]),
    ("rnn_relu", False, 2, 2, "squared_error", "sequence", 0, None),
    ("lstm", False, 2, 7, "cross_entropy", "sequence", 7, [5, 3, 2]),
    ("gru", True, 1, 3, "binary_cross_entropy", "last", 0, [4, 2, 5]),  # multi-label
    ("lstm", False, 1, 2, "binary_cross_entropy", "sequence", 0, [5, 1, 3]),
]


class _Owner:
    """Stands in for an estimator: _model_calls caches its device model on it."""


@pytest.mark.parametrize("case", MODEL_CASES, ids=lambda c: f"{c[0]}-{c[5]}-{c[4]}-vocab{c[6]}")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_model_calls_match_the_cpu_engine(device, case, dtype):
    spec, params, (x, lens, labels, values) = model_problem(case, dtype)
    rng = np.random.default_rng(2)
    rows = labels.size if labels is not None else values.size // case[3]

    cpu_predict, cpu_loss = _model_calls(_Owner(), spec, dtype, None)
    dev_predict, dev_loss = _model_calls(_Owner(), spec, dtype, rnnkit.cuda.parse_device(device))
    assert_close_rel(dev_predict(spec, params, x, lens, 1), cpu_predict(spec, params, x, lens, 1), RTOL[dtype],
                     "predict")
    weights = rng.uniform(0.5, 2.0, rows).astype(dtype)  # one per output row, as the labels
    weights[1] = 0.0  # a row that does not count
    for dropout, key, w in ((0.0, 0, None), (0.4, 1234, None), (0.0, 0, weights), (0.4, 1234, weights)):
        g_cpu = np.zeros_like(params)
        g_dev = np.full_like(params, 7.0)  # overwritten, not accumulated
        l_cpu = cpu_loss(spec, params, x, lens, labels, values, g_cpu, dropout, key, 1, weights=w)
        l_dev = dev_loss(spec, params, x, lens, labels, values, g_dev, dropout, key, 1, weights=w)
        assert l_dev == pytest.approx(l_cpu, rel=RTOL[dtype])
        assert_close_rel(g_dev, g_cpu, RTOL[dtype], f"gradients (dropout {dropout}, weights {w})")


def test_device_model_rejects_bad_labels(device):
    spec = core.ModelSpec(core.LayerSpec("gru", 2, 3, 1, False, True), 3, "cross_entropy", "last", 0)
    params = np.zeros(spec.param_count)
    _, dev_loss = _model_calls(_Owner(), spec, "float64", 0)
    with pytest.raises(ValueError, match="labels"):
        dev_loss(spec, params, np.zeros((2, 4, 2)), None, np.array([0, 3]), None, np.zeros_like(params), 0.0, 0, 1)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_classifier_fit_on_the_device_reproduces_the_cpu_fit(device, cell):
    X, y = order_task()
    kw = dict(cell=cell, hidden_size=8, max_epochs=4, batch_size=16, learning_rate=0.02, dropout=0.0,
              random_state=0, dtype="float64", n_threads=1)
    cpu = RNNClassifier(**kw).fit(X, y)
    dev = RNNClassifier(device=device, **kw).fit(X, y)
    np.testing.assert_allclose(dev.loss_curve_, cpu.loss_curve_, rtol=1e-9)
    assert_close_rel(dev._params_flat, cpu._params_flat, 1e-9, "weights after fitting")
    assert_close_rel(dev.predict_proba(X), cpu.predict_proba(X), 1e-9, "predict_proba")
    assert dev.score(X, y) == cpu.score(X, y)
    # Streaming reads the same weights (the step runs on the host for either device).
    state_dev = state_cpu = None
    for t in range(X.shape[1]):
        p_dev, state_dev = dev.predict_proba_step(X[:, t], state_dev)
        p_cpu, state_cpu = cpu.predict_proba_step(X[:, t], state_cpu)
    assert_close_rel(p_dev, p_cpu, 1e-9, "predict_proba_step")
    assert_close_rel(p_dev, dev.predict_proba(X), 1e-9, "the stream's last step")


def test_regressor_sequence_output_with_dropout_and_ragged_input(device):
    rng = np.random.default_rng(3)
    lengths = rng.integers(3, 9, 40)
    X = [rng.normal(size=(n, 2)) for n in lengths]
    y = [np.cumsum(x[:, 0])[:, None] for x in X]  # running sum: needs memory
    kw = dict(cell="gru", hidden_size=6, num_layers=2, output="sequence", dropout=0.2, max_epochs=3, batch_size=8,
              random_state=1, dtype="float64", n_threads=1)
    cpu = RNNRegressor(**kw).fit(X, y)
    dev = RNNRegressor(device=device, **kw).fit(X, y)
    np.testing.assert_allclose(dev.loss_curve_, cpu.loss_curve_, rtol=1e-9)
    for a, b in zip(dev.predict(X), cpu.predict(X)):
        assert_close_rel(a, b, 1e-9, "per-step predictions")


def test_fitted_on_the_device_moves_to_the_cpu(device, tmp_path):
    X, y = order_task(n=48)
    model = RNNClassifier(hidden_size=6, max_epochs=2, random_state=0, device=device, dtype="float64").fit(X, y)
    on_device = model.predict_proba(X)
    model.save(tmp_path / "m.rnnkit")
    loaded = rnnkit.load(tmp_path / "m.rnnkit")
    assert loaded.device == device
    assert_close_rel(loaded.predict_proba(X), on_device, 1e-12, "loaded model")
    loaded.set_params(device="cpu")
    assert_close_rel(loaded.predict_proba(X), on_device, 1e-10, "moved to the CPU")


def test_bad_device_values_are_refused_at_fit():
    X, y = order_task(n=8)
    with pytest.raises(ValueError, match="device"):
        RNNClassifier(device="gpu", max_epochs=1).fit(X, y)
    with pytest.raises(TypeError, match="device"):
        RNNClassifier(device=0, max_epochs=1).fit(X, y)


def test_text_models_run_their_batches_on_the_device(device):
    texts = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"] * 4
    kw = dict(hidden_size=8, embedding_dim=4, max_epochs=1, batch_size=4, seq_len=6, random_state=0, n_threads=1)
    lm_cpu = rnnkit.text.LanguageModel(**kw).fit(texts)
    lm_dev = rnnkit.text.LanguageModel(device=device, **kw).fit(texts)
    np.testing.assert_allclose(lm_dev.loss_curve_, lm_cpu.loss_curve_, rtol=1e-5)
    assert lm_dev.perplexity(texts) == pytest.approx(lm_cpu.perplexity(texts), rel=1e-4)

    labels = [0, 1, 0] * 4
    kw = dict(hidden_size=8, embedding_dim=4, max_epochs=2, batch_size=4, random_state=0, n_threads=1)
    clf_cpu = rnnkit.text.TextClassifier(**kw).fit(texts, labels)
    clf_dev = rnnkit.text.TextClassifier(device=device, **kw).fit(texts, labels)
    np.testing.assert_allclose(clf_dev.loss_curve_, clf_cpu.loss_curve_, rtol=1e-5)


def test_forecaster_and_seq2seq_pass_the_device_on(device):
    from rnnkit.forecast import RNNForecaster

    series = np.sin(np.arange(80) / 4.0) + 0.01 * np.arange(80)
    kw = dict(window=8, horizon=2, hidden_size=6, max_epochs=2, random_state=0, dtype="float64")
    f_cpu = RNNForecaster(**kw).fit(series)
    f_dev = RNNForecaster(device=device, **kw).fit(series)
    assert_close_rel(f_dev.predict(), f_cpu.predict(), 1e-9, "forecast")

    src = ["one two", "two three", "three four", "four five"] * 3
    tgt = ["1 2", "2 3", "3 4", "4 5"] * 3
    kw = dict(hidden_size=8, embedding_dim=4, max_epochs=2, batch_size=4, random_state=0, n_threads=1)
    for extra in ({}, {"attention": "general", "bidirectional_encoder": True}):  # attention: numpy on the host
        s_cpu = rnnkit.text.Seq2Seq(**kw, **extra).fit(src, tgt)
        s_dev = rnnkit.text.Seq2Seq(device=device, **kw, **extra).fit(src, tgt)
        assert s_dev.encoder_.device == device and s_dev.decoder_.device == device
        np.testing.assert_allclose(s_dev.loss_curve_, s_cpu.loss_curve_, rtol=1e-5)
        assert s_dev.predict(src[:4], beam_width=2) == s_cpu.predict(src[:4], beam_width=2)
