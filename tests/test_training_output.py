"""The states a training forward keeps in its output.

A unidirectional top layer's output is its hidden state at every step, so a training forward
keeps those states in the memory of the array it returns instead of in a copy of its own (T x B
x H values fewer at the training step's peak, bench/memory.py). The caller may change that array
before backward (``g = out; g -= target``): backward sees it and runs the top layer again. These
tests hold every such path to the gradients of an unchanged output, bit for bit.
"""
import numpy as np
import pytest

from conftest import CELLS, make_problem, make_rnnkit

# T x B x H at least 2**15 (where the caller's out keeps the states); B * H * 4 bytes no multiple
# of a SIMD packet, so that alignment would show.
T, B, D, H = 60, 9, 5, 61


def _keeps_states(out, batch, hidden):
    """Whether out is a view into a buffer one step longer (the slot of h_{-1} before it)."""
    return out.base is not None and out.base.size >= out.size + batch * hidden


def _run(m, p, change=None):
    """Training forward, an optional change to out, backward: copies of everything."""
    out, _ = m.forward(p.x, p.state(), lengths=p.lengths, training=True)
    assert _keeps_states(out, *out.shape[-2:]) if out.ndim == 3 else _keeps_states(out, 1, out.shape[-1])
    before = out.copy()
    if change is not None:
        change(out)
    gx, gst = m.backward(p.G, p.grad_state())
    gh0 = gst[0] if p.is_lstm else gst
    return before, out.copy(), gx.copy(), gh0.copy(), {k: v.copy() for k, v in m.grads.items()}


def _assert_same_gradients(a, b):
    for name, x, y in (("out", a[0], b[0]), ("grad_x", a[2], b[2]), ("grad_h0", a[3], b[3])):
        assert np.array_equal(x, y), name
    assert a[4].keys() == b[4].keys()
    for k in a[4]:
        assert np.array_equal(a[4][k], b[4][k]), k


CHANGES = {
    "subtract": lambda out: out.__isub__(1.0),
    "one value": lambda out: out.__setitem__((0, 0, 0), out[0, 0, 0] + 1.0),
    "last step": lambda out: out.__setitem__(-1, 0.0),
}


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers,lengths,state", [(1, False, False), (1, True, True), (2, True, False),
                                                  (2, False, True)])
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_changing_out_before_backward_changes_no_gradient(cell, layers, lengths, state, n_threads, change):
    p = make_problem(cell, T, B, D, H, layers, False, "float32", with_lengths=lengths, with_state=state, seed=3)
    m = make_rnnkit(cell, D, H, layers, dtype="float32", seed=1, n_threads=n_threads)
    untouched = _run(m, p)
    changed = _run(m, p, CHANGES[change])
    assert not np.array_equal(changed[1], untouched[0])  # the change was made, in the returned array
    _assert_same_gradients(untouched, changed)
    again = _run(m, p)  # and the layer is none the worse for it
    _assert_same_gradients(untouched, again)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_small_batch_unit_split_and_one_sequence(cell, n_threads):
    """B=1, H=128: at 2 threads the forward splits the hidden units; and an unbatched x."""
    p = make_problem(cell, 300, 1, 4, 128, 1, False, "float32", seed=5)
    m = make_rnnkit(cell, 4, 128, 1, dtype="float32", seed=2, n_threads=n_threads)
    _assert_same_gradients(_run(m, p), _run(m, p, CHANGES["subtract"]))
    q = make_problem(cell, 300, 1, 4, 128, 1, False, "float32", unbatched=True, seed=5)
    _assert_same_gradients(_run(m, q), _run(m, q, lambda out: out.__isub__(1.0)))


@pytest.mark.parametrize("cell", CELLS)
def test_gradient_computed_in_out_itself(cell):
    """``g = out; g -= target; backward(g)``, the in-place idiom, equals backward(out - target)."""
    p = make_problem(cell, T, B, D, H, 2, False, "float64", with_lengths=True, seed=4)
    m = make_rnnkit(cell, D, H, 2, dtype="float64", seed=3)
    target = np.random.default_rng(0).standard_normal((T, B, H))
    out, _ = m.forward(p.x, p.state(), lengths=p.lengths, training=True)
    expected_g = out - target
    gx_ref, _ = m.backward(expected_g)
    grads_ref = {k: v.copy() for k, v in m.grads.items()}
    g, _ = m.forward(p.x, p.state(), lengths=p.lengths, training=True)
    g -= target
    gx, _ = m.backward(g)
    assert np.array_equal(g, expected_g)
    assert np.array_equal(gx, gx_ref)
    for k, v in m.grads.items():
        assert np.array_equal(v, grads_ref[k]), k


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("lengths", [False, True])
def test_training_output_equals_inference_bit_for_bit(cell, batch_first, lengths):
    """Kept in the output's memory (the caller's, or a time-major buffer's with batch_first),
    the states round as in inference; and rows past a length stay zero."""
    p = make_problem(cell, T, B, D, H, 2, False, "float32", batch_first=batch_first, with_lengths=lengths, seed=6)
    m = make_rnnkit(cell, D, H, 2, batch_first=batch_first, dtype="float32", seed=4)
    out_eval, st_eval = m.forward(p.x, p.state(), lengths=p.lengths)
    out_train, st_train = m.forward(p.x, p.state(), lengths=p.lengths, training=True)
    assert np.array_equal(out_train, out_eval)
    for a, b in zip(st_train if p.is_lstm else (st_train,), st_eval if p.is_lstm else (st_eval,)):
        assert np.array_equal(a, b)
    if lengths:
        for b, n in enumerate(p.lengths):
            rows = out_train[b, n:] if batch_first else out_train[n:, b]
            assert not rows.any()


def test_out_is_an_ordinary_writable_array():
    import rnnkit

    m = rnnkit.LSTM(D, H, seed=0)
    out, _ = m.forward(np.ones((T, B, D), np.float32), training=True)
    assert _keeps_states(out, B, H)
    assert out.shape == (T, B, H) and out.dtype == np.float32
    assert out.flags.c_contiguous and out.flags.writeable
    kept = out.copy()
    m.forward(np.zeros((T, B, D), np.float32), training=True)  # a later call has memory of its own
    assert np.array_equal(out, kept)


@pytest.mark.parametrize("steps,batch,hidden,kept", [(2, 3, 8, False), (1, 4, 64, False), (64, 8, 64, True)])
def test_slot_offered_only_where_the_states_go_there(steps, batch, hidden, kept):
    """Below 2^15 output values the layer keeps its states in its own memory: the binding then
    gives out no extra step of memory before it (B x H values that would go unused)."""
    import rnnkit

    m = rnnkit.GRU(D, hidden, seed=0)
    p_x = np.ones((steps, batch, D), np.float32)
    out, _ = m.forward(p_x, training=True)
    assert _keeps_states(out, batch, hidden) == kept
    if not kept:
        assert out.base is None or out.base.size == out.size
    gx, _ = m.backward(np.ones_like(out))
    assert gx.shape == p_x.shape and np.isfinite(gx).all()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_changing_out_of_a_pipelined_stack(cell, change):
    # A small batch on two threads whose layers run at once (each a chunk of steps behind the one
    # below, the top one projecting its input 8 steps at a time): backward's rerun of the top
    # layer takes the same plan, so the gradients stay the same bits.
    steps, batch, hidden = 120, 5, 60  # T x B x H = 36,000: the states go to the caller's out
    p = make_problem(cell, steps, batch, D, hidden, 2, False, "float32", with_lengths=True, seed=5)
    m = make_rnnkit(cell, D, hidden, 2, dtype="float32", seed=6, n_threads=2)
    untouched = _run(m, p)
    changed = _run(m, p, CHANGES[change])
    assert not np.array_equal(changed[1], untouched[0])
    _assert_same_gradients(untouched, changed)
