"""Small calls after a pause leave OpenMP's worker threads asleep, and give the same bits.

A parallel region must wake OpenMP's workers once they have slept (libgomp lets them spin
for a few ms after a region). On the 2-vCPU VMs of bench/NOTES.md (2026-11-29, stop 29) that
cost 4-8 ms for a 0.2-0.4 ms call made every 20 ms, so a small inference call or step that
follows a pause of over 1 ms runs on the calling thread: the column splits it does not make
(they change no bits), the batch and unit splits' parts it runs one after another. These tests
check both halves: no worker is woken (on Linux, where a process's threads can be counted),
and a call after a pause equals one made right after another, bit for bit.
"""
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import rnnkit

PAUSE_S = 0.01  # well past the 1 ms after which the core takes the workers to be asleep


def _after_pause_and_back_to_back(call, pause=PAUSE_S):
    """The results of `call` after a pause, and of the same call right after another."""
    time.sleep(pause)
    quiet = call()
    call()
    hot = call()  # follows the previous call within microseconds
    return quiet, hot


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads through /proc/self/task")
@pytest.mark.skipif(not rnnkit.show_config()["openmp"], reason="built without OpenMP: no worker threads")
def test_small_calls_after_a_pause_wake_no_worker_thread():
    # A fresh process: OpenMP starts its workers at the first region that needs them.
    script = textwrap.dedent(
        """
        import os, time
        import numpy as np
        import rnnkit

        def threads():
            return len(os.listdir("/proc/self/task"))

        x = np.random.default_rng(0).standard_normal((100, 1, 32)).astype(np.float32)
        layer = rnnkit.LSTM(32, 64, n_threads=2, seed=0)  # its input projection splits at 2 threads
        units = rnnkit.GRU(32, 200, n_threads=2, seed=0)  # B=3: the hidden units split at 2 threads
        x3 = np.ones((10, 3, 32), np.float32)
        step_layer = rnnkit.LSTM(256, 256, n_threads=2, seed=0)
        x_t = np.ones((1, 256), np.float32)
        before = threads()
        for _ in range(3):
            time.sleep(PAUSE)
            layer.forward(x)
            time.sleep(PAUSE)
            units.forward(x3)
            time.sleep(PAUSE)
            step_layer.step(x_t)
        after_pauses = threads()
        for _ in range(20):
            layer.forward(x)
        print(before, after_pauses, threads())
        """
    ).replace("PAUSE", repr(PAUSE_S))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    before, after_pauses, after_hot = map(int, out.stdout.split())
    assert after_pauses == before, "a small call after a pause woke OpenMP's workers"
    assert after_hot > after_pauses, "calls made back to back should still use the second thread"


SHAPES = [
    # (cell, B, T, D, H, layers, bidirectional), all small enough for the rule. The first three
    # split only their input projections at 2 threads. The unit split (B=3, H=200) and the batch
    # split (B >= 8) give other bits at other thread counts, so after a pause such a call runs
    # the same parts, one after another: running the B=3 rows as one part makes them fail.
    ("LSTM", 1, 100, 32, 64, 1, False),
    ("GRU", 1, 60, 32, 128, 2, False),
    ("RNN", 2, 50, 64, 64, 1, True),
    ("LSTM", 3, 10, 48, 200, 1, False),
    ("GRU", 3, 10, 48, 200, 1, True),
    ("GRU", 9, 20, 40, 64, 1, False),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell, B, T, D, H, layers, bidirectional", SHAPES)
def test_forward_after_a_pause_equals_back_to_back(cell, B, T, D, H, layers, bidirectional, dtype):
    m = getattr(rnnkit, cell)(D, H, num_layers=layers, bidirectional=bidirectional, n_threads=2, seed=3,
                              dtype=np.dtype(dtype).name)
    x = np.random.default_rng(4).standard_normal((T, B, D)).astype(dtype)
    for frozen in (False, True):
        layer = rnnkit.freeze(m) if frozen else m
        (y_quiet, h_quiet), (y_hot, h_hot) = _after_pause_and_back_to_back(lambda: layer.forward(x))
        np.testing.assert_array_equal(y_quiet, y_hot)
        np.testing.assert_array_equal(np.asarray(h_quiet), np.asarray(h_hot))


@pytest.mark.parametrize("cell, B, H", [("LSTM", 3, 200), ("GRU", 9, 64), ("LSTM", 1, 64)])
def test_forward_with_lengths_and_state_after_a_pause_equals_back_to_back(cell, B, H):
    # Ragged batches (rows past their length carry their state) from a given initial state, in
    # the unit split (B=3), the batch split (B=9) and a projection split (B=1).
    m = getattr(rnnkit, cell)(24, H, num_layers=2, n_threads=2, seed=7)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((12, B, 24)).astype(np.float32)
    lengths = rng.integers(1, 13, B)
    h0 = rng.standard_normal((2, B, H)).astype(np.float32)
    state = (h0, rng.standard_normal((2, B, H)).astype(np.float32)) if cell == "LSTM" else h0
    (y_quiet, s_quiet), (y_hot, s_hot) = _after_pause_and_back_to_back(
        lambda: m.forward(x, state, lengths=lengths))
    np.testing.assert_array_equal(y_quiet, y_hot)
    for a, b in zip(_arrays(s_quiet), _arrays(s_hot)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell, H", [("LSTM", 256), ("GRU", 512), ("RNN", 1024)])
def test_step_after_a_pause_equals_back_to_back(cell, H):
    m = getattr(rnnkit, cell)(H, H, num_layers=2, n_threads=2, seed=5)
    x = np.random.default_rng(6).standard_normal((2, H)).astype(np.float32)
    _, state = m.step(x)

    def two_steps():
        y, s = m.step(x, state)
        return m.step(y, s)

    (y_quiet, s_quiet), (y_hot, s_hot) = _after_pause_and_back_to_back(two_steps)
    np.testing.assert_array_equal(y_quiet, y_hot)
    for a, b in zip(_arrays(s_quiet), _arrays(s_hot)):
        np.testing.assert_array_equal(a, b)


def _arrays(state):
    return state if isinstance(state, tuple) else (state,)
