"""The device model's whole training step (gradient, clipping and optimizer step on the device,
the optimizer's state kept there) against the CPU engine's step with rnnkit.optim on the host.

Runs on the host simulation of the device backend (``RNNKIT_CUDA_SIMULATE=1``) on every
machine, and on a real GPU where one is usable (conftest's ``device`` fixture). The update
arithmetic is the same (rnnkit/optim_math.hpp) on both sides; the gradient's 2-norm is summed
in another order on the device, so results are compared to rounding, not bit for bit.
"""
from __future__ import annotations

import numpy as np
import pytest

import rnnkit
from rnnkit import RNNClassifier, RNNRegressor, optim
from rnnkit._fitting import _BatchStep
from rnnkit.cuda import _model_calls

from conftest import RTOL, assert_close_rel, model_problem, order_task

OPTIMIZERS = {
    "sgd": lambda pair: optim.SGD(pair, lr=0.05),
    "sgd-nesterov-decay": lambda pair: optim.SGD(pair, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "sgd-dampening-maximize": lambda pair: optim.SGD(pair, lr=0.05, momentum=0.5, dampening=0.3, maximize=True),
    "adam": lambda pair: optim.Adam(pair, lr=0.01),
    "adam-amsgrad-decay": lambda pair: optim.Adam(pair, lr=0.01, amsgrad=True, weight_decay=0.1),
    "adamw": lambda pair: optim.AdamW(pair, lr=0.01, betas=(0.8, 0.9)),
    "rmsprop": lambda pair: optim.RMSprop(pair, lr=0.01),
    "rmsprop-centered-momentum": lambda pair: optim.RMSprop(pair, lr=0.01, centered=True, momentum=0.9,
                                                            weight_decay=1e-3),
}

# cell, bidirectional, layers, n_outputs, loss, readout, vocab, lengths, hidden
MODELS = {
    "lstm-last-ce": ("lstm", False, 1, 3, "cross_entropy", "last", 0, None, 4),
    "gru-bi-sequence-mse-ragged": ("gru", True, 2, 2, "squared_error", "sequence", 0, [4, 2, 5], 4),
    "lstm-vocab-sequence-ce": ("lstm", False, 1, 7, "cross_entropy", "sequence", 7, [5, 3, 2], 4),
    # 4 * 40 * (3 + 40 + 2) + 3 * 41 = 7323 parameters: the 2-norm's parts on the device sum several each
    "lstm-wide-last-mse": ("lstm", False, 1, 3, "squared_error", "last", 0, [5, 1, 3], 40),
}


class _Owner:
    """Stands in for an estimator: _model_calls caches its device model on it."""


def _problem(model, dtype):
    *case, hidden = MODELS[model]
    return model_problem(tuple(case), dtype, H=hidden)


def _steps(spec, params, batch, make_opt, device, n_steps, **clip):
    """Params, optimizer and losses after n_steps _BatchSteps on the CPU (device None) or the device."""
    params = params.copy()
    grads = np.zeros_like(params)
    opt = make_opt([(params, grads)])
    run = _model_calls(_Owner(), spec, params.dtype.name, None if device is None else rnnkit.cuda.parse_device(device))[1]
    step = _BatchStep(spec, params, grads, opt, dropout=0.25, n_threads=1, diverged=lambda: "diverged", run=run,
                      **{"clip_norm": None, "clip_value": None, **clip})
    losses = [step(*batch, key=1000 + i) for i in range(n_steps)]
    step.sync()
    return params, opt, losses, step


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_device_steps_follow_the_host_optimizer(device, model, name):
    spec, params, batch = _problem(model, "float64")
    cpu_params, cpu_opt, cpu_losses, _ = _steps(spec, params, batch, OPTIMIZERS[name], None, 4)
    dev_params, dev_opt, dev_losses, step = _steps(spec, params, batch, OPTIMIZERS[name], device, 4)
    assert step.device is not None, "the device step was not taken"
    np.testing.assert_allclose(dev_losses, cpu_losses, rtol=RTOL["float64"])
    assert_close_rel(dev_params, cpu_params, RTOL["float64"], "parameters after 4 steps")
    assert not np.array_equal(dev_params, params), "the parameters did not move"
    assert dev_opt.step_count == cpu_opt.step_count == 4
    for ours, theirs in zip(dev_opt.state, cpu_opt.state):
        for key in theirs:
            assert_close_rel(ours[key], theirs[key], RTOL["float64"], f"optimizer state {key!r}")


@pytest.mark.parametrize("clip", [{"clip_value": 0.05}, {"clip_norm": 0.1}, {"clip_value": 0.2, "clip_norm": 0.3},
                                  {"clip_norm": 1e6}])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("model", ["gru-bi-sequence-mse-ragged", "lstm-wide-last-mse"])
def test_device_steps_clip_as_the_host(device, model, clip, dtype):
    spec, params, batch = _problem(model, dtype)
    make_opt = OPTIMIZERS["sgd"]  # plain SGD: the step is the clipped gradient itself
    cpu_params, _, cpu_losses, _ = _steps(spec, params, batch, make_opt, None, 3, **clip)
    dev_params, _, dev_losses, _ = _steps(spec, params, batch, make_opt, device, 3, **clip)
    unclipped, _, _, _ = _steps(spec, params, batch, make_opt, None, 3)
    np.testing.assert_allclose(dev_losses, cpu_losses, rtol=RTOL[dtype])
    assert_close_rel(dev_params, cpu_params, RTOL[dtype], f"parameters after clipped steps ({clip})")
    # the clipping did (or, at a bound of 1e6, did not) change the steps
    assert np.array_equal(cpu_params, unclipped) == (clip == {"clip_norm": 1e6})


def test_device_step_with_a_non_finite_loss_changes_nothing(device):
    spec, params, (x, lens, labels, values) = _problem("gru-bi-sequence-mse-ragged", "float64")
    values = np.full_like(values, 1e300)  # half the squared error overflows
    before = params.copy()
    grads = np.zeros_like(params)
    opt = optim.Adam([(params, grads)], lr=0.1)
    run = _model_calls(_Owner(), spec, "float64", 0)[1]
    step = _BatchStep(spec, params, grads, opt, dropout=0.0, clip_norm=None, clip_value=None, n_threads=1,
                      diverged=lambda: "the loss diverged", run=run)
    with pytest.raises(ValueError, match="the loss diverged"):
        step(x, lens, labels, values, key=0)
    assert np.array_equal(params, before)
    assert opt.step_count == 0
    step.sync()
    assert not np.any(opt.state[0]["exp_avg"]), "the optimizer's state moved"


def test_device_step_refuses_bad_settings(device):
    spec, params, (x, lens, labels, values) = _problem("lstm-last-ce", "float64")
    model = _model_calls(_Owner(), spec, "float64", 0)[1].__self__._model
    args = (params, x, lens, labels, values, None, 0.0, 0, None, None)
    with pytest.raises(RuntimeError, match="set_optimizer_state"):
        model.train_step(*args, "adam", {"lr": 0.1}, 1)
    model.set_optimizer_state(0, np.zeros_like(params))
    with pytest.raises(ValueError, match="takes no option 'betas'"):
        model.train_step(*args, "sgd", {"betas": 0.1}, 1)
    with pytest.raises(ValueError, match="optimizer must be"):
        model.train_step(*args, "adagrad", {}, 1)
    with pytest.raises(ValueError, match="step must be"):
        model.train_step(*args, "sgd", {}, 0)
    with pytest.raises(ValueError, match="state: wrong size"):
        model.set_optimizer_state(1, np.zeros(3))
    with pytest.raises(RuntimeError, match="never set"):
        model.get_optimizer_state(2, np.zeros_like(params))
    with pytest.raises(ValueError, match="slot"):
        model.set_optimizer_state(3, np.zeros_like(params))
    before = params.copy()
    model.train_step(*args, "sgd", {"lr": 0.1}, 1)  # momentum 0 reads no state
    assert not np.array_equal(params, before)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_device_fit_keeps_the_optimizer_state_for_partial_fit(device, optimizer):
    X, y = order_task(n=48)
    kw = dict(cell="gru", hidden_size=6, max_epochs=2, batch_size=16, learning_rate=0.02, optimizer=optimizer,
              momentum=0.9, clip_norm=0.5, random_state=0, dtype="float64", n_threads=1)
    cpu = RNNClassifier(**kw).fit(X, y)
    dev = RNNClassifier(device=device, **kw).fit(X, y)
    for est in (cpu, dev):
        est.partial_fit(X, y)
    assert_close_rel(dev._params_flat, cpu._params_flat, 1e-9, "weights after fit and partial_fit")
    assert dev._optimizer_state["step_count"] == cpu._optimizer_state["step_count"] == 9
    for ours, theirs in zip(dev._optimizer_state["state"], cpu._optimizer_state["state"]):
        for key in theirs:
            assert_close_rel(ours[key], theirs[key], 1e-9, f"optimizer state {key!r}")


def test_device_regressor_fit_with_clip_value_matches_the_cpu(device):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 6, 3))
    y = X.sum(axis=(1, 2))[:, None] * 3.0
    kw = dict(cell="lstm", hidden_size=5, max_epochs=3, batch_size=8, clip_value=0.01, optimizer="adamw",
              random_state=0, dtype="float64", n_threads=1)
    cpu = RNNRegressor(**kw).fit(X, y)
    dev = RNNRegressor(device=device, **kw).fit(X, y)
    np.testing.assert_allclose(dev.loss_curve_, cpu.loss_curve_, rtol=1e-9)
    assert_close_rel(dev._params_flat, cpu._params_flat, 1e-9, "weights after fitting")


def test_resident_parameters_are_not_copied_in_again(device):
    spec, params, (x, lens, labels, values) = _problem("lstm-last-ce", "float64")
    start = params.copy()
    model = _model_calls(_Owner(), spec, "float64", 0)[1].__self__._model
    args = (x, lens, labels, values, None, 0.0, 0, None, None, "sgd", {"lr": 0.1, "momentum": 0.5})
    model.set_optimizer_state(0, np.zeros_like(params))
    model.train_step(params, *args, 1)
    params[...] = 0.0  # breaks the promise: a resident step does not see it
    model.train_step(params, *args, 2, params_resident=True)
    # the same two steps from the start, each copying the parameters in
    replay = start.copy()
    model.set_optimizer_state(0, np.zeros_like(params))
    model.train_step(replay, *args, 1)
    model.train_step(replay, *args, 2)
    np.testing.assert_array_equal(params, replay)
    zeros = np.zeros_like(params)
    model.train_step(zeros, *args, 3)  # not resident: the zeros are copied in
    assert np.abs(zeros).max() < 0.5 * np.abs(replay).max()


def test_device_step_after_diverged_weights_starts_from_the_restored_ones(device):
    spec, params, (x, lens, labels, values) = _problem("gru-bi-sequence-mse-ragged", "float64")
    batch = (x, lens, labels, values * 1e4)  # gradients large enough for lr 1e308 to overflow
    results = []
    for dev in (None, device):
        p = params.copy()
        grads = np.zeros_like(p)
        opt = optim.SGD([(p, grads)], lr=0.05)
        run = _model_calls(_Owner(), spec, "float64", None if dev is None else 0)[1]
        step = _BatchStep(spec, p, grads, opt, dropout=0.0, clip_norm=None, clip_value=None, n_threads=1,
                          diverged=lambda: "diverged", run=run)
        step(*batch, key=0)
        opt.lr = 1e308  # the step overflows the weights: undone
        with pytest.raises(ValueError, match="diverged"):
            step(*batch, key=0)
        opt.lr = 0.05
        step(*batch, key=0)  # from the restored weights, on the device too
        assert np.isfinite(p).all()
        results.append(p)
    assert_close_rel(results[1], results[0], RTOL["float64"], "weights after an undone step")


def test_batch_steps_copy_the_parameters_in_once(device):
    spec, params, batch = _problem("lstm-last-ce", "float64")
    grads = np.zeros_like(params)
    opt = optim.Adam([(params, grads)], lr=0.01)
    run = _model_calls(_Owner(), spec, "float64", 0)[1]
    step = _BatchStep(spec, params, grads, opt, dropout=0.0, clip_norm=None, clip_value=None, n_threads=1,
                      diverged=lambda: "diverged", run=run)
    flags = []
    train_step = step.device.train_step

    def spy(*args, params_resident):
        flags.append(params_resident)
        return train_step(*args, params_resident=params_resident)

    step.device.train_step = spy
    for _ in range(3):
        step(*batch, key=0)
    assert flags == [False, True, True]


def test_device_step_refuses_unknown_tokens_and_changes_nothing(device):
    spec, params, (x, lens, labels, values) = _problem("lstm-vocab-sequence-ce", "float64")
    model = _model_calls(_Owner(), spec, "float64", 0)[1].__self__._model
    state = np.zeros_like(params)
    model.set_optimizer_state(0, state)
    model.set_optimizer_state(1, state)
    before = params.copy()
    bad = x.copy()
    bad[1, 0] = 7  # vocab_size is 7
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, vocab_size\)"):
        model.train_step(params, bad, lens, labels, values, None, 0.0, 0, None, None, "adam", {}, 1)
    assert np.array_equal(params, before)
    bad[1, 0] = -1
    with pytest.raises(ValueError, match="token ids"):
        model.predict(params, bad, lens)
    # past a sequence's length an id is not read (its step is padding)
    pad = x.copy()
    pad[2, lens[2]:] = 99
    model.train_step(params, pad, lens, labels, values, None, 0.0, 0, None, None, "adam", {}, 1)
    after_pad = params.copy()
    params[...] = before
    model.set_optimizer_state(0, state)
    model.set_optimizer_state(1, state)
    model.train_step(params, x, lens, labels, values, None, 0.0, 0, None, None, "adam", {}, 1)
    np.testing.assert_array_equal(params, after_pad)
    model.get_optimizer_state(0, state)
    assert np.any(state), "Adam's state did not move"
