"""rnnkit.freeze: a read-only copy of a layer for inference, whose packed weights the engine keeps
by address instead of comparing them with a copy at every call."""
import copy
import pickle

import numpy as np
import pytest

import rnnkit
from rnnkit._backend import core

LAYERS = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn_tanh": rnnkit.RNN}


def _same_outputs(a, b):
    out_a, state_a = a
    out_b, state_b = b
    np.testing.assert_array_equal(out_a, out_b)
    for sa, sb in zip(state_a if isinstance(state_a, tuple) else (state_a,),
                      state_b if isinstance(state_b, tuple) else (state_b,)):
        np.testing.assert_array_equal(sa, sb)


# (cell, B, T, D, H, threads): the packed paths (up front, in the loop, split by units at 2 threads)
# and the small ones that pack nothing.
CASES = [
    ("lstm", 4, 25, 48, 40, 1),
    ("gru", 16, 9, 20, 33, 1),
    ("rnn_tanh", 8, 30, 16, 24, 2),
    ("lstm", 2, 20, 5, 180, 2),  # split by hidden units, each thread packs its own rows
    ("gru", 1, 3, 4, 6, 1),  # a few rows: nothing packed
]


@pytest.mark.parametrize("cell,B,T,D,H,threads", CASES)
def test_a_frozen_layer_computes_what_its_original_does(cell, B, T, D, H, threads):
    rng = np.random.default_rng(0)
    m = LAYERS[cell](D, H, num_layers=2, bidirectional=True, seed=3, n_threads=threads)
    frozen = rnnkit.freeze(m)
    assert frozen.frozen and not m.frozen
    x = rng.standard_normal((T, B, D)).astype(np.float32)
    lengths = rng.integers(1, T + 1, B)
    for _ in range(3):  # the second and third calls reuse the kept packing
        _same_outputs(frozen.forward(x), m.forward(x))
        _same_outputs(frozen.forward(x, lengths=lengths), m.forward(x, lengths=lengths))
    # Training forward and backward work on a frozen layer (its gradients are its own).
    g = rng.standard_normal((T, B, 2 * H)).astype(np.float32)
    m.forward(x, training=True)
    gx, _ = m.backward(g)
    frozen.forward(x, training=True)
    fgx, _ = frozen.backward(g)
    np.testing.assert_array_equal(fgx, gx)
    np.testing.assert_array_equal(frozen.flat_grads, m.flat_grads)
    _same_outputs(frozen.forward(x), m.forward(x))  # after the backward borrowed the packed memory
    if cell != "lstm" or threads == 1:
        uni = rnnkit.freeze(LAYERS[cell](D, H, seed=3, n_threads=threads))
        y, _ = uni.step(x[0])
        np.testing.assert_array_equal(y, uni.forward(x[:1])[0][0])


def test_the_original_stays_trainable_and_its_changes_do_not_reach_the_copy():
    rng = np.random.default_rng(1)
    m = rnnkit.LSTM(32, 48, seed=0)
    x = rng.standard_normal((20, 8, 32)).astype(np.float32)
    frozen = rnnkit.freeze(m)
    before = frozen.forward(x)[0]
    opt = rnnkit.optim.SGD(m, lr=0.5)
    m.forward(x, training=True)
    m.backward(np.ones((20, 8, 48), np.float32))
    opt.step()
    m.params["weight_hh_l0"][0, 0] += 1.0
    assert not np.array_equal(m.forward(x)[0], before)
    np.testing.assert_array_equal(frozen.forward(x)[0], before)
    # Refreezing the changed layer gives the new weights.
    _same_outputs(rnnkit.freeze(m).forward(x), m.forward(x))


def test_a_frozen_layer_refuses_every_change_of_its_weights():
    frozen = rnnkit.freeze(rnnkit.GRU(4, 6, seed=0))
    state = frozen.state_dict()
    with pytest.raises(ValueError, match="read-only"):
        frozen.params["weight_ih_l0"][...] = 0.0
    with pytest.raises(ValueError, match="read-only"):
        frozen.flat_params[0] = 1.0
    with pytest.raises(ValueError, match="WRITEABLE"):
        frozen.flat_params.flags.writeable = True
    with pytest.raises(ValueError, match="WRITEABLE"):
        frozen.params["bias_hh_l0"].flags.writeable = True
    with pytest.raises(ValueError, match="frozen"):
        frozen.load_state_dict(state)
    with pytest.raises(ValueError, match="frozen"):
        frozen.reset_parameters()
    with pytest.raises(ValueError, match=r"params\[0\] is a frozen layer"):
        rnnkit.optim.Adam(frozen)
    with pytest.raises(TypeError, match="model must be an rnnkit RNN"):
        rnnkit.freeze(np.zeros(3))
    for name, value in frozen.state_dict().items():
        np.testing.assert_array_equal(value, state[name])


def test_a_frozen_layer_stays_frozen_through_pickle_and_copies():
    rng = np.random.default_rng(2)
    frozen = rnnkit.freeze(rnnkit.RNN(5, 7, num_layers=2, seed=1, dtype="float64"))
    x = rng.standard_normal((6, 3, 5))
    expected = frozen.forward(x)
    for clone in (pickle.loads(pickle.dumps(frozen)), copy.deepcopy(frozen), copy.copy(frozen),
                  rnnkit.freeze(frozen)):
        assert clone.frozen and clone.flat_params.ctypes.data % 64 == 0
        _same_outputs(clone.forward(x), expected)
        with pytest.raises(ValueError, match="read-only"):
            clone.flat_params[0] = 0.0
    assert repr(frozen) == "RNN(5, 7, num_layers=2, dtype='float64')"


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_core_trusts_kept_weights_by_address_only_for_read_only_arrays(cell):
    """The engine's side of the promise: frozen_weights=True with a tape that holds packed weights
    skips the comparison only where the call's weights are read-only and lie where the packed
    ones came from. A writeable array, or another read-only array, is packed again."""
    rng = np.random.default_rng(3)
    m = LAYERS[cell](64, 64, seed=0)  # B=8 T=20: W_ih and W_hh packed
    x = rng.standard_normal((20, 8, 64)).astype(np.float32)
    forward = core.forward_float32
    params = m.flat_params.copy()
    _, _, _, tape = forward(m._spec, params, x, False, None, None, None, False, 0.0, 0, 1, None, True)
    params[: params.size // 2] *= 0.5  # writeable: the flag is ignored, the change is seen
    m.flat_params[...] = params
    out, _, _, tape = forward(m._spec, params, x, False, None, None, None, False, 0.0, 0, 1, tape, True)
    np.testing.assert_array_equal(out, m.forward(x)[0])

    first = params.copy()
    first.flags.writeable = False
    forward(m._spec, first, x, False, None, None, None, False, 0.0, 0, 1, tape, True)
    second = params.copy()
    second[-params.size // 3 :] *= -1.0
    second.flags.writeable = False  # another read-only buffer, at another address
    out, _, _, tape = forward(m._spec, second, x, False, None, None, None, False, 0.0, 0, 1, tape, True)
    m.flat_params[...] = second
    np.testing.assert_array_equal(out, m.forward(x)[0])
    # The same read-only buffer again: the kept packing, the same result.
    again, _, _, _ = forward(m._spec, second, x, False, None, None, None, False, 0.0, 0, 1, tape, True)
    np.testing.assert_array_equal(again, out)


def test_a_frozen_layer_keeps_no_copy_of_its_weights():
    """The flag reaches the engine: the frozen layer's kept tape holds the packed weights only,
    the trainable layer's also the copy it compares with (W_ih and W_hh, 2 x 256 x 64 floats)."""
    x = np.random.default_rng(4).standard_normal((20, 8, 64)).astype(np.float32)
    m = rnnkit.LSTM(64, 64, seed=0, n_threads=1)
    frozen = rnnkit.freeze(m)
    sizes = []
    for layer in (m, frozen):
        layer.forward(x)
        (tape,) = layer._tape_pool._idle
        sizes.append(tape.nbytes)
    assert sizes[0] - sizes[1] >= 2 * 256 * 64 * 4


@pytest.mark.filterwarnings("ignore::rnnkit.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("cls", ["RNNClassifier", "RNNRegressor"])
def test_a_frozen_estimator_predicts_what_its_original_does_and_refuses_to_fit(cls, tmp_path):
    rng = np.random.default_rng(5)
    X = rng.standard_normal((24, 12, 40)).astype(np.float32)  # W_ih and W_hh packed, and kept
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int) if cls == "RNNClassifier" else X[:, :, :2].sum(axis=1)
    est = getattr(rnnkit, cls)(hidden_size=48, max_epochs=2, random_state=0, n_threads=1).fit(X, y)
    frozen = rnnkit.freeze(est)
    assert frozen.frozen and not est.frozen
    methods = ["predict", "predict_proba"] if cls == "RNNClassifier" else ["predict"]
    for _ in range(2):
        for name in methods:
            np.testing.assert_array_equal(getattr(frozen, name)(X), getattr(est, name)(X))
            np.testing.assert_array_equal(getattr(frozen, name)(X[:3]), getattr(est, name)(X[:3]))
    assert frozen.score(X, y) == est.score(X, y)
    np.testing.assert_array_equal(frozen.predict_step(X[:, 0])[0], est.predict_step(X[:, 0])[0])
    # The flag reaches the engine: the frozen model's kept workspace holds no copy of the weights
    # (against a trainable twin whose workspaces, like the frozen copy's, have only predicted).
    pair = (pickle.loads(pickle.dumps(est)), rnnkit.freeze(est))
    for m in pair:
        m.predict(X)
    sizes = [m.__dict__["_cpu_model"][1].pool._idle[0].nbytes for m in pair]
    assert sizes[0] - sizes[1] == 4 * 48 * (40 + 48) * 4  # W_ih and W_hh, float32
    with pytest.raises(ValueError, match="frozen"):
        frozen.fit(X, y)
    with pytest.raises(ValueError, match="frozen"):
        frozen.partial_fit(X, y)
    with pytest.raises(ValueError, match="read-only"):
        frozen._params_flat[0] = 0.0
    for clone in (pickle.loads(pickle.dumps(frozen)), rnnkit.freeze(frozen)):
        assert clone.frozen
        np.testing.assert_array_equal(clone.predict(X), est.predict(X))
    frozen.save(tmp_path / "m.rnnkit")
    loaded = rnnkit.load(tmp_path / "m.rnnkit")  # a model file is a trainable model
    assert not loaded.frozen
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    sklearn = pytest.importorskip("sklearn")
    fresh = sklearn.base.clone(frozen)
    assert not fresh.frozen and not hasattr(fresh, "_params_flat")
    fresh.fit(X, y)
    with pytest.raises(rnnkit.exceptions.NotFittedError):
        rnnkit.freeze(getattr(rnnkit, cls)())
