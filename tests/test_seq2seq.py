"""rnnkit.text.Seq2Seq: gradients against PyTorch, learning, decoding, persistence, bad input."""
from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
from conftest import assert_close_rel

import rnnkit
from rnnkit.exceptions import NotFittedError
from rnnkit.text import Seq2Seq

pytestmark = pytest.mark.filterwarnings("ignore::rnnkit.exceptions.ConvergenceWarning")


def reverse_pairs(n, seed, max_len=6):
    """Digit strings and their reversal: a transduction that needs the whole source."""
    rng = np.random.default_rng(seed)
    X, y = [], []
    for _ in range(n):
        digits = [str(d) for d in rng.integers(0, 10, int(rng.integers(1, max_len + 1)))]
        X.append(" ".join(digits))
        y.append(" ".join(digits[::-1]))
    return X, y


TINY = dict(hidden_size=12, embedding_dim=6, max_epochs=1, batch_size=8, random_state=0, n_threads=1)


@pytest.fixture(scope="module", params=[{}, {"attention": "general"}, {"attention": "dot", "bidirectional_encoder": True}],
                ids=["plain", "attention", "bidirectional-attention"])
def reverser(request):
    X, y = reverse_pairs(2000, 0, max_len=5)
    return Seq2Seq(hidden_size=48, embedding_dim=16, max_epochs=10, batch_size=32, learning_rate=1e-2,
                   random_state=0, n_threads=1, **request.param).fit(X, y)


# ----------------------------------------------------------------------------- gradients vs torch
@pytest.mark.parametrize("cell,num_layers,reverse,attention,bidirectional", [
    ("lstm", 1, True, None, False), ("lstm", 2, False, None, False), ("gru", 2, True, None, False),
    ("rnn", 1, False, None, False), ("rnn_relu", 2, True, None, False), ("lstm", 1, True, "general", False),
    ("lstm", 2, False, "dot", False), ("gru", 1, False, "general", False), ("rnn", 2, True, "dot", False),
    ("lstm", 2, False, None, True), ("lstm", 2, True, "general", True), ("gru", 1, False, "dot", True),
    ("rnn_relu", 2, False, "general", True)])
def test_loss_and_gradients_match_torch(torch, cell, num_layers, reverse, attention, bidirectional):
    """Teacher-forced loss and every gradient (both stacks, both embeddings, attention, head) equal torch's
    autograd; the attention is written here in torch ops, as Luong et al. define it, and a bidirectional
    encoder's directions are summed, outputs and final states."""
    nn = torch.nn
    X, y = reverse_pairs(12, 1)
    y = [t + " 0" * (i % 3) for i, t in enumerate(y)]  # targets of other lengths than their sources
    m = Seq2Seq(cell=cell, num_layers=num_layers, reverse_source=reverse, attention=attention,
                bidirectional_encoder=bidirectional, **TINY).fit(X, y)
    assert m.encoder_.bidirectional == bidirectional and not m.decoder_.bidirectional
    assert ("attention_combine" in m._p) == (attention is not None)
    assert ("attention_score" in m._p) == (attention == "general")
    src = m._encode_sources(X)
    tgt = [m.target_tokenizer_.encode(t) for t in y]
    loss, _ = m._loss_and_grads(src, tgt)

    def torch_stack(layer):
        mode = layer._mode
        kind = {"lstm": nn.LSTM, "gru": nn.GRU}.get(mode, nn.RNN)
        extra = {"nonlinearity": mode[4:]} if kind is nn.RNN else {}
        t = kind(layer.input_size, layer.hidden_size, num_layers=num_layers, batch_first=True,
                 bidirectional=layer.bidirectional, **extra)
        t.load_state_dict({k: torch.tensor(v) for k, v in layer.state_dict().items()})
        return t

    enc, dec = torch_stack(m.encoder_), torch_stack(m.decoder_)
    p = {k: torch.tensor(v, requires_grad=True) for k, v in m._p.items()}
    bos, eos = len(m.target_tokenizer_), len(m.target_tokenizer_) + 1

    def padded(seqs):
        width = max(len(s) for s in seqs)
        return torch.tensor([list(s) + [0] * (width - len(s)) for s in seqs]), torch.tensor([len(s) for s in seqs])

    pack = nn.utils.rnn.pack_padded_sequence
    xs, src_len = padded([s[::-1] if reverse else s for s in src])
    enc_out, state = enc(pack(p["source_embedding"][xs], src_len, batch_first=True, enforce_sorted=False))
    enc_out, _ = nn.utils.rnn.pad_packed_sequence(enc_out, batch_first=True)
    if bidirectional:
        hidden = enc_out.shape[-1] // 2
        enc_out = enc_out[..., :hidden] + enc_out[..., hidden:]
        state = tuple(s[0::2] + s[1::2] for s in state) if isinstance(state, tuple) else state[0::2] + state[1::2]
    dec_in, tgt_len = padded([[bos] + list(t) for t in tgt])
    labels, _ = padded([list(t) + [eos] for t in tgt])
    out, _ = dec(pack(p["target_embedding"][dec_in], tgt_len, batch_first=True, enforce_sorted=False), state)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
    if attention is not None:
        keys = enc_out if attention == "dot" else enc_out @ p["attention_score"].T
        padding = ~(torch.arange(xs.shape[1])[None, :] < src_len[:, None])
        scores = (out @ keys.transpose(1, 2)).masked_fill(padding[:, None], float("-inf"))
        context = torch.softmax(scores, dim=-1) @ enc_out
        out = torch.tanh(torch.cat([context, out], dim=-1) @ p["attention_combine"].T)
    mask = torch.arange(dec_in.shape[1])[None, :] < tgt_len[:, None]
    logits = out[mask] @ p["head_weight"].T + p["head_bias"]
    ref = torch.nn.functional.cross_entropy(logits, labels[mask])
    ref.backward()

    assert abs(loss - ref.item()) <= 1e-5 * abs(ref.item())
    for name, tensor in p.items():
        assert_close_rel(m._g[name], tensor.grad.numpy(), 1e-5, name)
    for layer, module, label in ((m.encoder_, enc, "encoder"), (m.decoder_, dec, "decoder")):
        for name, param in module.named_parameters():
            assert_close_rel(layer.grads[name], param.grad.numpy(), 1e-5, f"{label}.{name}")


# ----------------------------------------------------------------------------- learning and decoding
def test_learns_to_reverse_digit_strings(reverser):
    X, y = reverse_pairs(300, 99, max_len=5)
    assert reverser.loss_curve_[-1] < 0.2 * reverser.loss_curve_[0]
    assert reverser.score(X, y) >= 0.9
    beam = reverser.predict(X, beam_width=4)
    assert np.mean([p == t for p, t in zip(beam, y)]) >= 0.9


def test_attention_learns_long_reversals_that_the_final_state_cannot_hold():
    """Reversing 1-12 digits: the encoder's final state alone gets about half right, attention nearly all."""
    X, y = reverse_pairs(2000, 0, max_len=12)
    X_test, y_test = reverse_pairs(300, 99, max_len=12)
    scores = {}
    for attention in (None, "general"):
        m = Seq2Seq(hidden_size=48, embedding_dim=16, max_epochs=10, batch_size=32, learning_rate=1e-2,
                    random_state=0, n_threads=1, attention=attention).fit(X, y)
        scores[attention] = m.score(X_test, y_test)
    assert scores["general"] >= 0.9, scores
    assert scores["general"] - scores[None] >= 0.25, scores


def test_attention_weights_align_each_output_digit_with_its_source_digit(reverser):
    """Reversing digits, output token t should read source token n-1-t (in reading order)."""
    X, y = reverse_pairs(200, 8, max_len=5)
    if reverser.attention is None:
        with pytest.raises(ValueError, match="attention='dot' or 'general'"):
            reverser.attention_weights(X, y)
        return
    weights = reverser.attention_weights(X, y)
    hits = total = 0
    for w, source in zip(weights, X):
        n = len(source.split())
        assert w.shape == (n + 1, n)
        np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-5)
        hits += int((np.argmax(w[:n], axis=1) == np.arange(n)[::-1]).sum())
        total += n
    assert hits >= 0.9 * total, (hits, total)


def test_greedy_output_is_the_argmax_of_the_teacher_forced_pass(reverser):
    """Decoding one step at a time agrees with the whole-sequence forward used in training."""
    X, _ = reverse_pairs(60, 5, max_len=7)  # longer than in training: errors are likely, agreement must hold
    src = reverser._encode_sources(X)
    out = reverser._decode(X, 1)
    finished = [i for i, o in enumerate(out) if len(o) < reverser.max_length_]
    assert len(finished) > 50
    logp = reverser._teacher_forced([src[i] for i in finished], [np.array(out[i], np.int64) for i in finished],
                                    training=False).logp
    logp[:, len(reverser.target_tokenizer_)] = -np.inf  # <s> is never emitted
    expected = np.concatenate([out[i] + [len(reverser.target_tokenizer_) + 1] for i in finished])
    np.testing.assert_array_equal(np.argmax(logp, axis=1), expected)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_never_scores_below_greedy(reverser, alpha):
    """On sources longer than any in training (an unsure model), width 4 never ends below greedy's score.

    (Regression: an early version stopped a sentence once k hypotheses had finished, however
    improbable, and lost to greedy on 2 of the first 400 of these.) Compared where the two outputs differ
    and both ended with ``</s>``: where they are the same string, the two ``log_probability`` calls score
    it in batches of other lengths, which may round it differently in float32 (by 1e-7); an output cut
    at ``max_length_`` was ranked without the ``</s>`` that ``log_probability`` adds.
    """
    # 1000 sources: the beam changed 17-19 of the first 400 on generic and AVX2 builds but only 5 on
    # AVX-512 (another rounding, another trained model); of 1000 it changes 28-46 on all three.
    # With attention the model stays sure on sources of 7 (the beam changed 1 of 1000): it needs 24
    # (29 changed); the bidirectional encoder with dot attention changed 13 at 7, 33 at 9.
    X, _ = reverse_pairs(1000, 5, max_len={None: 7, "general": 24, "dot": 9}[reverser.attention])
    reverser.length_penalty = alpha
    try:
        tokenize = reverser.target_tokenizer_.tokenize

        def normalised(outputs):
            lengths = np.array([len(tokenize(o)) + 1 for o in outputs])
            return reverser.log_probability(X, outputs) / lengths ** alpha

        greedy, beam = reverser.predict(X, beam_width=1), reverser.predict(X, beam_width=4)
        compared = np.array([g != b and max(len(tokenize(g)), len(tokenize(b))) < reverser.max_length_
                             for g, b in zip(greedy, beam)])
        assert compared.sum() > 5  # the beam does change some outputs
        assert (normalised(beam)[compared] >= normalised(greedy)[compared] - 1e-9).all()
    finally:
        reverser.length_penalty = 1.0


def test_beam_of_width_one_is_greedy(reverser):
    X, _ = reverse_pairs(80, 6, max_len=7)
    xs = reverser._encode_sources(X)
    from rnnkit.text.seq2seq import _pad

    state, memory = reverser._encode(*_pad(xs, reverse=True))
    reverser.length_penalty = 0.0  # with length normalisation, a width-1 beam may outlive greedy's </s>
    try:
        assert reverser._beam(state, len(X), reverser.max_length_, 1, memory) == reverser._greedy(
            state, len(X), reverser.max_length_, memory)
    finally:
        reverser.length_penalty = 1.0


@pytest.mark.parametrize("attention", [None, "dot"])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_wide_beam_finds_the_most_probable_output(alpha, attention):
    """With a beam wider than every hypothesis, beam search is exhaustive search (length-normalised or not)."""
    X = ["a b", "b a", "a", "b b a"]
    y = ["x y", "y", "y x x", "x"]
    m = Seq2Seq(length_penalty=alpha, max_length=3, beam_width=64, attention=attention,
                **{**TINY, "max_epochs": 5}).fit(X, y)
    assert len(m.target_tokenizer_) == 3  # <unk>, x, y
    bos, eos = 3, 4

    def prefix_logp(src: str, tokens: tuple) -> float:
        """log p of the tokens as a prefix (no </s>), one decoder step at a time."""
        xs = np.array([m.source_tokenizer_.encode(src)[::-1]])
        state, memory = m._encode(xs, np.array([xs.shape[1]]))
        total, previous = 0.0, bos
        for token in tokens:
            logp, state = m._step_logp(np.array([previous]), state, memory)
            total += float(logp[0, token])
            previous = token
        return total

    vocab = (0, 1, 2)  # <unk>, x, y (never <s>)
    for src in ["a b", "b a b", "a a"]:
        scores = {t: prefix_logp(src, t + (eos,)) / (n + 1) ** alpha for n in range(3)
                  for t in itertools.product(vocab, repeat=n)}
        scores.update({t: prefix_logp(src, t) / 3 ** alpha for t in itertools.product(vocab, repeat=3)})  # cut
        best = max(scores, key=scores.get)
        assert m._decode([src], 64)[0] == [tok for tok in best if tok != eos]
        # and the same beam, narrow, still returns a hypothesis of at most max_length tokens
        assert len(m._decode([src], 2)[0]) <= 3


# ----------------------------------------------------------------------------- persistence and API
def test_save_load_and_pickle_keep_the_translations(reverser, tmp_path):
    X, _ = reverse_pairs(40, 7)
    expected = reverser.predict(X, beam_width=3)
    path = tmp_path / "s2s.npz"
    reverser.save(path)
    loaded = rnnkit.load(path)
    assert isinstance(loaded, Seq2Seq)
    assert loaded.predict(X, beam_width=3) == expected
    assert loaded.get_params() == reverser.get_params()
    assert pickle.loads(pickle.dumps(reverser)).predict(X, beam_width=3) == expected


def test_files_from_before_attention_load_as_plain_models(tmp_path):
    """A file written before ``attention``, ``bidirectional_encoder`` and ``reverse_source_`` existed."""
    from rnnkit import io

    X, y = reverse_pairs(40, 7)
    m = Seq2Seq(**TINY).fit(X, y)
    meta, arrays = m._export()
    for name in ("attention", "bidirectional_encoder"):
        del meta["params"][name]
    del meta["fitted"]["reverse_source_"]
    path = tmp_path / "old.npz"
    io._write(path, {"class": "rnnkit.text.seq2seq:Seq2Seq", **meta}, arrays)
    loaded = rnnkit.load(path)
    assert loaded.attention is None and loaded.bidirectional_encoder is False and loaded.reverse_source_ is True
    assert loaded.predict(X, beam_width=2) == m.predict(X, beam_width=2)
    state = m.__getstate__()  # and a pickle from before reverse_source_ was kept
    del state["reverse_source_"]
    unpickled = Seq2Seq.__new__(Seq2Seq)
    unpickled.__setstate__(state)
    assert unpickled.reverse_source_ is True and unpickled.predict(X, beam_width=2) == m.predict(X, beam_width=2)


def test_set_params_after_fit_changes_nothing_until_the_next_fit():
    """The fitted structure (attention, encoder directions) is the model's, not the current parameters'."""
    X, y = reverse_pairs(40, 7)
    for before, after in (({}, {"attention": "general", "bidirectional_encoder": True, "reverse_source": False}),
                          ({"attention": "dot", "bidirectional_encoder": True},
                           {"attention": None, "bidirectional_encoder": False, "reverse_source": False})):
        m = Seq2Seq(**TINY, **before).fit(X, y)
        expected, expected_lp = m.predict(X, beam_width=2), m.log_probability(X, y)
        m.set_params(**after)
        assert m.predict(X, beam_width=2) == expected
        np.testing.assert_array_equal(m.log_probability(X, y), expected_lp)
        m.fit(X, y)  # and the next fit builds what the parameters now say
        assert m.encoder_.bidirectional == after["bidirectional_encoder"]
        assert ("attention_combine" in m._p) == (after["attention"] is not None)
        assert m.reverse_source_ is False


def test_same_seed_same_model():
    X, y = reverse_pairs(64, 3)
    a = Seq2Seq(**TINY).fit(X, y)
    b = Seq2Seq(**TINY).fit(X, y)
    for pa, pb in zip(a._buffers(), b._buffers()):
        np.testing.assert_array_equal(pa, pb)
    c = Seq2Seq(**{**TINY, "random_state": 1}).fit(X, y)
    assert not np.array_equal(a._extra, c._extra)


def test_validation_keeps_the_best_epoch():
    X, y = reverse_pairs(200, 4)
    m = Seq2Seq(**{**TINY, "max_epochs": 4, "validation_fraction": 0.25}).fit(X, y)
    assert len(m.validation_loss_) == 4
    assert m.best_validation_loss_ == min(m.validation_loss_)
    held_out_loss = m.best_validation_loss_
    assert np.isfinite(held_out_loss)


def test_sklearn_clone_and_params():
    sklearn = pytest.importorskip("sklearn")
    m = Seq2Seq(hidden_size=7, beam_width=3)
    c = sklearn.base.clone(m)
    assert c.get_params()["hidden_size"] == 7 and c.get_params()["beam_width"] == 3


def test_bad_input():
    X, y = reverse_pairs(10, 0)
    with pytest.raises(NotFittedError):
        Seq2Seq().predict(["1 2"])
    with pytest.raises(ValueError, match="same number"):
        Seq2Seq(**TINY).fit(X, y[:-1])
    with pytest.raises(ValueError, match="at least one"):
        Seq2Seq(**TINY).fit([], [])
    with pytest.raises(TypeError, match="X"):
        Seq2Seq(**TINY).fit([1, 2], ["a", "b"])
    with pytest.raises(ValueError, match="cell"):
        Seq2Seq(cell="transformer").fit(X, y)
    with pytest.raises(ValueError, match="beam_width"):
        Seq2Seq(beam_width=0).fit(X, y)
    with pytest.raises(TypeError, match="reverse_source"):
        Seq2Seq(reverse_source="yes").fit(X, y)
    with pytest.raises(ValueError, match="attention must be None, 'dot' or 'general', got 'bahdanau'"):
        Seq2Seq(attention="bahdanau").fit(X, y)
    m = Seq2Seq(**TINY).fit(X, y)
    with pytest.raises(ValueError, match="beam_width"):
        m.predict(X, beam_width=-2)
    assert len(m.predict(["", "9 9 9 9 9 9 9 9 9 9 9 9 9 9"])) == 2  # empty and over-long sources still decode
    with pytest.raises(ValueError, match="same number"):
        Seq2Seq(attention="dot", **TINY).fit(X, y).attention_weights(X, y[:-1])


def test_attention_on_empty_texts():
    """An empty source is one unknown token to attend to; an empty target still has its </s> row."""
    X, y = reverse_pairs(40, 0)
    m = Seq2Seq(attention="general", **TINY).fit(X, y)
    w = m.attention_weights(["", "1 2", ""], ["", "", "3 4 5"])
    assert [a.shape for a in w] == [(1, 1), (1, 2), (4, 1)]
    for a in w:
        np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=1e-6)
    assert len(m.predict(["", "1"], beam_width=3)) == 2
