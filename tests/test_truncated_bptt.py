"""Carrying state between chunks (truncated BPTT building blocks).

Unidirectional only: a reverse direction starts at the end of each chunk, so chunking a
bidirectional model is (correctly) not equivalent to one pass.
"""
import itertools

import numpy as np
import pytest

from conftest import CELLS, DTYPES, assert_close_rel, make_problem, make_rnnkit

T, B, D, H = 10, 3, 4, 5
TOL = {"float32": 1e-6, "float64": 1e-12}
GRID = list(itertools.product(CELLS, (1, 2, 3), DTYPES, (False, True), (1, 4, 9)))


def _copy(a):
    if a is None:
        return None
    if isinstance(a, (tuple, list)):
        return tuple(_copy(v) for v in a)
    return np.array(a, copy=True)


@pytest.mark.parametrize("cell,num_layers,dtype,batch_first,split", GRID,
                         ids=[f"{c}-L{l}-{d}-{'bf' if b else 'tf'}-split{s}"
                              for c, l, d, b, s in GRID])
def test_two_chunks_equal_one_pass(cell, num_layers, dtype, batch_first, split):
    m = make_rnnkit(cell, D, H, num_layers, batch_first=batch_first, dtype=dtype, seed=3)
    p = make_problem(cell, T, B, D, H, num_layers, False, dtype, batch_first=batch_first, seed=4)
    ax = 1 if batch_first else 0
    sl1 = (slice(None), slice(0, split)) if batch_first else (slice(0, split),)
    sl2 = (slice(None), slice(split, None)) if batch_first else (slice(split, None),)
    x1, x2 = p.x[sl1], p.x[sl2]
    G1, G2 = p.G[sl1], p.G[sl2]
    lstm = cell == "lstm"

    # ---- one pass
    out, st = m.forward(p.x, p.state(), training=True)
    out, st = _copy(out), _copy(st)
    gx, gs0 = _copy(m.backward(p.G, p.grad_state()))
    grads_full = {k: np.array(v, copy=True) for k, v in m.grads.items()}

    # ---- two chunks, forward
    o1, s1 = _copy(m.forward(x1, p.state(), training=True))
    o2, s2 = _copy(m.forward(x2, s1, training=True))
    assert_close_rel(np.concatenate([o1, o2], axis=ax), out, TOL[dtype], name="out")
    if lstm:
        assert_close_rel(s2[0], st[0], TOL[dtype], name="h_n")
        assert_close_rel(s2[1], st[1], TOL[dtype], name="c_n")
    else:
        assert_close_rel(s2, st, TOL[dtype], name="h_n")

    # ---- backward through chunk 2 (its tape is the last training forward)
    gx2, gs1 = _copy(m.backward(G2, p.grad_state()))
    # ---- re-run chunk 1 to get its tape, feed chunk 2's initial-state grad as grad_state
    m.forward(x1, p.state(), training=True)
    gx1, gs0_chunked = _copy(m.backward(G1, gs1, accumulate=True))

    assert_close_rel(np.concatenate([gx1, gx2], axis=ax), gx, TOL[dtype], name="grad_x")
    if lstm:
        assert_close_rel(gs0_chunked[0], gs0[0], TOL[dtype], name="grad_h0")
        assert_close_rel(gs0_chunked[1], gs0[1], TOL[dtype], name="grad_c0")
    else:
        assert_close_rel(gs0_chunked, gs0, TOL[dtype], name="grad_h0")
    for k, v in m.grads.items():
        assert_close_rel(v, grads_full[k], TOL[dtype], name=f"grads[{k}]")


@pytest.mark.parametrize("cell", CELLS)
def test_three_chunks_with_lengths_all_full(cell):
    """lengths equal to the chunk length everywhere is the same as no lengths."""
    m = make_rnnkit(cell, D, H, 2, dtype="float64", seed=5)
    p = make_problem(cell, T, B, D, H, 2, False, "float64", seed=6)
    out_full, st_full = _copy(m.forward(p.x, p.state()))
    state = p.state()
    outs = []
    for a, b in ((0, 3), (3, 7), (7, T)):
        o, state = _copy(m.forward(p.x[a:b], state, lengths=[b - a] * B))
        outs.append(o)
    assert_close_rel(np.concatenate(outs, 0), out_full, 1e-12, name="out")
    if cell == "lstm":
        assert_close_rel(state[0], st_full[0], 1e-12, name="h_n")
        assert_close_rel(state[1], st_full[1], 1e-12, name="c_n")
    else:
        assert_close_rel(state, st_full, 1e-12, name="h_n")
