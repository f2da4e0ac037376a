"""Damaged model files: ``rnnkit.load`` refuses every one with a ValueError naming the problem.

A real saved model (classifier with optimizer state) is damaged in seeded ways: truncated at
every byte, bytes flipped inside the header and the arrays (as stored, where the zip's CRC-32
also sees them, and re-packed into a valid archive, where only the format's checksum does),
arrays of the wrong shape or dtype, newer format versions. Each must raise ValueError, never
another exception and never a silently different model.
"""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import rnnkit
import rnnkit.io

N_FLIPS = 250  # per kind of flip; with the truncations this tries well over 1,000 corruptions


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((24, 5, 2))
    y = np.array(["a", "b", "c"])[rng.integers(0, 3, 24)]
    clf = rnnkit.RNNClassifier(hidden_size=4, max_epochs=2, batch_size=8, random_state=0, n_threads=1).fit(X, y)
    path = tmp_path_factory.mktemp("model") / "model.npz"
    clf.save(path)
    return clf, path.read_bytes(), X


def _members(data: bytes) -> dict[str, tuple[int, int]]:
    """name -> (start, end) of each member's stored bytes (the .npy file) in the archive."""
    spans = {}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            local = data[info.header_offset : info.header_offset + 30]
            name_len = int.from_bytes(local[26:28], "little")
            extra_len = int.from_bytes(local[28:30], "little")
            start = info.header_offset + 30 + name_len + extra_len
            spans[info.filename[:-4]] = (start, start + info.compress_size)
    return spans


def _contents(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _pack(contents: dict[str, np.ndarray]) -> bytes:
    """A valid archive (correct CRCs) of ``contents``: damage only the format itself can see."""
    buf = io.BytesIO()
    np.savez(buf, **contents)
    return buf.getvalue()


def _refused(data: bytes, match: str | None = None) -> str:
    """Load ``data``; it must raise ValueError (matching ``match``) with a message. Returns it."""
    try:
        rnnkit.load(io.BytesIO(data))
    except ValueError as exc:
        message = str(exc)
        assert message.strip()
        if match is not None:
            assert match in message, message
        return message
    raise AssertionError("a damaged model file was loaded")


def _same_model(a, b, X) -> None:
    np.testing.assert_array_equal(a._params_flat, b._params_flat)
    np.testing.assert_array_equal(a.classes_, b.classes_)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.get_params() == b.get_params()


def test_the_intact_file_loads_and_is_checked(saved):
    clf, data, X = saved
    meta = json.loads(str(_contents(data)["meta"]))
    assert meta["format_version"] == rnnkit.io.FORMAT_VERSION == 2
    assert meta["checksum"].startswith("sha256:") and len(meta["checksum"]) == 7 + 64
    assert set(meta["arrays"]) == set(_contents(data)) - {"meta"}
    _same_model(rnnkit.load(io.BytesIO(data)), clf, X)
    _same_model(rnnkit.load(_pack(_contents(data)) and io.BytesIO(_pack(_contents(data)))), clf, X)


def test_truncated_at_every_byte(saved):
    _, data, _ = saved
    for cut in range(len(data)):
        _refused(data[:cut])


def _flip_in_place(data: bytes, lo: int, hi: int, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    pos = int(rng.integers(lo, hi))
    b[pos] ^= int(rng.integers(1, 256))
    return bytes(b)


@pytest.mark.parametrize("member", ["meta", "arrays"])
def test_flipped_byte_in_place(saved, member):
    """One byte of the header / of an array's .npy bytes changed where it lies in the file."""
    _, data, _ = saved
    spans = _members(data)
    rng = np.random.default_rng(1 if member == "meta" else 2)
    names = ["meta"] if member == "meta" else [n for n in spans if n != "meta"]
    for _ in range(N_FLIPS):
        lo, hi = spans[names[int(rng.integers(len(names)))]]
        _refused(_flip_in_place(data, lo, hi, rng))


def test_flipped_byte_in_header_text_repacked(saved):
    """One character of the JSON header changed and the archive rebuilt: the checksum sees it,
    whitespace included."""
    _, data, _ = saved
    contents = _contents(data)
    text = str(contents["meta"])
    rng = np.random.default_rng(3)
    for _ in range(N_FLIPS):
        pos = int(rng.integers(len(text)))
        char = chr(int(rng.integers(32, 127)))
        if char == text[pos]:
            char = "~" if char != "~" else "!"
        damaged = text[:pos] + char + text[pos + 1 :]
        _refused(_pack({**contents, "meta": np.array(damaged)}))


def test_bit_flip_in_weights_repacked(saved):
    """One bit of one array flipped in a valid archive: only the checksum can see it."""
    _, data, _ = saved
    contents = _contents(data)
    names = sorted(k for k in contents if k != "meta")
    rng = np.random.default_rng(4)
    for _ in range(N_FLIPS):
        name = names[int(rng.integers(len(names)))]
        raw = bytearray(contents[name].tobytes())
        bit = int(rng.integers(len(raw) * 8))
        raw[bit // 8] ^= 1 << (bit % 8)
        arr = np.frombuffer(bytes(raw), dtype=contents[name].dtype).reshape(contents[name].shape)
        _refused(_pack({**contents, name: arr}), match="checksum mismatch")


def _reshapes(arr: np.ndarray) -> list[np.ndarray]:
    out = [arr.reshape(1, -1), arr[:-1], np.concatenate([arr, arr[:1]])]
    if arr.size % 2 == 0:
        out.append(arr.reshape(2, -1))
    return out


def _retypes(arr: np.ndarray) -> list[np.ndarray]:
    if arr.dtype.kind == "U":
        return [arr.astype("S"), np.arange(arr.size)]
    return [arr.astype(t) for t in (np.float16, np.float32, np.float64, np.int32, np.int64) if t != arr.dtype]


def test_wrong_shape_or_dtype(saved):
    _, data, _ = saved
    contents = _contents(data)
    meta = json.loads(str(contents["meta"]))
    for name in sorted(k for k in contents if k != "meta"):
        for bad in _reshapes(contents[name]) + _retypes(contents[name]):
            # only the array changed: the header's record of it no longer fits
            message = _refused(_pack({**contents, name: bad}), match=f"array {name!r}")
            assert "shape" in message and "dtype" in message
            # the header's record rewritten to fit (so only the checksum is wrong)
            forged = json.loads(json.dumps(meta))
            forged["arrays"][name] = [bad.dtype.str, list(bad.shape)]
            _refused(_pack({**contents, name: bad, "meta": np.array(json.dumps(forged))}), match="checksum")


def _v1(contents: dict[str, np.ndarray], edit=None, replace=None) -> bytes:
    """The same model as a format version 1 file (no array records, no checksum)."""
    meta = json.loads(str(contents["meta"]))
    meta["format_version"] = 1
    del meta["arrays"], meta["checksum"]
    if edit is not None:
        edit(meta)
    return _pack({**contents, **(replace or {}), "meta": np.array(json.dumps(meta))})


def test_version_1_files_still_load(saved):
    clf, data, X = saved
    _same_model(rnnkit.load(io.BytesIO(_v1(_contents(data)))), clf, X)


def test_version_1_wrong_shape_or_dtype_refused(saved):
    """Without a checksum the arrays are still checked against the model they describe."""
    _, data, _ = saved
    contents = _contents(data)
    tried = 0
    for name in ("params", "x_mean", "x_scale", "classes", "opt__0__exp_avg"):
        # labels of any dtype are valid classes, so a version 1 file can only show their shape wrong
        retypes = [] if name == "classes" else _retypes(contents[name])
        for bad in _reshapes(contents[name]) + retypes:
            _refused(_v1(contents, replace={name: bad}))
            tried += 1
    assert tried >= 25


@pytest.mark.parametrize("version", [3, 4, 10, 2**40])
def test_newer_format_version_refused(saved, version):
    _, data, _ = saved
    contents = _contents(data)
    text = str(contents["meta"]).replace('"format_version": 2', f'"format_version": {version}')
    message = _refused(_pack({**contents, "meta": np.array(text)}), match=f"version {version}")
    assert "Upgrade rnnkit" in message


@pytest.mark.parametrize("version", [0, -1, 1.5, '"2"', "true", "null"])
def test_invalid_format_version_refused(saved, version):
    _, data, _ = saved
    contents = _contents(data)
    text = str(contents["meta"]).replace('"format_version": 2', f'"format_version": {version}')
    _refused(_pack({**contents, "meta": np.array(text)}), match="format_version")


def test_flips_anywhere_never_give_a_different_model(saved):
    """A byte changed anywhere in the file, zip bookkeeping included: refused, or (for bytes no
    reader uses, like a member's timestamp) the very same model."""
    clf, data, X = saved
    rng = np.random.default_rng(5)
    refused = 0
    for _ in range(N_FLIPS):
        damaged = _flip_in_place(data, 0, len(data), rng)
        try:
            model = rnnkit.load(io.BytesIO(damaged))
        except ValueError as exc:
            assert str(exc).strip()
            refused += 1
        else:
            _same_model(model, clf, X)
    assert refused >= 0.9 * N_FLIPS


def test_damaged_file_on_disk_names_the_path(saved, tmp_path):
    _, data, _ = saved
    contents = _contents(data)
    params = contents["params"].copy()
    params[0] = np.nextafter(params[0], np.inf)
    path = tmp_path / "damaged.npz"
    path.write_bytes(_pack({**contents, "params": params}))
    with pytest.raises(ValueError, match="checksum mismatch") as info:
        rnnkit.load(path)
    assert str(path) in str(info.value)


def test_models_with_their_own_export_are_checked_too(tmp_path):
    """Forecasting (and text) models go through the same writer and reader."""
    from rnnkit.forecast import RNNForecaster

    y = np.sin(np.arange(60) / 3.0) + 0.01 * np.arange(60)
    model = RNNForecaster(window=6, horizon=2, hidden_size=4, max_epochs=1, random_state=0, n_threads=1).fit(y)
    path = tmp_path / "f.npz"
    model.save(path)
    contents = _contents(path.read_bytes())
    loaded = rnnkit.load(path)
    np.testing.assert_array_equal(loaded.predict(), model.predict())
    history = contents["history_y"].copy()
    history[-1] += 1e-9
    _refused(_pack({**contents, "history_y": history}), match="checksum mismatch")
    _refused(path.read_bytes()[:-1])


@pytest.mark.parametrize("class_weight,match", [
    ([["a", 2.0, 3]], "class_weight must be a list of [label, value] pairs"),
    ([[["a"], 2.0]], "class_weight must be a list of [label, value] pairs"),
    ([["a", "heavy"]], "the weight of class 'a' must be a finite number >= 0"),
    (7, "class_weight must be None, 'balanced' or a dict"),
])
def test_damaged_class_weight_refused(saved, class_weight, match):
    """class_weight is stored as [label, weight] pairs (labels keep their type); a version 1 file
    (no checksum) shows what the reader itself checks."""
    _, data, _ = saved

    def edit(meta):
        meta["params"]["class_weight"] = class_weight

    _refused(_v1(_contents(data), edit=edit), match=match)


def test_stored_class_weight_pairs_load_as_a_dict(saved):
    _, data, _ = saved

    def edit(meta):
        meta["params"]["class_weight"] = [["a", 2.0], ["c", 0.5]]

    assert rnnkit.load(io.BytesIO(_v1(_contents(data), edit=edit))).class_weight == {"a": 2.0, "c": 0.5}


@pytest.mark.parametrize("rate", ["fast", -1e-3, None, True, [0.1]])
def test_damaged_learning_rate_refused(saved, rate):
    """learning_rate_ is where partial_fit goes on with lr_schedule="adaptive"; the JSON can hold
    anything, so the reader checks it is a rate (non-finite values cannot pass through JSON)."""
    _, data, _ = saved

    def edit(meta):
        meta["fitted"]["learning_rate_"] = rate

    _refused(_v1(_contents(data), edit=edit), match="is not a finite number >= 0")


def test_damaged_learning_rate_refused_in_text_models(tmp_path):
    from rnnkit.text import TextClassifier

    model = TextClassifier(hidden_size=4, embedding_dim=4, max_epochs=1, random_state=0, n_threads=1)
    model.fit(["good", "bad", "fine", "awful"], ["p", "n", "p", "n"])
    path = tmp_path / "t.npz"
    model.save(path)
    assert rnnkit.load(path).learning_rate_ == model.learning_rate_ == model.learning_rate

    def edit(meta):
        meta["fitted"]["learning_rate_"] = "fast"

    _refused(_v1(_contents(path.read_bytes()), edit=edit), match="learning_rate_ 'fast'")


@pytest.mark.parametrize("value,match", [("yes", "_multilabel 'yes' is not a bool"), (1, "_multilabel 1 is not a bool")])
def test_damaged_multilabel_flag_refused(saved, value, match):
    """_multilabel picks the model's loss (sigmoid or softmax head) when the file is read back."""
    _, data, _ = saved

    def edit(meta):
        meta["fitted"]["_multilabel"] = value

    _refused(_v1(_contents(data), edit=edit), match=match)


@pytest.mark.parametrize("value", ["yes", 0])
def test_damaged_reverse_source_flag_refused(tmp_path, value):
    """A Seq2Seq's reverse_source_ decides the order its encoder reads sources in."""
    from rnnkit.text import Seq2Seq

    model = Seq2Seq(hidden_size=4, embedding_dim=4, max_epochs=1, random_state=0, n_threads=1)
    model.fit(["one two", "two three"], ["1 2", "2 3"])
    path = tmp_path / "s.npz"
    model.save(path)
    assert rnnkit.load(path).reverse_source_ is True

    def edit(meta):
        meta["fitted"]["reverse_source_"] = value

    _refused(_v1(_contents(path.read_bytes()), edit=edit), match=f"reverse_source_ {value!r} is not a bool")
