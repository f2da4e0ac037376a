"""The language model: :class:`LanguageModel` (next word or next character, generation).

It reads token ids through an embedding table that the compiled model trains together with
the recurrent stack and the softmax head: each mini-batch is one C++ call (embedding lookup,
forward, loss, BPTT, embedding gradients), followed by gradient clipping and a fused Adam
step over the single flat parameter buffer.
"""

from __future__ import annotations

import functools
import math
import numbers
import time
from typing import Any, Iterable, Optional, Union

import numpy as np

from .. import _checks, optim
from .. import cuda as _cuda
from .._backend import core
from .._fitting import (
    _Base,
    _BatchStep,
    _CELLS,
    _check_device,
    _check_lr_schedule,
    _check_number,
    _LearningRate,
    _device_index,
    _init_params,
    _make_rng,
    _progress,
    _report_epoch,
    _warn_interrupted,
)
from ..exceptions import not_fitted_error
from .._buffers import _aligned_zeros
from ..layers import layer_for_mode
from ._base import _TextModel, _check_text_params
from .tokenizer import check_texts

Texts = Union[str, Iterable[str]]
_PROBS_PER_CALL = 1 << 22  # probabilities (windows x steps x vocabulary) per prediction call


def _topk(p: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries of p, largest first (ties: lower id first)."""
    return np.argsort(-p, kind="stable")[:k]


# ---------------------------------------------------------------------- language model
class LanguageModel(_TextModel, _Base):
    """Next-word (or next-character) language model: embedding, LSTM/GRU/RNN stack, softmax.

    Training cuts the concatenated token stream of the texts into windows of ``seq_len``
    tokens and learns to predict each next token (truncated back-propagation through time
    over each window). Every window starts from a zero state: no state is carried between
    windows, so the windows of a batch can be drawn from anywhere in the text, and each epoch
    starts them at a new random offset. Prediction and generation likewise read at most the
    last ``seq_len`` tokens of the context.

    Parameters
    ----------
    level : {"word", "char"}
        Predict words (and punctuation marks) or characters.
    cell : {"lstm", "gru", "rnn", "rnn_relu"}
        Recurrent cell ("rnn" is tanh).
    hidden_size : int
        Hidden units per layer.
    embedding_dim : int
        Size of the learned token embeddings (the recurrent stack's input size).
    num_layers : int
        Stacked recurrent layers.
    dropout : float
        Dropout between recurrent layers during training (needs ``num_layers`` > 1).
    max_epochs : int
        Passes over the training text.
    batch_size : int
        Windows per mini-batch.
    seq_len : int
        Window length: the back-propagation-through-time horizon and the most context that
        predictions use.
    learning_rate : float
        Adam's step size.
    clip_norm : float or None
        Clip the gradient's global L2 norm to this.
    validation_fraction : float
        Hold out this fraction of the token stream (its end) to report the validation
        perplexity after each epoch; the weights of the best epoch are kept. 0 disables.
    max_vocab : int or None
        Vocabulary size limit (the unknown token included); rarer tokens become ``<unk>``.
    min_freq : int
        Tokens seen fewer times become ``<unk>``.
    lower : bool
        Lower-case the text.
    punctuation : {"split", "strip", "keep"}
        See :class:`Tokenizer`.
    random_state : int, Generator or None
        Seeds initialisation, window order and dropout; the same seed and thread count give
        bit-identical models.
    verbose : int
        Report training: a progress bar over the batches in a terminal (with tqdm), else one
        line per epoch.
    n_threads : int or None
        Threads for the C++ core (default: OpenMP's maximum).
    device : {"cpu", "cuda", "cuda:N"}
        Where training batches and predictions run (see :mod:`rnnkit.cuda`); generation steps
        run on the CPU.
    lr_schedule : {None, "adaptive", "cosine"}
        How the learning rate changes over the epochs. None: it stays. "adaptive": divided by
        5 after each epoch that does not lower the best validation perplexity (the training
        loss when ``validation_fraction`` is 0), the classic recipe for word models (PyTorch's
        word_language_model example divides by 4); once it is at most 1e-6, the next such epoch
        ends training (scikit-learn's MLP rule, as in the estimators). "cosine": annealed to 0
        over ``max_epochs`` (:class:`rnnkit.optim.lr_scheduler.CosineAnnealingLR`).

    Attributes
    ----------
    tokenizer_ : Tokenizer
        The fitted tokenizer; ``len(tokenizer_)`` is the number of softmax outputs.
    loss_curve_ : list of float
        Mean training cross-entropy (nats per token) per epoch.
    validation_perplexity_ : list of float
        Perplexity on the held-out tail after each epoch (with ``validation_fraction`` > 0).
    n_iter_ : int
        Epochs run.
    learning_rate_ : float
        The rate the next epoch would run at (``learning_rate`` unless ``lr_schedule`` changed it).
    n_tokens_ : int
        Tokens in the training stream.

    Examples
    --------
    >>> lm = LanguageModel(max_epochs=5, random_state=0).fit(texts)      # doctest: +SKIP
    >>> lm.predict_next("the return value of the", k=3)                  # doctest: +SKIP
    [('function', 0.21), ('method', 0.08), ('call', 0.05)]
    """

    _fitted_attributes = ("loss_curve_", "validation_perplexity_", "best_validation_perplexity_", "n_iter_",
                          "n_tokens_", "learning_rate_")

    def __init__(
        self,
        level: str = "word",
        cell: str = "lstm",
        hidden_size: int = 256,
        embedding_dim: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        max_epochs: int = 10,
        batch_size: int = 32,
        seq_len: int = 32,
        learning_rate: float = 3e-3,
        clip_norm: Optional[float] = 1.0,
        validation_fraction: float = 0.0,
        max_vocab: Optional[int] = 10000,
        min_freq: int = 1,
        lower: bool = True,
        punctuation: str = "split",
        random_state: Optional[int] = None,
        verbose: int = 0,
        n_threads: Optional[int] = None,
        device: str = "cpu",
        lr_schedule: Optional[str] = None,
    ) -> None:
        self.level = level
        self.cell = cell
        self.hidden_size = hidden_size
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.dropout = dropout
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.learning_rate = learning_rate
        self.clip_norm = clip_norm
        self.validation_fraction = validation_fraction
        self.max_vocab = max_vocab
        self.min_freq = min_freq
        self.lower = lower
        self.punctuation = punctuation
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads
        self.device = device
        self.lr_schedule = lr_schedule

    def _validate_params(self) -> None:
        _check_text_params(self)
        _check_lr_schedule(self)
        number = functools.partial(_check_number, self)
        number("hidden_size", 1, integer=True)
        number("num_layers", 1, integer=True)
        number("dropout", 0.0, 1.0, high_open=True)
        number("max_epochs", 1, integer=True)
        number("batch_size", 1, integer=True)
        number("seq_len", 1, integer=True)
        number("learning_rate", 0.0, low_open=True)
        number("clip_norm", 0.0, low_open=True, none_ok=True)
        number("validation_fraction", 0.0, 1.0, high_open=True)
        number("verbose", 0, integer=True)
        number("n_threads", 1, integer=True, none_ok=True)
        if self.random_state is not None and not isinstance(self.random_state, (numbers.Integral, np.random.Generator,
                                                                                 np.random.RandomState)):
            raise TypeError(f"random_state must be None, an int or a numpy random generator, got {self.random_state!r}")
        _check_device(self)

    # ------------------------------------------------------------------ model
    def _model_calls(self) -> tuple:
        """(predict, loss_and_grad) of the compiled model, on the CPU or on ``device``."""
        return _cuda._model_calls(self, self._spec, "float32", _device_index(self))

    def _make_spec(self) -> Any:
        _checks.check_stack_size(_CELLS[self.cell], int(self.embedding_dim), int(self.hidden_size),
                                 int(self.num_layers), False)
        layer = core.LayerSpec(_CELLS[self.cell], int(self.embedding_dim), int(self.hidden_size),
                               int(self.num_layers), False, True)
        vocab = len(self.tokenizer_)
        return core.ModelSpec(layer, vocab, "cross_entropy", "sequence", vocab)

    def _restore_params(self, params: np.ndarray) -> None:
        self._spec = self._make_spec()
        self._params_flat = _aligned_zeros(params.size, np.dtype(np.float32))
        self._params_flat[...] = params

    def _parts(self) -> tuple:
        """Views into the flat buffer: the stack as a layer (sharing the weights), the softmax head's
        weight (vocab, H) and bias, and the embedding table (vocab, embedding_dim)."""
        flat, spec = self._params_flat, self._spec
        vocab, hidden, dim = len(self.tokenizer_), int(self.hidden_size), int(self.embedding_dim)
        head = spec.head_offset
        layer = layer_for_mode(_CELLS[self.cell], dim, hidden, num_layers=int(self.num_layers),
                               n_threads=self.n_threads)
        layer._share_params(flat[:head])
        return (layer, flat[head : head + vocab * hidden].reshape(vocab, hidden),
                flat[head + vocab * hidden : spec.embedding_offset], flat[spec.embedding_offset :].reshape(vocab, dim))

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "_params_flat")

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise not_fitted_error(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first.")

    def _stream(self, texts: Texts) -> np.ndarray:
        """The token ids of the texts, one after the other."""
        parts = [self.tokenizer_.encode(t) for t in check_texts(texts, allow_str=True)]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    # ------------------------------------------------------------------ training
    def fit(self, texts: Texts, y: Any = None) -> "LanguageModel":
        """Learn the vocabulary and train on ``texts`` (a list of strings, or one string).

        The texts are tokenized and joined into one stream; a KeyboardInterrupt stops
        training and keeps the weights learned so far.
        """
        self._validate_params()
        texts = check_texts(texts, allow_str=True)
        rng = _make_rng(self.random_state)
        self.tokenizer_ = self._make_tokenizer().fit(texts)
        ids = self._stream(texts)
        n_val = int(round(ids.size * float(self.validation_fraction)))
        train, held_out = (ids[: ids.size - n_val], ids[ids.size - n_val :]) if n_val else (ids, ids[:0])
        if train.size < 2 or (n_val and held_out.size < 2):
            raise ValueError(
                f"texts: {ids.size} token(s) in all ({train.size} for training, {held_out.size} held out); at least 2 "
                "are needed in each to learn to predict a next token"
            )
        self._spec = self._make_spec()
        self._params_flat = _init_params(self._spec, int(self.hidden_size), np.dtype(np.float32), rng)
        grads = _aligned_zeros(self._params_flat.size, np.dtype(np.float32))
        opt = optim.Adam([(self._params_flat, grads)], lr=float(self.learning_rate))
        step = _BatchStep(self._spec, self._params_flat, grads, opt, dropout=float(self.dropout),
                          clip_norm=self.clip_norm, clip_value=None, n_threads=self._threads(),
                          diverged=self._divergence_message, run=self._model_calls()[1])
        self.n_tokens_ = int(train.size)
        self.loss_curve_: list[float] = []
        self.validation_perplexity_: list[float] = []
        self.best_validation_perplexity_: Optional[float] = None
        self.n_iter_ = 0
        self.learning_rate_ = float(self.learning_rate)
        best = None
        best_loss = math.inf
        T, B = int(self.seq_len), int(self.batch_size)
        epochs = int(self.max_epochs)
        rate = _LearningRate(self.lr_schedule, opt, epochs)
        n_batches = math.ceil(math.ceil((train.size - 1) / T) / B)
        bar = _progress(epochs * n_batches, self.verbose, unit="batch")
        try:
            for epoch in range(epochs):
                start_time = time.perf_counter()
                offset = int(rng.integers(0, T)) if epoch and train.size - 1 > T else 0
                x, targets, lengths = _windows(train, T, offset)
                order = rng.permutation(x.shape[0])
                total, count = 0.0, 0
                for b0 in range(0, order.size, B):
                    idx = np.sort(order[b0 : b0 + B])
                    lb = lengths[idx]
                    steps = int(lb.max())
                    key = int(rng.integers(0, 2**63 - 1)) if self.dropout > 0 else 0
                    loss = step(np.ascontiguousarray(x[idx, :steps]), None if (lb == steps).all() else lb,
                                np.ascontiguousarray(targets[idx, :steps]), None, key)
                    total += loss * int(lb.sum())
                    count += int(lb.sum())
                    if bar is not None:
                        bar.set_postfix_str(f"epoch {epoch + 1}, loss {total / count:.3f}", refresh=False)
                        bar.update(1)
                self.n_iter_ += 1
                self.loss_curve_.append(total / count)
                message = (f"Epoch {self.n_iter_}: loss {total / count:.4f} "
                           f"(perplexity {math.exp(min(total / count, 700)):.1f})")
                improved = total / count < best_loss
                best_loss = min(best_loss, total / count)
                if n_val:
                    ppl = self._perplexity_of(held_out)
                    self.validation_perplexity_.append(ppl)
                    message += f", validation perplexity {ppl:.1f}"
                    improved = best is None or ppl < self.best_validation_perplexity_
                    if improved:
                        self.best_validation_perplexity_ = ppl
                        best = self._params_flat.copy()
                message += rate.note()
                # "adaptive" at its floor: an epoch without improvement ends training (as in the estimators)
                done = rate.after_epoch(not improved) == "spent"
                self.learning_rate_ = opt.lr
                if self.verbose:
                    _report_epoch(bar, f"{message}, {time.perf_counter() - start_time:.1f} s", keep=True)
                if done:
                    break
        except KeyboardInterrupt:
            _warn_interrupted(self, stacklevel=3)
        finally:
            if bar is not None:
                bar.close()
        if best is not None:
            self._params_flat[...] = best
        return self

    def _divergence_message(self) -> str:
        return (f"{type(self).__name__}: training diverged (the loss or the weights became NaN/Inf in epoch "
                f"{self.n_iter_ + 1}); the weights from before that step are kept. Lower learning_rate or clip_norm.")

    # ------------------------------------------------------------------ evaluation
    def _probabilities(self, x: np.ndarray, lengths: Optional[np.ndarray] = None) -> np.ndarray:
        return self._model_calls()[0](self._spec, self._params_flat, np.ascontiguousarray(x, dtype=np.int64),
                                      lengths, self._threads())

    def _perplexity_of(self, ids: np.ndarray) -> float:
        nll, count = self._nll(ids)
        if count == 0:
            raise ValueError("perplexity needs texts of at least 2 tokens in all")
        return math.exp(nll / count)

    def _nll(self, ids: np.ndarray) -> tuple[float, int]:
        """Summed negative log-likelihood (nats) of every token of ``ids`` after the first, and their count.

        Windows of ``seq_len`` tokens overlap by half, so that every token but those at the
        start is predicted from at least ``seq_len // 2`` tokens of context.
        """
        T = int(self.seq_len)
        if ids.size < 2:
            return 0.0, 0
        stride = max(1, T // 2)
        starts = [0]
        while starts[-1] + T < ids.size - 1:
            starts.append(starts[-1] + stride)
        pos = np.asarray(starts)[:, None] + np.arange(T)[None, :]
        lengths = np.minimum(T, ids.size - 1 - np.asarray(starts)).astype(np.int64)
        x = ids[np.minimum(pos, ids.size - 1)]
        y = ids[np.minimum(pos + 1, ids.size - 1)]
        scored = np.arange(T)[None, :] < lengths[:, None]
        scored[1:, : T - stride] = False  # already scored by the previous window
        chunk = max(1, _PROBS_PER_CALL // (T * len(self.tokenizer_)))
        total = 0.0
        for c0 in range(0, x.shape[0], chunk):
            sl = slice(c0, c0 + chunk)
            lb = lengths[sl]
            proba = self._probabilities(x[sl], None if (lb == T).all() else np.ascontiguousarray(lb))
            p = np.take_along_axis(proba, y[sl][..., None], axis=-1)[..., 0]
            total -= float(np.log(np.maximum(p[scored[sl]].astype(np.float64), 1e-30)).sum())
        return total, int(scored.sum())

    def perplexity(self, texts: Texts) -> float:
        """exp(mean cross-entropy) of the next-token predictions over ``texts``.

        The texts are joined as in :meth:`fit`; tokens outside the vocabulary count as the
        unknown token (as usual for a closed vocabulary), so perplexities are comparable only
        between models with the same vocabulary.
        """
        self._check_fitted()
        return self._perplexity_of(self._stream(texts))

    def score(self, texts: Texts, y: Any = None) -> float:
        """Mean log-likelihood per token (nats; higher is better): ``-log(perplexity(texts))``."""
        return -math.log(self.perplexity(texts))

    # ------------------------------------------------------------------ prediction
    def _context(self, prompt: str) -> list[int]:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
        ids = self.tokenizer_.encode(prompt)
        if ids.size == 0:
            raise ValueError(f"prompt {prompt!r} contains no tokens; give at least one {self.level}")
        return ids.tolist()

    def _next_distribution(self, context: list[int]) -> np.ndarray:
        window = np.asarray(context[-int(self.seq_len):], dtype=np.int64)[None, :]
        return self._probabilities(window)[0, -1].astype(np.float64)

    def predict_next(self, prompt: str, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` most probable next tokens after ``prompt``, with their probabilities.

        Returns
        -------
        list of (token, probability), most probable first. The unknown token ``<unk>`` can be
        among them (it stands for every word outside the vocabulary).
        """
        self._check_fitted()
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        p = self._next_distribution(self._context(prompt))
        return [(self.tokenizer_.vocab_[i], float(p[i])) for i in _topk(p, int(k))]

    def _never_sample(self) -> list[int]:
        """Token ids that :meth:`generate` never emits: the unknown token."""
        return [0]

    def generate(self, prompt: str, length: int = 50, temperature: float = 1.0, top_k: Optional[int] = None,
                 seed: Optional[int] = None) -> str:
        """Sample ``length`` tokens after ``prompt``; returns the continuation only.

        The continuation is formatted to be appended to the prompt (word level: it starts
        with the separating space). The unknown token is never sampled.

        Generation is stateful: the model reads the prompt's last ``seq_len`` tokens one
        :meth:`~rnnkit.LSTM.step` at a time, then carries its recurrent state on from token to
        token (as char-rnn samplers do), so each new token costs one step whatever the length.

        Parameters
        ----------
        prompt : str
            Context to continue (at least one token).
        length : int
            Tokens to generate.
        temperature : float
            Divides the log-probabilities: < 1 is more conservative, > 1 more varied; 0 picks
            the most probable token every time (greedy decoding).
        top_k : int or None
            Sample only among the ``top_k`` most probable tokens.
        seed : int or None
            Seeds the sampling.
        """
        self._check_fitted()
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 0:
            raise ValueError(f"length must be a non-negative integer, got {length!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating)) \
                or not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
            raise ValueError(f"top_k must be None or a positive integer, got {top_k!r}")
        rng = np.random.default_rng(seed)
        context = self._context(prompt)
        banned = self._never_sample()
        step = _Stepper(self)
        for token in context[-int(self.seq_len):]:  # read the prompt's last window from a zero state
            step(token)
        new: list[int] = []
        for _ in range(int(length)):
            p = step.distribution()
            if p.size > len(banned):
                p[banned] = 0.0
            if top_k is not None:
                p[_topk(p, p.size)[int(top_k):]] = 0.0
            if temperature == 0:
                token = int(_topk(p, 1)[0])
            else:
                with np.errstate(divide="ignore"):
                    logits = np.log(p) / float(temperature)
                logits -= logits.max()
                w = np.exp(logits)
                token = int(rng.choice(w.size, p=w / w.sum()))
            new.append(token)
            step(token)
        return self.tokenizer_.decode(new, glue=True)


class _Stepper:
    """Runs a fitted language model one token at a time with :meth:`~rnnkit.LSTM.step`, carrying the state."""

    def __init__(self, model: "LanguageModel") -> None:
        self.layer, self.weight, self.bias, self.embedding = model._parts()
        self.state: Any = None
        self.y: Optional[np.ndarray] = None

    def __call__(self, token: int) -> None:
        """Read one token."""
        self.y, self.state = self.layer.step(self.embedding[token : token + 1], self.state)

    def distribution(self) -> np.ndarray:
        """Probabilities (float64) of the next token after those read so far."""
        logits = (self.y[0] @ self.weight.T + self.bias).astype(np.float64)
        p = np.exp(logits - logits.max())
        return p / p.sum()


def _windows(ids: np.ndarray, T: int, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Consecutive windows of ``ids`` from ``offset``: inputs and next-token targets, (n, T) each, and lengths.

    The last window may be shorter (padded; its length says how much is real).
    """
    starts = np.arange(offset, ids.size - 1, T)
    pos = starts[:, None] + np.arange(T)[None, :]
    lengths = np.minimum(T, ids.size - 1 - starts).astype(np.int64)
    valid = np.arange(T)[None, :] < lengths[:, None]
    x = np.where(valid, ids[np.minimum(pos, ids.size - 1)], 0)
    y = np.where(valid, ids[np.minimum(pos + 1, ids.size - 1)], 0)
    return x, y, lengths


# Pickles made before the classifier moved to classifier.py name it here.
from .classifier import TextClassifier  # noqa: E402,F401

__all__ = ["LanguageModel"]
