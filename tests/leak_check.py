"""A short run for LeakSanitizer (README: Reliability): layers forward/backward/step, clipping,
an optimizer, bad input, estimators' fit/predict and save/load, a few hundred calls each.

Run it under the sanitizer build with ``ASAN_OPTIONS=detect_leaks=1`` and
``LSAN_OPTIONS=suppressions=tests/lsan.supp``; it prints "done" and exits 0 when no leak is found.
(Not a pytest module: pytest's own allocations would only add noise.)
"""
import os, tempfile, warnings
import numpy as np
import rnnkit
warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
for cls in (rnnkit.LSTM, rnnkit.GRU, rnnkit.RNN):
    m = cls(4, 8, num_layers=2, bidirectional=True, seed=0, n_threads=2)
    opt = rnnkit.optim.Adam([m], lr=1e-3)
    x = rng.standard_normal((6, 3, 4)).astype(np.float32)
    for i in range(200):
        out, _ = m.forward(x, lengths=[6, 4, 1], training=True)
        m.backward(np.ones_like(out))
        rnnkit.clip_grad_norm(m.grads, 1.0)
        opt.step()
    u = cls(4, 8, seed=0)
    s = None
    for i in range(200):
        y, s = u.step(x[0], s)
    try:
        m.forward(np.full((2, 1, 4), np.nan, np.float32))
    except ValueError:
        pass
X = rng.standard_normal((40, 6, 2)); y = (X[:, :, 0].sum(1) > 0).astype(int)
with tempfile.TemporaryDirectory() as tmp:
    for i in range(20):
        clf = rnnkit.RNNClassifier(hidden_size=8, max_epochs=2, random_state=i, n_threads=2).fit(X, y)
        clf.predict(X)
        clf.save(os.path.join(tmp, "m.npz"))
        rnnkit.load(os.path.join(tmp, "m.npz")).predict_proba(X)
        reg = rnnkit.RNNRegressor(cell="gru", hidden_size=4, max_epochs=1, random_state=i, n_threads=1).fit(X, X[:, -1, 0])
        reg.predict([X[0, :3], X[1]])
print("done")
