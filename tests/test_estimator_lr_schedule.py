"""The estimators' lr_schedule: the rate each optimizer step used, against PyTorch's cosine
schedule and scikit-learn's "adaptive" MLP rule; partial_fit, warm starts, files and bad values."""
import pickle
import warnings

import numpy as np
import pytest

import rnnkit
from conftest import require_torch

torch = require_torch()


@pytest.fixture
def rates(monkeypatch):
    """The learning rate of every optimizer step taken (any rnnkit optimizer)."""
    seen: list = []
    original = rnnkit.optim.Optimizer.step

    def step(self):
        seen.append(self.lr)
        original(self)

    monkeypatch.setattr(rnnkit.optim.Optimizer, "step", step)
    return seen


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6, 2))
    return X, (X[:, :, 0].sum(axis=1) > 0).astype(int)


def _quiet_fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        return model.fit(X, y)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_cosine_gives_torch_cosine_annealing_epoch_by_epoch(rates, optimizer):
    X, y = _data()
    epochs, batches = 7, 3  # 40 sequences in batches of 16
    model = rnnkit.RNNClassifier(hidden_size=4, max_epochs=epochs, batch_size=16, optimizer=optimizer,
                                 learning_rate=0.02, lr_schedule="cosine", random_state=0, n_threads=1)
    _quiet_fit(model, X, y)
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.02)
    tsched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=epochs)
    expected = []
    for _ in range(epochs):
        expected += [topt.param_groups[0]["lr"]] * batches
        topt.step()
        tsched.step()
    assert rates == expected
    assert model.learning_rate_ == tsched.get_last_lr()[0] == 0.0


def _sklearn_adaptive(lr, n_iter_no_change, epochs):
    """The rate of each epoch under scikit-learn's MLP "adaptive" rule, where no epoch after the
    first improves: the reference (and its stopping epoch) comes from MLPClassifier itself."""
    sklearn_nn = pytest.importorskip("sklearn.neural_network")
    X, y = _data()
    mlp = sklearn_nn.MLPClassifier(hidden_layer_sizes=(3,), solver="sgd", learning_rate="adaptive",
                                   learning_rate_init=lr, tol=1e9, n_iter_no_change=n_iter_no_change,
                                   max_iter=epochs, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp.fit(X.reshape(len(X), -1), y)
    return mlp.n_iter_, mlp._optimizer.learning_rate


@pytest.mark.parametrize("early_stopping", [False, True])
def test_adaptive_follows_scikit_learns_mlp(rates, early_stopping):
    """tol so large that no epoch after the first improves: every n_iter_no_change + 1 epochs the
    rate falls by 5, and the fit stops once it is at most 1e-6: as scikit-learn's MLP does."""
    X, y = _data()
    model = rnnkit.RNNClassifier(hidden_size=4, max_epochs=100, batch_size=40, learning_rate=1e-3,
                                 lr_schedule="adaptive", tol=1e9, n_iter_no_change=1, early_stopping=early_stopping,
                                 random_state=0, n_threads=1)
    _quiet_fit(model, X, y)
    n_iter, last_rate = _sklearn_adaptive(1e-3, 1, 100)
    assert (model.n_iter_, model.learning_rate_) == (n_iter, last_rate)
    assert model.stopped_early_
    expected = [1e-3] * 3  # the first epoch improves (on infinity), then 2 epochs without
    while len(expected) < n_iter:
        expected += [expected[-1] / 5.0] * 2
    assert rates == expected[:n_iter]


def test_adaptive_does_not_lower_while_the_fit_improves(rates):
    X, y = _data()
    model = rnnkit.RNNRegressor(hidden_size=4, max_epochs=6, batch_size=40, learning_rate=1e-3,
                                lr_schedule="adaptive", tol=0.0, random_state=0, n_threads=1)
    _quiet_fit(model, X, y.astype(float))
    assert np.all(np.diff(model.loss_curve_) < 0)
    assert set(rates) == {1e-3} and model.learning_rate_ == 1e-3


def test_no_schedule_keeps_the_rate_and_the_results(rates):
    X, y = _data()
    params = dict(hidden_size=4, max_epochs=3, learning_rate=0.01, random_state=0, n_threads=1)
    plain = _quiet_fit(rnnkit.RNNClassifier(**params), X, y)
    assert set(rates) == {0.01} and plain.learning_rate_ == 0.01
    cosine = _quiet_fit(rnnkit.RNNClassifier(lr_schedule="cosine", **params), X, y)
    assert not np.array_equal(cosine._params_flat, plain._params_flat)
    assert cosine.loss_curve_[0] == plain.loss_curve_[0]  # the first epoch runs at learning_rate


def test_partial_fit_goes_on_at_the_adaptive_rate(rates):
    X, y = _data()
    model = rnnkit.RNNClassifier(hidden_size=4, batch_size=40, learning_rate=1e-3, lr_schedule="adaptive",
                                 tol=1e9, n_iter_no_change=1, random_state=0, n_threads=1)
    for _ in range(6):
        model.partial_fit(X, y, classes=[0, 1])
    assert rates == [1e-3] * 3 + [2e-4] * 2 + [4e-5]
    assert model.learning_rate_ == 4e-5
    rates.clear()
    pickle.loads(pickle.dumps(model)).partial_fit(X, y)  # a pickled copy goes on at that rate
    assert rates == [4e-5]


def test_each_fit_starts_its_schedule_afresh(rates):
    X, y = _data()
    model = rnnkit.RNNClassifier(hidden_size=4, batch_size=40, max_epochs=4, learning_rate=1e-3,
                                 lr_schedule="adaptive", tol=1e9, n_iter_no_change=1, warm_start=True,
                                 random_state=0, n_threads=1)
    _quiet_fit(model, X, y)
    assert model.learning_rate_ == 2e-4
    rates.clear()
    _quiet_fit(model, X, y)  # warm start: the weights go on, the schedule starts at learning_rate
    assert rates[0] == 1e-3 and model.n_iter_ == 8


def test_a_warm_start_anneals_from_the_new_learning_rate(rates):
    X, y = _data()
    model = rnnkit.RNNClassifier(hidden_size=4, batch_size=40, max_epochs=2, learning_rate=0.01, lr_schedule="cosine",
                                 warm_start=True, random_state=0, n_threads=1)
    _quiet_fit(model, X, y)
    rates.clear()
    _quiet_fit(model.set_params(learning_rate=0.004), X, y)
    assert rates == [0.004, 0.002]


def test_cosine_is_refused_by_partial_fit_and_changes_nothing():
    X, y = _data()
    model = rnnkit.RNNClassifier(hidden_size=4, max_epochs=2, lr_schedule="cosine", random_state=0, n_threads=1)
    with pytest.raises(ValueError, match="lr_schedule='cosine'.*partial_fit"):
        model.partial_fit(X, y, classes=[0, 1])
    assert not hasattr(model, "n_features_in_")
    _quiet_fit(model, X, y)
    before = model._params_flat.copy()
    with pytest.raises(ValueError, match="partial_fit"):
        model.partial_fit(X, y)
    np.testing.assert_array_equal(model._params_flat, before)


@pytest.mark.parametrize("value", ["linear", "Cosine", 3, ["cosine"], np.array(["cosine"]), True])
def test_bad_lr_schedule_is_refused_before_fitting(value):
    X, y = _data()
    model = rnnkit.RNNRegressor(hidden_size=4, max_epochs=1, lr_schedule=value)
    with pytest.raises(ValueError, match="lr_schedule must be None, 'adaptive' or 'cosine'"):
        model.fit(X, y.astype(float))
    assert not hasattr(model, "n_features_in_")


def test_schedule_and_rate_survive_save_and_load(tmp_path, rates):
    X, y = _data()
    model = rnnkit.RNNClassifier(hidden_size=4, batch_size=40, learning_rate=1e-3, lr_schedule="adaptive",
                                 tol=1e9, n_iter_no_change=1, random_state=0, n_threads=1)
    for _ in range(4):
        model.partial_fit(X, y, classes=[0, 1])
    model.save(tmp_path / "m.npz")
    loaded = rnnkit.load(tmp_path / "m.npz")
    assert (loaded.lr_schedule, loaded.learning_rate_) == ("adaptive", 2e-4)
    rates.clear()
    loaded.partial_fit(X, y)
    model.partial_fit(X, y)
    assert rates == [2e-4, 2e-4]
    np.testing.assert_array_equal(loaded._params_flat, model._params_flat)


def test_text_classifier_and_forecaster_pass_it_on(rates):
    from rnnkit.forecast import RNNForecaster
    from rnnkit.text import TextClassifier

    texts = ["good film", "bad film", "good plot", "bad plot"] * 5
    labels = ["pos", "neg", "pos", "neg"] * 5
    clf = TextClassifier(hidden_size=4, embedding_dim=4, max_epochs=3, batch_size=20, lr_schedule="cosine",
                         random_state=0, n_threads=1)
    _quiet_fit(clf, texts, labels)
    np.testing.assert_allclose(rates, [clf.learning_rate, 0.75 * clf.learning_rate, 0.25 * clf.learning_rate],
                               rtol=1e-15)  # one batch an epoch; cos(pi / 3) = 1 / 2
    assert clf.learning_rate_ == 0.0
    series = np.sin(np.arange(80) / 4.0)
    fc = RNNForecaster(window=8, hidden_size=4, max_epochs=2, lr_schedule="cosine", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fc.fit(series)
    assert fc.regressor_.lr_schedule == "cosine" and fc.regressor_.learning_rate_ == 0.0


def test_verbose_reports_the_rate(capsys):
    X, y = _data()
    model = rnnkit.RNNClassifier(hidden_size=4, max_epochs=2, learning_rate=0.01, lr_schedule="cosine",
                                 verbose=1, random_state=0, n_threads=1)
    _quiet_fit(model, X, y)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "learning rate 0.01," in text and "learning rate 0.005," in text


TEXT = ("the cat sat on the mat and the dog sat on the log while the bird sang in the tree " * 6).split()


def test_language_model_cosine_and_files(tmp_path, rates):
    from rnnkit.text import LanguageModel

    lm = LanguageModel(hidden_size=8, embedding_dim=4, max_epochs=4, batch_size=64, seq_len=8, learning_rate=0.01,
                       lr_schedule="cosine", random_state=0, n_threads=1).fit(" ".join(TEXT))
    per_epoch = list(dict.fromkeys(rates))
    topt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01)
    tsched = torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=4)
    expected = []
    for _ in range(4):
        expected.append(topt.param_groups[0]["lr"])
        topt.step()
        tsched.step()
    assert per_epoch == expected and lm.learning_rate_ == 0.0
    lm.save(tmp_path / "lm.npz")
    loaded = rnnkit.load(tmp_path / "lm.npz")
    assert (loaded.lr_schedule, loaded.learning_rate_) == ("cosine", 0.0)


def test_language_model_adaptive_lowers_after_each_epoch_without_improvement(rates):
    """With a validation tail the rule reads its perplexity. Random words: the model overfits the
    training part after a few epochs, so epochs that do not improve are there to be seen."""
    from rnnkit.text import LanguageModel

    text = " ".join(np.random.default_rng(0).choice(list("abcdefghij"), 600))
    lm = LanguageModel(hidden_size=16, embedding_dim=4, max_epochs=8, batch_size=64, seq_len=8, learning_rate=0.02,
                       validation_fraction=0.2, lr_schedule="adaptive", random_state=0, n_threads=1).fit(text)
    ppl = lm.validation_perplexity_
    expected, lr = [], 0.02
    for i, value in enumerate(ppl):
        expected.append(lr)
        if i and value >= min(ppl[:i]):
            lr /= 5.0
    assert list(dict.fromkeys(rates)) == list(dict.fromkeys(expected))  # each epoch's rate, in order
    assert lm.learning_rate_ == lr and lr < 0.02 / 25  # it lowered the rate more than twice


def test_seq2seq_cosine_and_files(tmp_path, rates):
    from rnnkit.text import Seq2Seq

    sources = ["a b c", "b c d", "c d e", "d e f"] * 4
    targets = [" ".join(reversed(s.split())) for s in sources]
    model = Seq2Seq(hidden_size=8, embedding_dim=4, max_epochs=3, batch_size=16, learning_rate=0.01,
                    lr_schedule="cosine", random_state=0, n_threads=1).fit(sources, targets)
    np.testing.assert_allclose(list(dict.fromkeys(rates)), [0.01, 0.0075, 0.0025], rtol=1e-15)
    assert model.learning_rate_ == 0.0
    model.save(tmp_path / "s.npz")
    assert rnnkit.load(tmp_path / "s.npz").lr_schedule == "cosine"


def test_text_models_refuse_an_unknown_schedule():
    from rnnkit.music import MelodyModel
    from rnnkit.text import LanguageModel, Seq2Seq

    for model in (LanguageModel(lr_schedule="step"), MelodyModel(lr_schedule="step"), Seq2Seq(lr_schedule="step")):
        with pytest.raises(ValueError, match="lr_schedule must be None"):
            model._validate_params()


def test_language_model_adaptive_ends_training_at_the_floor():
    """At 1e-6 or below, the next epoch without improvement ends the fit (sklearn's MLP rule)."""
    from rnnkit.text import LanguageModel

    text = " ".join(np.random.default_rng(0).choice(list("abcdefghij"), 600))
    lm = LanguageModel(hidden_size=16, embedding_dim=4, max_epochs=60, batch_size=64, seq_len=8,
                       learning_rate=0.02, validation_fraction=0.2, lr_schedule="adaptive", random_state=0,
                       n_threads=1).fit(text)
    ppl, lr = lm.validation_perplexity_, 0.02
    for i in range(1, len(ppl)):
        if ppl[i] >= min(ppl[:i]):
            if lr <= 1e-6:
                break
            lr /= 5.0
    assert i == len(ppl) - 1 < 59 and lr <= 1e-6  # it ended at the first stall at the floor
    assert lm.learning_rate_ == lr and lm.n_iter_ == len(ppl)
