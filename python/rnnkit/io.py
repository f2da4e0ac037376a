"""rnnkit's portable model format: one ``.npz`` file holding numpy arrays and a JSON header.

No pickle is involved, so a file can be shared and inspected safely. The header names the
format and its version; a file written by a newer format version is refused with a clear
message instead of being misread.

Layout (format version 1): ``meta`` (JSON text: format, format_version, rnnkit_version,
class, params, fitted attributes), ``params`` (the flat parameter buffer: recurrent stack in
PyTorch's state_dict order, then the head's weight and bias), ``x_mean``/``x_scale``,
``classes`` (classifier) or ``y_mean``/``y_scale`` (regressor), ``opt__*`` (optimizer state).
"""

from __future__ import annotations

import json
import numbers
import os
import zipfile
from typing import Any, Union

import numpy as np

from ._version import __version__

FORMAT = "rnnkit-model"
FORMAT_VERSION = 1

_FITTED = ("n_features_in_", "_input_kind", "_input_size", "_n_outputs", "loss_curve_", "validation_scores_",
           "n_iter_", "t_", "best_loss_", "best_validation_score_", "stopped_early_", "_best_loss",
           "_best_score", "_no_improvement", "_y_ndim")

PathLike = Union[str, "os.PathLike[str]"]


def _json_value(value: Any) -> Any:
    if isinstance(value, (np.integer, numbers.Integral)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


def _write(path: PathLike, meta: dict, arrays: dict) -> None:
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "rnnkit_version": __version__, **meta}
    with open(path, "wb") as fh:
        np.savez(fh, meta=np.array(json.dumps(header)), **arrays)


def save(estimator: Any, path: PathLike) -> None:
    """Write a fitted rnnkit model to ``path`` (``.npz``).

    Estimators are written field by field; other models (text, forecasting) provide
    ``_export() -> (meta, arrays)`` and a classmethod ``_import(meta, arrays)``, and are
    recorded under their dotted class name inside the ``rnnkit`` package.
    """
    if hasattr(estimator, "_export") and hasattr(type(estimator), "_import"):
        meta, arrays = estimator._export()
        cls = type(estimator)
        _write(path, {"class": f"{cls.__module__}:{cls.__qualname__}", **meta}, arrays)
        return
    _write(path, *estimator_payload(estimator))


def estimator_payload(estimator: Any) -> tuple:
    """``(meta, arrays)`` for a fitted RNNClassifier / RNNRegressor: what :func:`save` writes.

    Models built on an estimator can store it inside their own ``_export`` with this and
    rebuild it in ``_import`` with :func:`restore_estimator`.
    """
    from .estimators import RNNClassifier, RNNRegressor

    if not isinstance(estimator, (RNNClassifier, RNNRegressor)):
        raise TypeError(f"save() takes a fitted RNNClassifier or RNNRegressor, got {type(estimator).__name__}")
    estimator._check_fitted()
    params = estimator.get_params()
    if not (params["random_state"] is None or isinstance(params["random_state"], numbers.Integral)):
        params["random_state"] = None  # a generator object has no portable form
    fitted = {k: _json_value(getattr(estimator, k)) for k in _FITTED if hasattr(estimator, k)}
    fitted["dtype_"] = estimator.dtype_.name
    if hasattr(estimator, "_random"):  # so that a loaded model trains on exactly as the original would
        fitted["random_state_"] = estimator._random.bit_generator.state
    arrays = {
        "params": np.asarray(estimator._params_flat),
        "x_mean": estimator._x_mean,
        "x_scale": estimator._x_scale,
    }
    if isinstance(estimator, RNNClassifier):
        classes = estimator.classes_
        if classes.dtype == object:
            if not all(isinstance(c, str) for c in classes):
                raise ValueError("save(): classes_ of mixed Python objects cannot be stored without pickle")
            classes = classes.astype(str)
            fitted["classes_object"] = True
        arrays["classes"] = classes
    else:
        arrays["y_mean"] = estimator._y_mean
        arrays["y_scale"] = estimator._y_scale
    if estimator._optimizer_state is not None:
        fitted["optimizer_step_count"] = estimator._optimizer_state["step_count"]
        for i, state in enumerate(estimator._optimizer_state["state"]):
            for key, buf in state.items():
                arrays[f"opt__{i}__{key}"] = buf
    meta = {
        "class": type(estimator).__name__,
        "params": {k: _json_value(v) for k, v in params.items()},
        "fitted": fitted,
    }
    return meta, arrays


def load(path: PathLike) -> Any:
    """Read a model written by :func:`save` (or ``estimator.save``).

    Raises
    ------
    ValueError
        The file is not an rnnkit model, comes from a newer format version, or is damaged.
    """

    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with loaded as f:
            contents = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{path}: not a readable rnnkit model file ({exc})") from exc
    if "meta" not in contents:
        raise ValueError(f"{path}: not an rnnkit model file (no 'meta' entry)")
    try:
        meta = json.loads(str(contents["meta"]))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: damaged header ({exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: damaged header (not a JSON object)")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not an rnnkit model file (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ValueError(
            f"{path}: written with model format version {version} (rnnkit {meta.get('rnnkit_version')}); this "
            f"rnnkit ({__version__}) reads versions up to {FORMAT_VERSION}. Upgrade rnnkit to load it."
        )
    try:
        return _restore(meta, contents, path)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: damaged rnnkit model file ({type(exc).__name__}: {exc})") from exc


def restore_estimator(meta: dict, arrays: dict, path: PathLike = "<model>") -> Any:
    """Rebuild an RNNClassifier / RNNRegressor from :func:`estimator_payload`'s ``(meta, arrays)``."""
    if not (isinstance(meta.get("class"), str) and meta["class"] in ("RNNClassifier", "RNNRegressor")):
        raise ValueError(f"{path}: unknown estimator class {meta.get('class')!r}")
    return _restore(meta, arrays, path)


def _restore(meta: dict, contents: dict, path: PathLike) -> Any:
    """Rebuild the estimator from a checked header and the arrays."""
    from .estimators import RNNClassifier, RNNRegressor

    name = meta.get("class")
    if isinstance(name, str) and ":" in name:  # a model with its own _export / _import
        module, _, qualname = name.partition(":")
        if not (module == "rnnkit" or module.startswith("rnnkit.")):
            raise ValueError(f"{path}: refusing to load class {name!r} from outside rnnkit")
        import importlib

        try:
            cls = getattr(importlib.import_module(module), qualname)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"{path}: unknown model class {name!r}") from exc
        return cls._import(meta, contents)
    classes = {"RNNClassifier": RNNClassifier, "RNNRegressor": RNNRegressor}
    if meta.get("class") not in classes:
        raise ValueError(f"{path}: unknown estimator class {meta.get('class')!r}")
    est = classes[meta["class"]](**meta["params"])
    fitted = dict(meta["fitted"])
    dtype = np.dtype(fitted.pop("dtype_"))
    step_count = fitted.pop("optimizer_step_count", None)
    classes_object = fitted.pop("classes_object", False)
    rng_state = fitted.pop("random_state_", None)
    for key, value in fitted.items():
        setattr(est, key, value)
    est.dtype_ = dtype
    est._x_mean, est._x_scale = contents["x_mean"], contents["x_scale"]
    if meta["class"] == "RNNClassifier":
        est.classes_ = contents["classes"].astype(object) if classes_object else contents["classes"]
    else:
        est._y_mean, est._y_scale = contents["y_mean"], contents["y_scale"]
    params = contents["params"]
    if params.dtype != dtype or not np.isfinite(params).all():
        raise ValueError(f"{path}: damaged parameters (dtype {params.dtype}, expected {dtype}, or non-finite values)")
    state: dict = {"_params_flat": params, "_optimizer_state": None}
    if step_count is not None:
        groups: dict[int, dict] = {}
        for key, buf in contents.items():
            if key.startswith("opt__"):
                _, i, name = key.split("__", 2)
                groups.setdefault(int(i), {})[name] = buf
        state["_optimizer_state"] = {"step_count": step_count, "state": [groups[i] for i in sorted(groups)]}
    if rng_state is not None:
        generator = np.random.Generator(getattr(np.random, rng_state["bit_generator"])())
        generator.bit_generator.state = rng_state
        state["_random"] = generator
    est.__setstate__({**est.__dict__, **state})
    if est._params_flat.size != est._spec.param_count:
        raise ValueError(f"{path}: damaged parameters ({params.size} values, the model needs {est._spec.param_count})")
    return est
