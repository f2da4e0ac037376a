"""Input validation: exception types and messages naming the argument; accepted layouts."""
import numpy as np
import pytest

import rnnkit
from conftest import CELLS, make_problem, make_rnnkit, rnnkit_run

T, B, D, H, L = 5, 3, 4, 6, 2
BI = True
DIRS = 2
S = L * DIRS


def word(name):
    """Regex matching `name` as a whole identifier (so 'state' does not match 'grad_state')."""
    return rf"(?<![A-Za-z0-9_]){name}(?![A-Za-z0-9_])"


def model(cell, **kw):
    kw.setdefault("dtype", "float64")
    kw.setdefault("seed", 0)
    return make_rnnkit(cell, D, H, L, bidirectional=BI, **kw)


def good(cell, dtype="float64"):
    return make_problem(cell, T, B, D, H, L, BI, dtype, seed=1)


def call_forward(m, cell, x=None, h0="keep", c0="keep", state="build", lengths=None,
                 training=False):
    p = good(cell)
    x = p.x if x is None else x
    h0 = p.h0 if isinstance(h0, str) else h0
    c0 = p.c0 if isinstance(c0, str) else c0
    if isinstance(state, str):
        state = (h0, c0) if cell == "lstm" else h0
    return m.forward(x, state, lengths=lengths, training=training)


# ------------------------------------------------------------------ x
def _x_cases():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, D))
    nan_x = x.copy()
    nan_x[2, 1, 3] = np.nan
    inf_x = x.copy()
    inf_x[0, 0, 0] = -np.inf
    return {
        "rank1": (ValueError, rng.standard_normal(D)),
        "rank4": (ValueError, rng.standard_normal((T, B, D, 1))),
        "rank0": (ValueError, np.float64(1.0)),
        "wrong_feature_dim": (ValueError, rng.standard_normal((T, B, D + 1))),
        "int": (TypeError, np.ones((T, B, D), dtype=np.int64)),
        "int32": (TypeError, np.ones((T, B, D), dtype=np.int32)),
        "bool": (TypeError, np.ones((T, B, D), dtype=bool)),
        "complex": (TypeError, x.astype(np.complex128)),
        "object": (TypeError, x.astype(object)),
        "nan": (ValueError, nan_x),
        "inf": (ValueError, inf_x),
        "empty_batch": (ValueError, np.zeros((T, 0, D))),
        "zero_T": (ValueError, np.zeros((0, B, D))),
        "zero_T_unbatched": (ValueError, np.zeros((0, D))),
    }


X_CASES = _x_cases()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("case", list(X_CASES))
def test_bad_x(cell, case):
    exc, x = X_CASES[case]
    m = model(cell)
    # zero-size / unbatched cases are called without state so only x is wrong
    with pytest.raises(exc, match=word("x")):
        m.forward(x, None)


@pytest.mark.parametrize("cell", CELLS)
def test_bad_x_nan_with_training(cell):
    m = model(cell)
    x = good(cell).x.copy()
    x[-1, -1, -1] = np.nan
    with pytest.raises(ValueError, match=word("x")):
        m.forward(x, None, training=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_non_finite_x_anywhere_is_refused(dtype, value, where):
    # x is checked in the C++ call, in one branch-free pass: a bad value in its first packet,
    # in the vectorised body and in the scalar tail (37 x 3 x 7 values is no whole number of
    # packets) must all be found.
    m = rnnkit.GRU(7, 5, dtype=dtype, seed=0)
    x = np.random.default_rng(3).standard_normal((37, 3, 7)).astype(dtype)
    flat = x.reshape(-1)
    flat[{"first": 0, "middle": flat.size // 2, "last": flat.size - 1}[where]] = value
    with pytest.raises(ValueError, match=word("x") + " contains NaN or Inf"):
        m.forward(x)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_extreme_finite_x_is_accepted(dtype):
    info = np.finfo(dtype)
    x = np.zeros((4, 2, 3), dtype)
    x[0, 0, :] = [info.max, -info.max, info.smallest_subnormal]
    out, _ = rnnkit.RNN(3, 2, dtype=dtype, seed=0).forward(x)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("cell", CELLS)
def test_a_refused_forward_leaves_the_pending_backward_and_the_dropout_stream(cell):
    # The NaN check runs inside the C++ call, after the layer has set its tape aside: a refused
    # call must give the tape back (the earlier forward's backward still works) and must not
    # advance the dropout masks' stream.
    p = good(cell)
    g = np.random.default_rng(4).standard_normal((T, B, DIRS * H))
    bad = p.x.copy()
    bad[1, 0, 0] = np.nan
    runs = []
    for refuse in (False, True):
        m = model(cell, dropout=0.5)
        m.forward(p.x, training=True)
        if refuse:
            with pytest.raises(ValueError, match=word("x")):
                m.forward(bad, training=True)
        grad_x, _ = m.backward(g)
        out, _ = m.forward(p.x, training=True)  # the next masks
        runs.append((grad_x, m.flat_grads.copy(), out))
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("accumulate", [False, True])
def test_a_refused_backward_leaves_the_gradients_and_the_tape(cell, accumulate):
    # grad_out is checked, and the gradients cleared, inside the C++ call: a refused call must
    # leave both the gradients and the tape (a good backward afterwards gives the same result).
    p = good(cell)
    g = np.random.default_rng(5).standard_normal((T, B, DIRS * H))
    bad = g.copy()
    bad[T - 1, B - 1, 0] = np.inf
    m = model(cell)
    m.forward(p.x, training=True)
    grad_x, _ = m.backward(g)
    before = m.flat_grads.copy()
    with pytest.raises(ValueError, match=word("grad_out") + " contains NaN or Inf"):
        m.backward(bad, accumulate=accumulate)
    np.testing.assert_array_equal(m.flat_grads, before)
    again, _ = m.backward(g, accumulate=accumulate)
    np.testing.assert_array_equal(again, grad_x)
    np.testing.assert_array_equal(m.flat_grads, 2 * before if accumulate else before)


# ------------------------------------------------------------------ state
def _state_cases(cell):
    rng = np.random.default_rng(2)
    ok = lambda *shape: 0.5 * rng.standard_normal(shape)  # noqa: E731
    cases = {
        "wrong_layers": (ValueError, ok(S + 1, B, H)),
        "wrong_batch": (ValueError, ok(S, B + 1, H)),
        "wrong_hidden": (ValueError, ok(S, B, H + 1)),
        "rank2_for_batched": (ValueError, ok(S, H)),
        "rank4": (ValueError, ok(S, B, H, 1)),
        "int": (TypeError, np.zeros((S, B, H), dtype=np.int64)),
        "complex": (TypeError, np.zeros((S, B, H), dtype=np.complex128)),
        "object": (TypeError, np.zeros((S, B, H), dtype=object)),
    }
    nan_h = ok(S, B, H)
    nan_h[1, 2, 3] = np.nan
    cases["nan"] = (ValueError, nan_h)
    inf_h = ok(S, B, H)
    inf_h[0, 0, 0] = np.inf
    cases["inf"] = (ValueError, inf_h)
    return cases


STATE_CASE_NAMES = list(_state_cases("gru"))


STATE_GRID = [(c, case, w) for c in CELLS for case in STATE_CASE_NAMES
              for w in (("h0", "c0") if c == "lstm" else ("h0",))]


@pytest.mark.parametrize("cell,case,which", STATE_GRID)
def test_bad_state(cell, case, which):
    exc, bad = _state_cases(cell)[case]
    m = model(cell)
    kw = {which: bad}
    with pytest.raises(exc, match=word("state")):
        call_forward(m, cell, **kw)


@pytest.mark.parametrize("bad", ["array", "triple", "single_tuple", "list_of_one"])
def test_bad_lstm_state_structure(bad):
    m = model("lstm")
    p = good("lstm")
    state = {"array": p.h0, "triple": (p.h0, p.c0, p.c0), "single_tuple": (p.h0,),
             "list_of_one": [p.h0]}[bad]
    with pytest.raises((TypeError, ValueError), match=word("state")):
        m.forward(p.x, state)


@pytest.mark.parametrize("cell", CELLS)
def test_unbatched_x_with_batched_state(cell):
    m = model(cell)
    p = good(cell)
    with pytest.raises(ValueError, match=word("state")):
        call_forward(m, cell, x=p.x[:, 0, :])


# ------------------------------------------------------------------ lengths
LENGTH_CASES = {
    "zero": (ValueError, [T, 0, 2]),
    "too_long": (ValueError, [T, T + 1, 2]),
    "negative": (ValueError, [T, -1, 2]),
    "too_few": (ValueError, [T, 2]),
    "too_many": (ValueError, [T, 2, 3, 1]),
    "non_integer_floats": ((TypeError, ValueError), [T, 2.5, 3]),
    "non_integer_array": ((TypeError, ValueError), np.array([T, 2.5, 3.0])),
    "strings": ((TypeError, ValueError), ["5", "2", "3"]),
    "rank2": ((TypeError, ValueError), np.array([[T, 2, 3]])),
    "complex": ((TypeError, ValueError), np.array([T, 2, 3], dtype=np.complex128)),
}


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("case", list(LENGTH_CASES))
def test_bad_lengths(cell, case):
    exc, lengths = LENGTH_CASES[case]
    m = model(cell)
    with pytest.raises(exc, match=word("lengths")):
        call_forward(m, cell, lengths=lengths)


@pytest.mark.parametrize("cell", CELLS)
def test_lengths_accepted_forms(cell):
    """list, int64 / int32 arrays and numpy integer scalars are equivalent."""
    m = model(cell)
    ref = call_forward(m, cell, lengths=[T, 1, 3])
    for form in (np.array([T, 1, 3], dtype=np.int64), np.array([T, 1, 3], dtype=np.int32),
                 [np.int64(T), np.int32(1), 3], (T, 1, 3)):
        got = call_forward(m, cell, lengths=form)
        assert np.array_equal(got[0], ref[0])


# ------------------------------------------------------------------ backward
@pytest.mark.parametrize("cell", CELLS)
def test_backward_without_forward(cell):
    m = model(cell)
    p = good(cell)
    with pytest.raises(ValueError):
        m.backward(p.G, p.grad_state())


@pytest.mark.parametrize("cell", CELLS)
def test_backward_after_eval_forward_only(cell):
    m = model(cell)
    p = good(cell)
    call_forward(m, cell, training=False)
    with pytest.raises(ValueError):
        m.backward(p.G, p.grad_state())


def _grad_out_cases():
    rng = np.random.default_rng(3)
    return {
        "wrong_T": (ValueError, rng.standard_normal((T + 1, B, DIRS * H))),
        "wrong_B": (ValueError, rng.standard_normal((T, B + 1, DIRS * H))),
        "wrong_H": (ValueError, rng.standard_normal((T, B, H))),
        "rank2": (ValueError, rng.standard_normal((T, DIRS * H))),
        "int": (TypeError, np.ones((T, B, DIRS * H), dtype=np.int64)),
        "complex": (TypeError, np.ones((T, B, DIRS * H), dtype=np.complex128)),
    }


GRAD_OUT_CASES = _grad_out_cases()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("case", list(GRAD_OUT_CASES))
def test_bad_grad_out(cell, case):
    exc, G = GRAD_OUT_CASES[case]
    m = model(cell)
    p = good(cell)
    call_forward(m, cell, training=True)
    with pytest.raises(exc, match=word("grad_out")):
        m.backward(G, p.grad_state())


GSTATE_GRID = [(c, case, w) for c in CELLS
               for case in ("wrong_layers", "wrong_batch", "wrong_hidden", "rank2", "int")
               for w in ((0, 1) if c == "lstm" else (0,))]


@pytest.mark.parametrize("cell,case,which", GSTATE_GRID)
def test_bad_grad_state(cell, case, which):
    bad = {"wrong_layers": np.zeros((S + 1, B, H)), "wrong_batch": np.zeros((S, B + 1, H)),
           "wrong_hidden": np.zeros((S, B, H + 1)), "rank2": np.zeros((S, H)),
           "int": np.zeros((S, B, H), dtype=np.int64)}[case]
    exc = TypeError if case == "int" else ValueError
    m = model(cell)
    p = good(cell)
    call_forward(m, cell, training=True)
    if cell == "lstm":
        gs = [p.Gh, p.Gc]
        gs[which] = bad
        gs = tuple(gs)
    else:
        gs = bad
    with pytest.raises(exc, match=word("grad_state")):
        m.backward(p.G, gs)


def test_bad_lstm_grad_state_structure():
    m = model("lstm")
    p = good("lstm")
    call_forward(m, "lstm", training=True)
    with pytest.raises((TypeError, ValueError), match=word("grad_state")):
        m.backward(p.G, p.Gh)  # a bare array instead of (grad_h_n, grad_c_n)
    with pytest.raises((TypeError, ValueError), match=word("grad_state")):
        m.backward(p.G, (p.Gh, p.Gc, p.Gc))


# ------------------------------------------------------------------ constructor
CTOR_CASES = [
    ("input_size", 0, ValueError), ("input_size", -3, ValueError),
    ("hidden_size", 0, ValueError), ("hidden_size", -1, ValueError),
    ("num_layers", 0, ValueError), ("num_layers", -2, ValueError),
    ("dropout", -0.1, ValueError), ("dropout", 1.0, ValueError), ("dropout", 1.5, ValueError),
    ("dropout", float("nan"), ValueError),
    ("dtype", "float16", ValueError), ("dtype", "int32", ValueError),
    ("dtype", "complex128", ValueError), ("dtype", "banana", ValueError),
    ("dtype", np.int64, (TypeError, ValueError)),
    ("input_size", 2.5, (TypeError, ValueError)), ("input_size", "4", (TypeError, ValueError)),
    ("hidden_size", None, (TypeError, ValueError)), ("num_layers", 1.5, (TypeError, ValueError)),
    ("dropout", "0.1", (TypeError, ValueError)),
]


@pytest.mark.parametrize("cls", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("arg,value,exc", CTOR_CASES,
                         ids=[f"{a}={v!r}" for a, v, _ in CTOR_CASES])
def test_bad_constructor(cls, arg, value, exc):
    kw = dict(input_size=4, hidden_size=5, num_layers=2, dropout=0.0, dtype="float32")
    kw[arg] = value
    with pytest.raises(exc, match=word(arg)):
        getattr(rnnkit, cls)(**kw)


@pytest.mark.parametrize("value", ["sigmoid", "TANHH", "", None, 3])
def test_bad_nonlinearity(value):
    exc = ValueError if isinstance(value, str) else (TypeError, ValueError)
    with pytest.raises(exc, match=word("nonlinearity")):
        rnnkit.RNN(4, 5, nonlinearity=value)


@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32, np.float64])
def test_good_dtypes_accepted(dtype):
    m = rnnkit.LSTM(4, 5, dtype=dtype, seed=0)
    want = np.dtype(dtype)
    assert all(v.dtype == want for v in m.state_dict().values())
    out, _ = m.forward(np.zeros((3, 2, 4), dtype=want))
    assert out.dtype == want


# ------------------------------------------------------------------ accepted inputs
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("model_dtype,in_dtype", [("float32", np.float64), ("float32", np.float16),
                                                  ("float64", np.float32), ("float64", np.float16)])
def test_other_float_dtypes_are_cast(cell, model_dtype, in_dtype):
    m = model(cell, dtype=model_dtype)
    p = good(cell, "float64")
    x_in = p.x.astype(in_dtype)
    got = m.forward(x_in, None)
    ref = m.forward(x_in.astype(model_dtype), None)
    assert got[0].dtype == np.dtype(model_dtype)
    assert np.array_equal(got[0], ref[0])


def _layouts(a, rng):
    """Same values as `a`, in non-contiguous / F-order / negatively strided layouts."""
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    strided = big[..., ::2]
    fortran = np.asfortranarray(a)
    rev = np.ascontiguousarray(a[::-1])[::-1]
    rev_all = np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
    tr = np.ascontiguousarray(np.swapaxes(a, 0, -1)).swapaxes(0, -1)
    out = {"strided": strided, "fortran": fortran, "reversed": rev, "reversed2": rev_all,
           "transposed_view": tr}
    for k, v in out.items():
        assert np.array_equal(v, a)
    assert not strided.flags.c_contiguous and not fortran.flags.c_contiguous
    assert rev.strides[0] < 0 and not tr.flags.c_contiguous
    return out


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["strided", "fortran", "reversed", "reversed2", "transposed_view"])
def test_noncontiguous_inputs_same_results(cell, dtype, layout):
    rng = np.random.default_rng(10)
    p = make_problem(cell, T, B, D, H, L, BI, dtype, with_lengths=True, seed=11)
    ref = rnnkit_run(model(cell, dtype=dtype), p)
    q = make_problem(cell, T, B, D, H, L, BI, dtype, with_lengths=True, seed=11)
    for attr in ("x", "h0", "c0", "G", "Gh", "Gc"):
        v = getattr(q, attr)
        if v is not None:
            setattr(q, attr, _layouts(v, rng)[layout])
    got = rnnkit_run(model(cell, dtype=dtype), q)
    for k in ("out", "h_n", "c_n", "grad_x", "grad_h0", "grad_c0"):
        if ref[k] is not None:
            assert np.array_equal(got[k], ref[k]), f"{k} differs for {layout} inputs"
    for k in ref["grads"]:
        assert np.array_equal(got["grads"][k], ref["grads"][k]), k
    # inputs must not have been modified
    for attr in ("x", "h0", "G"):
        assert np.array_equal(getattr(q, attr), getattr(p, attr))


@pytest.mark.parametrize("cell", CELLS)
def test_noncontiguous_batch_first_view(cell):
    """batch_first model fed x.transpose(1,0,2) of a (T,B,D) array (a strided view)."""
    p = make_problem(cell, T, B, D, H, L, BI, "float64", seed=12)
    m_tf = model(cell)
    m_bf = make_rnnkit(cell, D, H, L, bidirectional=BI, batch_first=True, dtype="float64", seed=0)
    a = m_tf.forward(p.x, p.state())
    b = m_bf.forward(p.x.transpose(1, 0, 2), p.state())
    c = m_bf.forward(np.ascontiguousarray(p.x.transpose(1, 0, 2)), p.state())
    assert np.array_equal(b[0], c[0])
    np.testing.assert_allclose(b[0].transpose(1, 0, 2), a[0], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell", CELLS)
def test_noncontiguous_state_dict_load(cell):
    m = model(cell, seed=3)
    sd = m.state_dict()
    m2 = model(cell, seed=4)
    m2.load_state_dict({k: (np.asfortranarray(v) if v.ndim == 2 else v[::-1].copy()[::-1])
                        for k, v in sd.items()})
    sd2 = m2.state_dict()
    for k in sd:
        assert np.array_equal(sd2[k], sd[k]), k
