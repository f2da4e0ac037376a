"""Turning text into token ids and back: :class:`Tokenizer` (word or character level)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np

from .._fitting import _Base, _check_flags
from ..exceptions import not_fitted_error

_LEVELS = ("word", "char")
_PUNCTUATION = ("split", "strip", "keep")

# A word is a run of letters, digits and underscores, with inner apostrophes ("don't").
_WORD = r"\w+(?:['\u2019]\w+)*"
_WORD_PATTERNS = {
    "split": re.compile(_WORD + r"|[^\w\s]"),  # every punctuation character is a token
    "strip": re.compile(_WORD),  # punctuation is dropped
}
_PUNCT_CHAR = re.compile(r"[^\w\s]")
# Detokenizing word-level text with split punctuation: no space before closers, none after openers.
_NO_SPACE_BEFORE = frozenset(".,;:!?)]}%")
_NO_SPACE_AFTER = frozenset("([{")


def check_texts(texts: Any, name: str = "texts", allow_str: bool = False) -> list[str]:
    """``texts`` as a non-empty list of strings; TypeError / ValueError naming what is wrong.

    A single string is one text when ``allow_str`` and an error otherwise (iterating over it
    would silently treat every character as a document).
    """
    if isinstance(texts, str):
        if allow_str:
            return [texts]
        raise TypeError(f"{name} must be a list of strings, got a single string (wrap it in a list)")
    if isinstance(texts, (bytes, bytearray)):
        raise TypeError(f"{name} must be strings, got bytes (decode them first)")
    if isinstance(texts, np.ndarray) and texts.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of strings, got an array of shape {texts.shape}")
    try:
        items = list(texts)
    except TypeError as exc:
        raise TypeError(f"{name} must be a list of strings, got {type(texts).__name__}") from exc
    if not items:
        raise ValueError(f"{name} is empty: at least one text is required")
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] must be a string, got {type(t).__name__}")
    return [str(t) for t in items]  # numpy str_ -> str


class Tokenizer(_Base):
    """Split text into word or character tokens and map them to integer ids.

    Id 0 is ``unk_token``, which stands for every token outside the vocabulary; the other
    ids follow the tokens' frequency in the texts given to :meth:`fit` (most frequent first,
    ties in alphabetical order), so the result does not depend on the order of the texts.

    Parameters
    ----------
    level : {"word", "char"}
        Tokens are words (and, with ``punctuation="split"``, punctuation marks), or single
        characters (whitespace included).
    max_vocab : int or None
        Largest vocabulary size, ``unk_token`` included; the most frequent tokens are kept.
    min_freq : int
        Tokens seen fewer times than this in the training texts become ``unk_token``.
    lower : bool
        Lower-case the text first.
    punctuation : {"split", "strip", "keep"}
        Characters other than letters, digits, underscores and whitespace. "split": each is a
        token of its own; "strip": they are removed; "keep" (word level): words are whatever
        lies between whitespace, so punctuation stays attached ("end." is one token). At
        character level "split" and "keep" are the same.
    unk_token : str
        The token for everything outside the vocabulary.

    Attributes
    ----------
    vocab_ : list of str
        The vocabulary: ``vocab_[i]`` is the token with id ``i``; ``vocab_[0] == unk_token``.
    counts_ : dict
        How often each vocabulary token occurred in the training texts.

    Examples
    --------
    >>> tok = Tokenizer(max_vocab=100).fit(["The cat sat.", "The dog sat!"])
    >>> tok.tokenize("The cat ran.")
    ['the', 'cat', 'ran', '.']
    >>> tok.decode(tok.encode("The cat ran."))
    'the cat <unk>.'
    """

    def __init__(
        self,
        level: str = "word",
        max_vocab: Optional[int] = None,
        min_freq: int = 1,
        lower: bool = True,
        punctuation: str = "split",
        unk_token: str = "<unk>",
    ) -> None:
        self.level = level
        self.max_vocab = max_vocab
        self.min_freq = min_freq
        self.lower = lower
        self.punctuation = punctuation
        self.unk_token = unk_token

    def _validate_params(self) -> None:
        if self.level not in _LEVELS:
            raise ValueError(f"level must be one of {list(_LEVELS)}, got {self.level!r}")
        if self.punctuation not in _PUNCTUATION:
            raise ValueError(f"punctuation must be one of {list(_PUNCTUATION)}, got {self.punctuation!r}")
        for name, low in (("max_vocab", 2), ("min_freq", 1)):
            value = getattr(self, name)
            if value is None and name == "max_vocab":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"{name} must be an integer, got {value!r}")
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        _check_flags(self, "lower")
        if not isinstance(self.unk_token, str) or not self.unk_token:
            raise TypeError(f"unk_token must be a non-empty string, got {self.unk_token!r}")

    # ------------------------------------------------------------------ tokens
    def tokenize(self, text: str) -> list[str]:
        """The tokens of one text (no vocabulary needed)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        if self.lower:
            text = text.lower()
        if self.level == "char":
            return list(_PUNCT_CHAR.sub("", text) if self.punctuation == "strip" else text)
        if self.punctuation == "keep":
            return text.split()
        return _WORD_PATTERNS[self.punctuation].findall(text)

    def fit(self, texts: Union[str, Iterable[str]], y: Any = None) -> "Tokenizer":
        """Build the vocabulary from ``texts`` (a list of strings, or one string)."""
        self._validate_params()
        counts: Counter = Counter()
        for text in check_texts(texts, allow_str=True):
            counts.update(self.tokenize(text))
        counts.pop(self.unk_token, None)
        ranked = sorted(((n, tok) for tok, n in counts.items() if n >= self.min_freq),
                        key=lambda item: (-item[0], item[1]))
        if self.max_vocab is not None:
            ranked = ranked[: int(self.max_vocab) - 1]
        self._set_vocab([self.unk_token] + [tok for _, tok in ranked], {tok: n for n, tok in ranked})
        return self

    def _set_vocab(self, vocab: Sequence[str], counts: dict) -> None:
        self.vocab_ = list(vocab)
        self.counts_ = dict(counts)
        self._index = {tok: i for i, tok in enumerate(self.vocab_)}

    def _check_fitted(self) -> None:
        if not hasattr(self, "vocab_"):
            raise not_fitted_error(f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first.")

    @property
    def vocab_size_(self) -> int:
        """Number of ids (``len(vocab_)``)."""
        self._check_fitted()
        return len(self.vocab_)

    def __len__(self) -> int:
        return self.vocab_size_

    def __bool__(self) -> bool:  # not len(): an unfitted tokenizer is still a tokenizer
        return True

    # ------------------------------------------------------------------ ids
    def encode(self, text: str) -> np.ndarray:
        """Token ids of one text: an int64 array (tokens outside the vocabulary are 0)."""
        self._check_fitted()
        index = self._index
        return np.fromiter((index.get(tok, 0) for tok in self.tokenize(text)), dtype=np.int64)

    def transform(self, texts: Iterable[str]) -> list[np.ndarray]:
        """:meth:`encode` for every text of a list."""
        return [self.encode(t) for t in check_texts(texts)]

    def fit_transform(self, texts: Iterable[str], y: Any = None) -> list[np.ndarray]:
        """:meth:`fit`, then :meth:`transform`."""
        return self.fit(texts).transform(texts)

    def decode(self, ids: Iterable[int], glue: bool = False) -> str:
        """The text of a sequence of ids.

        Character tokens are concatenated; word tokens are joined by single spaces, except
        that (with ``punctuation="split"``) no space goes before ``.,;:!?)]}%`` or after ``([{``.
        With ``glue``, the result is meant to be appended to earlier text: it starts with the
        space that would separate it from that text (word level).
        """
        self._check_fitted()
        vocab = self.vocab_
        tokens = []
        for i in np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids).ravel():
            if not 0 <= int(i) < len(vocab):
                raise ValueError(f"token id {int(i)} is outside the vocabulary [0, {len(vocab)})")
            tokens.append(vocab[int(i)])
        if self.level == "char":
            return "".join(tokens)
        smart = self.punctuation == "split"
        out: list[str] = []
        previous = "" if not glue else " "
        for tok in tokens:
            if out or glue:
                if not (smart and (tok in _NO_SPACE_BEFORE or previous in _NO_SPACE_AFTER)):
                    out.append(" ")
            out.append(tok)
            previous = tok
        return "".join(out)

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict:
        """JSON-able parameters and vocabulary (for model files)."""
        self._check_fitted()
        return {"params": self.get_params(), "vocab": self.vocab_, "counts": [self.counts_.get(t, 0) for t in self.vocab_]}

    @classmethod
    def _from_state(cls, state: dict) -> "Tokenizer":
        tok = cls(**state["params"])
        tok._validate_params()
        vocab = state["vocab"]
        if not isinstance(vocab, list) or not vocab or not all(isinstance(t, str) for t in vocab):
            raise ValueError("damaged tokenizer vocabulary")
        tok._set_vocab(vocab, {t: int(n) for t, n in zip(vocab[1:], state["counts"][1:])})
        return tok
