"""Optimizers against torch.optim: same parameters, same gradient sequence, same result."""
import numpy as np
import pytest

import rnnkit
from conftest import assert_close_rel, require_torch

torch = require_torch()

RTOL = {"float32": 1e-6, "float64": 1e-13}

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, maximize=True)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=1e-2, amsgrad=True)),
    ("Adam", dict(lr=1e-2, betas=(0.3, 0.9), maximize=True)),  # lerp weight >= 0.5
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1, amsgrad=True)),
    ("RMSprop", dict(lr=1e-2)),
    ("RMSprop", dict(lr=1e-2, alpha=0.9, centered=True)),
    ("RMSprop", dict(lr=1e-2, momentum=0.9, weight_decay=0.01)),
    ("RMSprop", dict(lr=1e-2, momentum=0.5, centered=True, maximize=True)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)])
def test_matches_torch_optim(name, kwargs, dtype):
    rng = np.random.default_rng(0)
    shapes = [(7, 5), (11,)]
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [np.zeros_like(p) for p in params]
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    opt = getattr(rnnkit.optim, name)(list(zip(params, grads)), **kwargs)
    topt = getattr(torch.optim, name)(tparams, **kwargs)
    for _ in range(6):
        for g, tp in zip(grads, tparams):
            g[...] = rng.standard_normal(g.shape)
            tp.grad = torch.tensor(g.copy())
        opt.step()
        topt.step()
    for p, tp in zip(params, tparams):
        assert_close_rel(p, tp.detach().numpy(), RTOL[dtype], name=name)
    assert opt.step_count == 6


def test_adam_on_a_layer_matches_torch():
    """An LSTM trained two steps with rnnkit's Adam equals torch's LSTM with torch's Adam."""
    m = rnnkit.LSTM(3, 4, num_layers=2, dtype="float64", seed=0)
    tm = torch.nn.LSTM(3, 4, num_layers=2).double()
    tm.load_state_dict({k: torch.tensor(v) for k, v in m.state_dict().items()})
    opt = rnnkit.optim.Adam([m], lr=0.05)
    topt = torch.optim.Adam(tm.parameters(), lr=0.05)
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    for _ in range(2):
        out, _ = m.forward(x, training=True)
        m.backward(2 * out)  # d/d(out) of sum(out**2)
        opt.step()
        topt.zero_grad()
        (tm(torch.tensor(x))[0] ** 2).sum().backward()
        topt.step()
    for k, v in tm.state_dict().items():
        assert_close_rel(m.state_dict()[k], v.numpy(), 1e-12, name=k)


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(2)
    p1, g1 = rng.standard_normal(10), np.zeros(10)
    p2, g2 = p1.copy(), np.zeros(10)
    a = rnnkit.optim.Adam([(p1, g1)], lr=0.1, amsgrad=True)
    for _ in range(3):
        g1[...] = rng.standard_normal(10)
        a.step()
    b = rnnkit.optim.Adam([(p2, g2)], lr=0.1, amsgrad=True)
    p2[...] = p1
    b.load_state_dict(a.state_dict())
    g1[...] = g2[...] = rng.standard_normal(10)
    a.step()
    b.step()
    np.testing.assert_array_equal(p1, p2)


def test_zero_grad_clears_layer_grads():
    m = rnnkit.GRU(2, 3, seed=0)
    m.forward(np.ones((4, 1, 2)), training=True)
    m.backward(np.ones((4, 1, 3)))
    opt = rnnkit.optim.SGD([m], lr=0.1)
    assert np.any(m.flat_grads != 0)
    opt.zero_grad()
    assert not np.any(m.flat_grads)


@pytest.mark.parametrize("make,match", [
    (lambda p: rnnkit.optim.SGD(p, lr=-1.0), "lr"),
    (lambda p: rnnkit.optim.SGD(p, lr=0.1, nesterov=True), "nesterov"),
    (lambda p: rnnkit.optim.Adam(p, betas=(1.0, 0.9)), "betas"),
    (lambda p: rnnkit.optim.Adam(p, eps=-1e-8), "eps"),
    (lambda p: rnnkit.optim.RMSprop(p, momentum=-0.1), "momentum"),
    (lambda p: rnnkit.optim.AdamW(p, weight_decay=-1.0), "weight_decay"),
])
def test_bad_hyper_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make([(np.zeros(3), np.zeros(3))])


def test_bad_params():
    with pytest.raises(TypeError, match="params"):
        rnnkit.optim.SGD([object()], lr=0.1)
    with pytest.raises(ValueError, match="params"):
        rnnkit.optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="gradient"):
        rnnkit.optim.SGD([(np.zeros(3), np.zeros(4))], lr=0.1)
    with pytest.raises(ValueError, match="contiguous"):
        rnnkit.optim.SGD([(np.zeros((3, 4))[:, ::2], np.zeros((3, 2)))], lr=0.1)
    with pytest.raises(TypeError, match="float32 or float64"):
        rnnkit.optim.SGD([(np.zeros(3, dtype=int), np.zeros(3, dtype=int))], lr=0.1)
