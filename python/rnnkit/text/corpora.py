"""Text that every Python installation carries, for demos, examples and tests."""

from __future__ import annotations

import re
from typing import Optional

# reST markup lines: section underlines ("*****", "====="), table borders and rows.
_RULE = re.compile(r"[^\w\s]*")
_TABLE_ROW = ("|", "+")


def pydoc_topics(split: Optional[str] = None) -> list[str]:
    """The documentation topics of the standard library's ``pydoc_data.topics`` (about 90k tokens).

    They are the texts that ``help("while")`` and friends print: the language reference's
    sections on statements, expressions, types and special methods. Lines that are only
    markup (section underlines, table borders, table rows) are removed.

    Parameters
    ----------
    split : None, "train" or "test"
        None: one text per topic, in key order. "train" / "test": the topics' lines in key
        order cut into blocks of 40 lines by :func:`split_blocks`; "test" is every tenth
        block, about a tenth of the text spread over the whole corpus, and "train" the rest.
        Each block is one text.
    """
    from pydoc_data.topics import topics

    if split not in (None, "train", "test"):
        raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")
    texts = []
    for key in sorted(topics):
        lines = [ln for ln in topics[key].splitlines()
                 if ln.strip() and not _RULE.fullmatch(ln.strip()) and not ln.lstrip().startswith(_TABLE_ROW)]
        texts.append("\n".join(lines))
    if split is None:
        return texts
    train, test = split_blocks("\n".join(texts))
    return train if split == "train" else test


def split_blocks(text: str, block: int = 40, every: int = 10) -> tuple[list[str], list[str]]:
    """Hold out part of a text for testing: ``(train_blocks, test_blocks)``.

    The non-blank lines are cut into blocks of ``block`` lines; every ``every``-th block
    (the ``every``-th, the ``2 * every``-th, ...) is held out. The test text is thus spread
    over the whole text in contiguous pieces, and the split is fixed.
    """
    lines = [ln for ln in text.splitlines() if ln.strip()]
    blocks = ["\n".join(lines[i : i + block]) for i in range(0, len(lines), block)]
    train = [b for i, b in enumerate(blocks) if i % every != every - 1]
    test = [b for i, b in enumerate(blocks) if i % every == every - 1]
    return train, test
