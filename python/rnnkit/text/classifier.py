"""Text classification: :class:`TextClassifier`, an :class:`rnnkit.RNNClassifier` that reads text."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Union

import numpy as np

from .. import _checks
from .._backend import core
from .._sequences import Sequences
from .._fitting import _CELLS, _check_number
from ..estimators import RNNClassifier
from ._base import _TextModel, _check_text_params
from .tokenizer import check_texts


class TextClassifier(_TextModel, RNNClassifier):
    """Text classifier: raw strings in, labels out (sentiment, topic, ...).

    Each text is tokenized, its first ``max_length`` tokens are embedded and read by the
    recurrent stack, and a softmax head classifies the final state (of both directions with
    ``bidirectional``). It is an :class:`rnnkit.RNNClassifier` whose input is text: early
    stopping, ``partial_fit``, ``warm_start`` and scikit-learn utilities work the same way.

    Parameters
    ----------
    level, max_vocab, min_freq, lower, punctuation
        Tokenizer options (see :class:`Tokenizer`); the vocabulary comes from the texts given
        to the first ``fit``.
    embedding_dim : int
        Size of the learned token embeddings.
    max_length : int or None
        Tokens read per text (the first ones); None reads everything.
    cell, hidden_size, num_layers, bidirectional, dropout, optimizer, learning_rate, momentum,
    nesterov, weight_decay, batch_size, max_epochs, clip_norm, clip_value, early_stopping,
    validation_fraction, n_iter_no_change, tol, warm_start, random_state, verbose, n_threads, device,
    lr_schedule, class_weight
        As in :class:`rnnkit.RNNClassifier` (``class_weight="balanced"`` for imbalanced labels).

    Attributes
    ----------
    classes_ : ndarray
    tokenizer_ : Tokenizer
    loss_curve_, validation_scores_, n_iter_, learning_rate_, rnn_, head_
        As in :class:`rnnkit.RNNClassifier`.
    """

    output = "last"
    dtype = "float32"
    scale_inputs = False  # token ids
    _fitted_attributes = ("loss_curve_", "validation_scores_", "n_iter_", "t_", "best_loss_",
                          "best_validation_score_", "stopped_early_", "_best_loss", "_best_score",
                          "_no_improvement", "_n_outputs", "_input_size", "_input_kind", "learning_rate_",
                          "_multilabel")

    def __init__(
        self,
        level: str = "word",
        cell: str = "lstm",
        hidden_size: int = 64,
        embedding_dim: int = 32,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        max_length: Optional[int] = 400,
        max_vocab: Optional[int] = 20000,
        min_freq: int = 1,
        lower: bool = True,
        punctuation: str = "split",
        optimizer: str = "adam",
        learning_rate: float = 3e-3,
        momentum: float = 0.9,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        batch_size: int = 32,
        max_epochs: int = 20,
        clip_norm: Optional[float] = 1.0,
        clip_value: Optional[float] = None,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 5,
        tol: float = 1e-4,
        warm_start: bool = False,
        random_state: Optional[int] = None,
        verbose: int = 0,
        n_threads: Optional[int] = None,
        device: str = "cpu",
        lr_schedule: Optional[str] = None,
        class_weight: Optional[Union[str, Mapping[Any, float]]] = None,
    ) -> None:
        super().__init__(
            cell=cell, hidden_size=hidden_size, num_layers=num_layers, bidirectional=bidirectional, dropout=dropout,
            optimizer=optimizer, learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
            weight_decay=weight_decay, batch_size=batch_size, max_epochs=max_epochs, clip_norm=clip_norm,
            clip_value=clip_value, early_stopping=early_stopping, validation_fraction=validation_fraction,
            n_iter_no_change=n_iter_no_change, tol=tol, warm_start=warm_start, random_state=random_state,
            verbose=verbose, n_threads=n_threads, device=device, lr_schedule=lr_schedule,
            class_weight=class_weight,
        )
        del self.output, self.dtype, self.scale_inputs  # fixed for text: the class attributes
        self.level = level
        self.embedding_dim = embedding_dim
        self.max_length = max_length
        self.max_vocab = max_vocab
        self.min_freq = min_freq
        self.lower = lower
        self.punctuation = punctuation

    def _validate_params(self) -> None:
        super()._validate_params()
        _check_text_params(self)
        _check_number(self, "max_length", 1, integer=True, none_ok=True)

    # ------------------------------------------------------------------ hooks of RNNClassifier
    def _check_X(self, X: Any, reset: bool) -> Sequences:
        texts = check_texts(X, name="X")
        if reset:
            self.tokenizer_ = self._make_tokenizer().fit(texts)
            self._input_kind = "text"
            self._input_size = int(self.embedding_dim)
        encoded = [self.tokenizer_.encode(t)[: self.max_length] for t in texts]
        lengths = np.array([max(1, e.size) for e in encoded], dtype=np.int64)  # an empty text reads one <unk>
        x = np.zeros((len(encoded), int(lengths.max())), dtype=np.int64)
        for i, e in enumerate(encoded):
            x[i, : e.size] = e
        return Sequences(x, lengths if (lengths != x.shape[1]).any() else None, "text")

    def _fit_scaler(self, seqs: Sequences, weights: Optional[np.ndarray] = None) -> None:
        """Token ids are not scaled."""

    def _scale_X(self, seqs: Sequences) -> np.ndarray:
        return seqs.x

    def _input_scaling(self) -> tuple:
        return None, None  # token ids

    def _model_spec(self, n_outputs: int) -> Any:
        _checks.check_stack_size(_CELLS[self.cell], int(self._input_size), int(self.hidden_size),
                                 int(self.num_layers), bool(self.bidirectional))
        layer = core.LayerSpec(_CELLS[self.cell], int(self._input_size), int(self.hidden_size), int(self.num_layers),
                               bool(self.bidirectional), True)
        return core.ModelSpec(layer, n_outputs, self._loss, "last", len(self.tokenizer_))

    def _restore_params(self, params: np.ndarray) -> None:
        self.dtype_ = np.dtype(np.float32)
        self._optimizer_state = None
        self._random = self._rng()
        self.__setstate__({"_params_flat": params})

    def _export(self) -> tuple[dict, dict]:
        meta, arrays = super()._export()
        classes = self.classes_
        if classes.dtype == object:
            if not all(isinstance(c, str) for c in classes):
                raise ValueError("save(): classes_ of mixed Python objects cannot be stored without pickle")
            meta["classes_object"] = True
            classes = classes.astype(str)
        arrays["classes"] = classes
        return meta, arrays

    @classmethod
    def _import(cls, meta: dict, arrays: dict) -> "TextClassifier":
        classes = np.asarray(arrays["classes"])
        model = super()._import(meta, arrays)
        model.classes_ = classes.astype(object) if meta.get("classes_object") else classes
        return model

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import InputTags

        tags = super().__sklearn_tags__()
        tags.input_tags = InputTags(one_d_array=True, two_d_array=False, string=True)
        return tags


__all__ = ["TextClassifier"]
