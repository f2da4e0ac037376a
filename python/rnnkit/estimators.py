"""scikit-learn estimators: :class:`RNNClassifier` and :class:`RNNRegressor`.

A recurrent stack (LSTM, GRU or simple RNN) followed by a dense head, trained by BPTT in
C++: each mini-batch is one call that runs forward, the loss (softmax cross-entropy or
squared error) and backward, then gradient clipping and a fused optimizer step over one
flat parameter buffer. scikit-learn is not needed to use them; with it installed they pass
its estimator checks and work in pipelines, searches and cross-validation.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Mapping, Optional, Union

import numpy as np

from . import _checks
from ._estimator_base import _RNNBase
from ._sequences import _STATS_ALLREDUCE, Sequences, _standardiser, per_step_targets
from .exceptions import DataConversionWarning


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
        thread in a joblib worker thread; see ``rnnkit._threads``). A small prediction (up to
        128 MFLOP) made more than 1 ms after the previous one runs on the calling thread, with
        the same results, instead of waking OpenMP's workers.
    dtype : {"float32", "float64"}
    device : {"cpu", "cuda", "cuda:N"}
        Where each batch's forward and backward pass runs (see :mod:`rnnkit.cuda`); the
        parameters, clipping and the optimizer step stay on the host, so a model fitted on a GPU
        is used and saved like any other. ``fit`` and ``predict`` raise RuntimeError, saying
        why, where CUDA is unavailable (``set_params(device="cpu")`` moves a fitted model).
    lr_schedule : {None, "adaptive", "cosine"}
        How the learning rate changes over the epochs of a fit (each ``fit`` starts at
        ``learning_rate``). None: it stays. "adaptive" (scikit-learn's MLP): where the fit would
        stop for want of improvement (``n_iter_no_change`` epochs without the training loss, or
        the validation accuracy with early stopping, improving by ``tol``), the rate is divided by
        5 instead and training goes on, until it is at most 1e-6; ``partial_fit`` goes on at the
        rate it left. "cosine": annealed to 0 over ``max_epochs`` epochs
        (:class:`rnnkit.optim.lr_scheduler.CosineAnnealingLR`); not with ``partial_fit``.
    scale_inputs : bool
        Standardise each input feature with the training data's mean and standard deviation
        (default), or read the inputs as given: better for one-hot or multi-hot inputs (a
        piano roll, token indicators), where a rare feature's small deviation would blow its
        rare 1s up in sequences that use it often.
    class_weight : dict, "balanced" or None
        Loss weight per class, ``{label: weight}`` (classes not named weigh 1), or "balanced":
        ``n_rows / (n_classes * count of the class)`` over the labels given to ``fit`` (over the
        valid steps with output="sequence"), as in scikit-learn. It multiplies ``sample_weight``;
        a batch's loss is the weighted mean, as PyTorch's ``CrossEntropyLoss(weight=...)``. Not
        used by ``score`` or the early-stopping accuracy (as in scikit-learn).

    Attributes
    ----------
    classes_ : ndarray
        The labels; for a multi-label fit the label columns ``0 .. n_labels - 1``.
    n_features_in_ : int
        Features per time step (for 2-D input: the number of columns).
    loss_curve_ : list of float
        Mean training loss per epoch.
    validation_scores_ : list of float
        Validation accuracy per epoch (early stopping only).
    best_loss_ : float or None
    n_iter_ : int
        Epochs run.
    learning_rate_ : float
        The rate the next epoch would run at (``learning_rate`` unless ``lr_schedule`` changed it).
    rnn_ : LSTM, GRU or RNN
        The trained recurrent stack (``rnn_.state_dict()`` in PyTorch layout).
    head_ : dict
        The dense head's weight and bias.
    """

    _estimator_type = "classifier"
    _multilabel = False  # fitted on a multi-label indicator y (set by fit)

    @property
    def _loss(self) -> str:
        """The compiled model's loss: softmax cross-entropy, or a sigmoid per label for multi-label y."""
        return "binary_cross_entropy" if self._multilabel else "cross_entropy"

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
        class_weight: Optional[Union[str, Mapping[Any, float]]] = None,
    ) -> None:
        super().__init__(
            cell=cell, hidden_size=hidden_size, num_layers=num_layers, bidirectional=bidirectional,
            dropout=dropout, output=output, optimizer=optimizer, learning_rate=learning_rate, momentum=momentum,
            nesterov=nesterov, weight_decay=weight_decay, batch_size=batch_size, max_epochs=max_epochs,
            clip_norm=clip_norm, clip_value=clip_value, early_stopping=early_stopping,
            validation_fraction=validation_fraction, n_iter_no_change=n_iter_no_change, tol=tol,
            warm_start=warm_start, random_state=random_state, verbose=verbose, n_threads=n_threads, dtype=dtype,
            device=device, lr_schedule=lr_schedule, scale_inputs=scale_inputs,
        )
        self.class_weight = class_weight

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "RNNClassifier":
        """Train on sequences X and labels y.

        Parameters
        ----------
        X : array (n, T, n_features), (n, T) or list of (T_i, n_features) arrays
        y : array (n,), or per step with output="sequence"
            An indicator matrix (n, n_labels) of 0 and 1 fits a multi-label model (as
            scikit-learn's MLP), and with output="sequence" one such row per step, (n, T,
            n_labels) or a list of (T_i, n_labels) (several notes or events at once): one
            sigmoid per label, trained with the binary cross-entropy averaged over the labels
            (PyTorch's ``BCEWithLogitsLoss``). ``predict`` then returns such matrices
            (probability above 0.5) and ``score`` the subset accuracy (every label of a
            sequence, or of a step, right). ``class_weight`` does not apply to it.
        sample_weight : array (n,), float or None
            Weighs each sequence's loss (every step's, with output="sequence"): a mini-batch's
            loss is the weighted mean ``sum(w * loss) / sum(w)`` over its rows, as in PyTorch's
            ``CrossEntropyLoss(weight=...)`` and scikit-learn's MLP, so only the weights' ratios
            matter; a batch whose weights are all 0 is skipped. Weights >= 0; the input scaling
            and the early-stopping score are weighted too. Multiplied by ``class_weight``.
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None) -> "RNNClassifier":
        """One epoch over (X, y), continuing from the current state.

        ``classes`` (every label that will ever appear) is required on the first call;
        ``sample_weight`` as in :meth:`fit`.
        """
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            raise ValueError("class_weight='balanced' is not supported for partial_fit: one call sees only part of "
                             "the data; pass the weights as a dict, e.g. from "
                             "sklearn.utils.class_weight.compute_class_weight('balanced', classes=..., y=all_labels)")
        if not self.__sklearn_is_fitted__():
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            classes = np.unique(np.asarray(classes))
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"classes={classes!r} differs from the classes of the first call, {self.classes_!r}")
        return self._fit(X, y, incremental=True, classes=classes, sample_weight=sample_weight)

    def _encode_targets(self, y: Any, seqs: Sequences, reset: bool, classes: Any = None,
                        weights: Optional[np.ndarray] = None) -> np.ndarray:
        sequence = self.output == "sequence"
        y = per_step_targets(y, seqs) if sequence else np.asarray(y)
        if y.ndim == (3 if sequence else 2) and y.shape[-1] > 1:  # a column of 0 and 1 per label
            return self._encode_multilabel(y, seqs, reset, classes)
        if not reset and self._multilabel:
            shape = "(n_samples, n_steps, " if sequence else "(n_samples, "
            raise ValueError(f"y must be a multi-label indicator matrix {shape}{self.classes_.size}) of 0 and 1, as "
                             f"in the first fit; got shape {np.shape(y)}")
        if not sequence:
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
            if y.ndim != 2:
                raise ValueError("y: with output='sequence', one label per step, or one row of 0 and 1 per step "
                                 f"(multi-label, two labels or more); got {y.shape[2:]} values per step")
            valid = y[seqs.valid_mask()]
        _check_labels(valid)
        if reset:
            self._multilabel = False
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

    def _encode_multilabel(self, y: np.ndarray, seqs: Sequences, reset: bool, classes: Any) -> np.ndarray:
        """Multi-label targets: an indicator matrix (n, n_labels) of 0 and 1 (scikit-learn's
        "multilabel-indicator"), or one such row per step (n, T, n_labels) with
        output="sequence", as float targets of the sigmoid head."""
        if y.shape[0] != seqs.n:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: [{seqs.n}, {y.shape[0]}]")
        sequence = self.output == "sequence"
        valid = y[seqs.valid_mask()] if sequence else y
        if y.dtype.kind not in "biuf" or not np.isin(valid, (0, 1)).all():
            raise ValueError(f"y of shape {y.shape}: a multi-label y must be an indicator matrix of 0 and 1 (one "
                             "column per label; sklearn.preprocessing.MultiLabelBinarizer makes one); multi-output "
                             "multi-class targets are not supported")
        k = y.shape[-1]
        if reset:
            if classes is not None and not np.array_equal(classes, np.arange(k)):
                raise ValueError(f"classes must be the label columns 0..{k - 1} for a multi-label y of {k} columns, "
                                 f"got {classes!r}")
            self.classes_ = np.arange(k)
            self._n_outputs_for_fit = k
            self._multilabel = True
        elif not self._multilabel or k != self.classes_.size:
            first = (f"{self.classes_.size} label columns" if self._multilabel else
                     f"one label per {'step' if sequence else 'sequence'}")
            raise ValueError(f"y has shape {y.shape}, but the first fit had {first}")
        targets = y.astype(np.dtype(self.dtype) if reset else self.dtype_)
        if sequence:
            targets[~seqs.valid_mask()] = 0  # padding: read by no loss, but the model wants [0, 1]
        return targets

    def _validate_params(self) -> None:
        super()._validate_params()
        cw = self.class_weight
        if cw is None or (isinstance(cw, str) and cw == "balanced"):
            return
        if not isinstance(cw, Mapping):
            raise ValueError(f"class_weight must be None, 'balanced' or a dict {{label: weight}}, got {cw!r}")
        for label, weight in cw.items():
            if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) or weight < 0:
                raise ValueError(f"class_weight: the weight of class {label!r} must be a finite number >= 0, got "
                                 f"{weight!r}")

    def _class_weights(self, codes: np.ndarray, seqs: Sequences) -> Optional[np.ndarray]:
        cw = self.class_weight
        if cw is None:
            return None
        if self._multilabel:
            raise ValueError("class_weight is not supported with a multi-label y; weigh the sequences with "
                             "sample_weight instead")
        k = self.classes_.size
        if isinstance(cw, str):  # "balanced", over the rows that count (of every process, under MPI)
            valid = codes if self.output == "last" else codes[seqs.valid_mask()]
            counts = np.bincount(valid, minlength=k).astype(np.float64)
            allreduce = _STATS_ALLREDUCE.get()
            if allreduce is not None:
                allreduce(counts)
            weights = np.where(counts > 0, counts.sum() / (k * np.maximum(counts, 1)), 1.0)
        else:
            weights = np.ones(k)
            for label, weight in cw.items():
                where = np.flatnonzero(self.classes_ == label) if _comparable(label, self.classes_) else []
                if len(where) != 1:
                    raise ValueError(f"class_weight names the label {label!r}, which is not one of the classes "
                                     f"{self.classes_.tolist()!r}")
                weights[where[0]] = float(weight)
        if not weights.any():
            raise ValueError(f"class_weight gives every class weight 0: nothing to learn ({cw!r})")
        return None if (weights == weights[0]).all() else weights  # equal weights: the unweighted fit

    def _validation_score(self, seqs: Sequences, codes: np.ndarray, weights: Optional[np.ndarray] = None) -> float:
        proba = self._raw_outputs(seqs)
        if self._multilabel:
            return self._accuracy(proba > 0.5, codes > 0.5, seqs, weights)
        return self._accuracy(proba.argmax(axis=-1), codes, seqs, weights)

    def _accuracy(self, pred: np.ndarray, truth: np.ndarray, seqs: Optional[Sequences],
                  weights: Optional[np.ndarray]) -> float:
        """The weighted share of rows predicted right (for a multi-label fit, every label of the
        row): over the sequences with output="last", else over the valid steps of ``seqs``."""
        right = pred == truth
        if self._multilabel:
            right = right.all(axis=-1)
        if self.output == "last":
            return float(np.average(right, weights=weights))
        return float(np.average(right[seqs.valid_mask()], weights=seqs.step_weights(weights)))

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
        return self._step_outputs(x_t, state, unscale=False)

    def predict_step(self, x_t: Any, state: Any = None) -> tuple[Any, Any]:
        """Predicted labels after one more time step of each stream; see :meth:`predict_proba_step`."""
        proba, state = self.predict_proba_step(x_t, state)
        return self._labels_of(proba), state

    def predict(self, X: Any) -> Any:
        """Predicted labels: (n,); with output="sequence" (n, T) or, for list input, a list; for a
        multi-label fit the indicator matrix (n, n_labels) of 0 and 1."""
        self._check_fitted()
        seqs = self._check_X(X, reset=False)
        labels = self._labels_of(self._raw_outputs(seqs))
        return _per_sequence(labels, seqs) if self.output == "sequence" else labels

    def _labels_of(self, proba: np.ndarray) -> np.ndarray:
        """The most probable class of each row; multi-label: 1 for each label whose probability
        exceeds 0.5 (scikit-learn's MLP)."""
        if self._multilabel:
            return (proba > 0.5).astype(np.int64)
        return self.classes_[proba.argmax(axis=-1)]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy (over sequences, or over valid time steps with output="sequence"; for a
        multi-label fit the subset accuracy, every label right), weighted by ``sample_weight``
        (one weight per sequence) where given."""
        pred = self.predict(X)
        weights = _checks.sample_weights(sample_weight, len(pred))
        seqs = None
        if self.output == "last":
            truth = np.asarray(y) if self._multilabel else np.asarray(y).ravel()
        else:
            seqs = self._check_X(X, reset=False)
            truth, pred = per_step_targets(y, seqs), _padded(pred, seqs)
        if self._multilabel and truth.shape != pred.shape:  # subset accuracy, as sklearn.metrics.accuracy_score
            raise ValueError(f"y has shape {truth.shape}, expected {pred.shape} (the label columns of the fit)")
        return self._accuracy(pred, truth, seqs, weights)

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags(multi_label=True), input_tags=InputTags(three_d_array=True))


class RNNRegressor(_RNNBase):
    """Recurrent sequence regressor (LSTM / GRU / RNN + linear head, squared error), trained by BPTT in C++.

    Parameters are those of :class:`RNNClassifier` but ``class_weight``; ``early_stopping`` watches
    the validation R².
    Targets are standardised per output inside and predictions are returned on the original scale.

    Attributes
    ----------
    n_features_in_, loss_curve_, validation_scores_, best_loss_, n_iter_, learning_rate_, rnn_, head_
        As in :class:`RNNClassifier`.
    """

    _loss = "squared_error"
    _estimator_type = "regressor"

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> "RNNRegressor":
        """Train on sequences X and targets y: (n,) / (n, k), or per step with output="sequence".

        ``sample_weight`` (n,) weighs each sequence's squared error (a weighted mean per
        mini-batch), as in :meth:`RNNClassifier.fit`; the input and target scaling and the
        early-stopping R² are weighted too.
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> "RNNRegressor":
        """One epoch over (X, y), continuing from the current state; ``sample_weight`` as in :meth:`fit`."""
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def _encode_targets(self, y: Any, seqs: Sequences, reset: bool, classes: Any = None,
                        weights: Optional[np.ndarray] = None) -> np.ndarray:
        if self.output == "last":
            y = np.asarray(y)
            if y.ndim not in (1, 2):
                raise ValueError(f"y must be 1-D or 2-D with output='last', got shape {y.shape}")
            if y.shape[0] != seqs.n:
                raise ValueError(f"Found input variables with inconsistent numbers of samples: [{seqs.n}, {y.shape[0]}]")
            ndim = y.ndim
            y2 = y.reshape(y.shape[0], -1)
            valid = y2
            valid_weights = weights
        else:
            y = per_step_targets(y, seqs)
            ndim = y.ndim - 1
            y2 = y.reshape(y.shape[0], y.shape[1], -1)
            valid = y2[seqs.valid_mask()]
            valid_weights = seqs.step_weights(weights)
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
            self._y_mean, self._y_scale = _standardiser(valid, "y", valid_weights)
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

    def _validation_score(self, seqs: Sequences, scaled: np.ndarray, weights: Optional[np.ndarray] = None) -> float:
        raw = self._raw_outputs(seqs).astype(np.float64)
        if self.output == "sequence":
            mask = seqs.valid_mask()
            return _r2(scaled[mask], raw[mask], seqs.step_weights(weights))
        return _r2(scaled, raw, weights)

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
        y, state = self._step_outputs(x_t, state, unscale=True)
        return (y[..., 0] if self._y_ndim == 1 else y), state

    def predict(self, X: Any) -> Any:
        """Predictions on the targets' scale: (n,) / (n, k); per step with output="sequence"."""
        self._check_fitted()
        seqs = self._check_X(X, reset=False)
        pred = self._unscale(self._raw_outputs(seqs))
        return _per_sequence(pred, seqs) if self.output == "sequence" else pred

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """R² (uniform average over outputs; over valid time steps with output="sequence"),
        weighted by ``sample_weight`` (one weight per sequence) where given, as sklearn's ``r2_score``."""
        pred = self.predict(X)
        weights = _checks.sample_weights(sample_weight, len(pred))
        if self.output == "last":
            return _r2(np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64), weights)
        seqs = self._check_X(X, reset=False)
        mask = seqs.valid_mask()
        truth = per_step_targets(y, seqs).astype(np.float64)
        return _r2(truth[mask], _padded(pred, seqs).astype(np.float64)[mask], seqs.step_weights(weights))

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import InputTags, RegressorTags, Tags, TargetTags

        return Tags(estimator_type="regressor", target_tags=TargetTags(required=True, multi_output=True),
                    regressor_tags=RegressorTags(), input_tags=InputTags(three_d_array=True))


# ---------------------------------------------------------------------- helpers
def _check_labels(y: np.ndarray) -> None:
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise ValueError("Input y contains NaN or infinity.")
        if not np.all(y == np.round(y)):
            raise ValueError("Unknown label type: continuous. Maybe you are trying to fit a classifier, which "
                             "expects discrete classes, on a regression target with continuous values.")
    elif y.dtype.kind == "c":
        raise ValueError("Complex data not supported for y")


def _comparable(label: Any, classes: np.ndarray) -> bool:
    """Whether ``label`` can equal a class (a str against numeric classes cannot, and numpy would warn)."""
    return (isinstance(label, str) or isinstance(label, np.str_)) == (classes.dtype.kind in "USO")


def _r2(y: np.ndarray, pred: np.ndarray, weights: Optional[np.ndarray] = None) -> float:
    y = y.reshape(y.shape[0], -1)
    pred = pred.reshape(pred.shape[0], -1)
    w = 1.0 if weights is None else weights[:, None]
    ss_res = (w * (y - pred) ** 2).sum(axis=0)
    ss_tot = (w * (y - np.average(y, axis=0, weights=weights)) ** 2).sum(axis=0)
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
