"""rnnkit.music: note tokens, MelodyModel on a small melody, MIDI output, bad input."""
from __future__ import annotations

import numpy as np
import pytest

import rnnkit
from rnnkit.music import END, MelodyModel, melody_to_tokens, tokens_to_melody, write_midi

pytestmark = pytest.mark.filterwarnings("ignore::rnnkit.exceptions.ConvergenceWarning")

# A phrase in which every note fixes the next one (a rest included), repeated as separate pieces.
PHRASE = [(60, 1.0), (62, 0.5), (64, 0.5), (65, 1.0), (None, 0.5), (67, 1.5), (72, 2.0)]
TINY = dict(hidden_size=24, embedding_dim=8, seq_len=16, batch_size=4, max_epochs=40, learning_rate=1e-2,
            random_state=0, n_threads=1)


@pytest.fixture(scope="module")
def phrase_model():
    return MelodyModel(**TINY).fit([PHRASE] * 12)


def test_tokens_round_trip_exactly():
    melody = [(60, 1.0), (None, 0.25), (127, 1 / 3), (0, 2.0), (61, 0.125), (59, 2 / 3)]
    tokens = melody_to_tokens(melody)
    assert tokens == ["60_1", "R_0.25", "127_1/3", "0_2", "61_0.125", "59_2/3"]
    back = tokens_to_melody(tokens + [END, "<unk>"])
    assert [p for p, _ in back] == [p for p, _ in melody]
    np.testing.assert_allclose([d for _, d in back], [d for _, d in melody], rtol=1e-15)


def test_learns_the_phrase(phrase_model):
    assert phrase_model.loss_curve_[-1] < 0.1 * phrase_model.loss_curve_[0]
    (first, p), *_ = phrase_model.predict_next(None, k=3)
    assert first == (60, 1.0) and p > 0.8
    (after_rest, _), *_ = phrase_model.predict_next([(64, 0.5), (65, 1.0), (None, 0.5)], k=1)
    assert after_rest == (67, 1.5)
    (end, _), *_ = phrase_model.predict_next(PHRASE, k=1)
    assert end == END
    assert phrase_model.perplexity([PHRASE]) < 1.5


def test_generate_continues_and_never_emits_end(phrase_model):
    notes = phrase_model.generate(PHRASE[:2], length=20, temperature=0, seed=0)
    assert len(notes) == 20  # END is never sampled, so every step is a note
    assert notes[:5] == PHRASE[2:7]
    again = phrase_model.generate(PHRASE[:2], length=20, temperature=1.0, seed=3)
    assert again == phrase_model.generate(PHRASE[:2], length=20, temperature=1.0, seed=3)
    assert all(p is None or 0 <= p <= 127 for p, _ in again)


def test_save_load(phrase_model, tmp_path):
    path = tmp_path / "melody.npz"
    phrase_model.save(path)
    loaded = rnnkit.load(path)
    assert isinstance(loaded, MelodyModel)
    assert loaded.get_params() == phrase_model.get_params()
    assert loaded.generate(None, length=10, seed=1) == phrase_model.generate(None, length=10, seed=1)


def test_write_midi_round_trip(tmp_path):
    mido = pytest.importorskip("mido")
    path = tmp_path / "tune.mid"
    write_midi(PHRASE, path, tempo=120, program=19)
    midi = mido.MidiFile(path)
    assert midi.ticks_per_beat == 480
    events, clock = [], 0
    for message in midi.tracks[0]:
        clock += message.time
        if message.type in ("note_on", "note_off"):
            events.append((message.type, message.note, clock))
    starts = [(note, t) for kind, note, t in events if kind == "note_on"]
    assert [n for n, _ in starts] == [p for p, _ in PHRASE if p is not None]
    onsets = np.cumsum([0.0] + [d for _, d in PHRASE])[:-1] * 480
    assert [t for _, t in starts] == [int(o) for (p, _), o in zip(PHRASE, onsets) if p is not None]
    assert midi.length == pytest.approx(sum(d for _, d in PHRASE) * 0.5)  # 120 quarter notes per minute


def test_bad_input(tmp_path):
    with pytest.raises(TypeError, match=r"melodies\[0\]"):
        MelodyModel(**TINY).fit(["C D E"])
    with pytest.raises(ValueError, match="pitch"):
        MelodyModel(**TINY).fit([[(60, 1.0), (128, 1.0)]])
    with pytest.raises(ValueError, match="duration"):
        MelodyModel(**TINY).fit([[(60, 0.0)]])
    with pytest.raises(TypeError, match="pair"):
        melody_to_tokens([60, 62])
    with pytest.raises(ValueError, match="at least one"):
        MelodyModel(**TINY).fit([])
    with pytest.raises(ValueError, match="tempo"):
        write_midi(PHRASE, tmp_path / "x.mid", tempo=0)
    with pytest.raises(ValueError, match="program"):
        write_midi(PHRASE, tmp_path / "x.mid", program=128)


def test_bach_chorales_reads_the_music21_corpus():
    pytest.importorskip("music21")
    from rnnkit.music import bach_chorales

    melodies = bach_chorales(limit=2)
    assert len(melodies) == 2
    for melody in melodies:
        assert len(melody) > 10
        pitches = [p for p, _ in melody if p is not None]
        assert 48 <= min(pitches) and max(pitches) <= 84  # a soprano line, transposed by at most a tritone
    with pytest.raises(ValueError, match="limit"):
        bach_chorales(limit=0)


def test_bach_piano_rolls_hold_every_voice_at_each_beat():
    pytest.importorskip("music21")
    from rnnkit.music import bach_chorales, bach_piano_rolls

    rolls = bach_piano_rolls(limit=2)
    melodies = bach_chorales(limit=2)  # the soprano line, read on its own (these two have one)
    for roll, melody in zip(rolls, melodies):
        assert roll.dtype == np.uint8 and roll.shape[1] == 128
        assert 2 <= roll.sum(axis=1).min() and roll.sum(axis=1).max() <= 4  # four voices, unisons merge
        onset = 0.0
        for pitch, duration in melody:  # the soprano sounds at every beat its note spans
            for beat in range(int(np.ceil(onset - 1e-9)), int(np.ceil(onset + duration - 1e-9))):
                if pitch is not None:
                    assert roll[beat, pitch] == 1 and not roll[beat, pitch + 1 :].any(), (beat, pitch)
            onset += duration
        assert len(roll) == int(np.ceil(onset - 1e-9))
    halves = bach_piano_rolls(step=0.5, limit=1)[0]
    np.testing.assert_array_equal(halves[::2], rolls[0])
    with pytest.raises(ValueError, match="step"):
        bach_piano_rolls(step=0)
    with pytest.raises(ValueError, match="limit"):
        bach_piano_rolls(limit=0)
