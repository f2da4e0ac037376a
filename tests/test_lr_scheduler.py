"""Learning-rate schedules against torch.optim.lr_scheduler: the same learning rate at every
epoch (exactly: the same float operations), the same training, and checkpoints that resume."""
import math
import warnings

import numpy as np
import pytest

import rnnkit
from rnnkit.optim import lr_scheduler as L
from conftest import assert_close_rel, require_torch

torch = require_torch()
TL = torch.optim.lr_scheduler

SCHEDULES = [
    ("StepLR", dict(step_size=3)),
    ("StepLR", dict(step_size=1, gamma=0.7)),
    ("MultiStepLR", dict(milestones=[2, 5, 5, 11], gamma=0.5)),
    ("ExponentialLR", dict(gamma=0.93)),
    ("LinearLR", dict()),
    ("LinearLR", dict(start_factor=0.05, end_factor=0.6, total_iters=9)),
    ("CosineAnnealingLR", dict(T_max=7)),  # 30 steps: past T_max, where it rises again
    ("CosineAnnealingLR", dict(T_max=12, eta_min=1e-3)),
    ("LambdaLR", dict(lr_lambda=lambda e: 1.0 / (1 + e) ** 0.5)),
]


def _optimizers(lr=0.1, name="SGD"):
    p = np.zeros(4)
    opt = getattr(rnnkit.optim, name)([(p, np.zeros(4))], lr=lr)
    topt = getattr(torch.optim, name)([torch.zeros(4, requires_grad=True)], lr=lr)
    return opt, topt


def _epochs(opt, sched, n, metrics=None):
    """The learning rate after each of n epochs (one optimizer step each)."""
    lrs = []
    for i in range(n):
        opt.step()
        sched.step() if metrics is None else sched.step(metrics[i])
        lrs.append(sched.get_last_lr()[0])
    return lrs


@pytest.mark.parametrize("name,kwargs", SCHEDULES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SCHEDULES)])
def test_learning_rates_equal_torch_exactly(name, kwargs):
    opt, topt = _optimizers(0.1)
    sched, tsched = getattr(L, name)(opt, **kwargs), getattr(TL, name)(topt, **kwargs)
    assert sched.get_last_lr() == tsched.get_last_lr()  # the initial step
    assert opt.lr == topt.param_groups[0]["lr"]
    ours, theirs = _epochs(opt, sched, 30), _epochs(topt, tsched, 30)
    assert ours == theirs
    assert opt.lr == ours[-1] and len(set(ours)) > 1


PLATEAU = [
    dict(),
    dict(mode="max", factor=0.5, patience=1),
    dict(patience=0, threshold=0.05, threshold_mode="abs", cooldown=2),
    dict(patience=1, factor=0.3, min_lr=2e-3),
    dict(patience=0, factor=0.999, eps=1e-3),  # reductions smaller than eps are not made
]


@pytest.mark.parametrize("kwargs", PLATEAU, ids=range(len(PLATEAU)))
def test_reduce_on_plateau_equals_torch(kwargs):
    rng = np.random.default_rng(0)
    metrics = list(np.round(1.0 / np.arange(1, 41) + 0.05 * rng.random(40), 3)) + [float("nan")] * 3
    opt, topt = _optimizers(0.1)
    sched = L.ReduceLROnPlateau(opt, **kwargs)
    tsched = TL.ReduceLROnPlateau(topt, **kwargs)
    ours = _epochs(opt, sched, len(metrics), metrics)
    assert ours == _epochs(topt, tsched, len(metrics), metrics)
    if "eps" in kwargs:
        assert set(ours) == {0.1}
    else:
        assert len(set(ours)) > 1
    assert (sched.best, sched.num_bad_epochs, sched.cooldown_counter) == (tsched.best, tsched.num_bad_epochs,
                                                                          tsched.cooldown_counter)


def test_an_lstm_trained_under_a_schedule_equals_torch():
    """SGD with momentum under MultiStepLR then cosine: the weights equal torch's."""
    m = rnnkit.LSTM(3, 5, dtype="float64", seed=0)
    tm = torch.nn.LSTM(3, 5).double()
    tm.load_state_dict({k: torch.tensor(v) for k, v in m.state_dict().items()})
    opt = rnnkit.optim.SGD([m], lr=0.2, momentum=0.9)
    topt = torch.optim.SGD(tm.parameters(), lr=0.2, momentum=0.9)
    sched, tsched = L.CosineAnnealingLR(opt, T_max=4), TL.CosineAnnealingLR(topt, T_max=4)
    x = np.random.default_rng(1).standard_normal((6, 2, 3))
    for _ in range(5):
        out, _ = m.forward(x, training=True)
        m.backward(2 * out)
        opt.step()
        topt.zero_grad()
        (tm(torch.tensor(x))[0] ** 2).sum().backward()
        topt.step()
        sched.step()
        tsched.step()
    for k, v in tm.state_dict().items():
        assert_close_rel(m.state_dict()[k], v.numpy(), 1e-12, name=k)


@pytest.mark.parametrize("name,kwargs", SCHEDULES[:-1] + [("ReduceLROnPlateau", dict(patience=1))],
                         ids=[n for n, _ in SCHEDULES[:-1]] + ["ReduceLROnPlateau"])
def test_a_checkpoint_resumes_the_schedule(name, kwargs):
    """Optimizer and scheduler restored from their state dicts (made anew, as PyTorch's recipe
    says) continue with the learning rates of the uninterrupted run."""
    metrics = [1.0, 0.9, 0.95, 0.97, 0.99, 0.8, 0.85, 0.9, 0.95, 0.96, 0.97, 0.98]
    plateau = name == "ReduceLROnPlateau"
    opt, _ = _optimizers(0.1)
    sched = getattr(L, name)(opt, **kwargs)
    first = _epochs(opt, sched, 5, metrics if plateau else None)
    saved_opt, saved_sched = opt.state_dict(), sched.state_dict()
    rest = _epochs(opt, sched, 7, metrics[5:] if plateau else None)

    opt2, _ = _optimizers(0.1)
    sched2 = getattr(L, name)(opt2, **kwargs)
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    assert opt2.lr == first[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no order warning: the optimizer stepped before
        assert _epochs(opt2, sched2, 7, metrics[5:] if plateau else None) == rest


def test_resuming_at_last_epoch_equals_torch():
    """last_epoch >= 0 needs the optimizer's initial_lr (from its state dict), as in PyTorch."""
    opt, topt = _optimizers(0.1)
    L.CosineAnnealingLR(opt, T_max=10)
    TL.CosineAnnealingLR(topt, T_max=10)
    opt.lr = topt.param_groups[0]["lr"] = 0.05
    sched, tsched = L.CosineAnnealingLR(opt, T_max=10, last_epoch=3), TL.CosineAnnealingLR(topt, T_max=10,
                                                                                           last_epoch=3)
    assert sched.get_last_lr() == tsched.get_last_lr()
    assert _epochs(opt, sched, 8) == _epochs(topt, tsched, 8)
    fresh, _ = _optimizers(0.1)
    with pytest.raises(ValueError, match="initial_lr"):
        L.StepLR(fresh, 2, last_epoch=4)


def test_the_optimizer_uses_the_scheduled_rate():
    """The C++ step reads opt.lr: SGD's update after a StepLR decay is lr * 0.1 * grad."""
    p, g = np.zeros(3), np.ones(3)
    opt = rnnkit.optim.SGD([(p, g)], lr=0.5)
    sched = L.StepLR(opt, step_size=1, gamma=0.1)
    opt.step()
    np.testing.assert_array_equal(p, -0.5)
    sched.step()
    opt.step()
    np.testing.assert_allclose(p, -0.5 - 0.05, rtol=0, atol=1e-15)


def test_stepping_the_schedule_before_the_optimizer_warns():
    opt, _ = _optimizers()
    sched = L.StepLR(opt, 2)
    with pytest.warns(UserWarning, match="before optimizer.step"):
        sched.step()
    opt2, _ = _optimizers()
    sched2 = L.StepLR(opt2, 2)
    opt2.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched2.step()
        sched2.step()  # only the first step is checked


def test_lambda_state_dict_leaves_the_function_out():
    opt, _ = _optimizers()
    fn = lambda e: 0.5 ** e  # noqa: E731
    sched = L.LambdaLR(opt, fn)
    opt.step()
    sched.step()
    state = sched.state_dict()
    assert "lr_lambda" not in state and state["last_epoch"] == 1
    opt2, _ = _optimizers()
    other = L.LambdaLR(opt2, fn)
    other.load_state_dict(state)
    assert other.lr_lambda is fn and other.last_epoch == 1


@pytest.mark.parametrize("make,error,match", [
    (lambda o: L.StepLR(o, 0), ValueError, "step_size"),
    (lambda o: L.StepLR(o, 2.5), TypeError, "step_size"),
    (lambda o: L.StepLR(o, 2, gamma=-0.1), ValueError, "gamma"),
    (lambda o: L.ExponentialLR(o, gamma=float("nan")), ValueError, "gamma"),
    (lambda o: L.MultiStepLR(o, 3), TypeError, "milestones"),
    (lambda o: L.MultiStepLR(o, [2, -1]), ValueError, "milestones"),
    (lambda o: L.LinearLR(o, start_factor=0.0), ValueError, "start_factor"),
    (lambda o: L.LinearLR(o, end_factor=1.5), ValueError, "end_factor"),
    (lambda o: L.CosineAnnealingLR(o, T_max=0), ValueError, "T_max"),
    (lambda o: L.CosineAnnealingLR(o, T_max=5, eta_min=-1.0), ValueError, "eta_min"),
    (lambda o: L.LambdaLR(o, 0.5), TypeError, "lr_lambda"),
    (lambda o: L.LambdaLR(o, lambda e: -1.0), ValueError, "learning rate -0.1"),
    (lambda o: L.StepLR(o, 2, last_epoch=-2), ValueError, "last_epoch"),
    (lambda o: L.ReduceLROnPlateau(o, mode="up"), ValueError, "mode"),
    (lambda o: L.ReduceLROnPlateau(o, factor=1.0), ValueError, "factor"),
    (lambda o: L.ReduceLROnPlateau(o, patience=-1), ValueError, "patience"),
    (lambda o: L.ReduceLROnPlateau(o, threshold_mode="pct"), ValueError, "threshold_mode"),
    (lambda o: L.ReduceLROnPlateau(o).step("low"), TypeError, "metrics"),
    (lambda o: L.StepLR(o, 2).load_state_dict({"gamma": 0.5, "foo": 1}), ValueError, "foo"),
    (lambda o: L.StepLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), 2), TypeError,
     "rnnkit.optim optimizer"),
])
def test_bad_arguments(make, error, match):
    opt, _ = _optimizers()
    with pytest.raises(error, match=match):
        make(opt)


def test_optimizer_state_dict_carries_the_learning_rate():
    opt, _ = _optimizers(0.1, "Adam")
    L.ExponentialLR(opt, 0.5)
    opt.step()
    opt.lr = 0.025
    other, _ = _optimizers(0.3, "Adam")
    other.load_state_dict(opt.state_dict())
    assert (other.lr, other.initial_lr, other.step_count) == (0.025, 0.1, 1)
    state = opt.state_dict()
    state["lr"] = math.inf
    with pytest.raises(ValueError, match="lr"):
        other.load_state_dict(state)
