"""Fuzz harness over rnnkit's public entry points (atheris / libFuzzer).

Each input is a byte string that ``one_input`` decodes with a small, self-contained reader
(no atheris needed to replay it) into one call sequence against one entry point:

- ``construct``: ``LSTM`` / ``GRU`` / ``RNN`` with random (often invalid) arguments;
- ``forward``, ``backward``, ``step``: a small valid layer fed arrays of random shapes, dtypes,
  strides (non-contiguous, reversed, zero-stride, unaligned, read-only views), NaN/Inf,
  lengths and states;
- ``load_state_dict``: state dicts with missing, extra, mis-shaped, mis-typed or non-finite entries;
- ``load``: ``rnnkit.load`` on raw bytes, on a real model file with bytes changed, and on
  version-1 files (no checksum) with a changed header or array;
- ``estimator``: ``RNNClassifier`` / ``RNNRegressor`` fit and predict on tiny data.

Every input must end in a result or in ValueError / TypeError / MemoryError with a message;
anything else escapes ``one_input`` and is a finding. Inputs that found bugs are kept in
``tests/fuzz/corpus/`` and replayed by ``tests/test_fuzz_corpus.py`` in the normal suite.

Run (``pip install atheris``)::

    python tests/fuzz/fuzz_rnnkit.py -runs=3000 -seed=1           # short seeded run (CI)
    python tests/fuzz/fuzz_rnnkit.py -max_total_time=600 corpus_dir/  # longer, keeping a corpus

Any libFuzzer flag passes through. Under the sanitizer build (README: Reliability) run it with
``LD_PRELOAD=$(c++ -print-file-name=libasan.so)`` and
``ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1`` (so that a huge allocation is a
MemoryError, as without the sanitizer, instead of an abort).
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import sys
import tempfile
import warnings
from typing import Any, Callable, Optional, Sequence

import numpy as np

ALLOWED = (ValueError, TypeError, MemoryError)


class Finding(AssertionError):
    """An input whose outcome breaks the contract (not an exception of the entry point itself)."""


class Reader:
    """Decodes a byte string into choices and numbers; reads zeros once the bytes run out.

    Parameters
    ----------
    data : bytes
        The fuzzer's input.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        """The next ``n`` bytes, zero-padded past the end."""
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk + b"\0" * (n - len(chunk))

    def rest(self) -> bytes:
        """Every byte not read yet."""
        chunk = self.data[self.pos :]
        self.pos = len(self.data)
        return chunk

    def int(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi] (``lo`` when the range is empty)."""
        if hi <= lo:
            return lo
        span = hi - lo + 1
        width = 1 if span <= 1 << 8 else 2 if span <= 1 << 16 else 4 if span <= 1 << 32 else 8
        return lo + int.from_bytes(self.take(width), "little") % span

    def bool(self) -> bool:
        return bool(self.int(0, 1))

    def chance(self, eighths: int) -> bool:
        """True with probability ``eighths``/8."""
        return self.int(0, 7) < eighths

    def choice(self, options: Sequence[Any]) -> Any:
        return options[self.int(0, len(options) - 1)]

    def float(self) -> float:
        """A float64: special values half the time, else any bit pattern."""
        if self.bool():
            return self.choice(SPECIAL_FLOATS)
        return struct.unpack("<d", self.take(8))[0]


SPECIAL_FLOATS = (0.0, -0.0, 1.0, -1.0, 0.5, 1e-3, 1e3, 1e-310, 1e30, 1e300, -1e300, math.inf, -math.inf, math.nan)
WEIRD = (None, -1, 0, 1, 2, 3, 2**31, 2**40, 2**63, -(2**63), 2**70, 1.5, math.nan, math.inf, True, False, "1", b"x", [],
         {}, (1,), np.int64(2), np.int32(-3), np.uint64(2**64 - 1), np.float32(1.0), np.bool_(True), object())
DTYPES = (np.float16, np.float32, np.float64, np.longdouble, np.int8, np.int32, np.int64, np.uint64, np.bool_,
          np.complex64, object, "U3", "S2", "datetime64[s]")


def maybe_weird(r: Reader, value: Any, eighths: int = 1) -> Any:
    """``value``, or (with probability ``eighths``/8) a value of a wrong type or range."""
    return r.choice(WEIRD) if r.chance(eighths) else value


# ---------------------------------------------------------------------------------- arrays
def make_array(r: Reader, shape: tuple, dtype: Any) -> Any:
    """An array-like near ``shape`` / ``dtype``: often exactly that, else a perturbed shape, another
    dtype, non-finite values, a non-contiguous / reversed / zero-stride / unaligned / read-only
    view, a nested list or a non-array."""
    if r.chance(1) and r.chance(2):
        return r.choice(WEIRD)
    shape = tuple(shape)
    if r.chance(2):
        kind = r.int(0, 2)
        if kind == 0 and shape:  # one axis off by one
            axis = r.int(0, len(shape) - 1)
            shape = shape[:axis] + (max(0, shape[axis] + r.choice((-1, 1))),) + shape[axis + 1 :]
        elif kind == 1:  # a random rank and random (small) sizes
            shape = tuple(r.int(0, 4) for _ in range(r.int(0, 4)))
        else:  # one axis added or dropped
            shape = shape[1:] if shape and r.bool() else (1,) + shape
    if r.chance(2):
        dtype = r.choice(DTYPES)
    seed = r.int(0, 2**16 - 1)
    scale = r.choice((1.0, 1.0, 1e-30, 1e3, 1e30, 1e300))
    values = np.asarray(np.random.default_rng(seed).standard_normal(shape) * scale)
    if values.size and r.chance(1):
        values.flat[r.int(0, values.size - 1)] = r.choice((math.nan, math.inf, -math.inf, 1e300, -1e300))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            arr = values.astype(dtype)
        except (TypeError, ValueError):
            arr = values
    return _layout(r, arr)


def _layout(r: Reader, arr: np.ndarray) -> Any:
    """``arr``, or the same values in another memory layout or container."""
    kind = r.choice(("plain",) * 6 + ("fortran", "strided", "reversed", "broadcast", "readonly", "unaligned",
                                      "list", "scalar0d"))
    if kind == "fortran":
        return np.asfortranarray(arr)
    if kind == "strided" and arr.ndim:
        big = np.repeat(arr, 2, axis=arr.ndim - 1)
        return big[..., ::2]
    if kind == "reversed" and arr.ndim:
        return np.ascontiguousarray(arr[::-1])[::-1]
    if kind == "broadcast" and arr.ndim and arr.shape[0]:
        return np.broadcast_to(arr[:1], arr.shape)
    if kind == "readonly":
        arr = arr.copy()
        arr.flags.writeable = False
        return arr
    if kind == "unaligned" and arr.dtype.kind in "fiucb" and arr.dtype.itemsize > 1:
        raw = np.zeros(arr.nbytes + 1, dtype=np.uint8)
        view = raw[1:].view(arr.dtype).reshape(arr.shape)
        view[...] = arr
        return view
    if kind == "list" and arr.dtype != object:
        return arr.tolist()
    if kind == "scalar0d":
        return np.asarray(arr.flat[0] if arr.size else 0.0)
    return arr


# ---------------------------------------------------------------------------------- layers
def _rnnkit():
    import rnnkit

    return rnnkit


def small_layer(r: Reader, unidirectional: bool = False) -> Any:
    """A valid small layer (sizes 1-4) of a random cell and options."""
    rnnkit = _rnnkit()
    cell = r.choice(("lstm", "gru", "rnn_tanh", "rnn_relu"))
    kw = dict(num_layers=r.int(1, 2), bias=r.chance(6), batch_first=r.bool(),
              dropout=r.choice((0.0, 0.0, 0.5)), bidirectional=False if unidirectional else r.bool(),
              dtype=r.choice(("float32", "float64")), seed=r.int(0, 255), n_threads=r.int(1, 2))
    D, H = r.int(1, 4), r.int(1, 4)
    if cell.startswith("rnn"):
        return rnnkit.RNN(D, H, nonlinearity=cell[4:], **kw)
    return {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU}[cell](D, H, **kw)


def _x_shape(layer: Any, r: Reader) -> tuple:
    T, B = r.int(1, 4), r.int(1, 3)
    if r.chance(1):
        return (T, layer.input_size)  # unbatched
    return (B, T, layer.input_size) if layer.batch_first else (T, B, layer.input_size)


def _batch_and_steps(layer: Any, x: Any) -> tuple:
    shape = np.shape(x) if isinstance(x, (np.ndarray, list)) else ()
    if len(shape) == 3:
        return (shape[0], shape[1]) if layer.batch_first else (shape[1], shape[0])
    if len(shape) == 2:
        return 1, shape[0]
    return 1, 1


def make_state(r: Reader, layer: Any, batch: int, unbatched: bool = False, layers: Optional[int] = None) -> Any:
    """None, or an initial state near the right shape (a tuple for LSTM)."""
    if r.chance(3):
        return None
    n = layers if layers is not None else layer.num_layers * (2 if layer.bidirectional else 1)
    shape = (n, layer.hidden_size) if unbatched else (n, batch, layer.hidden_size)
    h = make_array(r, shape, layer.dtype)
    if layer._mode != "lstm" and not r.chance(1):
        return h
    c = None if r.chance(1) else make_array(r, shape, layer.dtype)
    return r.choice(((h, c), [h, c], (h,), (h, c, h), h))


def make_lengths(r: Reader, batch: int, steps: int) -> Any:
    if r.chance(4):
        return None
    lengths = [r.int(1, steps) for _ in range(batch)]
    if lengths and r.chance(2):
        lengths[r.int(0, batch - 1)] = r.choice((0, -1, steps + 1, 2**40, -(2**63)))
    if r.chance(2):
        lengths = lengths[: r.int(0, batch)] + [1] * r.int(0, 1)
    form = r.choice(("list", "int64", "int8", "uint64", "float", "tuple", "weird"))
    if form == "list":
        return lengths
    if form == "tuple":
        return tuple(lengths)
    if form == "float":
        return np.asarray(lengths, dtype=np.float64)
    if form == "weird":
        return r.choice(WEIRD)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _layout(r, np.asarray(lengths).astype(form))
        except OverflowError:
            return lengths


# --------------------------------------------------------------------------------- targets
def t_construct(r: Reader) -> None:
    rnnkit = _rnnkit()
    cls = r.choice((rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN))
    args = [maybe_weird(r, r.int(1, 4), 2), maybe_weird(r, r.int(1, 4), 2)]
    kw = {}
    for name, value in (("num_layers", r.int(1, 3)), ("bias", r.bool()), ("batch_first", r.bool()),
                        ("dropout", r.choice((0.0, 0.3))), ("bidirectional", r.bool()),
                        ("dtype", r.choice(("float32", "float64", np.float32))), ("seed", r.int(0, 9)),
                        ("n_threads", r.int(1, 2))):
        if r.bool():
            kw[name] = maybe_weird(r, value, 2)
    if r.chance(1):
        kw[r.choice(("nonlinearity", "dtype", "dropout", "seed", "n_threads", "bogus"))] = r.choice(
            ("relu", "tanh", "float16", "int32", -0.5, 1.0, math.nan, -1, 2**70, 0) + WEIRD[:6])
    layer = cls(*args, **kw)
    repr(layer)
    sd = layer.state_dict()
    assert all(np.isfinite(v).all() for v in sd.values())


def t_forward(r: Reader) -> None:
    layer = small_layer(r)
    x = make_array(r, _x_shape(layer, r), layer.dtype)
    batch, steps = _batch_and_steps(layer, x)
    state = make_state(r, layer, batch, unbatched=np.ndim(x) == 2 if isinstance(x, np.ndarray) else False)
    lengths = make_lengths(r, batch, steps)
    training = maybe_weird(r, r.bool())
    out, final = layer.forward(x, state=state, lengths=lengths, training=training)
    if _moderate(x, state):
        _check_finite(out, final)


def t_backward(r: Reader) -> None:
    layer = small_layer(r)
    shape = _x_shape(layer, r)
    x = np.random.default_rng(r.int(0, 255)).standard_normal(shape).astype(layer.dtype)
    batch, steps = _batch_and_steps(layer, x)
    if r.chance(7):
        layer.forward(x, lengths=make_lengths(r, batch, steps) if r.chance(2) else None, training=r.chance(7))
    action = r.int(0, 7)
    if action == 0:
        layer.load_state_dict(layer.state_dict())  # invalidates the tape
    elif action == 1:
        layer.forward(x)  # an inference forward in between
    out_shape = shape[:-1] + ((2 if layer.bidirectional else 1) * layer.hidden_size,)
    grad_out = None if r.chance(1) else make_array(r, out_shape, layer.dtype)
    grad_state = make_state(r, layer, batch, unbatched=len(shape) == 2)
    grad_x, grad_h0 = layer.backward(grad_out, grad_state=grad_state, accumulate=maybe_weird(r, r.bool()))
    if _moderate(grad_out, grad_state):
        _check_finite(grad_x, grad_h0, layer.grads)


def t_step(r: Reader) -> None:
    layer = small_layer(r, unidirectional=r.chance(7))
    B = r.int(1, 3)
    unbatched = r.chance(2)
    x = make_array(r, (layer.input_size,) if unbatched else (B, layer.input_size), layer.dtype)
    state = make_state(r, layer, B, unbatched=unbatched, layers=layer.num_layers)
    moderate = _moderate(x, state)
    for _ in range(r.int(1, 3)):
        y, state = layer.step(x, state)
        if moderate:
            _check_finite(y, state)


def t_load_state_dict(r: Reader) -> None:
    layer = small_layer(r)
    sd: Any = layer.state_dict()
    for _ in range(r.int(0, 3)):
        names = sorted(sd)
        action = r.int(0, 4)
        if action == 0 and names:
            del sd[r.choice(names)]
        elif action == 1:
            sd[r.choice(("weight_ih_l9", "bias", "", "weight_ih_l0_reverse"))] = np.zeros(3)
        elif names:
            name = r.choice(names)
            sd[name] = make_array(r, np.shape(sd[name]), layer.dtype)
    if r.chance(1):
        sd = r.choice((list(sd.items()), None, 3, "weights", [("weight_ih_l0", np.zeros(1))]))
    layer.load_state_dict(sd, strict=maybe_weird(r, r.bool()) if r.chance(2) else True)
    out, _ = layer.forward(np.ones((2, 1, layer.input_size), layer.dtype))
    if _moderate(layer.flat_params):
        _check_finite(out)


_TEMPLATE: dict = {}


def _template() -> tuple:
    """A small fitted classifier's file bytes and contents (built once)."""
    if not _TEMPLATE:
        rnnkit = _rnnkit()
        rng = np.random.default_rng(0)
        X = rng.standard_normal((12, 3, 2))
        y = np.array(["a", "b"])[np.arange(12) % 2]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = rnnkit.RNNClassifier(hidden_size=2, max_epochs=1, batch_size=4, random_state=0, n_threads=1).fit(X, y)
        with tempfile.TemporaryDirectory() as tmp:
            clf.save(os.path.join(tmp, "template.npz"))
            with open(os.path.join(tmp, "template.npz"), "rb") as fh:
                data = fh.read()
        with np.load(io.BytesIO(data)) as f:
            contents = {k: f[k] for k in f.files}
        _TEMPLATE.update(data=data, contents=contents, X=X)
    return _TEMPLATE["data"], _TEMPLATE["contents"], _TEMPLATE["X"]


def _edit_json(r: Reader, node: Any, depth: int = 0) -> Any:
    """``node`` with one value somewhere inside it replaced."""
    if isinstance(node, dict) and node and depth < 4 and r.chance(6):
        key = r.choice(sorted(node))
        return {**node, key: _edit_json(r, node[key], depth + 1)}
    if isinstance(node, list) and node and depth < 4 and r.chance(5):
        i = r.int(0, len(node) - 1)
        return node[:i] + [_edit_json(r, node[i], depth + 1)] + node[i + 1 :]
    return r.choice((None, 0, -1, 1, 2, 3, 2**31, 2**63, -(2**70), 0.5, 1e308, "", "lstm", "float16", "3d",
                     "rnnkit.__main__:X", "rnnkit.io:load", [], [1, 2], {}, {"bit_generator": "seed"}, True, False,
                     "PCG64", [[[]]], "x" * 40))


def t_load(r: Reader) -> None:
    rnnkit = _rnnkit()
    mode = r.int(0, 2)
    if mode == 0:
        data = r.rest()
    elif mode == 1:
        data = bytearray(_template()[0])
        for _ in range(r.int(1, 4)):
            action, pos = r.int(0, 3), r.int(0, len(data))
            if action == 0:
                del data[pos:]
            elif action == 1 and pos < len(data):
                data[pos] ^= r.int(1, 255)
            elif action == 2:
                data[pos:pos] = r.take(r.int(1, 8))
            else:
                del data[pos : pos + r.int(1, 8)]
        data = bytes(data)
    else:
        _, contents, _ = _template()
        meta = json.loads(str(contents["meta"]))
        meta["format_version"] = 1
        del meta["arrays"], meta["checksum"]
        arrays = {k: v for k, v in contents.items() if k != "meta"}
        for _ in range(r.int(1, 3)):
            if r.chance(5):
                meta = _edit_json(r, meta)
            else:
                name = r.choice(sorted(arrays) + ["bogus", "opt__7__x"])
                arrays[name] = make_array(r, np.shape(arrays.get(name, np.zeros(3))),
                                          arrays[name].dtype if name in arrays else np.float64)
                if not isinstance(arrays[name], np.ndarray) or arrays[name].dtype == object:
                    arrays[name] = np.zeros(2)
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(meta)), **arrays)
        data = buf.getvalue()
    model = rnnkit.load(io.BytesIO(data))
    model.predict(_template()[2])


def t_estimator(r: Reader) -> None:
    rnnkit = _rnnkit()
    classifier = r.bool()
    output = r.choice(("last", "last", "sequence"))
    kw: dict = dict(cell=r.choice(("lstm", "gru", "rnn", "rnn_relu")), hidden_size=r.int(1, 3), output=output,
                    max_epochs=r.int(1, 2), batch_size=r.int(1, 8), random_state=r.int(0, 9), n_threads=1)
    for name, value in (("num_layers", r.int(1, 2)), ("bidirectional", r.bool()), ("dropout", 0.5),
                        ("optimizer", r.choice(("adam", "adamw", "sgd", "rmsprop"))),
                        ("learning_rate", r.choice((1e-3, 0.1, 1e3, 1e30))), ("clip_norm", r.choice((None, 1.0))),
                        ("clip_value", r.choice((None, 0.1))), ("early_stopping", r.bool()),
                        ("dtype", r.choice(("float32", "float64"))), ("validation_fraction", 0.3),
                        ("warm_start", r.bool())):
        if r.chance(2):
            kw[name] = maybe_weird(r, value, 1 if r.chance(2) else 0)
    est = (rnnkit.RNNClassifier if classifier else rnnkit.RNNRegressor)(**kw)
    n, T, D = r.int(2, 6), r.int(1, 4), r.int(1, 2)
    X = _estimator_X(r, n, T, D)
    y = _estimator_y(r, classifier, output, n, T)
    est.fit(X, y)
    for _ in range(r.int(1, 2)):
        X2 = _estimator_X(r, r.int(1, 4), r.int(1, 4), D if r.chance(6) else D + 1)
        pred = est.predict(X2)
        if not classifier:
            _check_finite(pred, None)
        if classifier and r.bool():
            _check_finite(est.predict_proba(X2), None)
    if r.chance(2):
        _stream(r, est, classifier, D)
    if r.chance(2):
        est.partial_fit(X, y)


def _stream(r: Reader, est: Any, classifier: bool, D: int) -> None:
    """predict_step / predict_proba_step on fuzzed steps and states (the fused compiled step)."""
    layer = est.rnn_  # for the state's shapes
    state: Any = None
    for _ in range(r.int(1, 3)):
        B = r.int(1, 3)
        unbatched = r.chance(3)
        shape = (D if r.chance(6) else D + 1,) if unbatched else (B, D)
        x_t = make_array(r, shape, r.choice((np.float64, np.float32, est.dtype_)))
        if state is None or r.chance(2):
            state = make_state(r, layer, B, unbatched=unbatched)
        step = est.predict_proba_step if classifier and r.bool() else est.predict_step
        moderate = _moderate(x_t, state)
        out, state = step(x_t, state)
        if moderate:
            _check_finite(out, state)


def _estimator_X(r: Reader, n: int, T: int, D: int) -> Any:
    form = r.choice(("3d", "3d", "2d", "ragged"))
    fuzzed = r.chance(2)
    rng = np.random.default_rng(r.int(0, 99))

    def seq(shape: tuple) -> Any:
        return make_array(r, shape, np.float64) if fuzzed and r.chance(3) else rng.standard_normal(shape)

    if form == "ragged":
        return [seq((r.int(1, T), D) if r.chance(6) else (r.int(1, T),)) for _ in range(n)]
    return seq((n, T, D) if form == "3d" else (n, T))


def _estimator_y(r: Reader, classifier: bool, output: str, n: int, T: int) -> Any:
    shape = (n,) if output == "last" else (n, T)
    if r.chance(1):
        return make_array(r, shape, np.float64)
    if classifier:
        labels = r.choice((np.array([0, 1, 2]), np.array(["a", "b"]), np.array([0.0, 1.0]), np.array([True, False])))
        return labels[np.arange(math.prod(shape)).reshape(shape) % labels.size]
    return np.random.default_rng(r.int(0, 99)).standard_normal(shape)


def _moderate(*values: Any) -> bool:
    """Whether every number in ``values`` (arrays, lists, tuples, None) is finite and at most 1e6 in
    magnitude: inputs whose results must then be finite (larger ones may overflow, as in IEEE)."""
    for value in values:
        if value is None:
            continue
        if isinstance(value, (tuple, list)) and not all(isinstance(v, (int, float)) for v in value):
            if not _moderate(*value):
                return False
            continue
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            continue  # rejected as input anyway
        if arr.size and not (np.isfinite(arr).all() and np.abs(arr).max() <= 1e6):
            return False
    return True


def _check_finite(*results: Any) -> None:
    """Finite inputs must give finite outputs (anything else is a finding, not an error)."""
    for value in results:
        parts = value.values() if isinstance(value, dict) else value if isinstance(value, (tuple, list)) else (value,)
        for part in parts:
            if isinstance(part, np.ndarray) and part.dtype.kind == "f" and not np.isfinite(part).all():
                raise Finding(f"non-finite result of shape {part.shape}")


TARGETS: tuple[Callable[[Reader], None], ...] = (t_construct, t_forward, t_backward, t_step, t_load_state_dict,
                                                  t_load, t_estimator)


def one_input(data: bytes) -> None:
    """Run one fuzz input; raises (a finding) unless it ends in a result or an allowed error."""
    r = Reader(data)
    target = r.choice(TARGETS)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            target(r)
        except ALLOWED as exc:
            if not str(exc).strip():
                raise Finding(f"{target.__name__}: {type(exc).__name__} without a message") from exc


def _instrument(atheris: Any) -> int:
    """Add atheris's coverage instrumentation to every function of rnnkit and of this harness.

    (``atheris.instrument_imports`` misses packages loaded through an editable install's import
    hook, and ``atheris.instrument_all`` takes minutes on numpy and scikit-learn.)
    """
    import gc
    import types

    count = 0
    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType):
            module = getattr(obj, "__module__", None) or ""
            if module == __name__ or module == "rnnkit" or module.startswith("rnnkit."):
                atheris.instrument_func(obj)
                count += 1
    return count


def main(argv: list[str]) -> None:
    try:
        import atheris
    except ImportError:  # pragma: no cover - the harness needs the fuzzing engine; replay does not
        sys.exit("fuzz_rnnkit.py needs atheris: pip install atheris")
    import rnnkit  # noqa: F401
    import rnnkit.estimators  # noqa: F401
    import rnnkit.io  # noqa: F401

    _template()
    print(f"INFO: instrumented {_instrument(atheris)} functions of rnnkit and the harness", file=sys.stderr)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
