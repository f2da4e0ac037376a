"""Polyphonic music: the next beat of a Bach chorale, all four voices at once (multi-label per step).

The data: every chorale in the corpus bundled with ``music21`` as a piano roll
(:func:`rnnkit.music.bach_piano_rolls`: one frame per beat, transposed to C major / A minor),
the task of Boulanger-Lewandowski et al. (2012) on the JSB chorales. Input: the frames so far;
target: the pitches sounding in the next frame, a row of 0 and 1 per step, so
``RNNClassifier(output="sequence")`` fits one sigmoid per pitch. A fixed random fifth of the
chorales is held out. Reported on it: the negative log-likelihood per frame (nats, summed over
the pitches) and the frame accuracy of Bay et al. (2009), TP / (TP + FP + FN) over all frames,
next to two count baselines: each pitch's frequency, and each pitch's on/off given whether it
sounded in the frame before (both add-one smoothed; the second one also "predicts" by keeping
the previous frame where more likely).

    pip install "rnnkit[music]"            # music21 (the corpus)
    python examples/polyphonic_music.py [--cells lstm gru rnn] [--epochs N] [--hidden H] [--limit N]

Training runs one epoch per ``partial_fit`` call, scores a tenth of the training chorales held
out for it (their NLL per frame) after each, keeps the best epoch's model (a pickled copy) and
stops after ``--patience`` epochs without improvement. (The estimators' own ``early_stopping``
scores exact frames, every pitch right, which is too coarse here: no frame is right for the
first dozen epochs.)

The numbers are not those of the papers: this corpus has more chorales than the JSB split, and
each one is transposed to one key.
"""

from __future__ import annotations

import argparse
import pickle
import time

import numpy as np

from rnnkit import RNNClassifier
from rnnkit.music import bach_piano_rolls


def nll_per_frame(proba: np.ndarray, truth: np.ndarray) -> float:
    """Mean over frames of the summed binary cross-entropy over pitches (nats)."""
    p = np.clip(proba, 1e-12, 1 - 1e-12)
    return float(-(truth * np.log(p) + (1 - truth) * np.log(1 - p)).sum(axis=1).mean())


def frame_accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """Bay et al.'s accuracy over all frames: TP / (TP + FP + FN)."""
    tp = float((pred & truth).sum())
    return tp / (tp + float((pred & ~truth).sum()) + float((~pred & truth).sum()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", nargs="+", choices=("lstm", "gru", "rnn"), default=["lstm"])
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--limit", type=int, default=None, help="read only this many chorales")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    start = time.perf_counter()
    rolls = [r for r in bach_piano_rolls(limit=args.limit) if len(r) > 2]
    used = np.flatnonzero(np.any([r.any(axis=0) for r in rolls], axis=0))
    lo, hi = int(used.min()), int(used.max()) + 1  # the pitch range of the corpus: one label each
    rolls = [r[:, lo:hi].astype(bool) for r in rolls]
    order = np.random.default_rng(0).permutation(len(rolls))
    n_test = len(rolls) // 5
    test = [rolls[i] for i in order[:n_test]]
    train = [rolls[i] for i in order[n_test:]]
    frames = sum(len(r) - 1 for r in test)
    print(f"{len(rolls)} chorales ({len(train)} for training, {len(test)} held out, {frames} held-out frames), "
          f"pitches {lo}-{hi - 1} ({hi - lo} labels), read in {time.perf_counter() - start:.0f} s")

    n_val = len(train) // 10
    X = [r[:-1].astype(np.float32) for r in train[n_val:]]
    Y = [r[1:].astype(np.int64) for r in train[n_val:]]
    X_val = [r[:-1].astype(np.float32) for r in train[:n_val]]
    truth_val = np.concatenate([r[1:] for r in train[:n_val]])
    truth = np.concatenate([r[1:] for r in test])
    rows = []
    for cell in args.cells:
        # scale_inputs=False: the frames are 0/1; standardising them would blow up a rare pitch's 1s
        model = RNNClassifier(cell=cell, hidden_size=args.hidden, output="sequence", learning_rate=args.lr,
                              batch_size=16, scale_inputs=False, random_state=args.seed, n_threads=args.threads)
        start = time.perf_counter()
        best, best_epoch, saved = np.inf, 0, b""
        for epoch in range(1, args.epochs + 1):
            model.partial_fit(X, Y, classes=np.arange(hi - lo))
            nll = nll_per_frame(np.concatenate(model.predict_proba(X_val)), truth_val)
            print(f"{cell} epoch {epoch}: loss {model.loss_curve_[-1]:.4f}, held-out-for-training NLL/frame {nll:.3f}")
            if nll < best:
                best, best_epoch, saved = nll, epoch, pickle.dumps(model)
            elif epoch - best_epoch >= args.patience:
                break
        seconds = time.perf_counter() - start
        model = pickle.loads(saved)
        proba = np.concatenate(model.predict_proba([r[:-1].astype(np.float32) for r in test]))
        rows.append((f"rnnkit {cell.upper()}({args.hidden}), epoch {best_epoch} of {epoch}, {seconds:.0f} s", proba))

    # count baselines from the training frames
    on = np.concatenate([r for r in train]).astype(float)
    p_freq = (on.sum(axis=0) + 1) / (len(on) + 2)
    prev = np.concatenate([r[:-1] for r in train])
    nxt = np.concatenate([r[1:] for r in train])
    p_on_after_on = ((prev & nxt).sum(axis=0) + 1) / (prev.sum(axis=0) + 2)
    p_on_after_off = ((~prev & nxt).sum(axis=0) + 1) / ((~prev).sum(axis=0) + 2)
    before = np.concatenate([r[:-1] for r in test])
    p_markov = np.where(before, p_on_after_on, p_on_after_off)

    print(f"\n{'model':<48} {'NLL/frame':>10} {'frame acc.':>10}")
    rows += [("pitch frequencies (independent)", np.broadcast_to(p_freq, truth.shape)),
             ("each pitch given the frame before", p_markov)]
    for name, p in rows:
        print(f"{name:<48} {nll_per_frame(p, truth):>10.3f} {frame_accuracy(p > 0.5, truth):>10.3f}")
    print(f"{'(keep the previous frame)':<48} {'':>10} {frame_accuracy(before, truth):>10.3f}")


if __name__ == "__main__":
    main()
