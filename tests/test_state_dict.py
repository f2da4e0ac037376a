"""state_dict / load_state_dict / grads bookkeeping."""
import itertools
import re

import numpy as np
import pytest

import rnnkit
from conftest import (CELLS, DTYPES, expected_param_shapes, make_problem, make_rnnkit,
                      make_torch, rnnkit_forward, rnnkit_run)

D, H = 5, 6
GRID = list(itertools.product(CELLS, (1, 2, 3), (False, True), (True, False)))
IDS = [f"{c}-L{l}-{'bi' if b else 'uni'}-{'bias' if bb else 'nobias'}" for c, l, b, bb in GRID]


@pytest.mark.parametrize("cell,num_layers,bidirectional,bias", GRID, ids=IDS)
def test_keys_and_shapes(cell, num_layers, bidirectional, bias):
    m = make_rnnkit(cell, D, H, num_layers, bias=bias, bidirectional=bidirectional, dtype="float32")
    sd = m.state_dict()
    exp = expected_param_shapes(cell, D, H, num_layers, bias, bidirectional)
    assert set(sd) == set(exp)
    for k, shape in exp.items():
        assert isinstance(sd[k], np.ndarray), k
        assert sd[k].shape == shape, f"{k}: {sd[k].shape} != {shape}"
        assert sd[k].dtype == np.float32, k
    g = m.grads
    assert set(g) == set(sd), "grads keys must equal state_dict keys"
    for k in sd:
        assert g[k].shape == sd[k].shape and g[k].dtype == sd[k].dtype, k


@pytest.mark.parametrize("cell,num_layers,bidirectional,bias", GRID, ids=IDS)
def test_keys_match_torch_exactly(torch, cell, num_layers, bidirectional, bias):
    m = make_rnnkit(cell, D, H, num_layers, bias=bias, bidirectional=bidirectional, dtype="float64")
    tm = make_torch(cell, D, H, num_layers, bias=bias, bidirectional=bidirectional, dtype="float64")
    tsd = tm.state_dict()
    sd = m.state_dict()
    assert set(sd) == set(tsd)
    for k in tsd:
        assert sd[k].shape == tuple(tsd[k].shape), k


@pytest.mark.parametrize("cell", CELLS)
def test_key_order_matches_torch(torch, cell):
    m = make_rnnkit(cell, D, H, 3, bidirectional=True)
    tm = make_torch(cell, D, H, 3, bidirectional=True)
    assert list(m.state_dict()) == list(tm.state_dict())
    assert list(m.grads) == list(m.state_dict())


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_identity(cell, dtype):
    m1 = make_rnnkit(cell, D, H, 2, bidirectional=True, dtype=dtype, seed=1)
    m2 = make_rnnkit(cell, D, H, 2, bidirectional=True, dtype=dtype, seed=2)
    sd1 = m1.state_dict()
    m2.load_state_dict(sd1)
    sd2 = m2.state_dict()
    assert list(sd2) == list(sd1)
    for k in sd1:
        assert sd2[k].dtype == np.dtype(dtype)
        assert np.array_equal(sd2[k], sd1[k]), k
    p = make_problem(cell, 6, 3, D, H, 2, True, dtype, with_lengths=True, seed=3)
    a, b = rnnkit_run(m1, p), rnnkit_run(m2, p)
    for k in ("out", "h_n", "grad_x"):
        assert np.array_equal(a[k], b[k]), k
    for k in a["grads"]:
        assert np.array_equal(a["grads"][k], b["grads"][k]), k


@pytest.mark.parametrize("cell", CELLS)
def test_state_dict_returns_copies(cell):
    m = make_rnnkit(cell, D, H, 2, seed=1)
    sd = m.state_dict()
    ref = {k: v.copy() for k, v in sd.items()}
    for v in sd.values():
        v[...] = 123.0
    for k, v in m.state_dict().items():
        assert np.array_equal(v, ref[k]), f"mutating state_dict()[{k!r}] changed the model"


@pytest.mark.parametrize("cell", CELLS)
def test_load_state_dict_copies(cell):
    m = make_rnnkit(cell, D, H, 2, seed=1)
    src = make_rnnkit(cell, D, H, 2, seed=2).state_dict()
    keep = {k: v.copy() for k, v in src.items()}
    m.load_state_dict(src)
    for v in src.values():
        v[...] = -7.0
    for k, v in m.state_dict().items():
        assert np.array_equal(v, keep[k]), f"model aliases the loaded array {k!r}"


@pytest.mark.parametrize("cell", CELLS)
def test_load_state_dict_missing_key(cell):
    m = make_rnnkit(cell, D, H, 2, bidirectional=True, seed=1)
    before = m.state_dict()
    for key in ("weight_hh_l1_reverse", "bias_ih_l0"):
        sd = m.state_dict()
        del sd[key]
        with pytest.raises(ValueError, match=re.escape(key)):
            m.load_state_dict(sd)
    after = m.state_dict()
    for k in before:
        assert np.array_equal(before[k], after[k]), "failed load modified the model"


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("extra", ["weight_ih_l2", "bias_ih_l0_reverse", "foo"])
def test_load_state_dict_extra_key(cell, extra):
    m = make_rnnkit(cell, D, H, 2, bidirectional=False, seed=1)
    sd = m.state_dict()
    sd[extra] = np.zeros((3 * H,))
    with pytest.raises(ValueError, match=re.escape(extra)):
        m.load_state_dict(sd)


@pytest.mark.parametrize("strict", [True, False])
def test_load_state_dict_names_lstm_projections(strict):
    """PyTorch's LSTM(proj_size=P) state: refused by name, strict or not, and nothing changes."""
    torch = pytest.importorskip("torch")
    src = torch.nn.LSTM(D, H, num_layers=2, proj_size=3, bidirectional=True)
    sd = {k: v.detach().numpy() for k, v in src.state_dict().items()}
    m = rnnkit.LSTM(D, H, num_layers=2, bidirectional=True, seed=1)
    before = m.state_dict()
    with pytest.raises(ValueError, match=r"weight_hr_l0.*proj_size"):
        m.load_state_dict(sd, strict=strict)
    assert all(np.array_equal(before[k], v) for k, v in m.state_dict().items())


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("key", ["weight_ih_l0", "weight_hh_l1", "bias_hh_l1"])
@pytest.mark.parametrize("how", ["transposed", "extra_row", "flattened", "scalar"])
def test_load_state_dict_wrong_shape(cell, key, how):
    m = make_rnnkit(cell, D, H, 2, seed=1)
    before = m.state_dict()
    sd = m.state_dict()
    v = sd[key]
    transposed = v.T if (v.ndim == 2 and v.T.shape != v.shape) else (
        v[:, :-1] if v.ndim == 2 else v[:-1])
    sd[key] = {"transposed": transposed,
               "extra_row": np.concatenate([v, v[:1]], axis=0),
               "flattened": v.reshape(-1, 1) if v.ndim == 1 else v.ravel(),
               "scalar": np.float64(0.5)}[how]
    with pytest.raises(ValueError, match=re.escape(key)):
        m.load_state_dict(sd)
    after = m.state_dict()
    for k in before:
        assert np.array_equal(before[k], after[k]), "failed load modified the model"


def test_load_state_dict_bias_false_rejects_bias():
    m = make_rnnkit("gru", D, H, 1, bias=False, seed=1)
    sd = m.state_dict()
    sd["bias_ih_l0"] = np.zeros(3 * H)
    with pytest.raises(ValueError, match="bias_ih_l0"):
        m.load_state_dict(sd)


def test_positional_constructor_order():
    """(input_size, hidden_size, num_layers, [nonlinearity], bias, batch_first, dropout, bidirectional)."""
    m = rnnkit.RNN(D, H, 2, "relu", False, True, 0.0, True, dtype="float64", seed=0)
    sd = m.state_dict()
    assert "weight_ih_l1_reverse" in sd and not any(k.startswith("bias") for k in sd)
    assert sd["weight_ih_l1"].shape == (H, 2 * H)
    out, h = m.forward(np.ones((3, 7, D)))          # batch_first: (B=3, T=7, D)
    assert out.shape == (3, 7, 2 * H) and h.shape == (4, 3, H)
    assert np.all(out >= 0), "nonlinearity='relu' was not honoured"
    for cls in (rnnkit.LSTM, rnnkit.GRU):
        m = cls(D, H, 3, True, True, 0.25, False, dtype="float32", seed=0)
        sd = m.state_dict()
        assert "bias_hh_l2" in sd and "weight_ih_l0_reverse" not in sd
        out, st = m.forward(np.ones((2, 4, D), np.float32))   # batch_first: B=2, T=4
        h = st[0] if cls is rnnkit.LSTM else st
        assert out.shape == (2, 4, H) and h.shape == (3, 2, H)


# ------------------------------------------------------------------ grads semantics
@pytest.mark.parametrize("cell", CELLS)
def test_backward_overwrites_accumulate_adds_zero_grad_clears(cell):
    m = make_rnnkit(cell, D, H, 2, bidirectional=True, seed=5)
    p = make_problem(cell, 6, 3, D, H, 2, True, "float64", with_lengths=True, seed=6)
    g1 = rnnkit_run(m, p)["grads"]
    assert any(np.any(v != 0) for v in g1.values())
    g2 = rnnkit_run(m, p)["grads"]  # second backward overwrites
    for k in g1:
        assert np.array_equal(g1[k], g2[k]), f"{k}: backward did not overwrite"
    rnnkit_forward(m, p, training=True)
    m.backward(p.G, p.grad_state(), accumulate=True)
    for k, v in m.grads.items():
        np.testing.assert_allclose(v, 2 * g1[k], rtol=1e-13, atol=1e-15, err_msg=k)
    # accumulate another, different problem
    q = make_problem(cell, 6, 3, D, H, 2, True, "float64", seed=7)
    gq = rnnkit_run(make_rnnkit(cell, D, H, 2, bidirectional=True, seed=5), q)["grads"]
    rnnkit_forward(m, q, training=True)
    m.backward(q.G, q.grad_state(), accumulate=True)
    for k, v in m.grads.items():
        np.testing.assert_allclose(v, 2 * g1[k] + gq[k], rtol=1e-12, atol=1e-14, err_msg=k)
    m.zero_grad()
    for k, v in m.grads.items():
        assert v.shape == g1[k].shape and np.all(v == 0), k
    # accumulate onto zeros == plain backward
    rnnkit_forward(m, p, training=True)
    m.backward(p.G, p.grad_state(), accumulate=True)
    for k, v in m.grads.items():
        assert np.array_equal(v, g1[k]), k


@pytest.mark.parametrize("cell", CELLS)
def test_forward_does_not_touch_grads(cell):
    m = make_rnnkit(cell, D, H, 1, seed=5)
    p = make_problem(cell, 6, 3, D, H, 1, False, "float64", seed=6)
    g = rnnkit_run(m, p)["grads"]
    rnnkit_forward(m, make_problem(cell, 6, 3, D, H, 1, False, "float64", seed=9), training=True)
    rnnkit_forward(m, p, training=False)
    for k, v in m.grads.items():
        assert np.array_equal(v, g[k]), k


@pytest.mark.parametrize("cell", CELLS)
def test_load_state_dict_does_not_change_grads_shape(cell):
    m = make_rnnkit(cell, D, H, 2, bias=False, seed=5)
    m.load_state_dict(make_rnnkit(cell, D, H, 2, bias=False, seed=6).state_dict())
    assert set(m.grads) == set(m.state_dict())
