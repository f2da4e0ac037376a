"""A next-note model of Bach's chorale melodies with rnnkit.music.MelodyModel, and a new tune as MIDI.

The data: the soprano line of every chorale in the corpus bundled with ``music21`` (each
transposed to C major / A minor), one token per note (MIDI pitch and duration). A fixed random
fifth of the chorales is held out; the script reports the held-out perplexity per note next to
two count baselines (note frequencies, and the previous note's successor frequencies, both
add-one smoothed over the same vocabulary), then samples a new melody and writes it as MIDI.

    pip install "rnnkit[music]"            # music21 (the corpus) and mido (MIDI files)
    python examples/bach_chorales.py [--epochs N] [--cell lstm|gru|rnn] [--out tune.mid] [--limit N]
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter

import numpy as np

from rnnkit.music import END, MelodyModel, bach_chorales, melody_to_tokens, write_midi


def count_baselines(train: list[list[str]], test: list[list[str]], vocab: set[str]) -> tuple[float, float]:
    """Held-out perplexities of add-one unigram and bigram models over the model's vocabulary."""
    def closed(tokens: list[str]) -> list[str]:
        return [t if t in vocab else "<unk>" for t in tokens]

    train_tokens = [closed(t + [END]) for t in train]
    test_tokens = [closed(t + [END]) for t in test]
    stream_train = [tok for seq in train_tokens for tok in seq]
    stream_test = [tok for seq in test_tokens for tok in seq]
    size = len(vocab) + 1
    unigram = Counter(stream_train)
    bigram = Counter(zip(stream_train, stream_train[1:]))
    nll_uni = -sum(math.log((unigram[t] + 1) / (len(stream_train) + size)) for t in stream_test[1:])
    nll_bi = -sum(math.log((bigram[(a, b)] + 1) / (unigram[a] + size)) for a, b in zip(stream_test, stream_test[1:]))
    n = len(stream_test) - 1
    return math.exp(nll_uni / n), math.exp(nll_bi / n)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"])
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--limit", type=int, default=None, help="read only this many chorales")
    parser.add_argument("--out", default="chorale.mid", help="MIDI file for the generated melody")
    parser.add_argument("--length", type=int, default=48, help="notes to generate")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    melodies = bach_chorales(limit=args.limit)
    print(f"read {len(melodies)} chorale melodies ({sum(map(len, melodies))} notes) in "
          f"{time.perf_counter() - start:.0f} s")
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(melodies))
    n_test = len(melodies) // 5
    test = [melodies[i] for i in order[:n_test]]
    train = [melodies[i] for i in order[n_test:]]

    model = MelodyModel(cell=args.cell, hidden_size=args.hidden, max_epochs=args.epochs, seq_len=64,
                        batch_size=16, learning_rate=3e-3, validation_fraction=0.1, random_state=args.seed, verbose=1,
                        n_threads=args.threads)
    start = time.perf_counter()
    model.fit(train)
    print(f"\ntrained on {len(train)} chorales ({model.n_tokens_} tokens, vocabulary {len(model.tokenizer_)}) "
          f"in {time.perf_counter() - start:.0f} s")
    uni, bi = count_baselines([melody_to_tokens(m) for m in train], [melody_to_tokens(m) for m in test],
                              set(model.tokenizer_.vocab_[1:]))
    print(f"held-out perplexity per note ({len(test)} chorales): {args.cell} {model.perplexity(test):.2f}, "
          f"previous-note counts {bi:.2f}, note frequencies {uni:.2f}")

    print("\nmost likely first notes:", ", ".join(f"{n} {p:.2f}" for n, p in model.predict_next(None, 3)))
    tune = model.generate(length=args.length, temperature=args.temperature, top_k=10, seed=args.seed)
    write_midi(tune, args.out, tempo=80, program=19)
    names = "C C# D Eb E F F# G Ab A Bb B".split()
    print(f"sampled melody ({len(tune)} notes, temperature {args.temperature}) written to {args.out}:")
    print("  " + " ".join(f"{'rest' if p is None else names[p % 12] + str(p // 12 - 1)}:{d:g}" for p, d in tune))


if __name__ == "__main__":
    main()
