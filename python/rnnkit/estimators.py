"""scikit-learn estimators: :class:`RNNClassifier` and :class:`RNNRegressor`.

A recurrent stack (LSTM, GRU or simple RNN) followed by a dense head, trained by BPTT in
C++: each mini-batch is one call that runs forward, the loss (softmax cross-entropy or
squared error) and backward, then gradient clipping and a fused optimizer step over one
flat parameter buffer. scikit-learn is not needed to use them; with it installed they pass
its estimator checks and work in pipelines, searches and cross-validation.
"""

from __future__ import annotations

import contextvars
import functools
import math
import numbers
import time
import warnings
from typing import Any, Callable, Optional

import numpy as np

from . import _checks, _threads, optim
from . import cuda as _cuda
from ._backend import core
from ._fitting import (
    _CELLS,
    _Base,
    _BatchStep,
    _check_choice,
    _check_device,
    _check_number,
    _device_index,
    _init_params,
    _make_rng,
    _progress,
    _report_epoch,
    _warn_interrupted,
)
from ._sequences import Sequences, per_step_targets, to_sequences
from .exceptions import ConvergenceWarning, DataConversionWarning, not_fitted_error
from .layers import _aligned_zeros, layer_for_mode

_OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
_PREDICT_CHUNK = 4096  # sequences per C++ call at prediction time


class _RNNBase(_Base):
    _loss = ""

    def __init__(
        self,
        cell: str = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        output: str = "last",
        optimizer: str = "adam",
        learning_rate: float = 1e-3,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        batch_size: int = 32,
        max_epochs: int = 200,
        clip_norm: Optional[float] = 1.0,
        clip_value: Optional[float] = None,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        warm_start: bool = False,
        random_state: Optional[int] = None,
        verbose: int = 0,
        n_threads: Optional[int] = None,
        dtype: str = "float32",
        device: str = "cpu",
    ) -> None:
        self.cell = cell
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.dropout = dropout
        self.output = output
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.clip_norm = clip_norm
        self.clip_value = clip_value
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads
        self.dtype = dtype
        self.device = device

    # ------------------------------------------------------------------ validation
    def _validate_params(self) -> None:
        choice = functools.partial(_check_choice, self)
        number = functools.partial(_check_number, self)

        choice("cell", _CELLS)
        choice("output", ("last", "sequence"))
        choice("optimizer", _OPTIMIZERS)
        choice("dtype", ("float32", "float64"))
        number("hidden_size", 1, integer=True)
        number("num_layers", 1, integer=True)
        number("dropout", 0.0, 1.0, high_open=True)
        number("learning_rate", 0.0, low_open=True)
        number("momentum", 0.0, 1.0)
        number("weight_decay", 0.0)
        number("batch_size", 1, integer=True)
        number("max_epochs", 1, integer=True)
        number("clip_norm", 0.0, low_open=True, none_ok=True)
        number("clip_value", 0.0, low_open=True, none_ok=True)
        number("validation_fraction", 0.0, 1.0, low_open=True, high_open=True)
        number("n_iter_no_change", 1, integer=True)
        number("tol", 0.0)
        number("verbose", 0, integer=True)
        number("n_threads", 1, integer=True, none_ok=True)
        for flag in ("bidirectional", "nesterov", "early_stopping", "warm_start"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise TypeError(f"{flag} must be a bool, got {getattr(self, flag)!r}")
        if self.random_state is not None and not isinstance(self.random_state, (numbers.Integral, np.random.RandomState, np.random.Generator)):
            raise TypeError(f"random_state must be None, an int or a numpy random generator, got {self.random_state!r}")
        _check_device(self)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "_params_flat")

    def _check_fitted(self) -> None:
        if not self.__sklearn_is_fitted__():
            raise not_fitted_error(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate arguments "
                "before using this estimator."
            )

    def _check_X(self, X: Any, reset: bool) -> Sequences:
        seqs = to_sequences(X, np.dtype(self.dtype if reset else self.dtype_))
        if seqs.kind == "2d":
            n_features = seqs.x.shape[1]  # univariate sequences: sklearn's "features" are the columns
        else:
            n_features = seqs.x.shape[2]
        if reset:
            self.n_features_in_ = n_features
            self._input_kind = seqs.kind
            self._input_size = seqs.x.shape[2]
        else:
            if (seqs.kind == "2d") != (self._input_kind == "2d") and seqs.x.shape[2] == self._input_size:
                pass  # 2-D univariate and 3-D (n, T, 1) input are interchangeable
            elif n_features != self.n_features_in_ or seqs.x.shape[2] != self._input_size:
                raise ValueError(
                    f"X has {n_features} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input."
                )
        return seqs

    # ------------------------------------------------------------------ model
    def _rng(self) -> np.random.Generator:
        return _make_rng(self.random_state)

    def _model_spec(self, n_outputs: int) -> Any:
        """The compiled model's spec (subclasses reading token ids add a vocabulary)."""
        _checks.check_stack_size(_CELLS[self.cell], self._input_size, self.hidden_size, self.num_layers,
                                 bool(self.bidirectional))
        rnn_spec = core.LayerSpec(_CELLS[self.cell], self._input_size, self.hidden_size, self.num_layers,
                                  bool(self.bidirectional), True)
        return core.ModelSpec(rnn_spec, n_outputs, self._loss, "last" if self.output == "last" else "sequence")

    def _build(self, n_outputs: int, rng: np.random.Generator) -> None:
        """Create the model spec and draw initial parameters (PyTorch's default schemes)."""
        self.dtype_ = np.dtype(self.dtype)
        self._spec = self._model_spec(n_outputs)
        self._n_outputs = n_outputs
        self._params_flat = _init_params(self._spec, self.hidden_size, self.dtype_, rng)
        self._grads_flat = _aligned_zeros(self._params_flat.size, self.dtype_)
        self._optimizer_state: Optional[dict] = None
        self.loss_curve_: list[float] = []
        self.validation_scores_: list[float] = []
        self.n_iter_ = 0
        self.t_ = 0
        self._best_loss = math.inf
        self._best_score = -math.inf
        self._no_improvement = 0

    def _make_optimizer(self) -> optim.Optimizer:
        pair = [(self._params_flat, self._grads_flat)]
        lr, wd = float(self.learning_rate), float(self.weight_decay)
        if self.optimizer == "adam":
            opt: optim.Optimizer = optim.Adam(pair, lr=lr, weight_decay=wd)
        elif self.optimizer == "adamw":
            opt = optim.AdamW(pair, lr=lr, weight_decay=wd)
        elif self.optimizer == "sgd":
            opt = optim.SGD(pair, lr=lr, momentum=float(self.momentum), nesterov=bool(self.nesterov) and self.momentum > 0,
                            weight_decay=wd)
        else:
            opt = optim.RMSprop(pair, lr=lr, momentum=float(self.momentum), weight_decay=wd)
        if self._optimizer_state is not None:
            opt.load_state_dict(self._optimizer_state)
        return opt

    def _threads(self) -> int:
        return self.n_threads if self.n_threads is not None else _threads.default_threads()

    def _scale_X(self, seqs: Sequences) -> np.ndarray:
        with np.errstate(over="ignore", invalid="ignore"):
            x = ((seqs.x - self._x_mean) / self._x_scale).astype(self.dtype_, copy=False)
        if not np.isfinite(x).all():
            raise ValueError(
                f"Input X holds values too large for {self.dtype_} once standardised with the training data's mean "
                f"and standard deviation"
            )
        return x

    def _fit_scaler(self, seqs: Sequences) -> None:
        valid = seqs.valid_mask()
        values = seqs.x[valid].astype(np.float64)
        self._x_mean, self._x_scale = _standardiser(values, "X")

    def _model_calls(self) -> tuple:
        """(predict, loss_and_grad) of the compiled model, on the CPU or on ``device``."""
        return _cuda._model_calls(self, self._spec, self.dtype_.name, _device_index(self))

    def _raw_outputs(self, seqs: Sequences) -> np.ndarray:
        """Model outputs for every sequence: (n, n_outputs) or (n, T, n_outputs)."""
        x = self._scale_X(seqs)
        run = self._model_calls()[0]
        parts = []
        for start in range(0, x.shape[0], _PREDICT_CHUNK):
            sl = slice(start, start + _PREDICT_CHUNK)
            lengths = None if seqs.lengths is None else np.ascontiguousarray(seqs.lengths[sl])
            parts.append(run(self._spec, self._params_flat, np.ascontiguousarray(x[sl]), lengths, self._threads()))
        out = np.concatenate(parts, axis=0)
        if not np.isfinite(out).all():
            raise ValueError(
                f"{type(self).__name__}: the model's outputs overflowed to NaN/Inf for this input (weights of "
                f"magnitude up to {np.abs(self._params_flat).max():.3g}); training probably diverged: refit with a "
                "lower learning_rate or with clip_norm / clip_value"
            )
        return out

    # ------------------------------------------------------------------ training
    def _encode_targets(self, y: Any, seqs: Sequences, reset: bool, classes: Any = None) -> np.ndarray:
        raise NotImplementedError

    def _validation_score(self, seqs: Sequences, targets: np.ndarray) -> float:
        raise NotImplementedError

    def _fit(self, X: Any, y: Any, incremental: bool, classes: Any = None) -> "_RNNBase":
        self._validate_params()
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        fresh = not self.__sklearn_is_fitted__() or not (incremental or self.warm_start)
        seqs = self._check_X(X, reset=fresh)
        if fresh:
            self._fit_scaler(seqs)
        targets = self._encode_targets(y, seqs, reset=fresh, classes=classes)
        if fresh:
            self._random = self._rng()
            self._build(self._n_outputs_for_fit, self._random)
        rng = self._random

        n = seqs.n
        train_idx = np.arange(n)
        val_idx = np.arange(0)
        early = bool(self.early_stopping) and not incremental
        if early:
            n_val = max(1, int(round(self.validation_fraction * n)))
            if n - n_val < 1:
                raise ValueError(
                    f"early_stopping needs at least 2 samples to hold out a validation set; got {n} sample(s) "
                    f"(n_samples={n})"
                )
            perm = rng.permutation(n)
            val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        x_all = self._scale_X(seqs)
        lengths_all = seqs.lengths
        val_seqs = Sequences(seqs.x[val_idx], None if lengths_all is None else lengths_all[val_idx], seqs.kind)

        opt = self._make_optimizer()
        step = _BatchStep(self._spec, self._params_flat, self._grads_flat, opt, dropout=float(self.dropout),
                          clip_norm=self.clip_norm, clip_value=self.clip_value, n_threads=self._threads(),
                          diverged=self._divergence_message, run=self._model_calls()[1])
        labels = self._loss == "cross_entropy"
        best_params = self._params_flat.copy() if early else None
        epochs = 1 if incremental else int(self.max_epochs)
        bar = _progress(epochs, self.verbose)
        stopped_early = False
        try:
            for _ in range(epochs):
                start_time = time.perf_counter()
                order = train_idx[rng.permutation(train_idx.size)]
                total = 0.0
                for b0 in range(0, order.size, int(self.batch_size)):
                    idx = np.sort(order[b0 : b0 + int(self.batch_size)])
                    steps = x_all.shape[1] if lengths_all is None else int(lengths_all[idx].max())
                    xb = np.ascontiguousarray(x_all[idx, :steps])
                    lb = None if lengths_all is None else np.ascontiguousarray(lengths_all[idx])
                    tb = np.ascontiguousarray(targets[idx][:, :steps] if self.output == "sequence" else targets[idx])
                    key = int(rng.integers(0, 2**63 - 1)) if self.dropout > 0 else 0
                    loss = step(xb, lb, tb if labels else None, None if labels else tb, key)
                    total += loss * idx.size
                self.n_iter_ += 1
                self.t_ += order.size
                epoch_loss = total / order.size
                self.loss_curve_.append(epoch_loss)
                message = f"Epoch {self.n_iter_}: loss {epoch_loss:.6f}"
                if early:
                    score = self._validation_score(val_seqs, targets[val_idx])
                    self.validation_scores_.append(score)
                    message += f", validation score {score:.6f}"
                    improved = score > self._best_score + self.tol
                    if score > self._best_score:
                        self._best_score = score
                        best_params[...] = self._params_flat
                else:
                    improved = epoch_loss < self._best_loss - self.tol
                    self._best_loss = min(self._best_loss, epoch_loss)
                self._no_improvement = 0 if improved else self._no_improvement + 1
                if self.verbose:
                    _report_epoch(bar, f"{message}, {time.perf_counter() - start_time:.2f} s", advance=1)
                if not incremental and self._no_improvement > self.n_iter_no_change:
                    stopped_early = True
                    break
            else:
                if not incremental and epochs > 1:
                    warnings.warn(
                        f"{type(self).__name__}: max_epochs={self.max_epochs} reached and the loss is still improving; "
                        "consider raising max_epochs.",
                        ConvergenceWarning,
                        stacklevel=3,
                    )
        except KeyboardInterrupt:
            _warn_interrupted(self, stacklevel=4)
        finally:
            if bar is not None:
                bar.close()
            self._optimizer_state = opt.state_dict()
        if early and best_params is not None and self.validation_scores_:
            self._params_flat[...] = best_params
        if not early:
            self._no_improvement = self._no_improvement if incremental else 0
        self.best_loss_ = None if early else (min(self.loss_curve_) if self.loss_curve_ else None)
        self.best_validation_score_ = self._best_score if early else None
        self.stopped_early_ = stopped_early
        return self

    def _divergence_message(self) -> str:
        return (
            f"{type(self).__name__}: training diverged (the loss or the weights became NaN/Inf in epoch "
            f"{self.n_iter_ + 1}); the weights from before that step are kept. Lower learning_rate or set "
            "clip_norm / clip_value."
        )

    # ------------------------------------------------------------------ inspection
    def _stack_layer(self, n_threads: Optional[int] = None) -> Any:
        return layer_for_mode(_CELLS[self.cell], self._input_size, self.hidden_size, num_layers=self.num_layers,
                              bidirectional=bool(self.bidirectional), batch_first=True, dtype=self.dtype_.name,
                              n_threads=n_threads)

    @property
    def rnn_(self) -> Any:
        """The trained recurrent stack as an :class:`LSTM`/:class:`GRU`/:class:`RNN` (a copy)."""
        self._check_fitted()
        layer = self._stack_layer()
        layer.flat_params[...] = self._params_flat[: self._spec.head_offset]
        return layer

    # ------------------------------------------------------------------ streaming
    def _step_raw(self, x_t: Any, state: Any) -> tuple[np.ndarray, Any, bool]:
        """Head outputs (scaled) after one more time step of each stream, the new state, and unbatched."""
        self._check_fitted()
        if self.bidirectional:
            raise ValueError("predict_step needs a unidirectional model (bidirectional=False): the reverse "
                             "direction reads the future")
        if self._spec.vocab_size:
            raise TypeError(f"{type(self).__name__} reads token ids: predict_step takes real-valued features only")
        x = _checks.float_array(x_t, "x_t", np.dtype(np.float64))
        unbatched = x.ndim == 1
        if x.ndim not in (1, 2) or x.shape[-1] != self._input_size or x.size == 0:
            raise ValueError(f"x_t must have shape (n_streams, {self._input_size}) or ({self._input_size},): one time "
                             f"step of each stream's features, got {np.shape(x_t)}")
        x = ((x - self._x_mean) / self._x_scale).astype(self.dtype_)
        cache = self.__dict__.get("_stream")
        if cache is None or cache[0] is not self._params_flat:
            head = self._spec.head_offset
            layer = self._stack_layer(self.n_threads)
            layer._share_params(self._params_flat[:head])  # live: partial_fit's updates are seen
            f, k = self._spec.features, self._n_outputs
            weight = self._params_flat[head : head + k * f].reshape(k, f)
            bias = self._params_flat[head + k * f : head + k * f + k]
            cache = self.__dict__["_stream"] = (self._params_flat, layer, weight, bias)
        _, layer, weight, bias = cache
        y, state = layer.step(x, state)  # one stream: x (features,) and states (layers, hidden)
        raw = y @ weight.T + bias
        return (raw[None] if unbatched else raw), state, unbatched

    @property
    def head_(self) -> dict[str, np.ndarray]:
        """The dense head: {"weight": (n_outputs, F), "bias": (n_outputs,)} (copies, nn.Linear layout)."""
        self._check_fitted()
        off, f, k = self._spec.head_offset, self._spec.features, self._n_outputs
        return {"weight": self._params_flat[off : off + k * f].reshape(k, f).copy(),
                "bias": self._params_flat[off + k * f : off + k * f + k].copy()}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for key in ("_spec", "_stream", "_device_model", "_cpu_model"):  # native objects are rebuilt on load
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "_params_flat" in state:
            self._spec = self._model_spec(self._n_outputs)
            flat = _aligned_zeros(self._params_flat.size, self._params_flat.dtype)
            flat[...] = self._params_flat
            self._params_flat = flat
            self._grads_flat = _aligned_zeros(flat.size, flat.dtype)

    def save(self, path: Any) -> None:
        """Save the fitted model to ``path`` in rnnkit's portable format (npz + JSON, no pickle)."""
        from .io import save

        save(self, path)




class RNNClassifier(_RNNBase):
    """Recurrent sequence classifier (LSTM / GRU / RNN + softmax head), trained by BPTT in C++.

    Parameters
    ----------
    cell : {"lstm", "gru", "rnn", "rnn_relu"}
        Recurrent cell ("rnn" is tanh).
    hidden_size : int
        Hidden units per direction.
    num_layers : int
        Stacked recurrent layers.
    bidirectional : bool
        Also read each sequence backwards; the head sees both final states.
    dropout : float
        Dropout between recurrent layers during training.
    output : {"last", "sequence"}
        One label per sequence, or one per time step (tagging).
    optimizer : {"adam", "adamw", "sgd", "rmsprop"}
    learning_rate : float
    momentum : float
        Momentum of "sgd" and "rmsprop".
    nesterov : bool
        Nesterov momentum for "sgd".
    weight_decay : float
        L2 penalty (decoupled for "adamw").
    batch_size : int
        Sequences per mini-batch.
    max_epochs : int
        Passes over the training data.
    clip_norm : float or None
        Clip the gradient's global L2 norm to this (default 1.0).
    clip_value : float or None
        Clamp each gradient element to [-clip_value, clip_value].
    early_stopping : bool
        Hold out ``validation_fraction`` of the data, stop when its accuracy stops improving
        and restore the best weights.
    validation_fraction : float
    n_iter_no_change : int
        Epochs without improvement by ``tol`` before stopping.
    tol : float
    warm_start : bool
        Continue from the previous fit.
    random_state : int, Generator or None
        Seeds initialisation, shuffling and dropout; the same seed and thread count give
        bit-identical results.
    verbose : int
        Print one line per epoch (a progress bar with tqdm in a terminal).
    n_threads : int or None
        Threads for the C++ core. None: OpenMP's maximum, lowered to a worker's budget inside
        joblib / Dask / Ray workers (``OMP_NUM_THREADS`` as set now, threadpoolctl limits, one
        thread in a joblib worker thread; see ``rnnkit._threads``).
    dtype : {"float32", "float64"}
    device : {"cpu", "cuda", "cuda:N"}
        Where each batch's forward and backward pass runs (see :mod:`rnnkit.cuda`); the
        parameters, clipping and the optimizer step stay on the host, so a model fitted on a GPU
        is used and saved like any other. ``fit`` and ``predict`` raise RuntimeError, saying
        why, where CUDA is unavailable (``set_params(device="cpu")`` moves a fitted model).

    Attributes
    ----------
    classes_ : ndarray
    n_features_in_ : int
        Features per time step (for 2-D input: the number of columns).
    loss_curve_ : list of float
        Mean training loss per epoch.
    validation_scores_ : list of float
        Validation accuracy per epoch (early stopping only).
    best_loss_ : float or None
    n_iter_ : int
        Epochs run.
    rnn_ : LSTM, GRU or RNN
        The trained recurrent stack (``rnn_.state_dict()`` in PyTorch layout).
    head_ : dict
        The dense head's weight and bias.
    """

    _loss = "cross_entropy"
    _estimator_type = "classifier"

    def fit(self, X: Any, y: Any) -> "RNNClassifier":
        """Train on sequences X and labels y."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> "RNNClassifier":
        """One epoch over (X, y), continuing from the current state.

        ``classes`` (every label that will ever appear) is required on the first call.
        """
        if not self.__sklearn_is_fitted__():
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            classes = np.unique(np.asarray(classes))
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"classes={classes!r} differs from the classes of the first call, {self.classes_!r}")
        return self._fit(X, y, incremental=True, classes=classes)

    def _encode_targets(self, y: Any, seqs: Sequences, reset: bool, classes: Any = None) -> np.ndarray:
        if self.output == "last":
            y = np.asarray(y)
            if y.ndim == 2 and y.shape[1] == 1:
                warnings.warn("A column-vector y was passed when a 1d array was expected; it was raveled.",
                              DataConversionWarning, stacklevel=4)
                y = y.ravel()
            if y.ndim != 1:
                raise ValueError(f"y must be 1-D (one label per sequence) with output='last', got shape {y.shape}")
            if y.shape[0] != seqs.n:
                raise ValueError(f"Found input variables with inconsistent numbers of samples: [{seqs.n}, {y.shape[0]}]")
            valid = y
        else:
            y = per_step_targets(y, seqs)
            valid = y[seqs.valid_mask()]
        _check_labels(valid)
        if reset:
            classes = np.unique(valid) if classes is None else classes
            if classes.size < 2:
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes in the data, but the data contains "
                    f"only one class: {classes[0]!r}"
                )
            self.classes_ = classes
            self._n_outputs_for_fit = classes.size
        unknown = np.setdiff1d(np.unique(valid), self.classes_)
        if unknown.size:
            raise ValueError(f"y contains labels not seen in the first fit: {unknown[:5]!r}")
        codes = np.searchsorted(self.classes_, y if self.output == "last" else np.where(seqs.valid_mask(), y, self.classes_[0]))
        return codes.astype(np.int64)

    def _validation_score(self, seqs: Sequences, codes: np.ndarray) -> float:
        proba = self._raw_outputs(seqs)
        pred = proba.argmax(axis=-1)
        if self.output == "last":
            return float(np.mean(pred == codes))
        mask = seqs.valid_mask()
        return float(np.mean(pred[mask] == codes[mask]))

    def predict_proba(self, X: Any) -> Any:
        """Class probabilities: (n, n_classes); with output="sequence" (n, T, n_classes) or a list."""
        self._check_fitted()
        seqs = self._check_X(X, reset=False)
        proba = self._raw_outputs(seqs)
        return _per_sequence(proba, seqs) if self.output == "sequence" else proba

    def predict_proba_step(self, x_t: Any, state: Any = None) -> tuple[np.ndarray, Any]:
        """Class probabilities after one more time step of each stream (real-time use).

        Parameters
        ----------
        x_t : array, shape (n_streams, n_features) or (n_features,)
            This step's features of each stream (scaled inside, as in :meth:`fit`).
        state : as returned by the previous call, optional
            The streams' recurrent state; None starts new streams.

        Returns
        -------
        proba : array, shape (n_streams, n_classes) (or (n_classes,))
            What :meth:`predict_proba` gives for the sequences read so far: with
            ``output="sequence"`` the probabilities of this step, with ``output="last"`` those
            of the sequences ending here.
        state
            Pass it to the next call. For an LSTM a tuple (h, c), else h; each
            (num_layers, n_streams, hidden_size).
        """
        raw, state, unbatched = self._step_raw(x_t, state)
        raw = raw.astype(np.float64)
        proba = np.exp(raw - raw.max(axis=1, keepdims=True))
        proba = (proba / proba.sum(axis=1, keepdims=True)).astype(self.dtype_)
        return (proba[0] if unbatched else proba), state

    def predict_step(self, x_t: Any, state: Any = None) -> tuple[Any, Any]:
        """Predicted labels after one more time step of each stream; see :meth:`predict_proba_step`."""
        proba, state = self.predict_proba_step(x_t, state)
        return self.classes_[proba.argmax(axis=-1)], state

    def predict(self, X: Any) -> Any:
        """Predicted labels: (n,); with output="sequence" (n, T) or, for list input, a list."""
        self._check_fitted()
        seqs = self._check_X(X, reset=False)
        labels = self.classes_[self._raw_outputs(seqs).argmax(axis=-1)]
        return _per_sequence(labels, seqs) if self.output == "sequence" else labels

    def score(self, X: Any, y: Any) -> float:
        """Mean accuracy (over sequences, or over valid time steps with output="sequence")."""
        pred = self.predict(X)
        if self.output == "last":
            return float(np.mean(pred == np.asarray(y).ravel()))
        seqs = self._check_X(X, reset=False)
        truth = per_step_targets(y, seqs)
        mask = seqs.valid_mask()
        flat_pred = _padded(pred, seqs)
        return float(np.mean(flat_pred[mask] == truth[mask]))

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags(multi_label=False), input_tags=InputTags(three_d_array=True))


class RNNRegressor(_RNNBase):
    """Recurrent sequence regressor (LSTM / GRU / RNN + linear head, squared error), trained by BPTT in C++.

    Parameters are those of :class:`RNNClassifier`; ``early_stopping`` watches the validation R².
    Targets are standardised per output inside and predictions are returned on the original scale.

    Attributes
    ----------
    n_features_in_, loss_curve_, validation_scores_, best_loss_, n_iter_, rnn_, head_
        As in :class:`RNNClassifier`.
    """

    _loss = "squared_error"
    _estimator_type = "regressor"

    def fit(self, X: Any, y: Any) -> "RNNRegressor":
        """Train on sequences X and targets y: (n,) / (n, k), or per step with output="sequence"."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any) -> "RNNRegressor":
        """One epoch over (X, y), continuing from the current state."""
        return self._fit(X, y, incremental=True)

    def _encode_targets(self, y: Any, seqs: Sequences, reset: bool, classes: Any = None) -> np.ndarray:
        if self.output == "last":
            y = np.asarray(y)
            if y.ndim not in (1, 2):
                raise ValueError(f"y must be 1-D or 2-D with output='last', got shape {y.shape}")
            if y.shape[0] != seqs.n:
                raise ValueError(f"Found input variables with inconsistent numbers of samples: [{seqs.n}, {y.shape[0]}]")
            ndim = y.ndim
            y2 = y.reshape(y.shape[0], -1)
            valid = y2
        else:
            y = per_step_targets(y, seqs)
            ndim = y.ndim - 1
            y2 = y.reshape(y.shape[0], y.shape[1], -1)
            valid = y2[seqs.valid_mask()]
        if y2.dtype.kind not in "fiub":
            try:
                y2 = y2.astype(np.float64)
                valid = valid.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"y must be numeric: {exc}") from exc
        valid = valid.astype(np.float64)
        if np.isnan(valid).any():
            raise ValueError("Input y contains NaN.")
        if not np.isfinite(valid).all():
            raise ValueError("Input y contains infinity or a value too large for dtype('float64').")
        if reset:
            self._y_ndim = ndim
            self._y_mean, self._y_scale = _standardiser(valid, "y")
            self._n_outputs_for_fit = y2.shape[-1]
        elif y2.shape[-1] != self._n_outputs:
            raise ValueError(f"y has {y2.shape[-1]} outputs, but the model was fitted with {self._n_outputs}")
        scaled = (y2.astype(np.float64) - self._y_mean) / self._y_scale
        if self.output == "sequence":
            scaled[~seqs.valid_mask()] = 0.0
        return scaled.astype(np.dtype(self.dtype))

    def _unscale(self, raw: np.ndarray) -> np.ndarray:
        out = raw.astype(np.float64) * self._y_scale + self._y_mean
        return out[..., 0] if self._y_ndim == 1 else out

    def _validation_score(self, seqs: Sequences, scaled: np.ndarray) -> float:
        raw = self._raw_outputs(seqs).astype(np.float64)
        if self.output == "sequence":
            mask = seqs.valid_mask()
            return _r2(scaled[mask], raw[mask])
        return _r2(scaled, raw)

    def predict_step(self, x_t: Any, state: Any = None) -> tuple[np.ndarray, Any]:
        """Predictions after one more time step of each stream (real-time use).

        Parameters
        ----------
        x_t : array, shape (n_streams, n_features) or (n_features,)
            This step's features of each stream (scaled inside, as in :meth:`fit`).
        state : as returned by the previous call, optional
            The streams' recurrent state; None starts new streams.

        Returns
        -------
        y : array, shape (n_streams,) or (n_streams, n_outputs) (one stream: () or (n_outputs,))
            What :meth:`predict` gives for the sequences read so far: with ``output="sequence"``
            this step's prediction, with ``output="last"`` that of the sequences ending here.
        state
            Pass it to the next call. For an LSTM a tuple (h, c), else h; each
            (num_layers, n_streams, hidden_size).
        """
        raw, state, unbatched = self._step_raw(x_t, state)
        y = self._unscale(raw)
        return (y[0] if unbatched else y), state

    def predict(self, X: Any) -> Any:
        """Predictions on the targets' scale: (n,) / (n, k); per step with output="sequence"."""
        self._check_fitted()
        seqs = self._check_X(X, reset=False)
        pred = self._unscale(self._raw_outputs(seqs))
        return _per_sequence(pred, seqs) if self.output == "sequence" else pred

    def score(self, X: Any, y: Any) -> float:
        """R² (uniform average over outputs; over valid time steps with output="sequence")."""
        pred = self.predict(X)
        if self.output == "last":
            return _r2(np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64))
        seqs = self._check_X(X, reset=False)
        mask = seqs.valid_mask()
        truth = per_step_targets(y, seqs).astype(np.float64)
        return _r2(truth[mask], _padded(pred, seqs).astype(np.float64)[mask])

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import InputTags, RegressorTags, Tags, TargetTags

        return Tags(estimator_type="regressor", target_tags=TargetTags(required=True, multi_output=True),
                    regressor_tags=RegressorTags(), input_tags=InputTags(three_d_array=True))


# ---------------------------------------------------------------------- helpers
#: While set (by :mod:`rnnkit.distributed`): an in-place sum over processes of a float64 array,
#: so that :func:`_standardiser` gives the statistics of every process's values together.
_STATS_ALLREDUCE: contextvars.ContextVar[Optional[Callable[[np.ndarray], None]]] = contextvars.ContextVar(
    "rnnkit_stats_allreduce", default=None)


def _standardiser(values: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and scale of ``values`` (n, k), float64; ValueError where they overflow.

    A column with (almost) no spread gets scale 1. Under :data:`_STATS_ALLREDUCE` the mean and
    standard deviation are those of all processes' values (count and sums, then the sums of
    squared deviations from the global mean: two reductions).
    """
    allreduce = _STATS_ALLREDUCE.get()
    with np.errstate(over="ignore", invalid="ignore"):
        if allreduce is None:
            mean = values.mean(axis=0)
            std = values.std(axis=0)
        else:
            sums = np.concatenate([[float(values.shape[0])], values.sum(axis=0)]).astype(np.float64)
            allreduce(sums)
            mean = sums[1:] / sums[0]
            squares = np.ascontiguousarray(((values - mean) ** 2).sum(axis=0), dtype=np.float64)
            allreduce(squares)
            std = np.sqrt(squares / sums[0])
    if not (np.isfinite(mean).all() and np.isfinite(std).all()):
        raise ValueError(
            f"Input {name} holds values too large to standardise (their mean or standard deviation overflows "
            "float64); rescale them first"
        )
    return mean, np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)


def _check_labels(y: np.ndarray) -> None:
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise ValueError("Input y contains NaN or infinity.")
        if not np.all(y == np.round(y)):
            raise ValueError("Unknown label type: continuous. Maybe you are trying to fit a classifier, which "
                             "expects discrete classes, on a regression target with continuous values.")
    elif y.dtype.kind == "c":
        raise ValueError("Complex data not supported for y")


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    y = y.reshape(y.shape[0], -1)
    pred = pred.reshape(pred.shape[0], -1)
    ss_res = ((y - pred) ** 2).sum(axis=0)
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.where(ss_res > 0, 0.0, 1.0))
    return float(r2.mean())


def _per_sequence(values: np.ndarray, seqs: Sequences) -> Any:
    """Per-step results: an (n, T, ...) array, or a list trimmed to each length for list input."""
    if seqs.kind != "list":
        return values
    lengths = seqs.lengths if seqs.lengths is not None else np.full(seqs.n, values.shape[1])
    return [values[i, :n] for i, n in enumerate(lengths)]


def _padded(values: Any, seqs: Sequences) -> np.ndarray:
    if isinstance(values, list):
        out = np.zeros(seqs.x.shape[:2] + values[0].shape[1:], dtype=values[0].dtype)
        for i, v in enumerate(values):
            out[i, : len(v)] = v
        return out
    return values


__all__ = ["RNNClassifier", "RNNRegressor"]
