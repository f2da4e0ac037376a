"""Exceptions and warnings raised by rnnkit's estimators."""

import functools
import sys


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit`` (a ValueError and an AttributeError, as in scikit-learn)."""


class ConvergenceWarning(UserWarning):
    """Training stopped at ``max_epochs`` before the loss stopped improving."""


class DataConversionWarning(UserWarning):
    """Input data was converted to another shape (e.g. a column vector y raveled)."""


@functools.lru_cache(maxsize=None)
def _with_sklearn_base(ours: type, theirs: type) -> type:
    return type(ours.__name__, (ours, theirs), {"__module__": ours.__module__})


def not_fitted_error(message: str) -> NotFittedError:
    """A NotFittedError that is also scikit-learn's when scikit-learn is loaded.

    scikit-learn is optional, so rnnkit does not import it; when the caller already has, the
    error also derives from ``sklearn.exceptions.NotFittedError`` so that code catching that
    class (and sklearn's own checks) sees it.
    """
    sk = sys.modules.get("sklearn.exceptions")
    if sk is None:
        return NotFittedError(message)
    return _with_sklearn_base(NotFittedError, sk.NotFittedError)(message)
