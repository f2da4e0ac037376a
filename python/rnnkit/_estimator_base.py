"""The shared body of :class:`~rnnkit.RNNClassifier` and :class:`~rnnkit.RNNRegressor`.

:class:`_RNNBase` holds their parameters and their checks, builds the recurrent stack and the
dense head as one C++ model over a flat parameter buffer, and runs the training loop
(mini-batches, early stopping, warm starts), prediction in chunks, the streaming step, and
pickling; the two estimators add their targets, losses and scores (:mod:`rnnkit.estimators`).
"""

from __future__ import annotations

import functools
import math
import numbers
import threading
import time
import warnings
from typing import Any, NamedTuple, Optional

import numpy as np

from . import _checks, _threads, optim
from . import cuda as _cuda
from ._backend import core, dtype_suffix, kernel
from ._fitting import (
    _CELLS,
    _Base,
    _BatchStep,
    _check_choice,
    _check_device,
    _check_flags,
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
from ._sequences import Sequences, _standardiser, standardised, to_sequences
from .exceptions import ConvergenceWarning, not_fitted_error
from ._buffers import _aligned_zeros, _read_only_copy, frozen_flag
from .layers import layer_for_mode

_OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
_PREDICT_CHUNK = 4096  # sequences per C++ call at prediction time


class _FitData(NamedTuple):
    """A fit's checked input (see _RNNBase._fit_data)."""

    x: np.ndarray  # scaled inputs (or token ids), (n, T, D)
    lengths: Optional[np.ndarray]
    targets: np.ndarray  # encoded labels or scaled values
    weights: Optional[np.ndarray]  # sample weights, float64 (n,)
    class_weights: Optional[np.ndarray]
    train_idx: np.ndarray
    val_idx: np.ndarray
    val_seqs: Sequences  # held out for early stopping (none without it)


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
        lr_schedule: Optional[str] = None,
        scale_inputs: bool = True,
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
        self.lr_schedule = lr_schedule
        self.scale_inputs = scale_inputs

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
        _check_lr_schedule(self)
        _check_flags(self, "bidirectional", "nesterov", "early_stopping", "warm_start", "scale_inputs")
        if self.random_state is not None and not isinstance(self.random_state, (numbers.Integral, np.random.RandomState, np.random.Generator)):
            raise TypeError(f"random_state must be None, an int or a numpy random generator, got {self.random_state!r}")
        _check_device(self)

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "_params_flat")

    @property
    def frozen(self) -> bool:
        """Whether the fitted weights are read-only and fixed (a copy made by :func:`rnnkit.freeze`)."""
        return frozen_flag(self.__dict__.get("_frozen_owner"))

    def _freeze_in_place(self) -> None:
        """Move the fitted parameters into a read-only buffer (rnnkit.freeze, on its copy)."""
        self._check_fitted()
        self._params_flat, self._frozen_owner = _read_only_copy(self._params_flat)
        for key in ("_stream", "_cpu_model", "_device_model"):  # made for the old buffer
            self.__dict__.pop(key, None)

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
        self.learning_rate_ = float(self.learning_rate)
        self.n_iter_ = 0
        self.t_ = 0
        self._best_loss = math.inf
        self._best_score = -math.inf
        self._no_improvement = 0

    def _make_optimizer(self, lr: Optional[float] = None) -> optim.Optimizer:
        """The optimizer, with its state from the last fit, at ``lr`` (default ``learning_rate``)."""
        pair = [(self._params_flat, self._grads_flat)]
        lr = float(self.learning_rate) if lr is None else lr
        wd = float(self.weight_decay)
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
            opt.lr, opt.initial_lr = lr, None  # the state holds the last fit's rate and schedule base
        return opt

    def _threads(self) -> int:
        return self.n_threads if self.n_threads is not None else _threads.default_threads()

    def _scale_X(self, seqs: Sequences) -> np.ndarray:
        x = standardised(seqs.x, self._x_mean, self._x_scale, self.dtype_)
        if x is None:
            raise self._unscalable_X()
        return x

    def _input_scaling(self) -> tuple:
        """(mean, scale) the compiled predict standardises the inputs with, or (None, None)."""
        return self._x_mean, self._x_scale

    def _unscalable_X(self) -> ValueError:
        return ValueError(f"Input X holds values too large for {self.dtype_} once standardised with the training "
                          "data's mean and standard deviation")

    def _fit_scaler(self, seqs: Sequences, weights: Optional[np.ndarray] = None) -> None:
        if not self.scale_inputs:  # inputs as given: (x - 0) / 1 is x exactly
            self._x_mean, self._x_scale = np.zeros(seqs.x.shape[2]), np.ones(seqs.x.shape[2])
            return
        valid = seqs.valid_mask()
        values = seqs.x[valid].astype(np.float64)
        self._x_mean, self._x_scale = _standardiser(values, "X", seqs.step_weights(weights))

    def _model_calls(self) -> tuple:
        """(predict, loss_and_grad) of the compiled model, on the CPU or on ``device``."""
        return _cuda._model_calls(self, self._spec, dtype_suffix(self.dtype_), _device_index(self))

    def _raw_outputs(self, seqs: Sequences) -> np.ndarray:
        """Model outputs for every sequence: (n, n_outputs) or (n, T, n_outputs)."""
        run = self._model_calls()[0]
        mean, scale = self._input_scaling()
        x, parts = seqs.x, []
        for start in range(0, x.shape[0], _PREDICT_CHUNK):
            sl = slice(start, start + _PREDICT_CHUNK)
            lengths = None if seqs.lengths is None else np.ascontiguousarray(seqs.lengths[sl])
            # The input scaling runs in the compiled call (a numpy pass per operation cost more
            # than the forward for one short sequence); None: not finite once scaled.
            part = run(self._spec, self._params_flat, np.ascontiguousarray(x[sl]), lengths, self._threads(),
                       self.frozen, mean, scale)
            if part is None:
                raise self._unscalable_X()
            parts.append(part)
        out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        if not np.isfinite(out).all():
            raise ValueError(
                f"{type(self).__name__}: the model's outputs overflowed to NaN/Inf for this input (weights of "
                f"magnitude up to {np.abs(self._params_flat).max():.3g}); training probably diverged: refit with a "
                "lower learning_rate or with clip_norm / clip_value"
            )
        return out

    # ------------------------------------------------------------------ training
    def _encode_targets(self, y: Any, seqs: Sequences, reset: bool, classes: Any = None,
                        weights: Optional[np.ndarray] = None) -> np.ndarray:
        raise NotImplementedError

    def _validation_score(self, seqs: Sequences, targets: np.ndarray, weights: Optional[np.ndarray] = None) -> float:
        raise NotImplementedError

    def _class_weights(self, targets: np.ndarray, seqs: Sequences) -> Optional[np.ndarray]:
        """Loss weight per class (n_outputs,), or None: the classifier's ``class_weight``."""
        return None

    def _row_weights(self, seq_weights: Optional[np.ndarray], class_weights: Optional[np.ndarray],
                     targets: np.ndarray, lengths: Optional[np.ndarray]) -> tuple[Optional[np.ndarray], float]:
        """The loss weight of each output row of a batch (shaped as its labels: (B,) or (B, T)) in
        the model's dtype, or None where every row weighs 1; and the total weight of its valid rows."""
        sequence = self.output == "sequence"
        row_shape = targets.shape[:2] if sequence else targets.shape[:1]
        if seq_weights is None and class_weights is None:
            return None, float(row_shape[0])
        w = np.ones(row_shape) if class_weights is None else class_weights[targets]
        if seq_weights is not None:
            w = w * (seq_weights[:, None] if sequence else seq_weights)
        valid = w if lengths is None or not sequence else w[np.arange(row_shape[1])[None, :] < lengths[:, None]]
        return np.ascontiguousarray(w, dtype=self.dtype_), float(valid.sum())

    def _fit_data(self, X: Any, y: Any, incremental: bool, classes: Any, sample_weight: Any) -> "_FitData":
        """Check and encode a fit's input, (re)building the model for a fresh fit; the training set
        and, with early stopping, the held-out one."""
        fresh = not self.__sklearn_is_fitted__() or not (incremental or self.warm_start)
        seqs = self._check_X(X, reset=fresh)
        weights = _checks.sample_weights(sample_weight, seqs.n)
        if weights is not None and (weights == weights[0]).all():
            weights = None  # only the weights' ratios matter: equal weights are the unweighted fit, bit for bit
        if fresh:
            self._fit_scaler(seqs, weights)
        targets = self._encode_targets(y, seqs, reset=fresh, classes=classes, weights=weights)
        class_weights = self._class_weights(targets, seqs)
        if fresh:
            self._random = self._rng()
            self._build(self._n_outputs_for_fit, self._random)

        n = seqs.n
        train_idx = np.arange(n)
        val_idx = np.arange(0)
        if bool(self.early_stopping) and not incremental:
            n_val = max(1, int(round(self.validation_fraction * n)))
            if n - n_val < 1:
                raise ValueError(
                    f"early_stopping needs at least 2 samples to hold out a validation set; got {n} sample(s) "
                    f"(n_samples={n})"
                )
            perm = self._random.permutation(n)
            val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            if weights is not None and not weights[val_idx].sum() > 0:
                raise ValueError(f"sample_weight: every sequence held out for early stopping has weight 0 "
                                 f"(validation_fraction={self.validation_fraction}); give more sequences a "
                                 "positive weight")
        x_all = self._scale_X(seqs)
        lengths_all = seqs.lengths
        if not self._row_weights(None if weights is None else weights[train_idx], class_weights, targets[train_idx],
                                 None if lengths_all is None else lengths_all[train_idx])[1] > 0:
            raise ValueError("sample_weight / class_weight give every training sequence weight 0: nothing to learn")
        val_seqs = Sequences(seqs.x[val_idx], None if lengths_all is None else lengths_all[val_idx], seqs.kind)
        return _FitData(x_all, lengths_all, targets, weights, class_weights, train_idx, val_idx, val_seqs)

    def _fit(self, X: Any, y: Any, incremental: bool, classes: Any = None, sample_weight: Any = None) -> "_RNNBase":
        if "_frozen_owner" in self.__dict__:
            raise ValueError(f"{type(self).__name__} is frozen (made by rnnkit.freeze): it cannot be fitted again; fit "
                             "the estimator it was frozen from, or a clone (sklearn.base.clone)")
        self._validate_params()
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        if incremental and self.lr_schedule == "cosine":
            raise ValueError("lr_schedule='cosine' anneals over the max_epochs epochs of one fit; partial_fit has "
                             "no such count: use fit, or lr_schedule='adaptive' or None")
        # Input that fails a check leaves the estimator as it was (fitted or not): the checks
        # run while the attributes they set can still be put back.
        before = dict(self.__dict__)
        rng_state = self._random.bit_generator.state if "_random" in before else None
        try:
            data = self._fit_data(X, y, incremental, classes, sample_weight)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            if rng_state is not None:
                self._random.bit_generator.state = rng_state
            raise
        rng = self._random
        early = bool(self.early_stopping) and not incremental
        x_all, lengths_all, targets, weights, class_weights = (data.x, data.lengths, data.targets, data.weights,
                                                               data.class_weights)
        train_idx, val_idx, val_seqs = data.train_idx, data.val_idx, data.val_seqs
        val_weights = None if weights is None else weights[val_idx]

        # partial_fit goes on at the rate "adaptive" left (scikit-learn's MLP); each fit starts afresh
        adaptive_goes_on = incremental and self.lr_schedule == "adaptive"
        opt = self._make_optimizer(self.__dict__.get("learning_rate_") if adaptive_goes_on else None)
        step = _BatchStep(self._spec, self._params_flat, self._grads_flat, opt, dropout=float(self.dropout),
                          clip_norm=self.clip_norm, clip_value=self.clip_value, n_threads=self._threads(),
                          diverged=self._divergence_message, run=self._model_calls()[1])
        labels = self._loss == "cross_entropy"
        best_params = self._params_flat.copy() if early else None
        epochs = 1 if incremental else int(self.max_epochs)
        rate = _LearningRate(self.lr_schedule, opt, epochs)
        bar = _progress(epochs, self.verbose)
        stopped_early = False
        try:
            for _ in range(epochs):
                start_time = time.perf_counter()
                order = train_idx[rng.permutation(train_idx.size)]
                total, total_weight = 0.0, 0.0
                for b0 in range(0, order.size, int(self.batch_size)):
                    idx = np.sort(order[b0 : b0 + int(self.batch_size)])
                    steps = x_all.shape[1] if lengths_all is None else int(lengths_all[idx].max())
                    lb = None if lengths_all is None else np.ascontiguousarray(lengths_all[idx])
                    tb = np.ascontiguousarray(targets[idx][:, :steps] if self.output == "sequence" else targets[idx])
                    wb, batch_weight = self._row_weights(None if weights is None else weights[idx], class_weights,
                                                         tb, lb)
                    if batch_weight == 0.0:
                        continue  # every row has weight 0: nothing to learn from
                    xb = np.ascontiguousarray(x_all[idx, :steps])
                    key = int(rng.integers(0, 2**63 - 1)) if self.dropout > 0 else 0
                    loss = step(xb, lb, tb if labels else None, None if labels else tb, key, wb)
                    total += loss * batch_weight
                    total_weight += batch_weight
                self.n_iter_ += 1
                self.t_ += order.size
                epoch_loss = total / total_weight
                self.loss_curve_.append(epoch_loss)
                message = f"Epoch {self.n_iter_}: loss {epoch_loss:.6f}"
                if early:
                    score = self._validation_score(val_seqs, targets[val_idx], val_weights)
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
                message += rate.note()
                if rate.after_epoch(self._no_improvement > self.n_iter_no_change) == "lowered":
                    self._no_improvement = 0
                self.learning_rate_ = opt.lr
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
            step.sync()
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
    def _step_outputs(self, x_t: Any, state: Any, unscale: bool) -> tuple[np.ndarray, Any]:
        """The head's outputs after one more time step of each stream, and the new state.

        One compiled call runs the input scaling, the stack's step, the head and the softmax
        (the arithmetic of that step's row of :meth:`predict`). Returns class probabilities in
        ``dtype_``, or with ``unscale`` the predictions on the targets' scale in float64: shaped
        (n_streams, n_outputs), or (n_outputs,) for an unbatched ``x_t``.
        """
        # The streaming loop's path first: the compiled call takes plain float64 (or dtype_)
        # arrays of the expected shapes, checks them for NaN/Inf and returns None for anything
        # else; _step_checked then converts, checks and names the culprit.
        local = self.__dict__.get("_stream")
        params = self.__dict__.get("_params_flat")
        if local is None or getattr(local, "params", None) is not params:  # unfitted, refitted, new thread
            local = self._stream_local()
        spec = self._spec
        y_mean, y_scale = (self._y_mean, self._y_scale) if unscale else (None, None)
        try:
            result = local.run(spec, params, x_t, state, self._x_mean, self._x_scale, y_mean, y_scale,
                               local.workspace, self._threads())
        except ValueError:
            result = None
        if result is None:
            result = self._step_checked(local, x_t, state, y_mean, y_scale)
        return result

    def _stream_local(self) -> Any:
        """This thread's workspace of the compiled step (and the call), made on first use."""
        self._check_fitted()
        local = self.__dict__.get("_stream")
        if local is None:
            local = self.__dict__.setdefault("_stream", threading.local())
        local.run = kernel("model_step", self.dtype_)
        local.workspace = kernel("ModelStepWorkspace", self.dtype_)()
        local.params = self._params_flat  # the buffer it was made for (a refit makes a new one)
        return local

    def _step_checked(self, local: Any, x_t: Any, state: Any, y_mean: Any, y_scale: Any) -> tuple[np.ndarray, Any]:
        """:meth:`_step_outputs` for any arguments: conversions, checks and their messages."""
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
        try:  # x needed a conversion (a slice, a list): the state may be plain
            result = local.run(self._spec, self._params_flat, x, state, self._x_mean, self._x_scale, y_mean, y_scale,
                               local.workspace, self._threads())
        except ValueError:
            result = None
        if result is not None:
            return result
        x = x.reshape(-1, self._input_size)
        shape = (self.num_layers, x.shape[0], self.hidden_size)
        if getattr(local, "layer", None) is None:
            local.layer = self._stack_layer()  # for its state checks
        h0, c0 = local.layer._state_arrays(state, x.shape[0], unbatched, "state")
        h0 = np.zeros(shape, self.dtype_) if h0 is None else h0
        lstm = _CELLS[self.cell] == "lstm"
        state = (h0, np.zeros(shape, self.dtype_) if c0 is None else c0) if lstm else h0
        if not np.isfinite(x).all():
            raise ValueError("x_t contains NaN or Inf")
        if standardised(x, self._x_mean, self._x_scale, self.dtype_) is None:
            raise ValueError("x_t holds values too large for the model's dtype once standardised (they overflow)")
        out, state = local.run(self._spec, self._params_flat, x, state, self._x_mean, self._x_scale, y_mean,
                               y_scale, local.workspace, self._threads())
        if unbatched:
            out = out[0]
            state = (state[0][:, 0], state[1][:, 0]) if lstm else state[:, 0]
        return out, state

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
        if state.pop("_frozen_owner", None) is not None:
            state["_frozen"] = True  # frozen again on load, without pickling the owner's copy
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "_params_flat" in state:
            self._spec = self._model_spec(self._n_outputs)
            flat = _aligned_zeros(self._params_flat.size, self._params_flat.dtype)
            flat[...] = self._params_flat
            self._params_flat = flat
            self._grads_flat = _aligned_zeros(flat.size, flat.dtype)
        if self.__dict__.pop("_frozen", False):
            self._freeze_in_place()

    def save(self, path: Any) -> None:
        """Save the fitted model to ``path`` in rnnkit's portable format (npz + JSON, no pickle)."""
        from .io import save

        save(self, path)
