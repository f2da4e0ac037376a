"""Translate numbers written in French words into English words with rnnkit.text.Seq2Seq.

The data: the number names that the ``num2words`` package writes (its authors' language rules:
"quatre-vingt-dix-sept" -> "ninety-seven", "mille neuf cent soixante et onze" -> "one thousand,
nine hundred and seventy-one"). Every number from 1 to 9,999 is one pair; a fixed random fifth
of the numbers is held out, so the test measures whether the model composes the parts of number
names it has seen into numbers it has never seen (French counts in twenties above sixty, and
its word order differs from English: "quatre-vingt-dix-sept" is "four-twenty-ten-seven").

    pip install num2words
    python examples/translate_numbers.py [--source fr] [--epochs N] [--cell lstm|gru|rnn] [--seed S]
    python examples/translate_numbers.py --max-number 999999999 --pairs 12000 --attention general

With ``--pairs N`` the data are N distinct numbers up to ``--max-number``, their digit count
drawn uniformly (so that long numbers are as common as short ones), instead of every number.
Long number names are where attention (``--attention dot|general``) pays: without it the
decoder knows the source only through the encoder's final state.

Reports exact-match accuracy on the held-out numbers with greedy decoding and with beam search,
and a few translations.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from rnnkit.text import Seq2Seq


def sample_numbers(n_max: int, count: int, rng: np.random.Generator) -> list[int]:
    """``count`` distinct numbers in [1, n_max], each one's digit count uniform over those possible."""
    digits = len(str(n_max))
    if count > n_max:
        sys.exit(f"--pairs {count} is more than the {n_max} numbers up to --max-number")
    chosen: set[int] = set()
    while len(chosen) < count:
        d = int(rng.integers(1, digits + 1))
        chosen.add(int(rng.integers(10 ** (d - 1), min(10 ** d - 1, n_max) + 1)))
    return sorted(chosen)


def number_pairs(source: str, target: str, numbers: range | list[int]) -> tuple[list[str], list[str]]:
    try:
        from num2words import num2words
    except ImportError:
        sys.exit("this example reads its data from the 'num2words' package: pip install num2words")
    return [num2words(n, lang=source) for n in numbers], [num2words(n, lang=target) for n in numbers]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", default="fr", help="num2words language of the source (fr, de, es, it, ...)")
    parser.add_argument("--target", default="en", help="num2words language of the target")
    parser.add_argument("--source-level", default="word", choices=["word", "char"],
                        help="char for languages that write numbers as one compound word (de)")
    parser.add_argument("--max-number", type=int, default=9999)
    parser.add_argument("--pairs", type=int, default=None,
                        help="draw this many numbers up to --max-number (default: every number)")
    parser.add_argument("--attention", default=None, choices=["dot", "general"])
    parser.add_argument("--bidirectional-encoder", action="store_true")
    parser.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    numbers = range(1, args.max_number + 1) if args.pairs is None else sample_numbers(args.max_number, args.pairs, rng)
    sources, targets = number_pairs(args.source, args.target, numbers)
    order = rng.permutation(len(sources))
    n_test = len(sources) // 5
    test, train = order[:n_test], order[n_test:]
    model = Seq2Seq(cell=args.cell, source_level=args.source_level, hidden_size=args.hidden, embedding_dim=64,
                    max_epochs=args.epochs, batch_size=32, learning_rate=3e-3, validation_fraction=0.05,
                    attention=args.attention, bidirectional_encoder=args.bidirectional_encoder,
                    random_state=args.seed, verbose=1, n_threads=args.threads)
    start = time.perf_counter()
    model.fit([sources[i] for i in train], [targets[i] for i in train])
    elapsed = time.perf_counter() - start
    print(f"\ntrained on {train.size} pairs in {elapsed:.0f} s ({model.n_iter_} epochs); "
          f"vocabularies {len(model.source_tokenizer_)} {args.source} / {len(model.target_tokenizer_)} {args.target}")

    X_test, y_test = [sources[i] for i in test], [targets[i] for i in test]
    tokenize = model.target_tokenizer_.tokenize
    for beam in (1, args.beam):
        start = time.perf_counter()
        predicted = model.predict(X_test, beam_width=beam)
        seconds = time.perf_counter() - start
        accuracy = np.mean([tokenize(p) == tokenize(t) for p, t in zip(predicted, y_test)])
        print(f"held-out numbers ({n_test}), {'greedy' if beam == 1 else f'beam {beam}'}: exact match "
              f"{100 * accuracy:.1f}% ({1000 * seconds / n_test:.2f} ms per sentence)")
    print("\nexamples (held out):")
    for i in test[:8]:
        out = model.predict([sources[i]], beam_width=args.beam)[0].replace(" - ", "-")
        mark = "ok" if tokenize(out) == tokenize(targets[i]) else f"expected: {targets[i]}"
        print(f"  {numbers[i]:>5}  {sources[i]:<45} -> {out}   [{mark}]")


if __name__ == "__main__":
    main()
