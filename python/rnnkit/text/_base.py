"""What the text models share: tokenizer options, and model files that hold the tokenizer."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _threads
from .._fitting import _CELLS, _check_choice, _check_number
from ..io import _json_value, fitted_value_problem, params_from_portable, portable_params
from .tokenizer import Tokenizer


class _TextModel:
    """Tokenizer options, and model files holding the tokenizer next to the weights."""

    _fitted_attributes: tuple = ()

    def _make_tokenizer(self) -> Tokenizer:
        tok = Tokenizer(level=self.level, max_vocab=self.max_vocab, min_freq=self.min_freq, lower=self.lower,
                        punctuation=self.punctuation)
        tok._validate_params()
        return tok

    def _threads(self) -> int:
        return self.n_threads if self.n_threads is not None else _threads.default_threads()

    def save(self, path: Any) -> None:
        """Save the fitted model to ``path`` (npz + JSON, no pickle); read it with :func:`rnnkit.load`."""
        from ..io import save

        save(self, path)

    def _portable_meta(self) -> dict:
        """The JSON part every text model's file holds: constructor parameters and fitted attributes."""
        self._check_fitted()
        fitted = {k: _json_value(getattr(self, k)) for k in self._fitted_attributes if hasattr(self, k)}
        return {"params": portable_params(self.get_params()), "fitted": fitted}

    @classmethod
    def _from_portable_meta(cls, meta: dict) -> Any:
        """A model built from :meth:`_portable_meta`'s output, its fitted attributes set (weights not yet)."""
        model = cls(**params_from_portable(meta["params"]))
        model._validate_params()
        for key, value in meta["fitted"].items():
            if key not in cls._fitted_attributes:
                raise ValueError(f"unexpected attribute {key!r} in the model file")
            problem = fitted_value_problem(key, value)
            if problem is not None:
                raise ValueError(f"{problem} (in the model file)")
            setattr(model, key, value)
        return model

    def _export(self) -> tuple[dict, dict]:
        """``(meta, arrays)`` for :func:`rnnkit.io.save`."""
        meta = {**self._portable_meta(), "tokenizer": self.tokenizer_._state()}
        return meta, {"params": np.asarray(self._params_flat)}

    @classmethod
    def _import(cls, meta: dict, arrays: dict) -> Any:
        """Rebuild a model from :meth:`_export`'s output (as read back by :func:`rnnkit.load`)."""
        model = cls._from_portable_meta(meta)
        model.tokenizer_ = Tokenizer._from_state(meta["tokenizer"])
        params = np.asarray(arrays["params"])
        if params.dtype != np.float32 or params.ndim != 1 or not np.isfinite(params).all():
            raise ValueError(f"damaged parameters (dtype {params.dtype}, shape {params.shape}; expected finite float32)")
        model._restore_params(params)
        if model._params_flat.size != model._spec.param_count:
            raise ValueError(f"damaged parameters ({params.size} values, the model needs {model._spec.param_count})")
        return model


def _check_text_params(model: Any) -> None:
    _check_choice(model, "cell", _CELLS)
    _check_number(model, "embedding_dim", 1, integer=True)
    model._make_tokenizer()  # validates the tokenizer options
