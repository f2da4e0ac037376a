"""One model used from several Python threads at once gives exactly the serial results
(the C++ core keeps no state between calls and releases the GIL)."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import rnnkit


@pytest.mark.parametrize("cls", [rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN])
def test_layer_forward_from_8_threads_is_bit_identical(cls):
    m = cls(6, 24, num_layers=2, bidirectional=True, seed=0, n_threads=2)
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((12, 9, 6)).astype(np.float32) for _ in range(16)]
    lengths = [rng.integers(1, 13, 9) for _ in xs]
    serial = [m.forward(x, lengths=n)[0] for x, n in zip(xs, lengths)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda a: m.forward(a[0], lengths=a[1])[0], zip(xs, lengths)))
    for s, p in zip(serial, parallel):
        np.testing.assert_array_equal(s, p)


def test_estimator_predict_from_8_threads_is_bit_identical():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((64, 10, 3))
    y = (X[:, :, 0].sum(1) > 0).astype(int)
    clf = rnnkit.RNNClassifier(hidden_size=16, max_epochs=2, random_state=0, n_threads=2).fit(X, y)
    chunks = [X[i::8] for i in range(8)]
    serial = [clf.predict_proba(c) for c in chunks]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(clf.predict_proba, chunks))
    for s, p in zip(serial, parallel):
        np.testing.assert_array_equal(s, p)
