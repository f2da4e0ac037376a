"""The streaming step API: a loop of step() calls is forward(), one step at a time."""
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
