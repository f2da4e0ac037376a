"""Property tests (hypothesis): invariants that must hold for any small configuration."""
import os
import tempfile
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is a test extra")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import rnnkit  # noqa: E402
from conftest import assert_close_rel  # noqa: E402

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)
CELLS = st.sampled_from(["lstm", "gru", "rnn_tanh", "rnn_relu"])


def _layer(cell, D, H, layers, bidirectional=False, seed=0):
    kw = dict(num_layers=layers, bidirectional=bidirectional, dtype="float64", seed=seed)
    if cell.startswith("rnn"):
        return rnnkit.RNN(D, H, nonlinearity=cell[4:], **kw)
    return {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU}[cell](D, H, **kw)


@st.composite
def problems(draw, bidirectional=st.booleans()):
    cell = draw(CELLS)
    D, H = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    layers, B, T = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 6))
    bi = draw(bidirectional)
    seed = draw(st.integers(0, 2**16))
    x = np.random.default_rng(seed).standard_normal((T, B, D))
    lengths = draw(st.lists(st.integers(1, T), min_size=B, max_size=B))
    return cell, D, H, layers, bi, seed, x, np.array(lengths)


@SETTINGS
@given(problems(bidirectional=st.just(False)))
def test_forward_equals_step_loop(p):
    cell, D, H, layers, _, seed, x, _ = p
    m = _layer(cell, D, H, layers, seed=seed)
    out, final = m.forward(x)
    state = None
    for t in range(x.shape[0]):
        y, state = m.step(x[t], state)
        assert_close_rel(y, out[t], 1e-12)
    for a, b in zip(final if cell == "lstm" else [final], state if cell == "lstm" else [state]):
        assert_close_rel(b, a, 1e-12)


@SETTINGS
@given(problems(), st.booleans(), st.sampled_from([1, 2]))
def test_omitted_state_equals_zero_state(p, training, n_threads):
    """With no initial state the first step's recurrent product is skipped (it is zero); the
    results equal those of an explicit zero state exactly, in both modes and at 1-2 threads."""
    cell, D, H, layers, bi, seed, x, lengths = p
    m = _layer(cell, D, H, layers, bi, seed)
    m.n_threads = n_threads
    zeros = np.zeros((layers * (2 if bi else 1), x.shape[1], H))
    state = (zeros, zeros.copy()) if cell == "lstm" else zeros
    for kw in ({}, {"lengths": lengths}):
        out, final = m.forward(x, training=training, **kw)
        out_z, final_z = m.forward(x, state, training=training, **kw)
        assert np.array_equal(out, out_z)
        for a, b in zip(final if cell == "lstm" else [final], final_z if cell == "lstm" else [final_z]):
            assert np.array_equal(a, b)


def test_omitted_state_equals_zero_state_on_every_loop():
    """The same on the loops the small property shapes do not reach: the batch split between
    two threads with the inputs projected in chunks, and the hidden units split (B=2, H=360)."""
    rng = np.random.default_rng(5)
    for cell in ("lstm", "gru", "rnn_tanh"):
        for (B, T, D, H) in ((9, 11, 5, 6), (40, 5, 5, 6), (2, 40, 5, 360)):
            m = _layer(cell, D, H, 1, seed=3)
            m.n_threads = 2
            x = rng.standard_normal((T, B, D))
            zeros = np.zeros((1, B, H))
            state = (zeros, zeros.copy()) if cell == "lstm" else zeros
            for training in (False, True):
                out, _ = m.forward(x, training=training)
                out_z, _ = m.forward(x, state, training=training)
                assert np.array_equal(out, out_z), (cell, B, T, H, training)


def test_loops_split_by_units_match_one_thread():
    """Two threads split small batches by hidden units, forward and backward (steps of 0.25
    MFLOP or more: B=2 at H=180 for the LSTM and GRU, H=260 for the tanh RNN): results and
    gradients equal one thread's to rounding, both directions, with lengths. (In the sanitizer
    job: this is where its threads share the step's buffers.)"""
    rng = np.random.default_rng(9)
    for cell, H in (("lstm", 180), ("gru", 180), ("rnn_tanh", 260)):
        B, T, D = 2, 20, 5
        x = rng.standard_normal((T, B, D))
        g = rng.standard_normal((T, B, 2 * H))
        runs = []
        for n_threads in (1, 2):
            m = _layer(cell, D, H, 1, bidirectional=True, seed=4)
            m.n_threads = n_threads
            out, _ = m.forward(x, lengths=[T, T - 7], training=True)
            grad_x, _ = m.backward(g)
            runs.append((out, grad_x, m.flat_grads.copy()))
        for a, b in zip(*runs):
            assert_close_rel(b, a, 1e-12)


@SETTINGS
@given(problems())
def test_ragged_batch_equals_sequences_one_by_one(p):
    cell, D, H, layers, bi, seed, x, lengths = p
    m = _layer(cell, D, H, layers, bi, seed)
    out, final = m.forward(x, lengths=lengths)
    h_n = final[0] if cell == "lstm" else final
    for b, n in enumerate(lengths):
        alone, alone_final = m.forward(x[:n, b : b + 1])
        alone_h = alone_final[0] if cell == "lstm" else alone_final
        assert_close_rel(out[:n, b], alone[:, 0], 1e-12)
        assert np.all(out[n:, b] == 0)
        assert_close_rel(h_n[:, b], alone_h[:, 0], 1e-12)


@SETTINGS
@given(problems(bidirectional=st.just(True)))
def test_reverse_direction_is_forward_on_reversed_input(p):
    cell, D, H, _, _, seed, x, _ = p
    bi = _layer(cell, D, H, 1, True, seed)
    uni = _layer(cell, D, H, 1, False, seed + 1)
    uni.load_state_dict({k.replace("_reverse", ""): v for k, v in bi.state_dict().items() if k.endswith("_reverse")})
    out, _ = bi.forward(x)
    rev, _ = uni.forward(x[::-1])
    assert_close_rel(out[:, :, H:], rev[::-1], 1e-12)


@SETTINGS
@given(st.lists(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=8), min_size=1, max_size=4),
       st.floats(0.0, 50.0), st.sampled_from([1.0, 2.0, 3.0, float("inf")]))
def test_clipping_never_increases_the_norm(values, max_norm, norm_type):
    grads = [np.array(v) for v in values]
    before = rnnkit.clip_grad_norm([g.copy() for g in grads], max_norm=1e300, norm_type=norm_type)
    returned = rnnkit.clip_grad_norm(grads, max_norm=max_norm, norm_type=norm_type)
    after = rnnkit.clip_grad_norm([g.copy() for g in grads], max_norm=1e300, norm_type=norm_type)
    assert returned == pytest.approx(before, rel=1e-12)
    assert after <= before * (1 + 1e-12)
    assert after <= max(max_norm, 0.0) * (1 + 1e-9) + 1e-9 or after == pytest.approx(before)
    clipped = [g.copy() for g in grads]
    rnnkit.clip_grad_value(clipped, max_norm)
    assert all(np.all(np.abs(c) <= max_norm) for c in clipped)


@SETTINGS
@given(problems())
def test_state_dict_round_trip_is_the_identity(p):
    cell, D, H, layers, bi, seed, x, lengths = p
    m = _layer(cell, D, H, layers, bi, seed)
    copy = _layer(cell, D, H, layers, bi, seed + 7)
    copy.load_state_dict(m.state_dict())
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(copy.state_dict()[k], v)
    np.testing.assert_array_equal(copy.forward(x, lengths=lengths)[0], m.forward(x, lengths=lengths)[0])


@st.composite
def fitted_estimators(draw):
    classifier = draw(st.booleans())
    n, T, D = draw(st.integers(4, 10)), draw(st.integers(1, 5)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T, D))
    output = draw(st.sampled_from(["last", "sequence"]))
    shape = (n,) if output == "last" else (n, T)
    y = np.arange(n * (1 if output == "last" else T)).reshape(shape) % 2 if classifier else rng.standard_normal(shape)
    if draw(st.booleans()):  # ragged list input
        X = [X[i, : int(rng.integers(1, T + 1))] for i in range(n)]
        if output == "sequence":
            y = [y[i, : len(x)] for i, x in enumerate(X)]
            if classifier:
                y[0][0], y[1][0] = 0, 1  # both classes present
    kw = dict(cell=draw(st.sampled_from(["lstm", "gru", "rnn", "rnn_relu"])), hidden_size=draw(st.integers(1, 4)),
              num_layers=draw(st.integers(1, 2)), bidirectional=draw(st.booleans()), output=output,
              optimizer=draw(st.sampled_from(["adam", "adamw", "sgd", "rmsprop"])), max_epochs=1, batch_size=4,
              dtype=draw(st.sampled_from(["float32", "float64"])), random_state=seed, n_threads=1)
    est = (rnnkit.RNNClassifier if classifier else rnnkit.RNNRegressor)(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y)
    return est, X, y


def _predictions(est, X):
    out = est.predict_proba(X) if isinstance(est, rnnkit.RNNClassifier) else est.predict(X)
    return out if isinstance(out, list) else [out]


@settings(max_examples=15, deadline=None, derandomize=True)
@given(fitted_estimators())
def test_save_load_is_the_identity(p):
    """rnnkit.save then rnnkit.load gives the same model: same parameters, same predictions,
    and training on from both gives the same weights (optimizer and random state travel too)."""
    est, X, y = p
    with tempfile.TemporaryDirectory() as tmp:
        est.save(os.path.join(tmp, "m.npz"))
        loaded = rnnkit.load(os.path.join(tmp, "m.npz"))
    assert type(loaded) is type(est) and loaded.get_params() == est.get_params()
    np.testing.assert_array_equal(loaded._params_flat, est._params_flat)
    for a, b in zip(_predictions(loaded, X), _predictions(est, X)):
        np.testing.assert_array_equal(a, b)
    loaded.partial_fit(X, y)
    est.partial_fit(X, y)
    np.testing.assert_array_equal(loaded._params_flat, est._params_flat)
