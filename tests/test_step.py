"""The streaming step API: a loop of step() calls is forward(), one step at a time."""
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import rnnkit
from conftest import assert_close_rel

LAYERS = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn_tanh": rnnkit.RNN}
RTOL = {"float32": 2e-6, "float64": 1e-12}


def _loop(m, x, state):
    ys = []
    for t in range(x.shape[0]):
        y, state = m.step(x[t], state)
        ys.append(y)
    return np.stack(ys), state


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", list(LAYERS))
def test_step_loop_equals_forward(cell, num_layers, dtype):
    m = LAYERS[cell](5, 7, num_layers=num_layers, dtype=dtype, seed=3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((9, 3, 5)).astype(dtype)
    h0 = rng.standard_normal((num_layers, 3, 7)).astype(dtype)
    state = (h0, rng.standard_normal(h0.shape).astype(dtype)) if cell == "lstm" else h0
    out, final = m.forward(x, state)
    ys, stepped = _loop(m, x, state)
    assert_close_rel(ys, out, RTOL[dtype], name="outputs")
    for a, b in zip(final if cell == "lstm" else [final], stepped if cell == "lstm" else [stepped]):
        assert_close_rel(b, a, RTOL[dtype], name="state")


@pytest.mark.parametrize("cell", list(LAYERS))
def test_unbatched_and_zero_state(cell):
    m = LAYERS[cell](4, 6, num_layers=2, dtype="float64", seed=1)
    x = np.random.default_rng(2).standard_normal((5, 4))
    out, _ = m.forward(x)
    ys, state = _loop(m, x, None)
    assert ys.shape == (5, 6)
    assert_close_rel(ys, out, 1e-12)
    h = state[0] if cell == "lstm" else state
    assert h.shape == (2, 6)


def test_workspace_follows_batch_size_changes():
    m = rnnkit.GRU(3, 4, seed=0, dtype="float64")
    rng = np.random.default_rng(0)
    for batch in (5, 1, 8, 5):
        x = rng.standard_normal((batch, 3))
        y, _ = m.step(x)
        assert_close_rel(y, m.forward(x[None])[0][0], 1e-12)


def test_bidirectional_and_bad_shapes_raise():
    with pytest.raises(ValueError, match="unidirectional"):
        rnnkit.LSTM(3, 4, bidirectional=True).step(np.zeros((1, 3), np.float32))
    m = rnnkit.LSTM(3, 4, num_layers=2)
    with pytest.raises(ValueError, match="x"):
        m.step(np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="state"):
        m.step(np.zeros((2, 3), np.float32), (np.zeros((1, 2, 4), np.float32), np.zeros((2, 2, 4), np.float32)))
    with pytest.raises(TypeError, match="x"):
        m.step(np.zeros((2, 3), dtype=int))


def test_step_from_8_threads_is_bit_identical():
    m = rnnkit.LSTM(6, 16, num_layers=2, seed=0)
    rng = np.random.default_rng(5)
    xs = [rng.standard_normal((20, 2, 6)).astype(np.float32) for _ in range(8)]
    serial = [_loop(m, x, None)[0] for x in xs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda x: _loop(m, x, None)[0], xs))
    for s, p in zip(serial, parallel):
        np.testing.assert_array_equal(s, p)


# ----------------------------------------------------------------------------- estimators
def _stream(model, method, X, state=None):
    outs = []
    for t in range(X.shape[1]):
        out, state = getattr(model, method)(X[:, t], state)
        outs.append(out)
    return np.stack(outs, axis=1), state


@pytest.mark.filterwarnings("ignore::rnnkit.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_estimator_predict_step_streams_what_predict_sees(cell, dtype):
    """Step by step, the estimators give predict()'s answers: per step (output="sequence"), or for
    the sequences that end at this step (output="last"); inputs are scaled inside as in fit."""
    rng = np.random.default_rng(0)
    X = 3.0 + 2.0 * rng.standard_normal((16, 12, 3))  # far from zero mean / unit scale
    labels = (X[:, :, 0].cumsum(axis=1) > 36).astype(int)
    rtol = RTOL[dtype] * 5
    kw = dict(cell=cell, hidden_size=10, num_layers=2, max_epochs=2, random_state=0, dtype=dtype, n_threads=1)
    seq = rnnkit.RNNClassifier(output="sequence", **kw).fit(X, labels)
    proba, _ = _stream(seq, "predict_proba_step", X)
    assert_close_rel(proba, seq.predict_proba(X), rtol, "sequence proba")
    steps, _ = _stream(seq, "predict_step", X)
    np.testing.assert_array_equal(steps, seq.classes_[proba.argmax(axis=-1)])

    last = rnnkit.RNNClassifier(**kw).fit(X, labels[:, -1])
    proba, _ = _stream(last, "predict_proba_step", X)
    for t in (0, 5, 11):
        assert_close_rel(proba[:, t], last.predict_proba(X[:, : t + 1]), rtol, f"last proba at {t}")

    reg = rnnkit.RNNRegressor(**kw).fit(X, np.stack([X[:, :, 1].sum(1), X[:, :, 2].max(1)], axis=1))
    values, state = _stream(reg, "predict_step", X)
    assert values.shape == (16, 12, 2)
    assert_close_rel(values[:, -1], reg.predict(X), rtol, "regressor")
    one, one_state = [], None
    for x_t in X[3]:  # one stream: (features,) in, (outputs,) out
        y_t, one_state = reg.predict_step(x_t, one_state)
        one.append(y_t)
    one = np.stack(one)
    assert one.shape == (12, 2)
    assert_close_rel(one, values[3], rtol, "one stream")
    if cell == "lstm":
        assert state[0].shape == (2, 16, 10) and one_state[0].shape == (2, 10)
    else:
        assert state.shape == (2, 16, 10) and one_state.shape == (2, 10)


@pytest.mark.filterwarnings("ignore::rnnkit.exceptions.ConvergenceWarning")
def test_estimator_predict_step_follows_partial_fit_and_checks_input():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((8, 5, 2))
    y = X[:, :, 0].sum(axis=1)
    reg = rnnkit.RNNRegressor(hidden_size=6, max_epochs=1, random_state=0, n_threads=1).fit(X, y)
    before, _ = _stream(reg, "predict_step", X)
    reg.partial_fit(X, y)  # the weights change in place: the stream must see the new ones
    after, _ = _stream(reg, "predict_step", X)
    assert not np.allclose(before[:, -1], after[:, -1])
    assert_close_rel(after[:, -1], reg.predict(X), 1e-5, "after partial_fit")
    with pytest.raises(ValueError, match=r"x_t must have shape \(n_streams, 2\)"):
        reg.predict_step(np.zeros((8, 3)))
    with pytest.raises(ValueError, match="NaN"):
        reg.predict_step(np.full((8, 2), np.nan))
    with pytest.raises(TypeError, match="x_t"):
        reg.predict_step(np.zeros((8, 2), dtype=int))
    with pytest.raises(ValueError, match=r"state\[0\] must have shape \(1, 8, 6\)"):
        reg.predict_step(np.zeros((8, 2)), (np.zeros((1, 3, 6)), np.zeros((1, 3, 6))))
    with pytest.raises(TypeError, match="tuple"):
        reg.predict_step(np.zeros((8, 2)), np.zeros((1, 8, 6)))
    with pytest.raises(ValueError, match="unidirectional"):
        rnnkit.RNNRegressor(hidden_size=4, max_epochs=1, bidirectional=True).fit(X, y).predict_step(X[:, 0])
    with pytest.raises(rnnkit.exceptions.NotFittedError):
        rnnkit.RNNClassifier().predict_step(X[:, 0])
    import pickle

    clone = pickle.loads(pickle.dumps(reg))  # the stream cache is not pickled, and is rebuilt
    assert_close_rel(_stream(clone, "predict_step", X)[0], after, 1e-6, "unpickled")


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_the_compiled_fast_path_matches_the_checked_one_and_declines_what_needs_converting(cell):
    from rnnkit._backend import core

    m = LAYERS[cell](3, 5, num_layers=2, dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3))
    h = rng.standard_normal((2, 4, 5))
    state = (h, rng.standard_normal((2, 4, 5))) if cell == "lstm" else h
    local = m._step_local()
    fast = core.step_fast_float64(m._spec, m._flat, x, state, local.workspace, 1)
    y, h_n, c_n = m._step_run(x, *(state if cell == "lstm" else (state, None)))
    np.testing.assert_array_equal(fast[0], y)
    np.testing.assert_array_equal(fast[1][0] if cell == "lstm" else fast[1], h_n)
    if cell == "lstm":
        np.testing.assert_array_equal(fast[1][1], c_n)
    # Arguments that need a conversion or a check with a message: the fast path declines, and
    # step() still gives the same numbers (or names the bad argument).
    declined = [
        (x.astype(np.float32), state),  # another dtype
        (np.asfortranarray(np.repeat(x, 2, axis=1))[:, ::2], state),  # not contiguous
        (x[None], state),  # wrong rank
        (x, list(state) if cell == "lstm" else [h]),  # not arrays / not a tuple
        (x, (h[:1], state[1]) if cell == "lstm" else h[:1]),  # wrong state shape
    ]
    for args in declined:
        assert core.step_fast_float64(m._spec, m._flat, *args, local.workspace, 1) is None
    y_general, _ = m.step(np.asfortranarray(x), list(state) if cell == "lstm" else state)
    np.testing.assert_array_equal(y_general, y)
    bad = h.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="state|h0"):
        m.step(x, (bad, state[1]) if cell == "lstm" else bad)


def _reference_step(est, x, state):
    """An estimator's step from its public parts: scaling, rnn_.step, head_, softmax in float64."""
    z = ((np.asarray(x, np.float64) - est._x_mean) / est._x_scale).astype(est.dtype_)
    y, state = est.rnn_.step(z, state)
    head = est.head_
    raw = y.astype(np.float64) @ head["weight"].T.astype(np.float64) + head["bias"]
    if isinstance(est, rnnkit.RNNClassifier):
        e = np.exp(raw - raw.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True), state
    return raw * est._y_scale + est._y_mean, state


@pytest.mark.filterwarnings("ignore::rnnkit.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_relu"])
def test_the_fused_model_step_matches_its_parts_on_every_path(cell, dtype):
    """predict_proba_step / predict_step run scaling, stack, head and softmax in one compiled
    call. Against the same model assembled from its public parts, and for every form of x and
    state (the fast path and the checked one that converts) the same numbers."""
    rng = np.random.default_rng(2)
    X = 1.5 + 3.0 * rng.standard_normal((12, 6, 4))
    labels = (X[:, :, 0].sum(axis=1) > 9).astype(int) + (X[:, :, 1].sum(axis=1) > 9)
    kw = dict(cell=cell, hidden_size=7, num_layers=2, max_epochs=2, random_state=0, dtype=dtype, n_threads=1)
    rtol = RTOL[dtype] * 5
    clf = rnnkit.RNNClassifier(**kw).fit(X, labels)
    reg = rnnkit.RNNRegressor(**kw).fit(X, X[:, :, :2].sum(axis=1))
    for est, step in ((clf, clf.predict_proba_step), (reg, reg.predict_step)):
        state = ref_state = None
        for t in range(X.shape[1]):
            x_t = X[:, t]
            out, new_state = step(x_t, state)
            ref, ref_state = _reference_step(est, x_t, ref_state)
            assert_close_rel(out, ref, rtol, f"{type(est).__name__} step {t}")
            assert out.dtype == (np.float64 if est is reg else np.dtype(dtype))
            # The same call through the checked path: x as a list, a strided view, float32; the
            # state as lists: bit-identical.
            forms = [x_t.tolist(), np.repeat(x_t, 2, axis=1)[:, ::2], x_t.astype(np.float32)]
            for x_form in forms[: 2 if dtype == "float64" else 3]:
                if x_form is forms[2]:
                    ref32, _ = step(x_form.astype(np.float64), state)  # float32 values, read in float64
                    np.testing.assert_array_equal(step(x_form, state)[0], ref32)
                    continue
                again, again_state = step(x_form, state)
                np.testing.assert_array_equal(again, out)
            if state is not None:
                as_lists = [s.tolist() for s in state] if cell == "lstm" else state.tolist()
                np.testing.assert_array_equal(step(x_t, as_lists)[0], out)
            state = new_state
        # One stream, unbatched: row 5 of the batch.
        one = None
        for t in range(X.shape[1]):
            y1, one = step(X[5, t], one)
        assert_close_rel(y1, out[5], rtol, "one stream")
        h = one[0] if cell == "lstm" else one
        assert h.shape == (2, 7)
    if cell == "lstm":  # a missing cell state is zeros
        h0 = np.full((2, 12, 7), 0.3, np.dtype(dtype))
        zeros = np.zeros_like(h0)
        np.testing.assert_array_equal(clf.predict_proba_step(X[:, 0], (h0, None))[0],
                                      clf.predict_proba_step(X[:, 0], (h0, zeros))[0])


@pytest.mark.filterwarnings("ignore::rnnkit.exceptions.ConvergenceWarning")
def test_the_fused_model_step_refuses_bad_state_and_overflow_and_follows_a_refit():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((8, 5, 2))
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    clf = rnnkit.RNNClassifier(cell="gru", hidden_size=6, max_epochs=1, random_state=0, n_threads=1).fit(X, y)
    _, state = clf.predict_proba_step(X[:, 0])
    bad = state.copy()
    bad[0, 3, 2] = np.inf
    with pytest.raises(ValueError, match="state"):
        clf.predict_proba_step(X[:, 1], bad)
    with pytest.raises(ValueError, match="state must have shape"):
        clf.predict_proba_step(X[:, 1], state[:, :4])
    with pytest.raises(ValueError, match="x_t.*overflow"):  # finite in float64, not in float32
        clf.predict_proba_step(np.full((8, 2), 1e300), state)
    with pytest.raises(ValueError, match="x_t contains NaN"):
        clf.predict_proba_step([[np.nan, 0.0]] * 8, state)
    # Weights that overflow on an input: predict and predict_step both refuse, with the same words.
    broken = pickle.loads(pickle.dumps(clf))
    bias = broken._spec.head_offset + broken._spec.n_outputs * broken._spec.features
    broken._params_flat[bias] = np.inf  # a logit of +inf: its softmax is NaN
    with pytest.raises(ValueError, match="overflowed to NaN/Inf"):
        broken.predict_proba(X[:, :1])
    with pytest.raises(ValueError, match="overflowed to NaN/Inf"):
        broken.predict_proba_step(X[:, 0])
    # A refit in another dtype gets its own compiled step.
    before, _ = clf.predict_proba_step(X[:, 0])
    clf.set_params(dtype="float64").fit(X, y)
    after, _ = clf.predict_proba_step(X[:, 0])
    assert after.dtype == np.float64
    assert_close_rel(after, clf.predict_proba(X[:, :1]), 1e-12, "after refit")
    assert before.dtype == np.float32


@pytest.mark.filterwarnings("ignore::rnnkit.exceptions.ConvergenceWarning")
def test_the_fused_model_step_from_8_threads_is_bit_identical():
    """Each thread keeps its own workspace: concurrent streams give what one thread gives."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((8, 20, 3)).astype(np.float32)
    reg = rnnkit.RNNRegressor(cell="lstm", hidden_size=16, max_epochs=1, random_state=0, n_threads=1)
    reg.fit(X, X[:, :, 0].sum(axis=1))

    def run(b):
        state, outs = None, []
        for t in range(X.shape[1]):
            y_t, state = reg.predict_step(X[b : b + 1, t], state)
            outs.append(y_t)
        return np.concatenate(outs)

    serial = [run(b) for b in range(8)]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            for got, want in zip(pool.map(run, range(8)), serial):
                np.testing.assert_array_equal(got, want)
