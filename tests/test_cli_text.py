"""The text commands of ``rnnkit``: demo, train-text, next, generate, perplexity (tiny data, tiny epochs)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from rnnkit.cli import main

CORPUS = "the cat sat on the mat . the dog sat on the log . a cat and a dog ran to the park .\n" * 20
TRAIN = ["--epochs", "2", "--hidden", "16", "--embedding", "8", "--seq-len", "8", "--threads", "1"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_text")
    text = folder / "corpus.txt"
    text.write_text(CORPUS, encoding="utf-8")
    out = folder / "lm.npz"
    assert main(["train-text", str(text), "--out", str(out), *TRAIN]) == 0
    return out


def run(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_the_text_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "train-text", "next", "generate", "perplexity"):
        assert command in out


@pytest.mark.parametrize("command, phrase", [
    ("demo", "pydoc_data.topics"),
    ("train-text", "--level"),
    ("next", "most likely next"),
    ("generate", "--temperature"),
    ("perplexity", "lower is better"),
])
def test_each_command_explains_itself(command, phrase, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert phrase in out and "example" in out


def test_train_next_generate_perplexity(model_path, tmp_path, capsys):
    code, out, _ = run(["next", str(model_path), "the cat sat on the", "-k", "3"], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0] == "'the cat sat on the' ->" and len(lines) == 4
    probs = [float(line.split()[-1]) for line in lines[1:]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001

    args = ["generate", str(model_path), "--prompt", "a dog", "--length", "6", "--temperature", "0.5",
            "--top-k", "3", "--seed", "1"]
    code, first, _ = run(args, capsys)
    assert code == 0 and first.startswith("a dog") and len(first.split()) >= 4
    assert run(args, capsys)[1] == first  # the seed fixes the sample

    held_out = tmp_path / "held_out.txt"
    held_out.write_text("the dog sat on the mat .", encoding="utf-8")
    code, out, _ = run(["perplexity", str(model_path), str(held_out)], capsys)
    assert code == 0 and float(out) > 1.0


def test_train_text_char_level_with_validation(tmp_path, capsys):
    text = tmp_path / "chars.txt"
    text.write_text(CORPUS, encoding="utf-8")
    out = tmp_path / "chars.npz"
    code, stdout, _ = run(["train-text", str(text), "--out", str(out), "--level", "char", "--cell", "gru",
                           "--validation", "0.1", "--lr-schedule", "cosine", *TRAIN], capsys)
    assert code == 0 and out.exists()
    assert "Epoch 2" in stdout and "validation perplexity" in stdout and "char-level GRU" in stdout
    assert "learning rate 0.005," in stdout and "learning rate 0.0025," in stdout  # cosine over 2 epochs
    code, stdout, _ = run(["next", str(out), "the c", "-k", "2"], capsys)
    assert code == 0 and len(stdout.strip().splitlines()) == 3


def test_demo_small(capsys):
    code, out, _ = run(["demo", "--epochs", "1", "--hidden", "8", "--cell", "rnn", "--threads", "1",
                        "--corpus-chars", "20000"], capsys)
    assert code == 0
    assert "held-out perplexity" in out and "Epoch 1" in out and "RNN (tanh)" in out
    assert "the return value of the" in out and "sampled continuation" in out


# ----------------------------------------------------------------------------- user errors
def expect_user_error(args, capsys, *fragments):
    code, _, err = run(args, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rnnkit {args[0]}: error:"), err
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_missing_files(tmp_path, capsys, model_path):
    missing = str(tmp_path / "nope.txt")
    expect_user_error(["train-text", missing, "--out", str(tmp_path / "m.npz")], capsys, "nope.txt", "no such file")
    expect_user_error(["next", str(tmp_path / "nope.npz"), "the"], capsys, "nope.npz", "no such model file")
    expect_user_error(["generate", str(tmp_path / "nope.npz"), "--prompt", "the"], capsys, "nope.npz")
    expect_user_error(["perplexity", str(model_path), missing], capsys, "nope.txt")


def test_malformed_files(tmp_path, capsys, model_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    expect_user_error(["next", str(junk), "the"], capsys, "junk.npz")
    text_model = tmp_path / "text.npz"
    text_model.write_text("hello", encoding="utf-8")
    expect_user_error(["generate", str(text_model), "--prompt", "the"], capsys, "text.npz", "not")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    expect_user_error(["train-text", str(empty), "--out", str(tmp_path / "m.npz")], capsys, "empty.txt", "empty")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 au lait".encode("latin-1"))
    expect_user_error(["train-text", str(latin1), "--out", str(tmp_path / "m.npz")], capsys, "latin1.txt", "UTF-8")
    folder = tmp_path / "folder"
    folder.mkdir()
    expect_user_error(["perplexity", str(model_path), str(folder)], capsys, "folder", "directory")


def test_wrong_kind_of_model_and_bad_values(tmp_path, capsys, model_path):
    from rnnkit.text import TextClassifier

    clf = TextClassifier(hidden_size=4, embedding_dim=4, max_epochs=1, random_state=0, n_threads=1)
    clf.fit(["good", "bad", "fine", "awful"], [1, 0, 1, 0]).save(tmp_path / "clf.npz")
    expect_user_error(["next", str(tmp_path / "clf.npz"), "the"], capsys, "TextClassifier", "not a language model")
    expect_user_error(["next", str(model_path), "   "], capsys, "no tokens")
    expect_user_error(["generate", str(model_path), "--prompt", "the", "--temperature", "-1"], capsys, "temperature")
    with pytest.raises(SystemExit) as exc:  # argparse rejects bad option values itself
        main(["train-text", "x.txt", "--out", "m.npz", "--epochs", "0"])
    assert exc.value.code == 2
    assert "positive integer" in capsys.readouterr().err


def test_python_dash_m_reports_without_traceback(tmp_path):
    missing = tmp_path / "absent.txt"
    proc = subprocess.run([sys.executable, "-m", "rnnkit", "train-text", str(missing), "--out", "m.npz"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "absent.txt" in proc.stderr and "Traceback" not in proc.stderr
