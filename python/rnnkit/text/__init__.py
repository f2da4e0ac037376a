"""Text: :class:`Tokenizer`, :class:`LanguageModel` (next word / next character), :class:`TextClassifier`
and :class:`Seq2Seq` (encoder-decoder: translation, transduction).

>>> from rnnkit.text import LanguageModel, TextClassifier
>>> lm = LanguageModel(max_epochs=5, random_state=0).fit(texts)              # doctest: +SKIP
>>> lm.predict_next("the value of", k=5)                                      # doctest: +SKIP
>>> lm.generate("the value of", length=20, temperature=0.8, seed=0)           # doctest: +SKIP
>>> TextClassifier(random_state=0).fit(train_texts, labels).predict(["..."])  # doctest: +SKIP
"""

from .classifier import TextClassifier
from .models import LanguageModel
from .seq2seq import Seq2Seq
from .tokenizer import Tokenizer

__all__ = ["LanguageModel", "Seq2Seq", "TextClassifier", "Tokenizer"]
