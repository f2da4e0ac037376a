"""Exceptions and warnings raised by rnnkit's estimators."""


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit`` (a ValueError and an AttributeError, as in scikit-learn)."""


class ConvergenceWarning(UserWarning):
    """Training stopped at ``max_epochs`` before the loss stopped improving."""


class DataConversionWarning(UserWarning):
    """Input data was converted to another shape (e.g. a column vector y raveled)."""
