"""The text commands of ``rnnkit``: demo, train-text, next, generate, perplexity."""

from __future__ import annotations

import argparse
import math
import os
import textwrap
import time
from typing import Any

from .cli import UserError, positive_int

DEMO_PROMPTS = ("the return value of the", "if the condition is", "a list of", "an exception is raised if the")
_CELL_CHOICES = ("lstm", "gru", "rnn")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _read_text(path: str) -> str:
    """The content of a UTF-8 text file; errors name the file."""
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory, expected a text file")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    if not text.strip():
        raise UserError(f"{path}: the file is empty")
    return text


def _load_language_model(path: str) -> Any:
    from .io import load
    from .text import LanguageModel

    if not os.path.exists(path):
        raise UserError(f"{path}: no such model file")
    try:
        model = load(path)
    except ValueError as exc:
        message = str(exc)
        raise UserError(message if path in message else f"{path}: {message}") from None
    if not isinstance(model, LanguageModel):
        raise UserError(f"{path}: holds a {type(model).__name__}, not a language model (train one with train-text)")
    return model


def _describe(lm: Any) -> str:
    cell = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN (tanh)", "rnn_relu": "RNN (ReLU)"}[lm.cell]
    return (f"{lm.level}-level {cell}: embedding {lm.embedding_dim}, hidden {lm.hidden_size}, "
            f"{lm.num_layers} layer(s), vocabulary {len(lm.tokenizer_):,}, {lm._spec.param_count:,} parameters")


def _print_next(lm: Any, prompt: str, k: int) -> None:
    print(f"{prompt!r} ->")
    for token, p in lm.predict_next(prompt, k=k):
        print(f"  {token!r:<20} {p:6.3f}")


def _unigram_perplexity(tokenizer: Any, train: list, test: list) -> float:
    """Perplexity of add-one-smoothed token frequencies: the baseline a language model must beat."""
    import numpy as np

    counts = np.bincount(np.concatenate(tokenizer.transform(train)), minlength=len(tokenizer)) + 1.0
    ids = np.concatenate(tokenizer.transform(test))[1:]  # the first token is never predicted
    return math.exp(-float(np.log(counts[ids] / counts.sum()).mean()))


# ---------------------------------------------------------------------- commands
def _demo(args: argparse.Namespace) -> int:
    from .text import LanguageModel
    from .text.corpora import pydoc_topics

    train, test = pydoc_topics("train"), pydoc_topics("test")
    if args.corpus_chars:  # a quick run on the start of the corpus (tests)
        train, test = [" ".join(train)[: args.corpus_chars]], [" ".join(test)[: args.corpus_chars // 4]]
    lm = LanguageModel(cell=args.cell, hidden_size=args.hidden, embedding_dim=64, seq_len=32, batch_size=16,
                       max_vocab=2000, punctuation="strip", max_epochs=args.epochs, learning_rate=5e-3,
                       random_state=args.seed, verbose=1, n_threads=args.threads)
    print("rnnkit demo: a word-level language model of the Python documentation (pydoc_data.topics),")
    print(f"{len(train)} topics for training and {len(test)} held out; seed {args.seed}\n", flush=True)
    start = time.perf_counter()
    lm.fit(train)
    seconds = time.perf_counter() - start
    print(f"\n{_describe(lm)}")
    print(f"trained on {lm.n_tokens_:,} tokens in {seconds:.1f} s")
    print(f"held-out perplexity {lm.perplexity(test):.1f} (word frequencies alone: "
          f"{_unigram_perplexity(lm.tokenizer_, train, test):.1f})\n")
    print("the five most likely next words:")
    width = max(len(p) for p in DEMO_PROMPTS)
    for prompt in DEMO_PROMPTS:
        guesses = "  ".join(f"{token} {p:.2f}" for token, p in lm.predict_next(prompt, k=5))
        print(f"  {prompt:<{width}} ... {guesses}")
    prompt = "the for statement"
    text = prompt + lm.generate(prompt, length=40, temperature=0.7, top_k=20, seed=args.seed)
    print("\nsampled continuation (temperature 0.7, top-k 20):")
    print(textwrap.indent(textwrap.fill(text, 88), "  "))
    return 0


def _train_text(args: argparse.Namespace) -> int:
    from .text import LanguageModel

    text = _read_text(args.file)
    lm = LanguageModel(level=args.level, cell=args.cell, hidden_size=args.hidden, embedding_dim=args.embedding,
                       num_layers=args.layers, max_epochs=args.epochs, batch_size=args.batch_size,
                       seq_len=args.seq_len, learning_rate=args.lr, lr_schedule=args.lr_schedule,
                       max_vocab=args.max_vocab, validation_fraction=args.validation, random_state=args.seed, verbose=1,
                       n_threads=args.threads)
    start = time.perf_counter()
    lm.fit(text)
    print(f"{_describe(lm)}; trained on {lm.n_tokens_:,} tokens in {time.perf_counter() - start:.1f} s")
    if lm.validation_perplexity_:
        print(f"best validation perplexity {lm.best_validation_perplexity_:.2f}")
    lm.save(args.out)
    print(f"saved to {args.out}")
    return 0


def _next(args: argparse.Namespace) -> int:
    _print_next(_load_language_model(args.model), args.prompt, args.k)
    return 0


def _generate(args: argparse.Namespace) -> int:
    lm = _load_language_model(args.model)
    text = lm.generate(args.prompt, length=args.length, temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    print(args.prompt + text)
    return 0


def _perplexity(args: argparse.Namespace) -> int:
    lm = _load_language_model(args.model)
    print(f"{lm.perplexity(_read_text(args.file)):.3f}")
    return 0


# ---------------------------------------------------------------------- parsers
def _cell_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cell", choices=_CELL_CHOICES, default="lstm", help="recurrent cell (default: %(default)s)")


def _threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N",
                        help="threads for the C++ core (default: all, or OMP_NUM_THREADS)")


def _command(sub: Any, name: str, func: Any, summary: str, description: str, example: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, formatter_class=argparse.RawDescriptionHelpFormatter, help=summary,
                            description=description, epilog=f"example:\n  {example}")
    parser.set_defaults(func=func)
    return parser


def _model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a model saved by 'rnnkit train-text'")


def register(sub: Any) -> None:
    """Add the text commands to the ``rnnkit`` parser's subcommands."""
    demo = _command(
        sub, "demo", _demo, "train a word-level language model on the Python docs and use it",
        "Train a word-level language model on the Python documentation that ships with every\n"
        "CPython (pydoc_data.topics, about 60k words), then print the five most likely next words\n"
        "for a few prompts and a sampled continuation. About a minute on 2 cores.",
        "rnnkit demo --cell gru --epochs 3 --seed 1")
    demo.add_argument("--epochs", type=positive_int, default=6, help="passes over the text (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.add_argument("--hidden", type=positive_int, default=256, help="hidden units (default: %(default)s)")
    _cell_option(demo)
    _threads_option(demo)
    demo.add_argument("--corpus-chars", type=positive_int, default=None, help=argparse.SUPPRESS)

    train = _command(
        sub, "train-text", _train_text, "train a language model on a text file",
        "Train a word- or character-level language model on a UTF-8 text file and save it.\n"
        "Use the model with 'rnnkit next', 'rnnkit generate' and 'rnnkit perplexity'.",
        "rnnkit train-text book.txt --cell gru --level word --epochs 5 --out book.npz")
    train.add_argument("file", metavar="FILE", help="UTF-8 text to learn from")
    train.add_argument("--out", required=True, metavar="MODEL", help="where to save the model (.npz)")
    _cell_option(train)
    train.add_argument("--level", choices=("word", "char"), default="word",
                       help="predict words or characters (default: %(default)s)")
    train.add_argument("--epochs", type=positive_int, default=5, help="passes over the text (default: %(default)s)")
    train.add_argument("--hidden", type=positive_int, default=256, help="hidden units (default: %(default)s)")
    train.add_argument("--embedding", type=positive_int, default=64, help="embedding size (default: %(default)s)")
    train.add_argument("--layers", type=positive_int, default=1, help="recurrent layers (default: %(default)s)")
    train.add_argument("--seq-len", type=positive_int, default=32,
                       help="tokens per training window: the BPTT horizon and the context used (default: %(default)s)")
    train.add_argument("--batch-size", type=positive_int, default=16, help="windows per batch (default: %(default)s)")
    train.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate (default: %(default)s)")
    train.add_argument("--lr-schedule", choices=("adaptive", "cosine"), default=None,
                       help="change the learning rate over the epochs: adaptive divides it by 5 after an epoch "
                            "that does not improve, cosine anneals it to 0 over --epochs (default: constant)")
    train.add_argument("--max-vocab", type=positive_int, default=10000,
                       help="vocabulary size limit; rarer tokens become <unk> (default: %(default)s)")
    train.add_argument("--validation", type=_fraction, default=0.0, metavar="FRACTION",
                       help="hold out this fraction of the text (its end), report its perplexity per epoch and keep "
                            "the best epoch's weights (default: %(default)s)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    _threads_option(train)

    nxt = _command(
        sub, "next", _next, "the most likely next words after a prompt",
        "Print the k most likely next tokens after PROMPT, with their probabilities.",
        'rnnkit next book.npz "Artificial intelligence is the" -k 5')
    _model_argument(nxt)
    nxt.add_argument("prompt", metavar="PROMPT", help="the text to continue")
    nxt.add_argument("-k", type=positive_int, default=5, help="how many tokens to list (default: %(default)s)")

    gen = _command(
        sub, "generate", _generate, "sample a continuation of a prompt",
        "Sample LENGTH tokens after PROMPT and print the prompt with its continuation.",
        'rnnkit generate book.npz --prompt "It was" --length 50 --temperature 0.8 --top-k 20 --seed 1')
    _model_argument(gen)
    gen.add_argument("--prompt", required=True, help="the text to continue (at least one token)")
    gen.add_argument("--length", type=int, default=50, help="tokens to generate (default: %(default)s)")
    gen.add_argument("--temperature", type=float, default=1.0,
                     help="< 1: safer, > 1: more varied, 0: always the most likely token (default: %(default)s)")
    gen.add_argument("--top-k", type=positive_int, default=None, metavar="K",
                     help="sample among the K most likely tokens only (default: all)")
    gen.add_argument("--seed", type=int, default=None, help="random seed for the sampling (default: none)")

    ppl = _command(
        sub, "perplexity", _perplexity, "a language model's perplexity on a text file",
        "Print the perplexity of MODEL on a UTF-8 text file (lower is better).",
        "rnnkit perplexity book.npz held_out.txt")
    _model_argument(ppl)
    ppl.add_argument("file", metavar="FILE", help="UTF-8 text to score")
