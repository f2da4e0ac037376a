"""Finite-difference gradient checks in float64 (no torch needed).

Scalar loss  L = sum(out*G) + sum(h_n*Gh) (+ sum(c_n*Gc) for LSTM), central differences

    dL/dθ ≈ (L(θ+ε) - L(θ-ε)) / (2ε),   ε = 1e-6.

Choice of ε: the truncation error of the central difference is ε²/6·|L'''| ≈ 1e-13
for these O(1) smooth functions, while the round-off error is ≈ u·Σ|terms of L|/ε with
u = 1.1e-16 and Σ|terms| ≈ 1e2 here, i.e. ≈ 1e-8 absolute.  Gradients are O(0.1 .. 1), so
the achievable relative error is ~1e-8 .. 1e-7, comfortably below the 1e-6 tolerance,
while any real bug (a missing term, a wrong index, a wrong gate) gives O(1e-2 .. 1)
errors.  (ReLU kinks would break FD, but hitting a pre-activation within 1e-6 of 0 has
probability ~1e-6 per unit and the data are fixed by seeds.)

The error measure is max over the checked entries of |fd - analytic| divided by
max|analytic| over the whole tensor (norm-inf relative error, as in the parity tests).
"""
import itertools

import numpy as np
import pytest

from conftest import CELLS, make_problem, make_rnnkit, rnnkit_forward, rnnkit_run, scalar_loss

EPS = 1e-6
TOL = 1e-6
T, B, D, H = 6, 3, 4, 5


def _pick(rng, shape, n, analytic):
    """n random flat indices plus the index of the largest |analytic| entry."""
    size = int(np.prod(shape))
    idx = set(int(i) for i in rng.choice(size, size=min(n, size), replace=False))
    idx.add(int(np.argmax(np.abs(analytic))))
    return sorted(idx)


def _fd_check(loss_at, sd, p, analytic, rng, n_param=4, n_x=10, n_state=6, label=""):
    """loss_at(sd, x, h0, c0) -> float.  Checks params, x, h0 (and c0)."""
    base = dict(sd=sd, x=p.x, h0=p.h0, c0=p.c0)
    report = {}

    def perturbed(kind, key, flat, delta):
        if kind == "param":
            sd2 = {k: v.copy() for k, v in sd.items()}
            sd2[key].reshape(-1)[flat] += delta
            return loss_at(sd2, p.x, p.h0, p.c0)
        arr = base[key].copy()
        arr.reshape(-1)[flat] += delta
        args = dict(x=p.x, h0=p.h0, c0=p.c0)
        args[key] = arr
        return loss_at(sd, args["x"], args["h0"], args["c0"])

    targets = [("param", k, sd[k].shape, analytic["grads"][k], n_param) for k in sd]
    targets.append(("input", "x", p.x.shape, analytic["grad_x"], n_x))
    if p.h0 is not None:
        targets.append(("input", "h0", p.h0.shape, analytic["grad_h0"], n_state))
    if p.c0 is not None:
        targets.append(("input", "c0", p.c0.shape, analytic["grad_c0"], n_state))

    failures = []
    for kind, key, shape, an, n in targets:
        an = np.asarray(an, dtype=np.float64)
        assert an.shape == tuple(shape), f"{label}{key}: analytic grad shape {an.shape} != {shape}"
        scale = max(float(np.max(np.abs(an))), 1e-30)
        worst = 0.0
        for flat in _pick(rng, shape, n, an):
            fd = (perturbed(kind, key, flat, EPS) - perturbed(kind, key, flat, -EPS)) / (2 * EPS)
            err = abs(fd - an.reshape(-1)[flat]) / scale
            worst = max(worst, err)
            if not err <= TOL:
                failures.append(f"{key}[{np.unravel_index(flat, shape)}]: fd {fd:.10g} "
                                f"analytic {an.reshape(-1)[flat]:.10g} rel {err:.2e}")
        report[key] = worst
    assert not failures, f"{label}finite-difference mismatches (tol {TOL:g}):\n" + "\n".join(failures[:20])
    return report


CONFIGS = [
    dict(num_layers=2, bidirectional=True, with_lengths=True, bias=True, batch_first=False),
    dict(num_layers=1, bidirectional=False, with_lengths=False, bias=False, batch_first=False),
    dict(num_layers=3, bidirectional=True, with_lengths=True, bias=False, batch_first=True),
    dict(num_layers=2, bidirectional=False, with_lengths=True, bias=True, batch_first=True),
]
GRID = list(itertools.product(CELLS, range(len(CONFIGS))))


def _cfg_id(c):
    return (f"L{c['num_layers']}-{'bi' if c['bidirectional'] else 'uni'}-"
            f"{'len' if c['with_lengths'] else 'full'}-{'bias' if c['bias'] else 'nobias'}-"
            f"{'bf' if c['batch_first'] else 'tf'}")


@pytest.mark.parametrize("cell,ci", GRID, ids=[f"{c}-{_cfg_id(CONFIGS[i])}" for c, i in GRID])
def test_gradcheck(cell, ci):
    cfg = CONFIGS[ci]
    L, bi = cfg["num_layers"], cfg["bidirectional"]
    m = make_rnnkit(cell, D, H, L, bias=cfg["bias"], batch_first=cfg["batch_first"],
                    bidirectional=bi, dtype="float64", seed=100 + ci)
    p = make_problem(cell, T, B, D, H, L, bi, "float64", batch_first=cfg["batch_first"],
                     with_lengths=cfg["with_lengths"], seed=200 + ci)
    sd = m.state_dict()
    analytic = rnnkit_run(m, p)

    evaluator = make_rnnkit(cell, D, H, L, bias=cfg["bias"], batch_first=cfg["batch_first"],
                            bidirectional=bi, dtype="float64", seed=0)

    def loss_at(sd_, x, h0, c0):
        evaluator.load_state_dict(sd_)
        q = make_problem(cell, T, B, D, H, L, bi, "float64", batch_first=cfg["batch_first"],
                         lengths=p.lengths, seed=0)
        q.x, q.h0, q.c0, q.G, q.Gh, q.Gc = x, h0, c0, p.G, p.Gh, p.Gc
        out, h_n, c_n = rnnkit_forward(evaluator, q, training=False)
        return scalar_loss(out, h_n, c_n, q)

    # sanity: the loss evaluator reproduces the analytic run's forward
    assert abs(loss_at(sd, p.x, p.h0, p.c0)
               - scalar_loss(analytic["out"], analytic["h_n"], analytic["c_n"], p)) < 1e-12
    rep = _fd_check(loss_at, sd, p, analytic, np.random.default_rng(300 + ci), label=f"{cell}: ")
    print(f"\n[{cell} {_cfg_id(cfg)}] worst FD rel err {max(rep.values()):.1e}")


@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_with_dropout(cell):
    """dropout=0.4, training=True.  Every evaluation uses a freshly constructed model with
    the same seed and a single training forward, so the dropout masks are identical."""
    L, bi, seed, p_drop = 3, True, 4242, 0.4
    p = make_problem(cell, T, B, D, H, L, bi, "float64", with_lengths=True, seed=77)

    def fresh():
        return make_rnnkit(cell, D, H, L, bidirectional=bi, dropout=p_drop,
                           dtype="float64", seed=seed)

    m = fresh()
    sd = m.state_dict()
    analytic = rnnkit_run(m, p)

    # dropout must actually be active in this training forward, otherwise this test
    # would only repeat test_gradcheck
    m_eval = fresh()
    out_eval, _, _ = rnnkit_forward(m_eval, p, training=False)
    assert not np.allclose(out_eval, analytic["out"]), "dropout had no effect with training=True"

    def loss_at(sd_, x, h0, c0):
        mm = fresh()
        mm.load_state_dict(sd_)
        q = make_problem(cell, T, B, D, H, L, bi, "float64", lengths=p.lengths, seed=0)
        q.x, q.h0, q.c0, q.G, q.Gh, q.Gc = x, h0, c0, p.G, p.Gh, p.Gc
        out, h_n, c_n = rnnkit_forward(mm, q, training=True)
        return scalar_loss(out, h_n, c_n, q)

    assert abs(loss_at(sd, p.x, p.h0, p.c0)
               - scalar_loss(analytic["out"], analytic["h_n"], analytic["c_n"], p)) < 1e-12, \
        "fresh model with the same seed did not reproduce the dropout forward"
    rep = _fd_check(loss_at, sd, p, analytic, np.random.default_rng(5), n_param=3,
                    label=f"{cell}+dropout: ")
    print(f"\n[{cell} dropout] worst FD rel err {max(rep.values()):.1e}")
