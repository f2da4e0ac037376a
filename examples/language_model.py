"""Word-level language models with rnnkit.text.LanguageModel: held-out perplexity and next words.

By default the text is the Python documentation that ships with every CPython
(``pydoc_data.topics``); ``--file`` takes any UTF-8 text instead. A tenth of the text, spread
over it in blocks of 40 lines, is held out for the perplexity (``rnnkit.text.corpora``).

    python examples/language_model.py                      # an LSTM on the Python docs
    python examples/language_model.py --compare            # RNN vs LSTM vs GRU, same parameter budget
    python examples/language_model.py --file book.txt --max-vocab 5000 --epochs 2 --compare

With ``--compare`` the LSTM has ``--hidden`` units and the GRU and the simple RNN get the
hidden size whose total parameter count (embedding, recurrent layer and softmax head) comes
closest to the LSTM's.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from rnnkit._backend import core
from rnnkit.text import LanguageModel, Tokenizer
from rnnkit.text.corpora import pydoc_topics, split_blocks

CELLS = {"lstm": "lstm", "gru": "gru", "rnn": "rnn_tanh"}


def parameter_count(cell: str, hidden: int, embedding: int, vocab: int) -> int:
    layer = core.LayerSpec(CELLS[cell], embedding, hidden, 1, False, True)
    return core.ModelSpec(layer, vocab, "cross_entropy", "sequence", vocab).param_count


def matched_hidden(cell: str, budget: int, embedding: int, vocab: int) -> int:
    """The hidden size whose model comes closest to ``budget`` parameters."""
    return min(range(1, 4096), key=lambda h: abs(parameter_count(cell, h, embedding, vocab) - budget))


def unigram_perplexity(tokenizer: Tokenizer, train: list, test: list) -> float:
    counts = np.bincount(np.concatenate(tokenizer.transform(train)), minlength=len(tokenizer)) + 1.0
    ids = np.concatenate(tokenizer.transform(test))[1:]
    return math.exp(-float(np.log(counts[ids] / counts.sum()).mean()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", help="UTF-8 text to model (default: the Python documentation topics)")
    ap.add_argument("--cell", choices=sorted(CELLS), default="lstm")
    ap.add_argument("--compare", action="store_true", help="train rnn, lstm and gru at the same parameter budget")
    ap.add_argument("--hidden", type=int, default=256, help="hidden units (of the LSTM with --compare)")
    ap.add_argument("--embedding", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--lr-schedule", choices=("adaptive", "cosine"), default=None,
                    help="change the learning rate over the epochs (default: constant)")
    ap.add_argument("--validation", type=float, default=0.0, metavar="FRACTION",
                    help="hold out the end of the training text: the best epoch on it is kept, and it drives "
                         "--lr-schedule adaptive (default: 0, none)")
    ap.add_argument("--max-vocab", type=int, default=2000)
    ap.add_argument("--punctuation", choices=("split", "strip", "keep"), default="strip")
    ap.add_argument("--prompt", action="append", help="prompt for next-word predictions (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    if args.file:
        with open(args.file, encoding="utf-8") as fh:
            train, test = split_blocks(fh.read())
        prompts = args.prompt or ["and the", "in the beginning", "the king of"]
    else:
        train, test = pydoc_topics("train"), pydoc_topics("test")
        prompts = args.prompt or ["the return value of the", "if the condition is", "a list of"]
    tokenizer = Tokenizer(max_vocab=args.max_vocab, punctuation=args.punctuation).fit(train)
    vocab = len(tokenizer)
    n_train = sum(len(tokenizer.tokenize(t)) for t in train)
    n_test = sum(len(tokenizer.tokenize(t)) for t in test)
    print(f"{args.file or 'pydoc_data.topics'}: {n_train:,} training and {n_test:,} held-out tokens, "
          f"vocabulary {vocab:,}")
    print(f"unigram (word frequencies) held-out perplexity: {unigram_perplexity(tokenizer, train, test):.1f}\n")

    budget = parameter_count("lstm", args.hidden, args.embedding, vocab)
    cells = ["rnn", "lstm", "gru"] if args.compare else [args.cell]
    rows = []
    for cell in cells:
        hidden = matched_hidden(cell, budget, args.embedding, vocab) if args.compare else args.hidden
        lm = LanguageModel(cell=cell, hidden_size=hidden, embedding_dim=args.embedding, max_epochs=args.epochs,
                           batch_size=args.batch_size, seq_len=args.seq_len, learning_rate=args.lr,
                           lr_schedule=args.lr_schedule, validation_fraction=args.validation, max_vocab=args.max_vocab, punctuation=args.punctuation, random_state=args.seed,
                           n_threads=args.threads, verbose=1)
        print(f"{cell}: hidden {hidden}")
        start = time.perf_counter()
        lm.fit(train)
        seconds = time.perf_counter() - start
        ppl = lm.perplexity(test)
        rows.append((cell, hidden, lm._spec.param_count, seconds, ppl))
        print(f"{cell}: held-out perplexity {ppl:.1f} after {lm.n_iter_} epochs, {seconds:.0f} s")
        for prompt in prompts:
            guesses = ", ".join(f"{t} {p:.2f}" for t, p in lm.predict_next(prompt, k=5))
            print(f"  {prompt} ... {guesses}")
        sample = lm.generate(prompts[0], length=25, temperature=0.7, top_k=20, seed=args.seed)
        print(f"  sample: {prompts[0]}{sample}\n")

    print("| cell | hidden | parameters | training time | held-out perplexity |")
    print("|---|---:|---:|---:|---:|")
    for cell, hidden, params, seconds, ppl in rows:
        print(f"| {cell} | {hidden} | {params:,} | {seconds:.0f} s | {ppl:.1f} |")


if __name__ == "__main__":
    main()
