"""Music: a next-note model over pitch/duration tokens, Bach chorales, and MIDI output.

A melody is a list of notes ``(pitch, duration)``: ``pitch`` a MIDI note number (60 is middle
C) or ``None`` for a rest, ``duration`` in quarter notes (1.0 is a crotchet, 0.5 a quaver).
Each note is one token (``"67_0.5"``, a rest ``"R_1"``), and :class:`MelodyModel` is a
:class:`~rnnkit.text.LanguageModel` over those tokens: it predicts the next note from the
notes before it, and samples new melodies note by note.

For all four voices at once, :func:`bach_piano_rolls` gives each chorale as a piano roll (one
row of 0 and 1 over the 128 pitches per beat): the per-step multi-label targets of
``RNNClassifier(output="sequence")`` (examples/polyphonic_music.py).

The Bach chorales come from the corpus bundled with ``music21``, and MIDI files are written
with ``mido``; both are optional (``pip install "rnnkit[music]"``) and imported only when used.

>>> from rnnkit.music import MelodyModel, bach_chorales, write_midi
>>> melodies = bach_chorales()                                               # doctest: +SKIP
>>> model = MelodyModel(max_epochs=20, random_state=0).fit(melodies)         # doctest: +SKIP
>>> write_midi(model.generate(length=64, temperature=0.8, seed=1), "tune.mid")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction
from typing import Any, Iterable, Optional, Sequence, Tuple

import numpy as np

from .text.models import LanguageModel

Note = Tuple[Optional[int], float]
END = "END"  # token between melodies: the model learns how pieces begin and end

__all__ = ["END", "MelodyModel", "bach_chorales", "bach_piano_rolls", "melody_to_tokens", "tokens_to_melody",
           "write_midi"]


def _duration_text(duration: float) -> str:
    frac = Fraction(duration).limit_denominator(48)
    if frac.denominator == 1:
        return str(frac.numerator)
    if frac.denominator in (2, 4, 8, 16):
        return repr(float(frac))
    return f"{frac.numerator}/{frac.denominator}"  # triplets and other tuplets stay exact


def _check_note(note: Any, where: str) -> Note:
    if not isinstance(note, (tuple, list)) or len(note) != 2:
        raise TypeError(f"{where} must be a (pitch, duration) pair, got {note!r}")
    pitch, duration = note
    if pitch is not None and (isinstance(pitch, bool) or not isinstance(pitch, numbers.Integral)
                              or not 0 <= pitch <= 127):
        raise ValueError(f"{where}: pitch must be a MIDI note number in [0, 127] or None (a rest), got {pitch!r}")
    if isinstance(duration, bool) or not isinstance(duration, numbers.Real) or not math.isfinite(duration) \
            or duration <= 0:
        raise ValueError(f"{where}: duration must be a positive number of quarter notes, got {duration!r}")
    return (None if pitch is None else int(pitch)), float(duration)


def melody_to_tokens(melody: Iterable[Any]) -> list[str]:
    """The tokens of a melody: ``"<pitch>_<duration>"`` per note, ``"R_<duration>"`` per rest.

    Raises
    ------
    TypeError, ValueError
        A note is not a ``(pitch, duration)`` pair with a MIDI pitch (or None) and a positive duration.
    """
    tokens = []
    for i, note in enumerate(melody):
        pitch, duration = _check_note(note, f"melody[{i}]")
        tokens.append(f"{'R' if pitch is None else pitch}_{_duration_text(duration)}")
    return tokens


def tokens_to_melody(tokens: Iterable[str]) -> list[Note]:
    """Inverse of :func:`melody_to_tokens`; :data:`END` and unknown tokens are skipped."""
    notes: list[Note] = []
    for token in tokens:
        pitch, sep, duration = token.partition("_")
        if not sep or not (pitch == "R" or pitch.isdigit()):
            continue
        try:
            value = float(Fraction(duration))
        except (ValueError, ZeroDivisionError):
            continue
        notes.append((None if pitch == "R" else int(pitch), value))
    return notes


class MelodyModel(LanguageModel):
    """Next-note model: a language model whose tokens are (pitch, duration) notes.

    Training joins the melodies, each followed by :data:`END`, and learns to predict every
    next note from up to ``seq_len`` notes before it (see :class:`~rnnkit.text.LanguageModel`
    for the training scheme: embedding, recurrent stack and softmax trained together in C++).

    Parameters
    ----------
    cell, hidden_size, embedding_dim, num_layers, dropout, max_epochs, batch_size, seq_len,
    learning_rate, clip_norm, validation_fraction, random_state, verbose, n_threads, device, lr_schedule
        As for :class:`~rnnkit.text.LanguageModel`. Every distinct note of the training
        melodies gets a token (no vocabulary limit); notes never seen in training count as
        the unknown token when scoring.

    Attributes
    ----------
    tokenizer_ : rnnkit.text.Tokenizer
        The note vocabulary (``tokenizer_.vocab_``).
    loss_curve_, validation_perplexity_, n_iter_, n_tokens_
        As for :class:`~rnnkit.text.LanguageModel` (perplexities per note).
    """

    # Fixed tokenizer options: notes are whitespace-separated tokens, kept exactly.
    level = "word"
    max_vocab = None
    min_freq = 1
    lower = False
    punctuation = "keep"

    def __init__(
        self,
        cell: str = "lstm",
        hidden_size: int = 128,
        embedding_dim: int = 32,
        num_layers: int = 1,
        dropout: float = 0.0,
        max_epochs: int = 20,
        batch_size: int = 32,
        seq_len: int = 64,
        learning_rate: float = 3e-3,
        clip_norm: Optional[float] = 1.0,
        validation_fraction: float = 0.0,
        random_state: Optional[int] = None,
        verbose: int = 0,
        n_threads: Optional[int] = None,
        device: str = "cpu",
        lr_schedule: Optional[str] = None,
    ) -> None:
        self.cell = cell
        self.hidden_size = hidden_size
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.dropout = dropout
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.learning_rate = learning_rate
        self.clip_norm = clip_norm
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.verbose = verbose
        self.n_threads = n_threads
        self.device = device
        self.lr_schedule = lr_schedule

    @staticmethod
    def _texts(melodies: Any, name: str = "melodies") -> list[str]:
        if isinstance(melodies, (str, bytes)) or not isinstance(melodies, Iterable):
            raise TypeError(f"{name} must be a list of melodies (lists of (pitch, duration) notes)")
        texts = []
        for i, melody in enumerate(melodies):
            if isinstance(melody, (str, bytes)) or not isinstance(melody, Iterable):
                raise TypeError(f"{name}[{i}] must be a list of (pitch, duration) notes, got {type(melody).__name__}")
            try:
                tokens = melody_to_tokens(melody)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{name}[{i}]: {exc}") from exc
            texts.append(" ".join(tokens + [END]))
        if not texts:
            raise ValueError(f"{name} must hold at least one melody")
        return texts

    def fit(self, melodies: Sequence[Sequence[Note]], y: Any = None) -> "MelodyModel":
        """Learn the note vocabulary and train on ``melodies`` (a list of lists of notes)."""
        return super().fit(self._texts(melodies))

    def perplexity(self, melodies: Sequence[Sequence[Note]]) -> float:  # type: ignore[override]
        """exp(mean cross-entropy per note) over ``melodies`` (END tokens included)."""
        return super().perplexity(self._texts(melodies))

    def score(self, melodies: Sequence[Sequence[Note]], y: Any = None) -> float:  # type: ignore[override]
        """Mean log-likelihood per note (nats): ``-log(perplexity(melodies))``."""
        return -math.log(self.perplexity(melodies))

    def _prompt(self, prime: Optional[Sequence[Note]]) -> str:
        tokens = [END] + (melody_to_tokens(prime) if prime is not None else [])
        return " ".join(tokens)

    def predict_next(self, prime: Optional[Sequence[Note]] = None, k: int = 5) -> list[tuple[Any, float]]:  # type: ignore[override]
        """The ``k`` most probable next notes after ``prime`` (None: the first note of a piece).

        Returns
        -------
        list of (note, probability)
            ``note`` is a (pitch, duration) pair, :data:`END` for "the piece ends here", or
            ``"<unk>"``.
        """
        ranked = super().predict_next(self._prompt(prime), k)
        out: list[tuple[Any, float]] = []
        for token, p in ranked:
            notes = tokens_to_melody([token])
            out.append((notes[0] if notes else token, p))
        return out

    def _never_sample(self) -> list[int]:
        return [0, self.tokenizer_._index.get(END, 0)]

    def generate(self, prime: Optional[Sequence[Note]] = None, length: int = 64,  # type: ignore[override]
                 temperature: float = 1.0, top_k: Optional[int] = None, seed: Optional[int] = None) -> list[Note]:
        """Sample ``length`` notes that continue ``prime`` (None: start a new piece).

        Parameters are those of :meth:`rnnkit.text.LanguageModel.generate`; :data:`END` and
        the unknown token are never sampled. Returns the new notes only.
        """
        text = super().generate(self._prompt(prime), length, temperature, top_k, seed)
        return tokens_to_melody(text.split())


# ---------------------------------------------------------------------- data and MIDI
def bach_chorales(part: str = "Soprano", transpose: bool = True, limit: Optional[int] = None) -> list[list[Note]]:
    """One voice of each Bach chorale in the corpus that ships with ``music21``.

    Parameters
    ----------
    part : str
        The voice to read ("Soprano", "Alto", "Tenor" or "Bass"); chorales without a part of
        that name are skipped.
    transpose : bool
        Transpose each chorale so that its key (music21's key analysis) is C major or A minor,
        as is usual for these models: the network then learns degrees, not 12 copies of them.
    limit : int, optional
        Read at most this many chorales (parsing takes about 0.4 s each).

    Returns
    -------
    list of melodies, each a list of (pitch, duration) notes (chords keep their top note).
    """
    melodies: list[list[Note]] = []
    for score in _chorale_scores("bach_chorales", limit):
        if limit is not None and len(melodies) >= limit:
            break
        voice = next((p for p in score.parts if (p.partName or "").lower() == part.lower()), None)
        if voice is None:
            continue
        shift = _key_shift(score) if transpose else 0
        notes: list[Note] = []
        for element in voice.flatten().notesAndRests:
            duration = float(element.quarterLength)
            if duration <= 0:  # grace notes
                continue
            if element.isRest:
                notes.append((None, duration))
            else:
                pitches = element.pitches
                notes.append((max(p.midi for p in pitches) + shift, duration))
        if notes:
            melodies.append(notes)
    return melodies


def bach_piano_rolls(step: float = 1.0, transpose: bool = True, limit: Optional[int] = None) -> list[np.ndarray]:
    """Every Bach chorale in the corpus that ships with ``music21`` as a piano roll: all voices,
    one frame per ``step`` quarter notes, 128 MIDI pitches (the targets of a multi-label model,
    as in Boulanger-Lewandowski et al.'s polyphonic music modelling on these chorales).

    Parameters
    ----------
    step : float
        Frame length in quarter notes (1.0: a frame per beat, the usual JSB Chorales grid).
    transpose : bool
        Transpose each chorale to C major / A minor (as :func:`bach_chorales`).
    limit : int, optional
        Read at most this many chorales (parsing takes about 0.4 s each).

    Returns
    -------
    list of uint8 arrays (n_frames, 128)
        1 where a pitch sounds at a frame's start (notes between two frame starts, such as
        passing notes on a beat grid, are not seen).
    """
    if isinstance(step, bool) or not isinstance(step, numbers.Real) or not 0 < step < math.inf:
        raise ValueError(f"step must be a positive number of quarter notes, got {step!r}")
    rolls: list[np.ndarray] = []
    for score in _chorale_scores("bach_piano_rolls", limit):
        if limit is not None and len(rolls) >= limit:
            break
        shift = _key_shift(score) if transpose else 0
        spans = [(float(n.offset), float(n.offset + n.quarterLength), p.midi + shift)
                 for n in score.flatten().notes if n.quarterLength > 0 for p in n.pitches]
        if not spans:
            continue
        roll = np.zeros((int(math.ceil(max(end for _, end, _ in spans) / step - 1e-9)), 128), dtype=np.uint8)
        for start, end, pitch in spans:
            if 0 <= pitch < 128:  # the frames whose start lies in [start, end)
                roll[int(math.ceil(start / step - 1e-9)) : int(math.ceil(end / step - 1e-9)), pitch] = 1
        rolls.append(roll)
    return rolls


def _chorale_scores(caller: str, limit: Optional[int]) -> Any:
    """The chorales of music21's corpus, parsed one by one, after checking ``limit`` (the caller
    stops at it: it counts the chorales it keeps)."""
    try:
        from music21 import corpus
    except ImportError as exc:
        raise ImportError(f"{caller}() reads the corpus bundled with music21: pip install \"rnnkit[music]\"") from exc
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1):
        raise ValueError(f"limit must be None or a positive integer, got {limit!r}")
    return corpus.chorales.Iterator(returnType="stream")


def _key_shift(score: Any) -> int:
    """Semitones (-5..6) that take a music21 score's analysed key to C major or A minor."""
    key = score.analyze("key")
    target = 0 if key.mode == "major" else 9  # C major / A minor
    shift = (target - key.tonic.pitchClass) % 12
    return shift - 12 if shift > 6 else shift


def write_midi(melody: Iterable[Any], path: Any, tempo: float = 90.0, program: int = 0, velocity: int = 80) -> None:
    """Write a melody to a standard MIDI file (type 0, one track) with ``mido``.

    Parameters
    ----------
    melody : list of (pitch, duration)
        MIDI pitches (None: rest) and durations in quarter notes.
    path : str or path-like
    tempo : float
        Quarter notes per minute.
    program : int
        General MIDI instrument, 0-127 (0: acoustic grand piano; 19: church organ).
    velocity : int
        Loudness of every note, 1-127.
    """
    try:
        import mido
    except ImportError as exc:
        raise ImportError("write_midi() needs mido: pip install \"rnnkit[music]\"") from exc
    notes = [_check_note(n, f"melody[{i}]") for i, n in enumerate(melody)]
    if isinstance(tempo, bool) or not isinstance(tempo, numbers.Real) or not 1 <= tempo <= 1000:
        raise ValueError(f"tempo must be a number of quarter notes per minute in [1, 1000], got {tempo!r}")
    for name, value, low in (("program", program, 0), ("velocity", velocity, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= 127:
            raise ValueError(f"{name} must be an integer in [{low}, 127], got {value!r}")
    ticks = 480
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo), time=0))
    track.append(mido.Message("program_change", program=int(program), time=0))
    pending, error = 0, 0.0  # ticks of rest before the next note; rounding carried over
    for pitch, duration in notes:
        exact = duration * ticks + error
        length = int(round(exact))
        error = exact - length
        if pitch is None:
            pending += length
            continue
        track.append(mido.Message("note_on", note=pitch, velocity=int(velocity), time=pending))
        track.append(mido.Message("note_off", note=pitch, velocity=0, time=length))
        pending = 0
    track.append(mido.MetaMessage("end_of_track", time=pending))
    midi = mido.MidiFile(type=0, ticks_per_beat=ticks)
    midi.tracks.append(track)
    midi.save(path)
