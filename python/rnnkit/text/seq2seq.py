"""Sequence to sequence: an encoder-decoder that maps one text to another.

:class:`Seq2Seq` reads a source text with one recurrent stack (the encoder) and writes the
target text token by token with another (the decoder), whose initial state is the encoder's
final state (Sutskever et al., 2014), optionally attending to all of the encoder's outputs at
every target step (Luong et al., 2015; see :mod:`rnnkit.text._attention`). Training uses
teacher forcing: the decoder reads the true previous target token at every step, so one batch
is one ``forward`` of each stack and one BPTT through both (the decoder's gradient with respect
to its initial state flows into the encoder). Decoding is greedy or beam search, one
:meth:`~rnnkit.LSTM.step` per token.

The recurrent stacks are rnnkit's C++ layers; the embedding tables, the attention and the softmax
head are small numpy products around them.
"""

from __future__ import annotations

import functools
import math
import numbers
import time
from typing import Any, Iterable, NamedTuple, Optional, Sequence

import numpy as np

from .. import optim
from ..clip import clip_grad_norm
from .._fitting import (
    _Base,
    _CELLS,
    _check_choice,
    _check_device,
    _check_flags,
    _check_lr_schedule,
    _check_number,
    _check_optional_choice,
    _LearningRate,
    _make_rng,
    _progress,
    _report_epoch,
    _warn_interrupted,
)
from ..exceptions import not_fitted_error
from .._buffers import _aligned_zeros
from ..layers import _Recurrent, layer_for_mode
from . import _attention, _search
from ._attention import Memory
from ._base import _TextModel
from .tokenizer import Tokenizer, check_texts

_BOS, _EOS = "<s>", "</s>"  # the decoder's two extra tokens, after the target vocabulary
_ENCODE_CHUNK = 512  # sentences per decoding batch


def _make_layer(cell: str, input_size: int, hidden_size: int, num_layers: int, dropout: float, seed: int,
                n_threads: Optional[int], device: str, bidirectional: bool = False) -> _Recurrent:
    return layer_for_mode(_CELLS[cell], input_size, hidden_size, num_layers=num_layers, batch_first=True,
                          dropout=dropout, seed=seed, n_threads=n_threads, device=device, bidirectional=bidirectional)


def _sum_directions(state: Any) -> Any:
    """A bidirectional stack's final state (layer-major rows: forward, reverse) as one per layer: their sum."""
    if isinstance(state, tuple):
        return tuple(_sum_directions(part) for part in state)
    return state[0::2] + state[1::2]


def _spread_directions(d_state: Any) -> Any:
    """The gradient of :func:`_sum_directions`: each layer's gradient to both of its directions."""
    if isinstance(d_state, tuple):
        return tuple(_spread_directions(part) for part in d_state)
    return np.repeat(d_state, 2, axis=0)


class _Forced(NamedTuple):
    """One teacher-forced pass over a batch of pairs."""

    xs: np.ndarray  # (B, S) source ids, as the encoder read them
    src_len: np.ndarray  # (B,)
    dec_in: np.ndarray  # (B, T): <s> and the target
    dec_out: np.ndarray  # (B, T): what each step should predict, the target and </s>
    mask: np.ndarray  # (B, T): True at the valid steps
    h: np.ndarray  # (n_valid, H): the output layer's inputs at the valid steps
    logp: np.ndarray  # (n_valid, V): log-probabilities of the next token
    attention: Optional[tuple]  # (memory, decoder outputs, cache), or None without attention


def _pad(seqs: Sequence[np.ndarray], reverse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(B, max_len) int64 ids padded with 0 (each reversed within its length with ``reverse``), and the lengths."""
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    out = np.zeros((len(seqs), int(lengths.max())), dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s[::-1] if reverse else s
    return out, lengths


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class Seq2Seq(_TextModel, _Base):
    """Encoder-decoder for text-to-text tasks: short-phrase translation, transduction, normalisation.

    Parameters
    ----------
    cell : {"lstm", "gru", "rnn", "rnn_relu"}
        Recurrent cell of both stacks.
    hidden_size : int
        Hidden units per layer (the encoder and the decoder have the same shape, so that the
        encoder's final state starts the decoder).
    embedding_dim : int
        Size of the source and target token embeddings.
    num_layers : int
        Layers in each stack; the decoder's layer ``l`` starts from the encoder's layer ``l``.
    dropout : float
        Dropout between stacked layers during training.
    source_level, target_level : {"word", "char"}
        Tokens of the source and of the target texts.
    max_vocab : int or None
        Vocabulary size limit of each side (unknown token included).
    min_freq : int
        Tokens seen fewer times in training become the unknown token.
    lower : bool
        Lower-case both sides.
    punctuation : {"split", "strip", "keep"}
        See :class:`~rnnkit.text.Tokenizer`; "keep" treats hyphenated words as one token.
    reverse_source : bool
        Feed the source to the encoder backwards, so that its first tokens are the freshest
        in the state when decoding starts (helps on long inputs; Sutskever et al.).
    bidirectional_encoder : bool
        Read the source in both directions. The decoder's layer ``l`` starts from the sum of the
        encoder's two final states of layer ``l``, and the attention reads the sum of the two
        directions' outputs at each source position (summed as PyTorch's chatbot tutorial does).
    attention : {None, "dot", "general"}
        Global attention (Luong et al., 2015): at every target step the decoder's output
        scores each source position (``"dot"``: ``h . e``; ``"general"``: ``h . W_a e``), and
        ``tanh(W_c [context; h])`` feeds the output layer instead of ``h``. Without it the
        encoder's final state is all the decoder knows of the source, which limits long
        inputs. It does not feed back into the decoder's recurrence (no "input feeding").
    max_epochs, batch_size, learning_rate, clip_norm
        Adam with gradient-norm clipping, over sentence pairs in random order.
    validation_fraction : float
        Hold out this fraction of the pairs; after each epoch the held-out loss (per target
        token) is recorded and the weights of the best epoch are kept. 0 disables.
    beam_width : int
        Hypotheses kept per sentence when decoding; 1 is greedy decoding.
    length_penalty : float
        Beam search ranks finished hypotheses by ``log p / length ** length_penalty`` (0: raw
        log-probability, which favours short outputs).
    max_length : int or None
        Most tokens to generate per sentence; default: twice the longest training target.
    random_state : int, Generator or None
        Seeds initialisation, batch order and dropout; the same seed and thread count give
        identical models.
    verbose : int
        Report training progress (a bar in a terminal, else a line per epoch).
    n_threads : int or None
        Threads for the C++ layers (default: OpenMP's maximum).
    device : {"cpu", "cuda", "cuda:N"}
        Where the encoder and decoder stacks run in training and in teacher-forced scoring (see
        :mod:`rnnkit.cuda`); decoding steps run on the CPU.
    lr_schedule : {None, "adaptive", "cosine"}
        How the learning rate changes over the epochs, as in
        :class:`~rnnkit.text.LanguageModel` ("adaptive" reads the validation loss, or the
        training loss when ``validation_fraction`` is 0).

    Attributes
    ----------
    source_tokenizer_, target_tokenizer_ : Tokenizer
    encoder_, decoder_ : rnnkit.LSTM, GRU or RNN
        The two recurrent stacks (``batch_first=True``; the encoder bidirectional with
        ``bidirectional_encoder``).
    loss_curve_ : list of float
        Mean training cross-entropy per target token, per epoch.
    validation_loss_ : list of float
        Held-out cross-entropy per target token after each epoch.
    n_iter_ : int
        Epochs run.
    learning_rate_ : float
        The rate the next epoch would run at (``learning_rate`` unless ``lr_schedule`` changed it).
    max_length_ : int
        The decoding limit in use.
    reverse_source_ : bool
        Whether the fitted encoder reads sources backwards (``reverse_source`` at fit time).

    Notes
    -----
    With attention, :meth:`attention_weights` shows which source tokens each target token read.

    Examples
    --------
    >>> model = Seq2Seq(max_epochs=30, random_state=0).fit(sources, targets)   # doctest: +SKIP
    >>> model.predict(["quatre-vingt-dix-sept"], beam_width=4)                  # doctest: +SKIP
    ['ninety-seven']
    """

    _fitted_attributes = ("loss_curve_", "validation_loss_", "best_validation_loss_", "n_iter_", "max_length_",
                          "learning_rate_", "reverse_source_")

    def __init__(
        self,
        cell: str = "lstm",
        hidden_size: int = 128,
        embedding_dim: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        source_level: str = "word",
        target_level: str = "word",
        max_vocab: Optional[int] = 10000,
        min_freq: int = 1,
        lower: bool = True,
        punctuation: str = "split",
        reverse_source: bool = True,
        bidirectional_encoder: bool = False,
        attention: Optional[str] = None,
        max_epochs: int = 20,
        batch_size: int = 32,
        learning_rate: float = 3e-3,
        clip_norm: Optional[float] = 1.0,
        validation_fraction: float = 0.0,
        beam_width: int = 1,
        length_penalty: float = 1.0,
        max_length: Optional[int] = None,
        random_state: Optional[int] = None,
        verbose: int = 0,
        n_threads: Optional[int] = None,
        device: str = "cpu",
        lr_schedule: Optional[str] = None,
    ) -> None:
        self.cell = cell
        self.hidden_size = hidden_size
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.dropout = dropout
        self.source_level = source_level
        self.target_level = target_level
        self.max_vocab = max_vocab
        self.min_freq = min_freq
        self.lower = lower
        self.punctuation = punctuation
        self.reverse_source = reverse_source
        self.bidirectional_encoder = bidirectional_encoder
        self.attention = attention
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.clip_norm = clip_norm
        self.validation_fraction = validation_fraction
        self.beam_width = beam_width
        self.length_penalty = length_penalty
        self.max_length = max_length
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads
        self.device = device
        self.lr_schedule = lr_schedule

    # ------------------------------------------------------------------ parameters
    def _validate_params(self) -> None:
        _check_choice(self, "cell", _CELLS)
        number = functools.partial(_check_number, self)
        for name in ("hidden_size", "embedding_dim", "num_layers", "max_epochs", "batch_size", "beam_width"):
            number(name, 1, integer=True)
        number("dropout", 0.0, 1.0, high_open=True)
        number("learning_rate", 0.0, low_open=True)
        number("clip_norm", 0.0, low_open=True, none_ok=True)
        number("validation_fraction", 0.0, 1.0, high_open=True)
        number("length_penalty", 0.0)
        number("max_length", 1, integer=True, none_ok=True)
        number("verbose", 0, integer=True)
        number("n_threads", 1, integer=True, none_ok=True)
        _check_lr_schedule(self)
        _check_optional_choice(self, "attention", _attention.SCORES)
        _check_flags(self, "reverse_source", "bidirectional_encoder")
        if self.random_state is not None and not isinstance(self.random_state, (numbers.Integral, np.random.Generator,
                                                                                 np.random.RandomState)):
            raise TypeError(f"random_state must be None, an int or a numpy random generator, got {self.random_state!r}")
        self._tokenizer(self.source_level)._validate_params()
        self._tokenizer(self.target_level)._validate_params()
        _check_device(self)

    def _tokenizer(self, level: str) -> Tokenizer:
        return Tokenizer(level=level, max_vocab=self.max_vocab, min_freq=self.min_freq, lower=self.lower,
                         punctuation=self.punctuation)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "_extra")

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise not_fitted_error(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first.")

    def _build(self, seed: int) -> None:
        """Create the two stacks and the numpy parameters for the fitted vocabularies."""
        H, D, L = int(self.hidden_size), int(self.embedding_dim), int(self.num_layers)
        seeds = np.random.SeedSequence(seed).generate_state(2)
        self.encoder_ = _make_layer(self.cell, D, H, L, float(self.dropout), int(seeds[0]), self.n_threads, self.device,
                                    bool(self.bidirectional_encoder))
        self.decoder_ = _make_layer(self.cell, D, H, L, float(self.dropout), int(seeds[1]), self.n_threads, self.device)
        vs = len(self.source_tokenizer_)
        vt = len(self.target_tokenizer_) + 2  # + <s>, </s>
        self._shapes = {"source_embedding": (vs, D), "target_embedding": (vt, D), "head_weight": (vt, H),
                        "head_bias": (vt,)}
        if self.attention is not None:  # after the others: a model without attention keeps its layout
            self._shapes["attention_combine"] = (H, 2 * H)
            if self.attention == "general":
                self._shapes["attention_score"] = (H, H)
        size = sum(math.prod(s) for s in self._shapes.values())
        self._extra = _aligned_zeros(size, np.dtype(np.float32))
        self._extra_grad = _aligned_zeros(size, np.dtype(np.float32))
        self._p = self._views(self._extra)
        self._g = self._views(self._extra_grad)

    def _views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        views, offset = {}, 0
        for name, shape in self._shapes.items():
            n = math.prod(shape)
            views[name] = flat[offset : offset + n].reshape(shape)
            offset += n
        return views

    def _init_extra(self, rng: np.random.Generator) -> None:
        """Embeddings standard normal (``nn.Embedding``); the head and the attention's matrices
        uniform in ±1/sqrt(fan_in) (``nn.Linear``)."""
        for name in ("source_embedding", "target_embedding"):
            self._p[name][...] = rng.standard_normal(self._p[name].shape)
        for name in ("head_weight", "head_bias", "attention_combine", "attention_score"):
            if name in self._p:
                bound = 1.0 / math.sqrt(self._p[name].shape[-1] if name.startswith("attention") else self.hidden_size)
                self._p[name][...] = rng.uniform(-bound, bound, self._p[name].shape)

    @property
    def _bos(self) -> int:
        return len(self.target_tokenizer_)

    @property
    def _eos(self) -> int:
        return len(self.target_tokenizer_) + 1

    def _check_pairs(self, X: Any, y: Any) -> tuple[list[str], list[str]]:
        sources = check_texts(X, "X")
        targets = check_texts(y, "y")
        if len(sources) != len(targets):
            raise ValueError(f"X and y must hold the same number of texts, got {len(sources)} and {len(targets)}")
        if not sources:
            raise ValueError("X and y must hold at least one pair of texts")
        return sources, targets

    def _encode_sources(self, sources: Sequence[str]) -> list[np.ndarray]:
        """Token ids of each source; an empty source becomes the single unknown token."""
        return [ids if ids.size else np.zeros(1, np.int64) for ids in map(self.source_tokenizer_.encode, sources)]

    # ------------------------------------------------------------------ training
    def fit(self, X: Iterable[str], y: Iterable[str]) -> "Seq2Seq":
        """Learn both vocabularies and train on the pairs ``(X[i], y[i])`` (lists of strings).

        A KeyboardInterrupt stops training and keeps the weights learned so far.
        """
        self._validate_params()
        sources, targets = self._check_pairs(X, y)
        rng = _make_rng(self.random_state)
        n_val = int(round(len(sources) * float(self.validation_fraction)))
        order = rng.permutation(len(sources))
        val_idx, train_idx = order[:n_val], order[n_val:]
        if train_idx.size == 0:
            raise ValueError(f"validation_fraction={self.validation_fraction} leaves no pairs to train on")
        self.source_tokenizer_ = self._tokenizer(self.source_level).fit([sources[i] for i in train_idx])
        self.target_tokenizer_ = self._tokenizer(self.target_level).fit([targets[i] for i in train_idx])
        src = self._encode_sources(sources)
        tgt = [self.target_tokenizer_.encode(t) for t in targets]
        self._build(int(rng.integers(0, 2**63 - 1)))
        self._init_extra(rng)
        self.reverse_source_ = bool(self.reverse_source)
        self.max_length_ = int(self.max_length) if self.max_length is not None else \
            2 * max(int(tgt[i].size) for i in train_idx) + 1
        opt = optim.Adam([self.encoder_, self.decoder_, (self._extra, self._extra_grad)], lr=float(self.learning_rate))
        self.loss_curve_: list[float] = []
        self.validation_loss_: list[float] = []
        self.best_validation_loss_: Optional[float] = None
        self.n_iter_ = 0
        self.learning_rate_ = float(self.learning_rate)
        best = None
        best_loss = math.inf
        rate = _LearningRate(self.lr_schedule, opt, int(self.max_epochs))
        B = int(self.batch_size)
        n_batches = math.ceil(train_idx.size / B)
        bar = _progress(int(self.max_epochs) * n_batches, self.verbose, unit="batch")
        try:
            for _ in range(int(self.max_epochs)):
                start_time = time.perf_counter()
                perm = train_idx[rng.permutation(train_idx.size)]
                total, count = 0.0, 0
                for b0 in range(0, perm.size, B):
                    idx = perm[b0 : b0 + B]
                    loss, n_tokens = self._train_batch([src[i] for i in idx], [tgt[i] for i in idx], opt)
                    total += loss * n_tokens
                    count += n_tokens
                    if bar is not None:
                        bar.set_postfix_str(f"epoch {self.n_iter_ + 1}, loss {total / count:.3f}", refresh=False)
                        bar.update(1)
                self.n_iter_ += 1
                self.loss_curve_.append(total / count)
                message = f"Epoch {self.n_iter_}: loss {total / count:.4f}"
                improved = total / count < best_loss
                best_loss = min(best_loss, total / count)
                if n_val:
                    val = self._mean_loss([src[i] for i in val_idx], [tgt[i] for i in val_idx])
                    self.validation_loss_.append(val)
                    message += f", validation loss {val:.4f}"
                    improved = self.best_validation_loss_ is None or val < self.best_validation_loss_
                    if improved:
                        self.best_validation_loss_ = val
                        best = [a.copy() for a in self._buffers()]
                message += rate.note()
                # "adaptive" at its floor: an epoch without improvement ends training (as in the estimators)
                done = rate.after_epoch(not improved) == "spent"
                self.learning_rate_ = opt.lr
                if self.verbose:
                    _report_epoch(bar, f"{message}, {time.perf_counter() - start_time:.1f} s", keep=True)
                if done:
                    break
        except KeyboardInterrupt:
            _warn_interrupted(self, stacklevel=2)
        finally:
            if bar is not None:
                bar.close()
        if best is not None:
            for buf, saved in zip(self._buffers(), best):
                buf[...] = saved
        return self

    def _buffers(self) -> list[np.ndarray]:
        return [self.encoder_.flat_params, self.decoder_.flat_params, self._extra]

    def _train_batch(self, src: list[np.ndarray], tgt: list[np.ndarray], opt: optim.Optimizer) -> tuple[float, int]:
        loss, n_tokens = self._loss_and_grads(src, tgt)
        message = (f"{type(self).__name__}: training diverged (the loss or the weights became NaN/Inf in epoch "
                   f"{self.n_iter_ + 1}); the weights from before that step are kept. Lower learning_rate or clip_norm.")
        if not math.isfinite(loss):
            raise ValueError(message)
        grads = [self.encoder_.flat_grads, self.decoder_.flat_grads, self._extra_grad]
        if self.clip_norm is not None:
            clip_grad_norm(grads, float(self.clip_norm))
        backup = [a.copy() for a in self._buffers()]
        opt.step()
        if not all(np.isfinite(a).all() for a in self._buffers()):
            for buf, saved in zip(self._buffers(), backup):
                buf[...] = saved
            raise ValueError(message)
        return loss, n_tokens

    @property
    def _attends(self) -> bool:
        """Whether the fitted model attends (read from its parameters: a later ``set_params`` of
        ``attention`` or ``bidirectional_encoder`` takes effect at the next fit, as in scikit-learn)."""
        return "attention_combine" in self._p

    def _memory(self, enc_out: np.ndarray, lengths: np.ndarray) -> Optional[Memory]:
        """What the decoder attends to (None without attention)."""
        if not self._attends:
            return None
        return Memory.of(enc_out, lengths, self._p.get("attention_score"))

    def _encode(self, xs: np.ndarray, lengths: np.ndarray, training: bool = False) -> tuple[Any, Optional[Memory]]:
        """The encoder's final state (the decoder's initial one) and its outputs as attention memory."""
        enc_out, state = self.encoder_.forward(self._p["source_embedding"][xs], lengths=lengths, training=training)
        if self.encoder_.bidirectional:
            hidden = enc_out.shape[-1] // 2
            enc_out, state = enc_out[..., :hidden] + enc_out[..., hidden:], _sum_directions(state)
        return state, self._memory(enc_out, lengths)

    def _teacher_forced(self, src: list[np.ndarray], tgt: list[np.ndarray], training: bool) -> _Forced:
        """Encoder and decoder forwards with the true previous tokens as decoder inputs."""
        xs, src_len = _pad(src, reverse=self.reverse_source_)
        dec_in, tgt_len = _pad([np.concatenate(([self._bos], t)) for t in tgt])
        dec_out, _ = _pad([np.concatenate((t, [self._eos])) for t in tgt])
        state, memory = self._encode(xs, src_len, training)
        out, _ = self.decoder_.forward(self._p["target_embedding"][dec_in], state, lengths=tgt_len, training=training)
        attention = None
        if memory is not None:
            cache = _attention.attend(out, memory, self._p["attention_combine"])
            attention, out = (memory, out, cache), cache.out
        mask = np.arange(dec_in.shape[1])[None, :] < tgt_len[:, None]
        h = out[mask]
        logp = _log_softmax(h @ self._p["head_weight"].T + self._p["head_bias"])
        return _Forced(xs, src_len, dec_in, dec_out, mask, h, logp, attention)

    def _loss_and_grads(self, src: list[np.ndarray], tgt: list[np.ndarray]) -> tuple[float, int]:
        """Mean cross-entropy per target token (``</s>`` included) and its gradients in every buffer."""
        xs, src_len, dec_in, dec_out, mask, h, logp, attention = self._teacher_forced(src, tgt, training=True)
        labels = dec_out[mask]
        n = labels.size
        loss = -float(logp[np.arange(n), labels].astype(np.float64).mean())
        d_logits = np.exp(logp)
        d_logits[np.arange(n), labels] -= 1.0
        d_logits /= n
        g = self._g
        g["head_weight"][...] = d_logits.T @ h
        g["head_bias"][...] = d_logits.sum(axis=0)
        d_out = np.zeros(mask.shape + (h.shape[1],), dtype=np.float32)
        d_out[mask] = d_logits @ self._p["head_weight"]
        d_enc_out = None
        if attention is not None:
            d_out, d_enc_out = self._attention_backward(attention, d_out)
        d_emb_t, d_state = self.decoder_.backward(d_out)
        if self.encoder_.bidirectional:  # the decoder and the attention read each direction's sum
            d_state = _spread_directions(d_state)
            if d_enc_out is not None:
                d_enc_out = np.concatenate([d_enc_out, d_enc_out], axis=-1)
        d_emb_s, _ = self.encoder_.backward(d_enc_out, d_state)
        g["target_embedding"][...] = 0
        np.add.at(g["target_embedding"], dec_in[mask], d_emb_t[mask])
        g["source_embedding"][...] = 0
        src_mask = np.arange(xs.shape[1])[None, :] < src_len[:, None]
        np.add.at(g["source_embedding"], xs[src_mask], d_emb_s[src_mask])
        return loss, n

    def _attention_backward(self, attention: tuple, d_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """dL/d(decoder outputs) and dL/d(encoder outputs) from dL/d(attentional states) ``d_out``;
        the attention's own gradients go to their buffers."""
        memory, dec_h, cache = attention
        d_dec, d_enc, self._g["attention_combine"][...], d_score = _attention.attend_backward(
            d_out, dec_h, memory, cache, self._p["attention_combine"], self._p.get("attention_score"))
        if d_score is not None:
            self._g["attention_score"][...] = d_score
        return d_dec, d_enc

    def _mean_loss(self, src: list[np.ndarray], tgt: list[np.ndarray]) -> float:
        total, count = 0.0, 0
        for b0 in range(0, len(src), _ENCODE_CHUNK):
            f = self._teacher_forced(src[b0 : b0 + _ENCODE_CHUNK], tgt[b0 : b0 + _ENCODE_CHUNK], training=False)
            labels = f.dec_out[f.mask]
            total -= float(f.logp[np.arange(labels.size), labels].astype(np.float64).sum())
            count += labels.size
        return total / count

    # ------------------------------------------------------------------ decoding
    def _step_logp(self, tokens: np.ndarray, state: Any, memory: Optional[Memory] = None) -> tuple[np.ndarray, Any]:
        y, state = self.decoder_.step(self._p["target_embedding"][tokens], state)
        if memory is not None:
            y = _attention.attend_step(y, memory, self._p["attention_combine"])
        logp = _log_softmax(y @ self._p["head_weight"].T + self._p["head_bias"])
        logp[:, self._bos] = -np.inf  # never emitted
        return logp, state

    def _greedy(self, state: Any, batch: int, max_len: int, memory: Optional[Memory] = None) -> list[list[int]]:
        step = functools.partial(self._step_logp, memory=memory)
        return _search.greedy(step, state, batch, max_len, self._bos, self._eos)

    def _beam(self, state: Any, batch: int, max_len: int, k: int,
              memory: Optional[Memory] = None) -> list[list[int]]:
        """:func:`rnnkit.text._search.beam` over the decoder's steps; the memory stays one row per
        sentence (the beam's rows attend to it in groups of ``k``)."""
        step = functools.partial(self._step_logp, memory=memory)
        return _search.beam(step, state, batch, max_len, k, self._bos, self._eos, float(self.length_penalty))

    def predict(self, X: Iterable[str], beam_width: Optional[int] = None) -> list[str]:
        """Translate each source text.

        Parameters
        ----------
        X : list of str
            Source texts.
        beam_width : int, optional
            Overrides the ``beam_width`` parameter for this call (1: greedy).

        Returns
        -------
        list of str
            One output text per source, decoded by the target tokenizer.
        """
        self._check_fitted()
        k = self.beam_width if beam_width is None else beam_width
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"beam_width must be a positive integer, got {k!r}")
        return [self.target_tokenizer_.decode(ids) for ids in self._decode(check_texts(X, "X"), int(k))]

    def _decode(self, sources: list[str], k: int) -> list[list[int]]:
        src = self._encode_sources(sources)
        out: list[list[int]] = []
        for b0 in range(0, len(src), _ENCODE_CHUNK):
            chunk = src[b0 : b0 + _ENCODE_CHUNK]
            xs, lengths = _pad(chunk, reverse=self.reverse_source_)
            state, memory = self._encode(xs, lengths)
            if k == 1:
                out += self._greedy(state, len(chunk), self.max_length_, memory)
            else:
                out += self._beam(state, len(chunk), self.max_length_, k, memory)
        return out

    def log_probability(self, X: Iterable[str], y: Iterable[str]) -> np.ndarray:
        """log p(y[i] | X[i]) of each pair under the model (``</s>`` included), in nats."""
        self._check_fitted()
        sources, targets = self._check_pairs(X, y)
        src = self._encode_sources(sources)
        tgt = [self.target_tokenizer_.encode(t) for t in targets]
        out = np.empty(len(src))
        for b0 in range(0, len(src), _ENCODE_CHUNK):
            sl = slice(b0, b0 + _ENCODE_CHUNK)
            f = self._teacher_forced(src[sl], tgt[sl], training=False)
            picked = np.zeros(f.mask.shape)
            picked[f.mask] = f.logp[np.arange(f.mask.sum()), f.dec_out[f.mask]]
            out[sl] = picked.sum(axis=1)
        return out

    def attention_weights(self, X: Iterable[str], y: Iterable[str]) -> list[np.ndarray]:
        """Where the decoder looked: the attention weights of each pair ``(X[i], y[i])``, teacher-forced.

        Parameters
        ----------
        X, y : list of str
            Source texts and the target texts to score (e.g. :meth:`predict`'s output).

        Returns
        -------
        list of ndarray
            One ``(n_target_tokens + 1, n_source_tokens)`` array per pair: row ``t`` is the
            distribution over the source tokens (in reading order, whatever ``reverse_source``)
            when the decoder predicts target token ``t`` (the last row: ``</s>``). Each row sums
            to 1. The tokens are the tokenizers' (``source_tokenizer_.tokenize``); an empty
            source is read as one unknown token.
        """
        self._check_fitted()
        if not self._attends:
            raise ValueError("attention_weights needs a model fitted with attention='dot' or 'general'")
        sources, targets = self._check_pairs(X, y)
        src = self._encode_sources(sources)
        tgt = [self.target_tokenizer_.encode(t) for t in targets]
        out: list[np.ndarray] = []
        for b0 in range(0, len(src), _ENCODE_CHUNK):
            sl = slice(b0, b0 + _ENCODE_CHUNK)
            _, _, cache = self._teacher_forced(src[sl], tgt[sl], training=False).attention
            for i, (s, t) in enumerate(zip(src[sl], tgt[sl])):
                w = cache.weights[i, : t.size + 1, : s.size]
                out.append(np.ascontiguousarray(w[:, ::-1] if self.reverse_source_ else w))
        return out

    def score(self, X: Iterable[str], y: Iterable[str]) -> float:
        """Exact-match accuracy: the fraction of sources translated to exactly the target's tokens."""
        self._check_fitted()
        sources, targets = self._check_pairs(X, y)
        predicted = self.predict(sources)
        tokenize = self.target_tokenizer_.tokenize
        return float(np.mean([tokenize(p) == tokenize(t) for p, t in zip(predicted, targets)]))

    # ------------------------------------------------------------------ persistence
    def _export(self) -> tuple[dict, dict]:
        meta = {**self._portable_meta(), "source_tokenizer": self.source_tokenizer_._state(),
                "target_tokenizer": self.target_tokenizer_._state()}
        arrays = {"encoder": self.encoder_.flat_params.copy(), "decoder": self.decoder_.flat_params.copy(),
                  "extra": self._extra.copy()}
        return meta, arrays

    @classmethod
    def _import(cls, meta: dict, arrays: dict) -> "Seq2Seq":
        model = cls._from_portable_meta(meta)
        model.source_tokenizer_ = Tokenizer._from_state(meta["source_tokenizer"])
        model.target_tokenizer_ = Tokenizer._from_state(meta["target_tokenizer"])
        model._build(0)
        model.__dict__.setdefault("reverse_source_", bool(model.reverse_source))  # files from before it was stored
        for name, buf in zip(("encoder", "decoder", "extra"), model._buffers()):
            value = np.asarray(arrays[name])
            if value.dtype != np.float32 or value.shape != buf.shape or not np.isfinite(value).all():
                raise ValueError(f"damaged {name} parameters (dtype {value.dtype}, shape {value.shape}; expected "
                                 f"finite float32 of shape {buf.shape})")
            buf[...] = value
        return model

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_p", "_g"):  # views into the flat buffers: rebuilt on unpickling
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "_extra" in state:
            self.__dict__.setdefault("reverse_source_", bool(self.reverse_source))  # pickled before it was kept
            self._p = self._views(self._extra)
            self._g = self._views(self._extra_grad)
