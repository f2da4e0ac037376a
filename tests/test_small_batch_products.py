"""Products of a few rows (batch 1-9 at one step, a few steps) against a float64 numpy reference.

At up to four rows per product the engine multiplies with unpacked weights by its own kernels
(cpp/include/rnnkit/row_dots.hpp: four rows of W at a time for one or two rows of H, eight for
one row of H and a W of up to 256 KB, three for three or four, a scalar tail for what is left of
W's rows and of the depth). These cases pick gate widths that leave every remainder of W's rows
(mod 3, 4 and 8), depths that are not a multiple of any vector width, a W on either side of the
256 KB line (hidden 130: an LSTM's W_hh is 264 KB in float32, a GRU's 198 KB), and batches past
four (several passes), on one thread and split between two.
"""
from __future__ import annotations

import numpy as np
import pytest

import rnnkit

CELLS = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn_tanh": rnnkit.RNN}


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def reference(cell: str, sd: dict, x: np.ndarray) -> np.ndarray:
    """Top-layer outputs (T, B, H) of a one-layer stack in float64, PyTorch's gate layout."""
    w_ih, w_hh = sd["weight_ih_l0"].astype(np.float64), sd["weight_hh_l0"].astype(np.float64)
    b_ih, b_hh = sd["bias_ih_l0"].astype(np.float64), sd["bias_hh_l0"].astype(np.float64)
    steps, batch, _ = x.shape
    hidden = w_hh.shape[1]
    h = np.zeros((batch, hidden))
    c = np.zeros((batch, hidden))
    outs = []
    for t in range(steps):
        gi = x[t].astype(np.float64) @ w_ih.T + b_ih
        gh = h @ w_hh.T + b_hh
        if cell == "lstm":
            i, f, g, o = np.split(gi + gh, 4, axis=1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        elif cell == "gru":
            xr, xz, xn = np.split(gi, 3, axis=1)
            hr, hz, hn = np.split(gh, 3, axis=1)
            r, z = _sigmoid(xr + hr), _sigmoid(xz + hz)
            n = np.tanh(xn + r * hn)
            h = (1.0 - z) * n + z * h
        else:
            h = np.tanh(gi + gh)
        outs.append(h)
    return np.stack(outs)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("input_size,hidden", [(13, 5), (8, 7), (35, 16), (67, 130)])
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-12), ("float32", 2e-5)])
def test_forward_and_step_of_small_batches(cell, input_size, hidden, n_threads, dtype, rtol):
    layer = CELLS[cell](input_size, hidden, dtype=dtype, n_threads=n_threads, seed=3)
    sd = layer.state_dict()
    rng = np.random.default_rng(hidden * 100 + input_size)
    for batch in range(1, 10):
        for steps in (1, 3):  # few steps: rows up to four stay unpacked
            x = rng.standard_normal((steps, batch, input_size)).astype(dtype)
            expected = reference(cell, sd, x)
            out, _ = layer.forward(x)
            np.testing.assert_allclose(out, expected, rtol=rtol, atol=rtol, err_msg=f"forward B={batch} T={steps}")
            state = None
            for t in range(steps):
                y, state = layer.step(x[t], state)
                np.testing.assert_allclose(y, expected[t], rtol=rtol, atol=rtol,
                                           err_msg=f"step B={batch} t={t}")


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("input_size,hidden", [(13, 5), (67, 130), (40, 300)])
def test_a_sequence_gives_the_same_bits_alone_and_in_a_small_batch(cell, input_size, hidden, dtype):
    # Alone, a sequence's products go through the one-row kernels (eight rows of W at a time for
    # a W of up to 256 KB, else four); in a batch of two or three, through the two- and three-row
    # kernels. row_dots.hpp promises each output the same sum in the same order in every kernel,
    # so up to four rows (and 16 rows of steps x batch) the bits do not depend on the batch.
    # The cells' activations must not depend on it either: a GRU's rows lie 3H values apart, so
    # at H=5 and 130 the second row does not start on a packet boundary (row_exact.hpp).
    layer = CELLS[cell](input_size, hidden, dtype=dtype, n_threads=1, seed=11)
    rng = np.random.default_rng(input_size + hidden)
    for batch, steps in ((2, 5), (3, 5), (3, 1)):
        x = rng.standard_normal((steps, batch, input_size)).astype(dtype)
        together, _ = layer.forward(x)
        for b in range(batch):
            alone, _ = layer.forward(x[:, b : b + 1])
            np.testing.assert_array_equal(alone[:, 0], together[:, b], err_msg=f"B={batch} T={steps} b={b}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_input_gates_below_minus_nine_give_the_same_bits_alone_and_in_a_batch(dtype):
    # Below -9 Eigen's float logistic switches to exp, and its scalar code (which takes a row's
    # elements before its first aligned address) to std::exp, whose last bits differ. One LSTM step
    # from a zero state with the input gate there, the cell gate at tanh(1) and the output gate
    # open: h = tanh(i * g) passes i's bits through. Rows of an LSTM with H=13 lie 52 values apart,
    # so the second and third rows of the batch start off a packet boundary.
    hidden, size = 13, 3
    layer = rnnkit.LSTM(size, hidden, dtype=dtype, n_threads=1, seed=0)
    rng = np.random.default_rng(5)
    w_ih = np.zeros((4 * hidden, size))
    w_ih[:hidden] = rng.uniform(-1.0, 1.0, (hidden, size))
    b_ih = np.concatenate([np.full(hidden, -12.0), np.zeros(hidden), np.ones(hidden), np.full(hidden, 20.0)])
    layer.load_state_dict({"weight_ih_l0": w_ih.astype(dtype), "weight_hh_l0": np.zeros((4 * hidden, hidden), dtype),
                           "bias_ih_l0": b_ih.astype(dtype), "bias_hh_l0": np.zeros(4 * hidden, dtype)})
    x = rng.standard_normal((1, 3, size)).astype(dtype)
    together, _ = layer.forward(x)
    assert (together[0] > 0).all() and (together[0] < 1e-3).all()  # the input gate is where it should be
    for b in range(3):
        alone, _ = layer.forward(x[:, b : b + 1])
        np.testing.assert_array_equal(alone[:, 0], together[:, b], err_msg=f"b={b}")
