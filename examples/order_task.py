"""The toy problem of the search examples: which of two bumps comes first in a sequence.

The label depends on the order of events, not on their counts, so a model must read the
sequence; it is the problem of the README's estimator example.
"""

from __future__ import annotations

import numpy as np


def data(n: int = 300, steps: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences (n, steps, 2) with one bump per feature, and the label of the earlier one."""
    rng = np.random.default_rng(seed)
    X = 0.3 * rng.standard_normal((n, steps, 2))
    a = rng.integers(0, steps, n)
    b = (a + rng.integers(1, steps, n)) % steps
    X[np.arange(n), a, 0] += 3
    X[np.arange(n), b, 1] += 3
    return X, np.where(a < b, "A first", "B first")
