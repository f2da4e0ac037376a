"""rnnkit's portable model format: one ``.npz`` file holding numpy arrays and a JSON header.

No pickle is involved, so a file can be shared and inspected safely. The header names the
format and its version; a file written by a newer format version is refused with a clear
message instead of being misread.

Layout (format version 2): ``meta`` (JSON text: format, format_version, rnnkit_version,
class, params, fitted attributes, ``arrays`` and ``checksum``), ``params`` (the flat parameter
buffer: recurrent stack in PyTorch's state_dict order, then the head's weight and bias),
``x_mean``/``x_scale``, ``classes`` (classifier) or ``y_mean``/``y_scale`` (regressor),
``opt__*`` (optimizer state).

``arrays`` maps every array's name to its dtype and shape, and ``checksum`` is
``"sha256:<hex>"`` over the header's JSON text as stored (the checksum's own value blanked)
and every array's name, dtype, shape and bytes, so that any change to the file after it was
written, to one byte of the header or one bit of a weight, is refused by :func:`load`. Version 1 files (no
``arrays``, no checksum) are still read, with the same consistency checks on their contents.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import zipfile
from typing import IO, Any, Mapping, Optional, Union

import numpy as np

from ._version import __version__

FORMAT = "rnnkit-model"
FORMAT_VERSION = 2

_FITTED = ("n_features_in_", "_input_kind", "_input_size", "_n_outputs", "loss_curve_", "validation_scores_",
           "n_iter_", "t_", "best_loss_", "best_validation_score_", "stopped_early_", "_best_loss",
           "_best_score", "_no_improvement", "_y_ndim", "learning_rate_", "_multilabel")
_FITTED_EXTRA = ("dtype_", "optimizer_step_count", "classes_object", "random_state_")
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")

PathLike = Union[str, "os.PathLike[str]"]


def _json_value(value: Any) -> Any:
    if isinstance(value, (np.integer, numbers.Integral)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


#: Constructor parameters whose value may be a dict keyed by class labels: JSON object keys are
#: strings, so they are stored as lists of [label, value] pairs (integer labels stay integers).
_DICT_PARAMS = ("class_weight",)


def portable_params(params: dict) -> dict:
    """An estimator's ``get_params()`` as JSON values (a random generator object becomes None)."""
    params = dict(params)
    if not (params["random_state"] is None or isinstance(params["random_state"], numbers.Integral)):
        params["random_state"] = None  # a generator object has no portable form
    for name in _DICT_PARAMS:
        if isinstance(params.get(name), Mapping):
            params[name] = [[_json_value(k), _json_value(v)] for k, v in params[name].items()]
    return {k: _json_value(v) for k, v in params.items()}


def params_from_portable(params: dict, path: Any = "<model>") -> dict:
    """:func:`portable_params`'s output back as constructor arguments."""
    params = dict(params)
    for name in _DICT_PARAMS:
        if isinstance(params.get(name), list):
            pairs = params[name]
            _expect(all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], (str, int, float)) for p in pairs),
                    path, f"{name} must be a list of [label, value] pairs")
            params[name] = {label: value for label, value in pairs}
    return params


_PLACEHOLDER = "sha256:" + "0" * 64


def _array_record(arr: np.ndarray) -> list:
    """``[dtype, shape]`` of an array as the header records it."""
    return [arr.dtype.str, list(arr.shape)]


def _checksum(header_text: str, arrays: dict[str, np.ndarray]) -> str:
    """``"sha256:<hex>"`` over the header's JSON text and every array's name, dtype, shape and bytes.

    ``header_text`` is the header exactly as stored, with the checksum's own value replaced
    by ``_PLACEHOLDER``: every byte of the header is covered, whitespace included.
    """
    digest = hashlib.sha256(header_text.encode("utf-8"))
    for name in sorted(arrays):
        arr = arrays[name]
        digest.update(json.dumps([name, *_array_record(arr)]).encode("utf-8"))
        digest.update(np.ascontiguousarray(arr).tobytes())
    return "sha256:" + digest.hexdigest()


def _write(path: PathLike, meta: dict, arrays: dict) -> None:
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    if "meta" in arrays:
        raise ValueError("save(): 'meta' is reserved for the header and cannot name an array")
    for name, arr in arrays.items():
        if arr.dtype.hasobject:
            raise ValueError(f"save(): array {name!r} holds Python objects, which cannot be stored without pickle")
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "rnnkit_version": __version__, **meta,
              "arrays": {name: _array_record(arr) for name, arr in arrays.items()}, "checksum": _PLACEHOLDER}
    text = json.dumps(header)
    cut = text.rindex(_PLACEHOLDER)  # the checksum is the header's last entry
    text = text[:cut] + _checksum(text, arrays) + text[cut + len(_PLACEHOLDER):]
    with open(path, "wb") as fh:
        np.savez(fh, meta=np.array(text), **arrays)


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
        "params": portable_params(estimator.get_params()),
        "fitted": fitted,
    }
    return meta, arrays


def _read_npz(source: Union[PathLike, IO[bytes]]) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` archive, read defensively.

    Each member's ``.npy`` header is parsed first and the data size it implies is compared
    with the member's stored size, so a damaged header can neither allocate unbounded memory
    nor be read short; reading each member to its end also checks the zip's CRC-32.
    """
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(source) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                raise ValueError(f"unexpected archive member {info.filename!r}")
            name = info.filename[: -len(".npy")]
            if name in arrays:
                raise ValueError(f"archive member {info.filename!r} appears twice")
            with archive.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                else:
                    raise ValueError(f"array {name!r}: unsupported .npy version {version}")
                if dtype.hasobject:
                    raise ValueError(f"array {name!r} holds Python objects (pickled data is never loaded)")
                if any(not isinstance(n, int) or n < 0 for n in shape):
                    raise ValueError(f"array {name!r}: invalid shape {shape}")
                size = math.prod(shape) * dtype.itemsize
                available = info.file_size - fh.tell()
                if size != available:
                    raise ValueError(f"array {name!r} declares {size} bytes of data, the archive holds {available}")
                data = bytearray(fh.read(size + 1))  # reads to the member's end: checks the CRC-32
                if len(data) != size:
                    raise ValueError(f"array {name!r} is truncated ({len(data)} of {size} bytes)")
            arr = np.frombuffer(data, dtype=dtype)
            arrays[name] = arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
    return arrays


def load(path: Union[PathLike, IO[bytes]]) -> Any:
    """Read a model written by :func:`save` (or ``estimator.save``).

    Parameters
    ----------
    path : str, path-like or binary file object

    Raises
    ------
    ValueError
        The file is missing, is not an rnnkit model, comes from a newer format version, or is
        damaged: truncated, changed after it was written (checksum), or holding arrays of the
        wrong dtype or shape. The message names the problem.
    """
    try:
        contents = _read_npz(path)
    except MemoryError:
        raise
    except Exception as exc:  # any failure to parse the container is damage
        raise ValueError(f"{path}: not a readable rnnkit model file ({type(exc).__name__}: {exc})") from exc
    if "meta" not in contents:
        raise ValueError(f"{path}: not an rnnkit model file (no 'meta' entry)")
    raw = contents.pop("meta")
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise ValueError(f"{path}: damaged header (a {raw.dtype} array of shape {raw.shape}, expected a JSON string)")
    text = str(raw)
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError, UnicodeError) as exc:
        raise ValueError(f"{path}: damaged header ({type(exc).__name__}: {exc})") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: damaged header (not a JSON object)")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not an rnnkit model file (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise ValueError(
            f"{path}: written with model format version {version} (rnnkit {meta.get('rnnkit_version')}); this "
            f"rnnkit ({__version__}) reads versions up to {FORMAT_VERSION}. Upgrade rnnkit to load it."
        )
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{path}: damaged header (format_version {version!r} is not a valid version)")
    if version >= 2:
        _verify(meta, text, contents, path)
    try:
        return _restore(meta, contents, path)
    except ValueError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError, OverflowError, RecursionError) as exc:
        raise ValueError(f"{path}: damaged rnnkit model file ({type(exc).__name__}: {exc})") from exc


def _verify(meta: dict, text: str, contents: dict[str, np.ndarray], path: Union[PathLike, IO[bytes]]) -> None:
    """Check a version >= 2 file's array records and checksum against its header text and arrays."""
    records = meta.get("arrays")
    checksum = meta.get("checksum")
    if not isinstance(records, dict) or not isinstance(checksum, str):
        raise ValueError(f"{path}: damaged header (no 'arrays' record or no 'checksum')")
    missing = sorted(set(records) - set(contents))
    unexpected = sorted(set(contents) - set(records))
    if missing or unexpected:
        raise ValueError(f"{path}: damaged file: arrays missing {missing}, unexpected arrays {unexpected}")
    for name, arr in contents.items():
        record = _array_record(arr)
        if records[name] != record:
            raise ValueError(
                f"{path}: damaged file: array {name!r} has dtype {record[0]} and shape {tuple(record[1])}, "
                f"the header records {records[name]!r}"
            )
    cut = text.rfind(checksum) if checksum else -1
    actual = _checksum(text[:cut] + _PLACEHOLDER + text[cut + len(checksum):], contents) if cut >= 0 else None
    if actual != checksum:
        raise ValueError(
            f"{path}: checksum mismatch: the file was changed or damaged after it was written "
            f"(header says {checksum[:20]!r}..., contents give {str(actual)[:20]!r}...)"
        )


def restore_estimator(meta: dict, arrays: dict, path: PathLike = "<model>") -> Any:
    """Rebuild an RNNClassifier / RNNRegressor from :func:`estimator_payload`'s ``(meta, arrays)``."""
    if not (isinstance(meta, dict) and isinstance(meta.get("class"), str)
            and meta["class"] in ("RNNClassifier", "RNNRegressor")):
        raise ValueError(f"{path}: unknown estimator class {meta.get('class') if isinstance(meta, dict) else meta!r}")
    return _restore(meta, arrays, path)


def _expect(condition: bool, path: Any, message: str) -> None:
    if not condition:
        raise ValueError(f"{path}: damaged rnnkit model file ({message})")


def _float_vector(contents: dict, name: str, size: int, path: Any, positive: bool = False) -> np.ndarray:
    """``contents[name]`` checked to be a finite float64 vector of ``size`` values."""
    arr = contents[name]
    _expect(arr.dtype == np.float64 and arr.shape == (size,), path,
            f"array {name!r} has dtype {arr.dtype} and shape {arr.shape}, expected float64 ({size},)")
    _expect(bool(np.isfinite(arr).all()) and (not positive or bool((arr > 0).all())), path,
            f"array {name!r} holds {'non-positive or ' if positive else ''}non-finite values")
    return arr


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def fitted_value_problem(key: str, value: Any) -> Optional[str]:
    """What is wrong with a stored fitted attribute that training reads back (the estimators'
    and the text models' files), or None."""
    if key == "learning_rate_" and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                        and math.isfinite(value) and value >= 0):
        return f"learning_rate_ {value!r} is not a finite number >= 0"
    if key in ("_multilabel", "reverse_source_") and not isinstance(value, bool):
        return f"{key} {value!r} is not a bool"
    return None


def _restore(meta: dict, contents: dict, path: PathLike) -> Any:
    """Rebuild the model from a checked header and the arrays."""
    from .estimators import RNNClassifier, RNNRegressor

    name = meta.get("class")
    if isinstance(name, str) and ":" in name:  # a model with its own _export / _import
        module, _, qualname = name.partition(":")
        parts = module.split(".")
        if parts[0] != "rnnkit" or any(not p.isidentifier() or p.startswith("__") for p in parts):
            raise ValueError(f"{path}: refusing to load class {name!r} from outside rnnkit's modules")
        import importlib

        try:
            cls = getattr(importlib.import_module(module), qualname)
        except (ImportError, AttributeError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: unknown model class {name!r}") from exc
        if not (isinstance(cls, type) and hasattr(cls, "_import")):
            raise ValueError(f"{path}: {name!r} is not an rnnkit model class")
        return cls._import(meta, contents)
    classes = {"RNNClassifier": RNNClassifier, "RNNRegressor": RNNRegressor}
    if meta.get("class") not in classes:
        raise ValueError(f"{path}: unknown estimator class {meta.get('class')!r}")
    _expect(isinstance(meta.get("params"), dict) and isinstance(meta.get("fitted"), dict), path,
            "'params' and 'fitted' must be JSON objects")
    est = classes[meta["class"]](**params_from_portable(meta["params"], path))
    est._validate_params()
    fitted = dict(meta["fitted"])
    unknown = sorted(set(fitted) - set(_FITTED) - set(_FITTED_EXTRA))
    _expect(not unknown, path, f"unexpected fitted attributes {unknown}")
    dtype = np.dtype(fitted.pop("dtype_"))
    _expect(dtype in (np.float32, np.float64), path, f"dtype_ {dtype} is not float32 or float64")
    step_count = fitted.pop("optimizer_step_count", None)
    classes_object = fitted.pop("classes_object", False)
    rng_state = fitted.pop("random_state_", None)
    input_size, n_outputs = fitted.get("_input_size"), fitted.get("_n_outputs")
    _expect(_whole(input_size, 1) and _whole(n_outputs, 1) and _whole(fitted.get("n_features_in_"), 1), path,
            "_input_size, _n_outputs and n_features_in_ must be positive integers")
    _expect(fitted.get("_input_kind") in ("2d", "3d", "list"), path, f"unknown input kind {fitted.get('_input_kind')!r}")
    _expect(meta["class"] == "RNNClassifier" or "_multilabel" not in fitted, path, "only a classifier has _multilabel")
    for key, value in fitted.items():
        problem = fitted_value_problem(key, value)
        _expect(problem is None, path, str(problem))
        setattr(est, key, value)
    est.dtype_ = dtype
    est._x_mean = _float_vector(contents, "x_mean", input_size, path)
    est._x_scale = _float_vector(contents, "x_scale", input_size, path, positive=True)
    if meta["class"] == "RNNClassifier":
        labels = contents["classes"]
        _expect(labels.ndim == 1 and labels.size == n_outputs and n_outputs >= 2, path,
                f"'classes' has shape {labels.shape}, the model has {n_outputs} outputs")
        _expect(bool(np.all(labels[:-1] < labels[1:])), path, "'classes' is not sorted and unique")
        _expect(not fitted.get("_multilabel") or np.array_equal(labels, np.arange(n_outputs)), path,
                "a multi-label model's 'classes' must be its label columns 0..n-1")
        est.classes_ = labels.astype(object) if classes_object else labels
    else:
        _expect(fitted.get("_y_ndim") in (1, 2) and (fitted.get("_y_ndim") == 2 or n_outputs == 1), path,
                f"_y_ndim {fitted.get('_y_ndim')!r} does not fit {n_outputs} outputs")
        est._y_mean = _float_vector(contents, "y_mean", n_outputs, path)
        est._y_scale = _float_vector(contents, "y_scale", n_outputs, path, positive=True)
    params = contents["params"]
    if params.dtype != dtype or params.ndim != 1 or not np.isfinite(params).all():
        raise ValueError(f"{path}: damaged parameters (dtype {params.dtype}, shape {params.shape}, expected a "
                         f"finite {dtype} vector)")
    spec = est._model_spec(n_outputs)
    if params.size != spec.param_count:
        raise ValueError(f"{path}: damaged parameters ({params.size} values, the model needs {spec.param_count})")
    state: dict = {"_params_flat": params, "_optimizer_state": None}
    if step_count is not None:
        _expect(_whole(step_count, 0), path, f"optimizer_step_count {step_count!r} is not a count")
        groups: dict[int, dict] = {}
        for key, buf in contents.items():
            if key.startswith("opt__"):
                _, i, buffer_name = key.split("__", 2)
                _expect(buf.shape == params.shape and buf.dtype == params.dtype and bool(np.isfinite(buf).all()),
                        path, f"optimizer buffer {key!r} has dtype {buf.dtype} and shape {buf.shape}, expected "
                        f"finite {params.dtype} {params.shape}")
                groups.setdefault(int(i), {})[buffer_name] = buf
        _expect(sorted(groups) == list(range(len(groups))), path, "optimizer buffers are not numbered 0..n-1")
        state["_optimizer_state"] = {"step_count": step_count, "state": [groups[i] for i in sorted(groups)]}
    if rng_state is not None:
        _expect(isinstance(rng_state, dict) and rng_state.get("bit_generator") in _BIT_GENERATORS, path,
                "random_state_ does not name a numpy bit generator")
        generator = np.random.Generator(getattr(np.random, rng_state["bit_generator"])())
        generator.bit_generator.state = rng_state
        state["_random"] = generator
    est.__setstate__({**est.__dict__, **state})
    if state["_optimizer_state"] is not None:
        est._make_optimizer()  # checks the buffers against the optimizer's (ValueError / KeyError)
    return est
