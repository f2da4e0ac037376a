"""``rnnkit forecast`` / ``rnnkit classify`` and the readers behind them (.ts, labelled CSV, series CSV).

Everything runs on tiny files written to tmp_path, with tiny epochs and fixed seeds.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import rnnkit
from rnnkit.cli import main
from rnnkit.datasets import DataFormatError, load_labelled_csv, load_sequences, load_ts, read_series_csv

pytestmark = pytest.mark.filterwarnings("ignore::rnnkit.exceptions.ConvergenceWarning")


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------- tiny data
def ramps(n, length, seed, dims=1, ragged=False):
    """Rising (class "up") or falling ("down") noisy ramps."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for i in range(n):
        steps = int(rng.integers(length // 2, length + 1)) if ragged else length
        sign = 1.0 if i % 2 == 0 else -1.0
        t = np.linspace(0.0, 1.0, steps)[:, None]
        seqs.append(sign * t * np.arange(1, dims + 1) + 0.1 * rng.standard_normal((steps, dims)))
        labels.append("up" if sign > 0 else "down")
    return seqs, labels


def write_ts(path, seqs, labels, *, extra_header=""):
    dims = seqs[0].shape[1]
    equal = len({len(s) for s in seqs}) == 1
    lines = ["# a tiny test problem", "@problemName Ramps", "@timeStamps false", "@missing false",
             f"@univariate {'true' if dims == 1 else 'false'}", f"@dimensions {dims}",
             f"@equalLength {'true' if equal else 'false'}"]
    if equal:
        lines.append(f"@seriesLength {len(seqs[0])}")
    lines += [f"@classLabel true {' '.join(sorted(set(labels)))}"] + ([extra_header] if extra_header else []) + ["@data"]
    for s, label in zip(seqs, labels):
        lines.append(":".join(",".join(f"{v:.5f}" for v in s[:, d]) for d in range(dims)) + f":{label}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_wide_csv(path, seqs, labels):
    rows = ["label," + ",".join(f"t{i}" for i in range(max(len(s) for s in seqs)))]
    rows += [f"{label}," + ",".join(f"{v:.5f}" for v in s[:, 0]) for s, label in zip(seqs, labels)]
    path.write_text("\n".join(rows) + "\n")
    return path


def write_long_csv(path, seqs, labels):
    dims = seqs[0].shape[1]
    rows = ["id,time,label," + ",".join(f"f{d}" for d in range(dims))]
    for i, (s, label) in enumerate(zip(seqs, labels)):
        for t in reversed(range(len(s))):  # out of order on purpose: the time column sorts them
            rows.append(f"s{i},{t},{label}," + ",".join(f"{v:.5f}" for v in s[t]))
    path.write_text("\n".join(rows) + "\n")
    return path


def write_series_csv(path, n=60, *, exog_future=0):
    t = np.arange(n + exog_future)
    months = np.arange("2001-01", "2100-01", dtype="datetime64[M]")[: n + exog_future]
    promo = (t % 5 == 0).astype(int)
    y = 20 + 0.1 * t + 3 * np.sin(2 * np.pi * t / 12) + 2 * promo
    header = "month,sales" + (",promo" if exog_future else "")
    rows = [header]
    for i in range(n + exog_future):
        value = f"{y[i]:.3f}" if i < n else ""
        rows.append(f"{months[i]},{value}" + (f",{promo[i]}" if exog_future else ""))
    path.write_text("\n".join(rows) + "\n")
    return path


# ---------------------------------------------------------------------- readers
def test_load_ts_univariate_and_multivariate(tmp_path):
    seqs, labels = ramps(6, 10, seed=0)
    X, y = load_ts(write_ts(tmp_path / "u.ts", seqs, labels))
    assert X.shape == (6, 10, 1) and y.tolist() == labels
    np.testing.assert_allclose(X[0], seqs[0], atol=1e-5)

    seqs, labels = ramps(5, 12, seed=1, dims=3, ragged=True)
    X, y, header = load_ts(write_ts(tmp_path / "m.ts", seqs, labels), return_header=True)
    assert isinstance(X, list) and [len(s) for s in X] == [len(s) for s in seqs]
    assert X[0].shape[1] == 3 and header.problem_name == "Ramps" and header.class_labels == ["down", "up"]


def test_load_ts_missing_values(tmp_path):
    text = "@problemName M\n@missing true\n@univariate true\n@classLabel true a b\n@data\n" \
           "1,?,3,4,?,?:a\n?,2,3,4,5,6:b\n"
    path = tmp_path / "missing.ts"
    path.write_text(text)
    X, y = load_ts(path)
    np.testing.assert_array_equal(X[0][:, 0], [1, 2, 3, 4])  # gap interpolated, trailing ? dropped
    np.testing.assert_array_equal(X[1][:, 0], [2, 2, 3, 4, 5, 6])  # leading ? takes the nearest value
    kept, _ = load_ts(path, missing="keep")
    assert np.isnan(kept[0][1, 0])


@pytest.mark.parametrize("name, body, line, message", [
    ("bad.ts", "@classLabel true a b\n@data\n1,2,3:a\n1,x,3:b\n", 4, "dimension 1, value 2: 'x' is not a number"),
    ("bad.ts", "@classLabel true a b\n@data\n1,2,3:c\n", 3, "class label 'c' is not one declared"),
    ("bad.ts", "@dimensions 2\n@classLabel true a b\n@data\n1,2:3,4:a\n1,2:b\n", 5, "found 1 dimension"),
    ("bad.ts", "@classLabel true a b\n1,2,3:a\n@data\n", 2, "data before the @data line"),
    ("bad.ts", "@classLabel true a b\n@data\n1,2:a\n@problemName late\n", 4, "after @data"),
    ("bad.ts", "@timeStamps true\n@classLabel true a\n@data\n(1,2):a\n", 3, "timeStamps true is not supported"),
    ("bad.ts", "@classLabel true a b\n@data\n1,2::a\n", 3, "dimension 2 is empty"),
    ("bad.ts", "@dimensions two\n@data\n", 1, "one positive integer"),
    ("bad.ts", "@classLabel true a b\n@data\n1,2,3\n", 3, "expected the values, then ':' and the label"),
    ("bad.ts", "@classLabel maybe\n@data\n", 1, "true or false"),
    ("bad.csv", "label,t0,t1\na,1,2\nb,1,oops\n", 3, "column 3: 'oops' is not a number"),
    ("bad.csv", "a,1,2\n,1,2\n", 2, "the label) is empty"),
    ("bad.csv", "id,label,x\ns1,a,1\ns1,b,2\n", 3, "has label 'b' here but 'a' on line 2"),
    ("bad.csv", "id,label,x\ns1,a,1\ns2,b\n", 3, "2 cells, the header has 3"),
    ("bad.csv", "id,label,x\ns1,a,NaNx\n", 2, "column 'x': 'NaNx' is not a number"),
])
def test_reader_errors_name_file_and_line(tmp_path, name, body, line, message):
    path = tmp_path / name
    path.write_text(body)
    with pytest.raises(DataFormatError) as info:
        load_sequences(path)
    assert info.value.line == line
    assert f"{name}, line {line}: " in str(info.value) and message in str(info.value)


def test_load_ts_file_level_errors(tmp_path):
    (tmp_path / "a.ts").write_text("# only comments\n")
    (tmp_path / "b.ts").write_text("@classLabel true a\n@data\n")
    (tmp_path / "c.ts").write_text("@classLabel false\n@data\n1,2,3\n")
    for name, message in (("a.ts", "no @data line"), ("b.ts", "no cases after @data"), ("c.ts", "has no labels")):
        with pytest.raises(DataFormatError, match=message):
            load_ts(tmp_path / name)


def test_load_labelled_csv_layouts(tmp_path):
    seqs, labels = ramps(6, 9, seed=2, ragged=True)
    X, y = load_labelled_csv(write_wide_csv(tmp_path / "wide.csv", seqs, labels))
    assert [len(s) for s in X] == [len(s) for s in seqs] and y.tolist() == labels
    seqs, labels = ramps(4, 7, seed=3, dims=2, ragged=True)
    X, y = load_sequences(write_long_csv(tmp_path / "long.csv", seqs, labels))
    assert y.tolist() == labels
    for got, want in zip(X, seqs):
        np.testing.assert_allclose(got, want, atol=1e-5)  # sorted back into time order
    (tmp_path / "plain.tsv").write_text("a\t1\t2\t3\nb\t3\t2\t1\n")  # UCR .tsv: no header, tab separated
    X, y = load_sequences(tmp_path / "plain.tsv")
    assert X.shape == (2, 3, 1) and y.tolist() == ["a", "b"]


def test_read_series_csv(tmp_path):
    data = read_series_csv(write_series_csv(tmp_path / "s.csv", 30, exog_future=4), "sales", exog=["promo"])
    assert data.y.shape == (30,) and data.X.shape == (30, 1) and data.X_future.shape == (4, 1)
    assert data.dates[0] == "2001-01" and data.future_dates[-1] == "2003-10"
    (tmp_path / "gap.csv").write_text("t,y\n1,3\n2,\n3,4\n")
    with pytest.raises(DataFormatError, match=r"gap.csv, line 3: empty cell in column 'y'"):
        read_series_csv(tmp_path / "gap.csv", "y")
    with pytest.raises(DataFormatError, match="several columns could be the series"):
        read_series_csv(tmp_path / "gap.csv")
    with pytest.raises(DataFormatError, match=r"no value column 'z'; the columns are \['t', 'y'\]"):
        read_series_csv(tmp_path / "gap.csv", "z")


# ---------------------------------------------------------------------- classify
CLASSIFY_FAST = ["--hidden", "8", "--epochs", "25", "--lr", "0.03", "--seed", "0"]


@pytest.mark.parametrize("fmt", ["ts", "wide", "long"])
def test_classify_happy_path(tmp_path, capsys, fmt):
    ragged = fmt != "ts"
    train = ramps(40, 12, seed=0, ragged=ragged, dims=2 if fmt == "long" else 1)
    test = ramps(20, 12, seed=1, ragged=ragged, dims=2 if fmt == "long" else 1)
    writer = {"ts": write_ts, "wide": write_wide_csv, "long": write_long_csv}[fmt]
    ext = "ts" if fmt == "ts" else "csv"
    paths = [writer(tmp_path / f"{name}.{ext}", *data) for name, data in (("train", train), ("test", test))]
    save = tmp_path / "clf.npz"
    code, out, err = run(["classify", *paths, *CLASSIFY_FAST, "--save", save], capsys)
    assert code == 0, err
    assert "test accuracy: " in out and "confusion matrix" in out
    accuracy = float(out.split("test accuracy: ")[1].split()[0])
    assert accuracy >= 0.9, out
    matrix = out.split("columns: predicted):\n")[1].splitlines()
    assert matrix[0].split() == ["down", "up"]
    rows = [line.split() for line in matrix[1:3]]
    assert [row[0] for row in rows] == ["down", "up"] and sum(int(v) for row in rows for v in row[1:]) == 20
    assert isinstance(rnnkit.load(save), rnnkit.RNNClassifier)


def test_classify_balanced_weighs_the_rare_class(tmp_path, capsys):
    seqs, labels = ramps(48, 12, seed=0)
    keep = [i for i, label in enumerate(labels) if label == "up" or i % 8 == 1]  # few "down" ramps
    train = write_ts(tmp_path / "train.ts", [seqs[i] for i in keep], [labels[i] for i in keep])
    test = write_ts(tmp_path / "test.ts", *ramps(20, 12, seed=1))
    saved = {}
    for flag in ([], ["--balanced"]):
        save = tmp_path / f"clf{len(flag)}.npz"
        code, out, err = run(["classify", train, test, *CLASSIFY_FAST, "--epochs", "3", *flag, "--save", save], capsys)
        assert code == 0, err
        saved[bool(flag)] = rnnkit.load(save)
    assert saved[True].class_weight == "balanced" and saved[False].class_weight is None
    assert not np.array_equal(saved[True]._params_flat, saved[False]._params_flat)


def test_lr_schedule_reaches_the_models(tmp_path, capsys):
    train = write_ts(tmp_path / "train.ts", *ramps(16, 8, seed=0))
    test = write_ts(tmp_path / "test.ts", *ramps(6, 8, seed=1))
    save = tmp_path / "clf.npz"
    code, out, err = run(["classify", train, test, *CLASSIFY_FAST, "--epochs", "2", "--lr-schedule", "cosine",
                          "--save", save], capsys)
    assert code == 0, err
    loaded = rnnkit.load(save)
    assert (loaded.lr_schedule, loaded.learning_rate_) == ("cosine", 0.0)
    csv = tmp_path / "s.csv"
    csv.write_text("y\n" + "\n".join(str(np.sin(i / 3.0)) for i in range(60)) + "\n")
    save = tmp_path / "fc.npz"
    code, out, err = run(["forecast", csv, "-H", "2", "--epochs", "2", "--backtest", "0", "--lr-schedule", "adaptive",
                          "--save", save], capsys)
    assert code == 0, err
    assert rnnkit.load(save).lr_schedule == "adaptive"
    with pytest.raises(SystemExit) as info:
        run(["classify", train, test, "--lr-schedule", "linear"], capsys)
    assert info.value.code == 2 and "--lr-schedule: invalid choice: 'linear'" in capsys.readouterr().err


def test_classify_mismatched_features(tmp_path, capsys):
    train = write_ts(tmp_path / "train.ts", *ramps(6, 5, seed=0, dims=2))
    test = write_ts(tmp_path / "test.ts", *ramps(4, 5, seed=1, dims=1))
    code, _, err = run(["classify", train, test, "--epochs", "1"], capsys)
    assert code == 2 and "1 feature(s), but those in" in err


def test_classify_malformed_ts_names_file_and_line(tmp_path, capsys):
    good = write_ts(tmp_path / "train.ts", *ramps(6, 5, seed=0))
    bad = tmp_path / "test.ts"
    lines = good.read_text().splitlines()
    lines[-2] = lines[-2].replace(",", ",abc,", 1)
    bad.write_text("\n".join(lines) + "\n")
    code, out, err = run(["classify", good, bad, "--epochs", "1"], capsys)
    assert code == 2
    assert f"{bad}, line {len(lines) - 1}: dimension 1, value 2: 'abc' is not a number" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_missing_files_exit_2(tmp_path, capsys):
    code, _, err = run(["classify", tmp_path / "nope.ts", tmp_path / "nope2.ts"], capsys)
    assert code == 2 and "nope.ts: no such file" in err
    code, _, err = run(["forecast", tmp_path / "none.csv", "--horizon", "3"], capsys)
    assert code == 2 and "none.csv: no such file" in err
    code, _, err = run(["classify", tmp_path, tmp_path], capsys)
    assert code == 2 and "is a directory" in err


def test_module_entry_point_has_no_traceback(tmp_path):
    bad = tmp_path / "bad.ts"
    bad.write_text("@classLabel true a\n@data\n1,2,x:a\n")
    proc = subprocess.run([sys.executable, "-m", "rnnkit", "classify", str(bad), str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "bad.ts, line 3:" in proc.stderr and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------- forecast
FORECAST_FAST = ["--epochs", "3", "--hidden", "8", "--seed", "0"]


def test_forecast_happy_path(tmp_path, capsys):
    path = write_series_csv(tmp_path / "sales.csv", 60)
    save = tmp_path / "fc.npz"
    code, out, err = run(["forecast", path, "--column", "sales", "--horizon", "4", "--backtest", "2",
                          "--save", save, *FORECAST_FAST], capsys)
    assert code == 0, err
    assert "season 12 (from the dates)" in out and "window 24" in out
    assert "back-test: the last 2 x 4 values" in out and "seasonal naive (12)" in out
    lines = [line.split() for line in out.split("forecast (")[1].splitlines()[1:5]]
    assert [row[0] for row in lines] == ["2006-01", "2006-02", "2006-03", "2006-04"]
    forecast = np.array([float(row[1]) for row in lines])
    model = rnnkit.load(save)
    np.testing.assert_allclose(model.predict(), forecast, rtol=1e-5)


def test_forecast_exogenous_columns(tmp_path, capsys):
    path = write_series_csv(tmp_path / "sales.csv", 48, exog_future=3)
    code, out, err = run(["forecast", path, "--horizon", "3", "--exog", "promo", "--backtest", "1",
                          *FORECAST_FAST], capsys)
    assert code == 0, err
    assert "2005-03" in out  # the future rows' own dates label the forecast
    code, _, err = run(["forecast", path, "--horizon", "4", "--exog", "promo", *FORECAST_FAST], capsys)
    assert code == 2 and "future values of promo for all 4 forecast steps" in err


def test_forecast_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (the optional 'plot' extra)")
    path = write_series_csv(tmp_path / "sales.csv", 48)
    png = tmp_path / "plot.png"
    code, out, err = run(["forecast", path, "--horizon", "3", "--backtest", "1", "--plot", png, *FORECAST_FAST],
                         capsys)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_forecast_plot_without_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    path = write_series_csv(tmp_path / "sales.csv", 48)
    code, _, err = run(["forecast", path, "--horizon", "3", "--backtest", "0", "--plot", tmp_path / "p.png",
                        *FORECAST_FAST], capsys)
    assert code == 2 and "pip install 'rnnkit[plot]'" in err and "Traceback" not in err


@pytest.mark.parametrize("text, args, message", [
    ("month,sales\n2001-01,1\n2001-02,abc\n", [], "line 3: column 'sales': 'abc' is not a number"),
    ("month,sales\n2001-01,1\n2001-02,?\n", [], "line 3: missing value '?' in column 'sales'"),
    ("a,b,c\n1,2,3\n", [], "several columns could be the series"),
    ("month,sales\n" + "".join(f"2001-{m:02d},{m}\n" for m in range(1, 10)), [], "too few for horizon 3"),
    ("month,sales\n" + "".join(f"2001-{m:02d},{m - 5}\n" for m in range(1, 13)) * 4, ["--log"], "--log needs positive"),
])
def test_forecast_bad_input(tmp_path, capsys, text, args, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    code, _, err = run(["forecast", path, "--horizon", "3", *args, *FORECAST_FAST], capsys)
    assert code == 2, err
    assert message in err and "Traceback" not in err


# ---------------------------------------------------------------------- help
@pytest.mark.parametrize("command, phrases", [
    ("forecast", ["seasonal-naive", "--horizon", "--window", "--plot", "Back-test", "--exog"]),
    ("classify", [".ts format", "wide:", "long:", "--cell", "--hidden", "--epochs", "--seed"]),
])
def test_help(capsys, command, phrases):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for phrase in phrases:
        assert phrase in out
    with pytest.raises(SystemExit):
        main(["--help"])
    assert command in capsys.readouterr().out
