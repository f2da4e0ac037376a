"""clip_grad_norm / clip_grad_value vs torch.nn.utils.clip_grad_norm_ / clip_grad_value_.

Non-finite gradients (documented expectation): like torch with error_if_nonfinite=False,
clip_grad_norm returns the non-finite total norm (nan if any gradient is nan, inf if the
largest is inf and none is nan) and raises nothing.  With an inf total the coefficient
max_norm/(inf+1e-6) = 0 < 1 is applied, so finite entries become 0 and inf entries nan
(0*inf), exactly like torch.  With a nan total the coefficient is nan and, as in torch,
it is applied: every gradient becomes nan.
"""
import math

import numpy as np
import pytest

import rnnkit
from conftest import DTYPES, make_problem, make_rnnkit, rnnkit_run

INF = float("inf")


def _model_with_grads(dtype, seed=0):
    m = make_rnnkit("lstm", 4, 5, 2, bidirectional=True, dtype=dtype, seed=seed)
    p = make_problem("lstm", 6, 3, 4, 5, 2, True, dtype, with_lengths=True, seed=seed + 1)
    rnnkit_run(m, p)
    return m


def _torch_clip_norm(torch, arrays, max_norm, norm_type):
    params = []
    for a in arrays:
        t = torch.zeros(a.shape, dtype=torch.from_numpy(np.ascontiguousarray(a)).dtype,
                        requires_grad=True)
        t.grad = torch.from_numpy(np.array(a, copy=True))
        params.append(t)
    total = torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type=norm_type,
                                           error_if_nonfinite=False)
    return float(total), [t.grad.numpy() for t in params]


def _np_norm(arrays, norm_type):
    flat = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])
    if norm_type == INF:
        return float(np.max(np.abs(flat)))
    return float(np.sum(np.abs(flat) ** norm_type) ** (1.0 / norm_type))


RT = {"float32": 1e-6, "float64": 1e-12}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_type", [2.0, 1.0, INF])
@pytest.mark.parametrize("factor", [0.1, 0.5, 10.0])
def test_clip_grad_norm_parity_on_model_grads(torch, dtype, norm_type, factor):
    m = _model_with_grads(dtype)
    before = {k: np.array(v, copy=True) for k, v in m.grads.items()}
    keys = list(before)
    true_norm = _np_norm(list(before.values()), norm_type)
    assert true_norm > 0
    max_norm = factor * true_norm
    ref_total, ref_grads = _torch_clip_norm(torch, [before[k] for k in keys], max_norm, norm_type)

    total = rnnkit.clip_grad_norm(m.grads, max_norm=max_norm, norm_type=norm_type)
    assert isinstance(total, float)
    assert abs(total - true_norm) <= RT[dtype] * true_norm, (total, true_norm)
    assert abs(total - ref_total) <= RT[dtype] * ref_total, (total, ref_total)

    after = m.grads  # a *following* read must see the in-place clipping
    for k, r in zip(keys, ref_grads):
        a = np.asarray(after[k], np.float64)
        assert after[k].dtype == np.dtype(dtype)
        scale = max(float(np.max(np.abs(r))), 1e-30)
        err = float(np.max(np.abs(a - r))) / scale
        assert err <= 10 * RT[dtype], f"{k}: rel err {err:.2e}"
    if factor > 1:
        # coefficient >= 1: nothing is touched, bit for bit
        for k in keys:
            assert np.array_equal(after[k], before[k]), k
    else:
        clipped = _np_norm([after[k] for k in keys], norm_type)
        assert clipped == pytest.approx(max_norm, rel=1e-5)


@pytest.mark.parametrize("norm_type", [2, 2.0, 1.0, 3.0, INF])
def test_clip_grad_norm_list_input_in_place(torch, norm_type):
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal((4, 3)), rng.standard_normal(7), rng.standard_normal((2, 2, 2))]
    originals = [a.copy() for a in arrays]
    ref_total, ref = _torch_clip_norm(torch, originals, 0.7, float(norm_type))
    total = rnnkit.clip_grad_norm(arrays, 0.7, norm_type)
    assert isinstance(total, float)
    assert total == pytest.approx(ref_total, rel=1e-12)
    for a, r in zip(arrays, ref):
        np.testing.assert_allclose(a, r, rtol=1e-12, atol=0)
    assert not np.allclose(arrays[0], originals[0])  # really changed in place


def test_clip_grad_norm_dict_input_in_place():
    rng = np.random.default_rng(4)
    d = {"a": rng.standard_normal((3, 3)), "b": rng.standard_normal(5)}
    orig = {k: v.copy() for k, v in d.items()}
    n = _np_norm(list(orig.values()), 2.0)
    total = rnnkit.clip_grad_norm(d, max_norm=n / 4)
    assert total == pytest.approx(n, rel=1e-12)
    coef = (n / 4) / (n + 1e-6)
    for k in d:
        np.testing.assert_allclose(d[k], orig[k] * coef, rtol=1e-12)


def test_clip_grad_norm_default_norm_type_is_2():
    rng = np.random.default_rng(5)
    a = [rng.standard_normal(10)]
    total = rnnkit.clip_grad_norm([a[0].copy()], max_norm=100.0)
    assert total == pytest.approx(float(np.linalg.norm(a[0])), rel=1e-12)


@pytest.mark.parametrize("empty", [[], {}])
def test_clip_empty(torch, empty):
    total = rnnkit.clip_grad_norm(empty, 1.0)
    assert isinstance(total, float) and total == 0.0
    ref = torch.nn.utils.clip_grad_norm_([], 1.0)
    assert float(ref) == 0.0
    assert rnnkit.clip_grad_value(empty, 0.5) is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clip", [0.5, 0.01, 1e6])
def test_clip_grad_value_parity_on_model_grads(torch, dtype, clip):
    m = _model_with_grads(dtype, seed=7)
    before = {k: np.array(v, copy=True) for k, v in m.grads.items()}
    params = []
    for k, v in before.items():
        t = torch.zeros(v.shape, dtype=torch.from_numpy(v).dtype, requires_grad=True)
        t.grad = torch.from_numpy(v.copy())
        params.append(t)
    torch.nn.utils.clip_grad_value_(params, clip)
    assert rnnkit.clip_grad_value(m.grads, clip) is None
    after = m.grads
    for (k, v), t in zip(before.items(), params):
        assert np.array_equal(after[k], t.grad.numpy()), k
        assert np.max(np.abs(after[k])) <= clip
    if clip < 0.5:
        assert any(not np.array_equal(after[k], before[k]) for k in before)


def test_clip_grad_value_list_in_place():
    rng = np.random.default_rng(9)
    arrays = [3 * rng.standard_normal((5, 4)), 3 * rng.standard_normal(6)]
    orig = [a.copy() for a in arrays]
    assert rnnkit.clip_grad_value(arrays, 0.5) is None
    for a, o in zip(arrays, orig):
        assert np.array_equal(a, np.clip(o, -0.5, 0.5))


def test_clip_grad_norm_nonfinite_inf(torch):
    arrays = [np.array([1.0, -2.0, INF]), np.array([0.5, 3.0])]
    for norm_type in (2.0, 1.0, INF):
        ours = [a.copy() for a in arrays]
        ref_total, ref = _torch_clip_norm(torch, arrays, 1.0, norm_type)
        total = rnnkit.clip_grad_norm(ours, 1.0, norm_type)  # must not raise
        assert math.isinf(total) and total > 0 and math.isinf(ref_total)
        for a, r in zip(ours, ref):
            np.testing.assert_array_equal(a, r)  # finite -> 0, inf -> nan


def test_clip_grad_norm_nonfinite_nan(torch):
    arrays = [np.array([1.0, np.nan, 2.0]), np.array([0.5, 3.0])]
    for norm_type in (2.0, 1.0, INF):
        ours = [a.copy() for a in arrays]
        ref_total, _ = _torch_clip_norm(torch, arrays, 1.0, norm_type)
        total = rnnkit.clip_grad_norm(ours, 1.0, norm_type)
        assert math.isnan(ref_total)
        assert math.isnan(total), f"norm_type={norm_type}: got {total}, torch {ref_total}"
        assert all(np.all(np.isnan(a)) for a in ours), ours


def test_clip_grad_value_nonfinite():
    a = [np.array([np.nan, INF, -INF, 0.25, -3.0])]
    rnnkit.clip_grad_value(a, 0.5)
    np.testing.assert_array_equal(a[0], np.array([np.nan, 0.5, -0.5, 0.25, -0.5]))
