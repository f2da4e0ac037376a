"""The C++ model (stack + dense head + loss, optional embedding) against finite differences
and against PyTorch. These are the kernels under the estimators and the text models."""
import numpy as np
import pytest

from rnnkit._backend import core

from conftest import require_torch


def _spec(cell, loss, readout, n_out, vocab=0, D=3, H=4, layers=2, bi=True):
    rnn = core.LayerSpec(cell, D, H, layers, bi, True)
    return core.ModelSpec(rnn, n_out, loss, readout, vocab)


def _problem(spec, B=3, T=5, seed=0, vocab=0, lengths=True):
    rng = np.random.default_rng(seed)
    params = rng.uniform(-0.5, 0.5, spec.param_count)
    if vocab:
        x = rng.integers(0, vocab, (B, T)).astype(np.int64)
    else:
        x = rng.standard_normal((B, T, 3))
    lens = np.array([T, 2, 4][:B], dtype=np.int64) if lengths else None
    return params, x, lens, rng


def _loss(spec, params, x, lens, labels, values):
    g = np.zeros_like(params)
    return core.model_loss_and_grad_float64(spec, params, x, lens, labels, values, g, 0.0, 0, 1), g


def _values(loss, rng, size):
    """Regression targets, or multi-label ones in [0, 1] (hard 0/1, and soft ones)."""
    if loss == "squared_error":
        return rng.standard_normal(size)
    if loss == "binary_cross_entropy":
        return np.where(rng.random(size) < 0.3, rng.random(size), rng.integers(0, 2, size).astype(float))
    return None


CASES = [
    ("lstm", "cross_entropy", "last", 0),
    ("gru", "cross_entropy", "sequence", 0),
    ("rnn_tanh", "squared_error", "last", 0),
    ("lstm", "squared_error", "sequence", 0),
    ("gru", "cross_entropy", "sequence", 7),  # token ids through a trained embedding
    ("lstm", "binary_cross_entropy", "last", 0),  # multi-label
    ("rnn_relu", "binary_cross_entropy", "sequence", 0),
    ("gru", "binary_cross_entropy", "last", 7),
]


@pytest.mark.parametrize("cell,loss,readout,vocab", CASES)
def test_gradient_matches_finite_differences(cell, loss, readout, vocab):
    n_out = 3
    spec = _spec(cell, loss, readout, n_out, vocab)
    params, x, lens, rng = _problem(spec, vocab=vocab)
    rows = x.shape[0] * (x.shape[1] if readout == "sequence" else 1)
    labels = rng.integers(0, n_out, rows).astype(np.int64) if loss == "cross_entropy" else None
    values = _values(loss, rng, rows * n_out)
    if labels is not None and readout == "sequence":
        labels = labels.reshape(x.shape[0], x.shape[1])
    if values is not None:
        values = values.reshape((x.shape[0], x.shape[1], n_out) if readout == "sequence" else (x.shape[0], n_out))
    _, grad = _loss(spec, params, x, lens, labels, values)
    # Every region of the buffer: stack, head and (when present) the embedding rows used.
    picks = list(rng.choice(spec.head_offset, 25, replace=False))
    picks += list(range(spec.head_offset, spec.embedding_offset, 3))
    if vocab:
        used = np.unique(x[0, :]) if lens is None else np.unique(x[0, : lens[0]])
        picks += [spec.embedding_offset + int(used[0]) * 3 + k for k in range(3)]
    eps = 1e-6
    for i in picks:
        p1, p2 = params.copy(), params.copy()
        p1[i] += eps
        p2[i] -= eps
        numeric = (_loss(spec, p1, x, lens, labels, values)[0] - _loss(spec, p2, x, lens, labels, values)[0]) / (2 * eps)
        assert abs(numeric - grad[i]) <= 1e-7 + 1e-5 * abs(numeric), (i, numeric, grad[i])


def test_padding_tokens_do_not_matter():
    spec = _spec("lstm", "cross_entropy", "sequence", 4, vocab=9)
    params, x, lens, rng = _problem(spec, vocab=9)
    labels = rng.integers(0, 4, x.shape).astype(np.int64)
    base = core.model_predict_float64(spec, params, x, lens, 1)
    x2 = x.copy()
    for b, n in enumerate(lens):
        x2[b, n:] = 8 - x2[b, n:]
    np.testing.assert_array_equal(core.model_predict_float64(spec, params, x2, lens, 1), base)
    l1, g1 = _loss(spec, params, x, lens, labels, None)
    l2, g2 = _loss(spec, params, x2, lens, labels, None)
    assert l1 == l2 and np.array_equal(g1, g2)


def test_bad_token_ids_raise():
    spec = _spec("gru", "cross_entropy", "last", 2, vocab=5)
    params = np.zeros(spec.param_count)
    with pytest.raises(ValueError, match="token ids"):
        core.model_predict_float64(spec, params, np.array([[0, 5]], dtype=np.int64), None, 1)
    with pytest.raises(ValueError, match="x"):
        core.model_predict_float64(spec, params, np.zeros((1, 2, 3)), None, 1)


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy"])
def test_classifier_head_matches_torch(loss):
    """Softmax probabilities, or one sigmoid per label (multi-label)."""
    torch = require_torch()
    spec = _spec("lstm", loss, "last", 3, D=3, H=4, layers=1, bi=True)
    params, x, _, rng = _problem(spec, lengths=False)
    proba = core.model_predict_float64(spec, params, x, None, 1)
    layer = torch.nn.LSTM(3, 4, 1, batch_first=True, bidirectional=True).double()
    names = [k for k, _ in layer.named_parameters()]
    offset = 0
    with torch.no_grad():
        for name in names:
            p = dict(layer.named_parameters())[name]
            p.copy_(torch.tensor(params[offset : offset + p.numel()].reshape(p.shape)))
            offset += p.numel()
        w = torch.tensor(params[spec.head_offset : spec.head_offset + 3 * 8].reshape(3, 8))
        b = torch.tensor(params[spec.head_offset + 24 : spec.embedding_offset])
        _, (h_n, _) = layer(torch.tensor(x))
        logits = torch.cat([h_n[0], h_n[1]], dim=1) @ w.T + b
        ref = (torch.softmax(logits, dim=1) if loss == "cross_entropy" else torch.sigmoid(logits)).numpy()
    np.testing.assert_allclose(proba, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("cell,loss,readout,vocab", CASES)
def test_a_reused_workspace_gives_the_results_of_a_fresh_one(cell, loss, readout, vocab):
    """Model calls of several sizes through one workspace, against calls that each get a new one."""
    n_out = 3
    spec = _spec(cell, loss, readout, n_out, vocab)
    workspace = core.ModelWorkspace_float64()
    for i, (B, T, lengths) in enumerate([(3, 5, True), (1, 2, False), (3, 9, True), (2, 5, False), (3, 5, True)]):
        params, x, lens, rng = _problem(spec, B=B, T=T, seed=i, vocab=vocab, lengths=lengths)
        rows = B * (T if readout == "sequence" else 1)
        labels = rng.integers(0, n_out, rows).astype(np.int64) if loss == "cross_entropy" else None
        values = _values(loss, rng, rows * n_out)
        if labels is not None and readout == "sequence":
            labels = labels.reshape(B, T)
        if values is not None:
            values = values.reshape((B, T, n_out) if readout == "sequence" else (B, n_out))
        g_reused, g_fresh = np.zeros_like(params), np.zeros_like(params)
        args = (spec, params, x, lens, labels, values)
        l_reused = core.model_loss_and_grad_float64(*args, g_reused, 0.0, 0, 1, workspace)
        l_fresh = core.model_loss_and_grad_float64(*args, g_fresh, 0.0, 0, 1)
        assert l_reused == l_fresh, i
        np.testing.assert_array_equal(g_reused, g_fresh, err_msg=f"call {i}")
        np.testing.assert_array_equal(core.model_predict_float64(spec, params, x, lens, 1, workspace),
                                      core.model_predict_float64(spec, params, x, lens, 1), err_msg=f"call {i}")
    assert workspace.nbytes > 0


def test_multi_label_loss_of_saturated_logits():
    """binary_cross_entropy reads the logits (as BCEWithLogitsLoss), so saturated ones give the
    exact loss, not a log of a probability rounded to 0 or 1: numpy's logaddexp as the reference."""
    spec = _spec("lstm", "binary_cross_entropy", "last", 4, layers=1)
    params, x, lens, _ = _problem(spec)
    params[spec.head_offset : spec.embedding_offset] = 0.0
    bias = np.array([40.0, -40.0, 0.5, -745.0])
    params[spec.head_offset + 4 * 8 : spec.embedding_offset] = bias  # every row's logits
    y = np.tile([0.0, 1.0, 1.0, 0.25], (3, 1))
    loss, grad = _loss(spec, params, x, lens, None, y)
    expected = np.mean(np.logaddexp(0.0, bias) - bias * y[0])
    assert loss == pytest.approx(expected, rel=1e-15)
    with np.errstate(over="ignore"):
        sigmoid = np.where(bias >= 0, 1 / (1 + np.exp(-bias)), np.exp(bias) / (1 + np.exp(bias)))
    np.testing.assert_allclose(grad[spec.head_offset + 4 * 8 : spec.embedding_offset], (sigmoid - y[0]) / 4,
                               rtol=1e-15, atol=1e-300)
    proba = core.model_predict_float64(spec, params, x, lens, 1)
    np.testing.assert_allclose(proba, np.tile(sigmoid, (3, 1)), rtol=1e-15)


def test_multi_label_targets_must_lie_in_0_1():
    spec = _spec("lstm", "binary_cross_entropy", "last", 2)
    params, x, lens, _ = _problem(spec)
    for bad in (2.0, -0.5, np.nan):
        y = np.zeros((3, 2))
        y[1, 1] = bad
        with pytest.raises(ValueError, match=r"multi-label targets must lie in \[0, 1\]"):
            _loss(spec, params, x, lens, None, y)
    with pytest.raises(ValueError, match="loss must be"):
        _spec("lstm", "bce", "last", 2)
