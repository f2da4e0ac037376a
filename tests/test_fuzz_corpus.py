"""Replays the fuzz harness's regression corpus (inputs that once found bugs) without atheris.

``tests/fuzz/fuzz_rnnkit.py`` decodes its inputs with its own byte reader, so each stored input
runs here exactly as it did under the fuzzer: it must end in a result or in a ValueError /
TypeError / MemoryError with a message. A few hundred seeded random inputs run too, as a smoke
test of the harness itself.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

FUZZ_DIR = Path(__file__).parent / "fuzz"
sys.path.insert(0, os.fspath(FUZZ_DIR))

import fuzz_rnnkit  # noqa: E402

CORPUS = sorted(p for p in (FUZZ_DIR / "corpus").iterdir() if p.is_file() and not p.name.startswith("."))


def test_corpus_is_not_empty():
    assert len(CORPUS) >= 1


@pytest.mark.parametrize("path", CORPUS, ids=[p.name for p in CORPUS])
def test_corpus_input(path):
    fuzz_rnnkit.one_input(path.read_bytes())


def test_seeded_random_inputs():
    rng = np.random.default_rng(0)
    for _ in range(300):
        fuzz_rnnkit.one_input(rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes())


def test_the_harness_reports_a_finding():
    """The harness's own contract check can fail: an error of another type escapes one_input."""
    saved = fuzz_rnnkit.TARGETS

    def broken(r):
        raise KeyError("not an allowed error")

    fuzz_rnnkit.TARGETS = (broken,)
    try:
        with pytest.raises(KeyError):
            fuzz_rnnkit.one_input(b"\0")
    finally:
        fuzz_rnnkit.TARGETS = saved


def test_misaligned_arrays_reach_the_core_aligned(monkeypatch):
    """Fuzz finding (UBSan: misaligned int64 load in layer.cpp): numpy views at odd byte offsets
    are copied before the C++ core reads them as typed pointers; results are unchanged."""
    import rnnkit
    from rnnkit._backend import core

    def misaligned(arr):
        raw = np.zeros(arr.nbytes + 1, dtype=np.uint8)
        view = raw[1:].view(arr.dtype).reshape(arr.shape)
        view[...] = arr
        assert not view.flags.aligned
        return view

    seen = []
    original = core.forward_float64

    def recording(*args):
        seen.extend(a.flags.aligned for a in args if isinstance(a, np.ndarray))
        return original(*args)

    monkeypatch.setattr(core, "forward_float64", recording)
    layer = rnnkit.GRU(3, 4, dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    x, h0, lengths = rng.standard_normal((5, 2, 3)), rng.standard_normal((1, 2, 4)), np.array([5, 2])
    expected, expected_h = layer.forward(x, state=h0, lengths=lengths)
    seen.clear()
    out, h = layer.forward(misaligned(x), state=misaligned(h0), lengths=misaligned(lengths))
    assert seen and all(seen)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(h, expected_h)

    y, state = rnnkit.LSTM(3, 4, seed=0).step(misaligned(np.ones((2, 3), np.float32)))
    grads = [misaligned(np.full(6, 3.0))]
    assert rnnkit.clip_grad_norm(grads, 1.0) == pytest.approx(np.sqrt(54.0))
    assert np.linalg.norm(grads[0]) == pytest.approx(1.0)
