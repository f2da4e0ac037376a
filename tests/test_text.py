"""rnnkit.text: Tokenizer, LanguageModel and TextClassifier on small data (fast, fixed seeds)."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

import rnnkit
from rnnkit.exceptions import NotFittedError
from rnnkit.text import LanguageModel, TextClassifier, Tokenizer
from rnnkit.text.corpora import pydoc_topics

pytestmark = pytest.mark.filterwarnings("ignore::rnnkit.exceptions.ConvergenceWarning")

# A tiny corpus with a strict pattern: each word determines the next one.
CYCLE = "the cat sat on a mat and the dog ran to the park . "
TINY_LM = dict(hidden_size=24, embedding_dim=8, seq_len=12, batch_size=8, max_epochs=25, learning_rate=1e-2,
               random_state=0, n_threads=1)


@pytest.fixture(scope="module")
def cycle_lm():
    return LanguageModel(**TINY_LM).fit([CYCLE * 30])


def sentiment_data(n, seed):
    """Toy sentiment: the label is carried by one word among filler words, at any position."""
    rng = np.random.default_rng(seed)
    pos, neg = ["good", "great", "lovely", "nice"], ["bad", "awful", "poor", "nasty"]
    filler = ["the", "film", "was", "plot", "really", "and", "acting", "a", "bit", "long"]
    X, y = [], []
    for _ in range(n):
        label = int(rng.integers(2))
        words = list(rng.choice(filler, int(rng.integers(2, 8))))
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(pos if label else neg)))
        X.append(" ".join(words))
        y.append("positive" if label else "negative")
    return X, np.array(y)


# ----------------------------------------------------------------------------- tokenizer
def test_tokenizer_word_levels_of_punctuation():
    text = "Hello, World! It's 3.5 -- isn't it?"
    assert Tokenizer().tokenize(text) == ["hello", ",", "world", "!", "it's", "3", ".", "5", "-", "-", "isn't",
                                          "it", "?"]
    assert Tokenizer(punctuation="strip").tokenize(text) == ["hello", "world", "it's", "3", "5", "isn't", "it"]
    assert Tokenizer(punctuation="keep", lower=False).tokenize(text) == ["Hello,", "World!", "It's", "3.5", "--",
                                                                         "isn't", "it?"]


def test_tokenizer_char_level():
    assert Tokenizer(level="char").tokenize("Ab, c") == ["a", "b", ",", " ", "c"]
    assert Tokenizer(level="char", punctuation="strip", lower=False).tokenize("Ab, c!") == ["A", "b", " ", "c"]


def test_tokenizer_vocabulary_order_limits_and_unknown():
    texts = ["b a a c", "a b d d d"]
    tok = Tokenizer().fit(texts)
    assert tok.vocab_ == ["<unk>", "a", "d", "b", "c"]  # by count, ties alphabetical
    assert tok.counts_ == {"a": 3, "d": 3, "b": 2, "c": 1}
    assert Tokenizer().fit(texts[::-1]).vocab_ == tok.vocab_  # independent of the order of the texts
    assert Tokenizer(max_vocab=3).fit(texts).vocab_ == ["<unk>", "a", "d"]
    assert Tokenizer(min_freq=2).fit(texts).vocab_ == ["<unk>", "a", "d", "b"]
    ids = tok.encode("a z b")
    assert ids.dtype == np.int64 and ids.tolist() == [1, 0, 3]
    assert tok.decode(ids) == "a <unk> b"
    assert len(tok) == tok.vocab_size_ == 5
    assert [e.tolist() for e in tok.transform(["c", "d a"])] == [[4], [2, 1]]
    assert Tokenizer(unk_token="?").fit(["x"]).vocab_ == ["?", "x"]


def test_tokenizer_decode_spacing_and_glue():
    tok = Tokenizer().fit(["f ( x ) , then stop ."])
    assert tok.decode(tok.encode("f(x), then stop.")) == "f (x), then stop."
    assert tok.decode(tok.encode(". then"), glue=True) == ". then"
    assert tok.decode(tok.encode("then ."), glue=True) == " then."
    char = Tokenizer(level="char").fit(["ab c"])
    assert char.decode(char.encode("c ab")) == "c ab"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([99])


def test_tokenizer_bad_input():
    with pytest.raises(ValueError, match="empty"):
        Tokenizer().fit([])
    with pytest.raises(TypeError, match=r"texts\[1\] must be a string"):
        Tokenizer().fit(["ok", 3])
    with pytest.raises(TypeError, match="bytes"):
        Tokenizer().fit(b"abc")
    with pytest.raises(ValueError, match="level"):
        Tokenizer(level="sentence").fit(["a"])
    with pytest.raises(ValueError, match="punctuation"):
        Tokenizer(punctuation="drop").fit(["a"])
    with pytest.raises(ValueError, match="max_vocab"):
        Tokenizer(max_vocab=1).fit(["a"])
    with pytest.raises(NotFittedError):
        Tokenizer().encode("a")
    with pytest.raises(TypeError, match="text must be a string"):
        Tokenizer().fit(["a"]).encode(None)


# ----------------------------------------------------------------------------- language model
def test_language_model_learns_a_repetitive_corpus(cycle_lm):
    vocab = len(cycle_lm.tokenizer_)
    assert vocab == 13  # 12 words and "." + <unk>
    assert cycle_lm.loss_curve_[-1] < 0.5 * cycle_lm.loss_curve_[0]
    ppl = cycle_lm.perplexity(CYCLE * 3)
    assert ppl < 1.6 < vocab / 5  # nearly deterministic: "the" is followed by cat, dog or park
    assert cycle_lm.score(CYCLE * 3) == pytest.approx(-math.log(ppl))
    top = cycle_lm.predict_next("the dog", k=3)
    assert top[0][0] == "ran" and top[0][1] > 0.8
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    assert all(isinstance(t, str) and isinstance(p, float) for t, p in top)
    after_the = dict(cycle_lm.predict_next("and the", k=vocab))
    assert sum(after_the.values()) == pytest.approx(1.0, abs=1e-4)
    assert after_the["dog"] > 0.8  # the context decides among the three continuations of "the"
    assert cycle_lm.generate("the cat", length=8, temperature=0) == " sat on a mat and the dog ran"


def test_stateful_generation_steps_match_the_windowed_forward(cycle_lm):
    """generate() carries the recurrent state with step(); within one window it sees what forward sees."""
    from rnnkit.text.models import _Stepper

    rng = np.random.default_rng(0)
    ids = rng.integers(1, len(cycle_lm.tokenizer_), cycle_lm.seq_len).tolist()  # random, not the cycle
    step = _Stepper(cycle_lm)
    for n, token in enumerate(ids, start=1):
        step(token)
        np.testing.assert_allclose(step.distribution(), cycle_lm._next_distribution(ids[:n]), rtol=2e-5, atol=1e-7)
    long = cycle_lm.generate("the cat", length=3 * cycle_lm.seq_len, temperature=0)  # past one window: state carried
    assert long.startswith(" sat on a mat and the dog ran to the park. the cat sat on")
    assert len(cycle_lm.tokenizer_.tokenize(long)) == 3 * cycle_lm.seq_len


def test_language_model_is_deterministic_with_seeds(cycle_lm):
    again = LanguageModel(**TINY_LM).fit([CYCLE * 30])
    np.testing.assert_array_equal(again._params_flat, cycle_lm._params_flat)
    assert again.loss_curve_ == cycle_lm.loss_curve_
    a = cycle_lm.generate("the", length=20, temperature=1.5, seed=3)
    assert a == cycle_lm.generate("the", length=20, temperature=1.5, seed=3)
    assert a != cycle_lm.generate("the", length=20, temperature=1.5, seed=4)
    other = LanguageModel(**{**TINY_LM, "max_epochs": 1, "random_state": 1}).fit([CYCLE * 30])
    assert not np.array_equal(other._params_flat[:100], cycle_lm._params_flat[:100])


def test_generate_options(cycle_lm):
    assert cycle_lm.generate("the", length=0) == ""
    words = cycle_lm.tokenizer_.tokenize(cycle_lm.generate("the", length=30, temperature=2.0, seed=0))
    assert len(words) == 30 and "<unk>" not in words
    greedy = cycle_lm.generate("the", length=30, temperature=0)
    assert cycle_lm.generate("the", length=30, top_k=1, seed=5) == greedy  # top-1 sampling is greedy
    with pytest.raises(ValueError, match="temperature"):
        cycle_lm.generate("the", temperature=-1)
    with pytest.raises(ValueError, match="top_k"):
        cycle_lm.generate("the", top_k=0)
    with pytest.raises(ValueError, match="length"):
        cycle_lm.generate("the", length=-2)
    with pytest.raises(ValueError, match="no tokens"):
        cycle_lm.predict_next("   ")
    with pytest.raises(ValueError, match="k must be"):
        cycle_lm.predict_next("the", k=0)
    with pytest.raises(TypeError, match="prompt"):
        cycle_lm.predict_next(["the"])


@pytest.mark.parametrize("cell", ["gru", "rnn", "rnn_relu"])
def test_language_model_cells_and_char_level(cell):
    lm = LanguageModel(level="char", cell=cell, hidden_size=16, embedding_dim=4, seq_len=10, max_epochs=2,
                       random_state=0, n_threads=1).fit("abcabcabd " * 20)
    assert set(lm.tokenizer_.vocab_) == {"<unk>", "a", "b", "c", "d", " "}
    cont = lm.generate("ab", length=7, seed=0)
    assert len(cont) == 7
    assert math.isfinite(lm.perplexity("abcab"))


def test_language_model_validation_keeps_best_epoch():
    lm = LanguageModel(**{**TINY_LM, "max_epochs": 6, "validation_fraction": 0.2}).fit(CYCLE * 30)
    assert len(lm.validation_perplexity_) == lm.n_iter_ == 6
    assert lm.best_validation_perplexity_ == min(lm.validation_perplexity_)
    n_val = int(round(len(lm.tokenizer_.tokenize(CYCLE * 30)) * 0.2))
    held_out = lm.tokenizer_.encode(CYCLE * 30)[-n_val:]
    assert lm._perplexity_of(held_out) == pytest.approx(lm.best_validation_perplexity_)


def test_language_model_reports_progress_per_epoch(capsys):
    LanguageModel(**{**TINY_LM, "max_epochs": 2, "verbose": 1, "validation_fraction": 0.2}).fit(CYCLE * 10)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("Epoch 1: loss") and "validation perplexity" in lines[0]


def test_language_model_keyboard_interrupt_keeps_weights(monkeypatch):
    import rnnkit._fitting as fitting_mod  # _BatchStep's module

    calls = {"n": 0}
    original = fitting_mod.clip_grad_norm

    def clip(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(fitting_mod, "clip_grad_norm", clip)
    with pytest.warns(UserWarning, match="interrupted"):
        lm = LanguageModel(**{**TINY_LM, "batch_size": 2}).fit(CYCLE * 3)
    assert lm.n_iter_ == 1 and np.isfinite(lm._params_flat).all()
    assert lm.predict_next("the", k=1)


def test_language_model_bad_input():
    with pytest.raises(ValueError, match="empty"):
        LanguageModel().fit([])
    with pytest.raises(TypeError, match=r"texts\[0\] must be a string"):
        LanguageModel().fit([1, 2])
    with pytest.raises(ValueError, match="at least 2"):
        LanguageModel().fit(["word"])
    with pytest.raises(ValueError, match="at least 2"):
        LanguageModel(validation_fraction=0.5).fit(["a b c"])
    with pytest.raises(ValueError, match="cell"):
        LanguageModel(cell="transformer").fit(["a b"])
    with pytest.raises(ValueError, match="seq_len"):
        LanguageModel(seq_len=0).fit(["a b"])
    with pytest.raises(TypeError, match="hidden_size"):
        LanguageModel(hidden_size=2.5).fit(["a b"])
    with pytest.raises(NotFittedError):
        LanguageModel().predict_next("a")
    with pytest.raises(ValueError, match="diverged"):
        LanguageModel(**{**TINY_LM, "learning_rate": 1e38, "clip_norm": None, "max_epochs": 5}).fit(CYCLE * 5)


# ----------------------------------------------------------------------------- persistence
def test_language_model_save_load_round_trip(cycle_lm, tmp_path):
    path = tmp_path / "lm.npz"
    cycle_lm.save(path)
    loaded = rnnkit.load(path)
    assert isinstance(loaded, LanguageModel) and loaded.get_params() == cycle_lm.get_params()
    np.testing.assert_array_equal(loaded._params_flat, cycle_lm._params_flat)
    assert loaded.tokenizer_.vocab_ == cycle_lm.tokenizer_.vocab_
    assert loaded.loss_curve_ == cycle_lm.loss_curve_
    assert loaded.predict_next("the", k=4) == cycle_lm.predict_next("the", k=4)
    assert loaded.generate("a", length=15, seed=1) == cycle_lm.generate("a", length=15, seed=1)
    assert loaded.perplexity(CYCLE) == cycle_lm.perplexity(CYCLE)


def test_text_classifier_save_load_and_pickle(tmp_path):
    X, y = sentiment_data(60, 0)
    clf = TextClassifier(hidden_size=8, embedding_dim=4, max_epochs=2, random_state=0, n_threads=1).fit(X, y)
    clf.save(tmp_path / "clf.npz")
    for other in (rnnkit.load(tmp_path / "clf.npz"), pickle.loads(pickle.dumps(clf))):
        assert isinstance(other, TextClassifier)
        np.testing.assert_array_equal(other.predict_proba(X), clf.predict_proba(X))
        np.testing.assert_array_equal(other.classes_, clf.classes_)
    with_objects = TextClassifier(hidden_size=4, embedding_dim=4, max_epochs=1, random_state=0, n_threads=1)
    with_objects.fit(X, y.astype(object)).save(tmp_path / "obj.npz")
    assert rnnkit.load(tmp_path / "obj.npz").classes_.dtype == object


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(ValueError, match="missing.npz"):
        rnnkit.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_text("not a model")
    with pytest.raises(ValueError, match="bad.npz"):
        rnnkit.load(bad)
    with pytest.raises(NotFittedError):
        LanguageModel().save(tmp_path / "x.npz")


# ----------------------------------------------------------------------------- classifier
def test_text_classifier_learns_a_toy_task():
    X, y = sentiment_data(400, 0)
    Xt, yt = sentiment_data(200, 1)
    clf = TextClassifier(hidden_size=16, embedding_dim=8, max_epochs=15, random_state=0, n_threads=1).fit(X, y)
    assert clf.score(Xt, yt) >= 0.95
    assert list(clf.classes_) == ["negative", "positive"]
    pred = clf.predict(["the film was great", "awful plot and acting"])
    assert pred.tolist() == ["positive", "negative"]
    proba = clf.predict_proba(Xt[:5])
    assert proba.shape == (5, 2) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert clf.head_["bias"].shape == (2,)


def test_text_classifier_options_and_bad_input():
    X, y = sentiment_data(40, 0)
    kw = dict(hidden_size=8, embedding_dim=4, max_epochs=2, random_state=0, n_threads=1)
    clf = TextClassifier(level="char", bidirectional=True, max_length=5, cell="gru", **kw).fit(X, y)
    assert clf.predict(["", "good"]).shape == (2,)  # an empty text reads one unknown token
    assert TextClassifier(early_stopping=True, **kw).fit(X, y).validation_scores_
    with pytest.raises(TypeError, match="single string"):
        clf.predict("good film")
    with pytest.raises(TypeError, match=r"X\[1\] must be a string"):
        TextClassifier(**kw).fit(["a", None], [0, 1])
    with pytest.raises(ValueError, match="inconsistent"):
        TextClassifier(**kw).fit(X, y[:-1])
    with pytest.raises(ValueError, match="max_length"):
        TextClassifier(max_length=0, **kw).fit(X, y)
    with pytest.raises(NotFittedError):
        TextClassifier().predict(["a"])


def test_text_classifier_with_sklearn():
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    X, y = sentiment_data(60, 0)
    clf = TextClassifier(hidden_size=8, embedding_dim=4, max_epochs=2, random_state=0, n_threads=1)
    assert clone(clf).get_params() == clf.get_params()
    assert "output" not in clf.get_params() and "max_length" in clf.get_params()
    scores = cross_val_score(clf, np.array(X, dtype=object), y, cv=2)
    assert scores.shape == (2,)


def test_pydoc_corpus_split():
    train, test = pydoc_topics("train"), pydoc_topics("test")
    assert len(train) > 8 * len(test) > 0
    assert not set(train) & set(test)
    assert all("====" not in t and "+---" not in t for t in train)
    assert len(pydoc_topics()) > 50
    with pytest.raises(ValueError, match="split"):
        pydoc_topics("validation")
