"""The estimators work where scikit-learn is not installed (it is only a test extra)."""
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["sklearn"] = None  # makes `import sklearn` fail, as on a machine without it
    import numpy as np
    import rnnkit
    from rnnkit.exceptions import NotFittedError

    X = np.random.default_rng(0).standard_normal((40, 6, 2))
    y = (X[:, :, 0].sum(1) > 0).astype(int)
    clf = rnnkit.RNNClassifier(hidden_size=4, max_epochs=3, random_state=0)
    assert "sklearn" not in type(clf).__mro__[-2].__module__
    try:
        clf.predict(X)
    except NotFittedError:
        pass
    else:
        raise AssertionError("predict before fit did not raise")
    assert clf.fit(X, y) is clf
    assert clf.predict(X).shape == (40,)
    assert clf.get_params()["hidden_size"] == 4
    assert repr(clf.set_params(hidden_size=5)) == "RNNClassifier(hidden_size=5, max_epochs=3, random_state=0)"
    try:
        clf.set_params(bogus=1)
    except ValueError as exc:
        assert "bogus" in str(exc)
    else:
        raise AssertionError("unknown parameter accepted")
    reg = rnnkit.RNNRegressor(hidden_size=4, max_epochs=2, random_state=0).fit(X, X[:, -1, 1])
    assert np.isfinite(reg.score(X, X[:, -1, 1])) and reg.predict(X).shape == (40,)
    assert "sklearn" not in sys.modules or sys.modules["sklearn"] is None
    print("ok")
    """
)


def test_estimators_without_sklearn(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().endswith("ok")
