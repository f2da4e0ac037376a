"""Products of a few rows (batch 1-9 at one step, a few steps) against a float64 numpy reference.

At up to four rows per product the engine multiplies with unpacked weights by its own kernels
(cpp/include/rnnkit/row_dots.hpp: four rows of W at a time for one or two rows of H, three for
three or four, a scalar tail for what is left of W's rows and of the depth). These cases pick
gate widths that leave every remainder of W's rows (mod 3 and mod 4), depths that are not a
multiple of any vector width, and batches past four (several passes), on one thread and split
between two.
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
@pytest.mark.parametrize("input_size,hidden", [(13, 5), (8, 7), (35, 16)])
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
