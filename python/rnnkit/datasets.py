"""Readers for labelled sequence files and time-series CSV files.

Labelled sequences (for classification)
---------------------------------------
:func:`load_ts` reads the ``.ts`` format of the UCR/UEA time-series classification archive
(univariate and multivariate, equal and unequal length, ``?`` for missing values, class or
regression target labels). :func:`load_labelled_csv` reads labelled sequences from a CSV
file in one of two layouts:

* **wide** (the UCR archive's CSV/TSV layout): one sequence per row, the label first, then
  the values of a univariate sequence, ``label,v1,v2,...``. Rows may have different lengths
  (cells after a row's last value are left empty). A first row whose value cells are not
  numbers is taken as a header and skipped.
* **long**: a header row that names an ``id`` column and a ``label`` column; one row per
  time step, rows of one sequence share the id (and the label) and appear in time order
  (or carry a numeric ``time`` column to sort by). Every other column is a feature, so
  sequences may be multivariate and of different lengths.

Cells are separated by commas, or by tabs in ``.tsv`` files. Empty cells, ``?`` and ``NaN``
inside a sequence are missing values, filled by linear interpolation unless
``missing="keep"``. :func:`load_sequences` picks the reader by the file's extension.

Both return ``(X, y)``: ``X`` an ``(n, T, D)`` array when every sequence has the same length,
otherwise a list of ``(T_i, D)`` arrays (both are what :class:`rnnkit.RNNClassifier` takes),
and ``y`` an array of label strings (floats for ``.ts`` regression targets).

Series (for forecasting)
------------------------
:func:`read_series_csv` reads one numeric column of a CSV file with a header row, with an
optional date column and exogenous columns (see its docstring).

Malformed input raises :class:`DataFormatError` (a ``ValueError``) naming file and line.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

_MISSING = {"", "?", "nan", "NaN", "NA", "N/A", "null"}
_TS_FLAGS = ("timestamps", "missing", "univariate", "equallength", "classlabel", "targetlabel")


class DataFormatError(ValueError):
    """A data file is malformed; ``path`` and ``line`` (1-based, or None) say where."""

    def __init__(self, path: PathLike, line: Optional[int], message: str) -> None:
        self.path, self.line, self.message = os.fspath(path), line, message
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


# ---------------------------------------------------------------------- helpers
def _number(token: str) -> float:
    """A float from a cell; missing markers give NaN; anything else raises ValueError."""
    token = token.strip()
    if token in _MISSING:
        return math.nan
    value = float(token)
    if math.isinf(value):
        raise ValueError(token)
    return value


def _fill_missing(seq: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaNs per column; edges take the nearest value; all-NaN -> 0."""
    if not np.isnan(seq).any():
        return seq
    out = seq.copy()
    steps = np.arange(seq.shape[0])
    for j in range(seq.shape[1]):
        col = out[:, j]
        known = ~np.isnan(col)
        if not known.any():
            col[:] = 0.0
        elif not known.all():
            col[~known] = np.interp(steps[~known], steps[known], col[known])
    return out


def _finish(seqs: list, missing: str) -> Any:
    """Trim trailing all-missing steps, fill gaps, and stack when the lengths agree."""
    out = []
    for seq in seqs:
        rows = np.flatnonzero(~np.isnan(seq).all(axis=1))
        seq = seq[: rows[-1] + 1] if rows.size else seq[:1]
        out.append(_fill_missing(seq) if missing == "interpolate" else seq)
    if len({s.shape for s in out}) == 1:
        return np.stack(out)
    return out


def _check_missing(missing: str) -> None:
    if missing not in ("interpolate", "keep"):
        raise ValueError(f"missing must be 'interpolate' or 'keep', got {missing!r}")


def _open_text(path: PathLike) -> Any:
    if os.path.isdir(path):
        raise IsADirectoryError(21, "is a directory, not a data file", os.fspath(path))
    return open(path, encoding="utf-8-sig", newline="")


# ---------------------------------------------------------------------- .ts
@dataclass
class TsHeader:
    """The header of a ``.ts`` file (only what was declared)."""

    problem_name: Optional[str] = None
    timestamps: bool = False
    missing: bool = False
    univariate: Optional[bool] = None
    dimensions: Optional[int] = None
    equal_length: Optional[bool] = None
    series_length: Optional[int] = None
    class_label: bool = False
    class_labels: Optional[list] = None
    target_label: bool = False


def _ts_header_line(header: TsHeader, words: list, path: PathLike, lineno: int) -> None:
    tag = words[0][1:].lower()
    args = words[1:]

    def flag() -> bool:
        if not args or args[0].lower() not in ("true", "false"):
            raise DataFormatError(path, lineno, f"@{tag} must be followed by true or false")
        return args[0].lower() == "true"

    def count() -> int:
        if len(args) != 1 or not args[0].isdigit() or int(args[0]) < 1:
            raise DataFormatError(path, lineno, f"@{tag} must be followed by one positive integer")
        return int(args[0])

    if tag == "problemname":
        header.problem_name = " ".join(args)
    elif tag in ("dimensions", "dimension"):
        header.dimensions = count()
    elif tag == "serieslength":
        header.series_length = count()
    elif tag == "classlabel":
        header.class_label = flag()
        if header.class_label:
            if len(args) < 2:
                raise DataFormatError(path, lineno, "@classLabel true must list the class labels")
            header.class_labels = args[1:]
        elif len(args) > 1:
            raise DataFormatError(path, lineno, "@classLabel false takes no labels")
    elif tag in _TS_FLAGS:
        value = flag()
        if len(args) > 1:
            raise DataFormatError(path, lineno, f"@{tag} takes one value, got {' '.join(args)!r}")
        attr = {"equallength": "equal_length", "targetlabel": "target_label"}.get(tag, tag)
        setattr(header, attr, value)
    # other tags (e.g. from newer archive versions) carry nothing the reader needs


def _ts_case(line: str, header: TsHeader, path: PathLike, lineno: int) -> tuple:
    fields = line.split(":")
    labelled = header.class_label or header.target_label
    label = None
    if labelled:
        if len(fields) < 2:
            raise DataFormatError(path, lineno, "expected the values, then ':' and the label")
        label = fields.pop().strip()
        if not label:
            raise DataFormatError(path, lineno, "the label after the last ':' is empty")
        if header.class_labels is not None and label not in header.class_labels:
            raise DataFormatError(path, lineno, f"class label {label!r} is not one declared by @classLabel "
                                                f"({' '.join(header.class_labels)})")
        if header.target_label:
            try:
                label = float(label)
            except ValueError:
                raise DataFormatError(path, lineno, f"target value {label!r} is not a number") from None
    dims = []
    for d, field in enumerate(fields, 1):
        if not field.strip():
            raise DataFormatError(path, lineno, f"dimension {d} is empty")
        tokens = field.split(",")
        values = []
        for k, token in enumerate(tokens, 1):
            try:
                values.append(_number(token))
            except ValueError:
                raise DataFormatError(path, lineno, f"dimension {d}, value {k}: {token.strip()!r} is not a number") from None
        dims.append(values)
    expected = header.dimensions if header.dimensions is not None else (1 if header.univariate else None)
    if expected is not None and len(dims) != expected:
        what = "@dimensions" if header.dimensions is not None else "@univariate true"
        raise DataFormatError(path, lineno, f"found {len(dims)} dimension(s), {what} says {expected}")
    length = max(len(v) for v in dims)
    seq = np.full((length, len(dims)), np.nan)
    for d, values in enumerate(dims):
        seq[: len(values), d] = values  # a shorter dimension is padded with missing values
    return seq, label


def load_ts(path: PathLike, *, missing: str = "interpolate", return_header: bool = False) -> tuple:
    """Read a UCR/UEA ``.ts`` file: ``(X, y)`` (and the :class:`TsHeader` if asked).

    ``missing="interpolate"`` fills missing values (``?``) inside a sequence by linear
    interpolation and drops missing values at its end; ``"keep"`` leaves them as NaN.
    Files with ``@timeStamps true`` are not supported.
    """
    _check_missing(missing)
    header = TsHeader()
    in_data = False
    seqs: list = []
    labels: list = []
    width = None
    lineno = 0
    with _open_text(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("@"):
                if in_data:
                    raise DataFormatError(path, lineno, f"header line {line.split()[0]!r} after @data")
                words = line.split()
                if words[0].lower() == "@data":
                    if header.timestamps:
                        raise DataFormatError(path, lineno, "@timeStamps true is not supported; "
                                                            "write the values without time stamps")
                    in_data = True
                else:
                    _ts_header_line(header, words, path, lineno)
                continue
            if not in_data:
                raise DataFormatError(path, lineno, "data before the @data line (is this a .ts file?)")
            seq, label = _ts_case(line, header, path, lineno)
            if width is not None and seq.shape[1] != width:
                raise DataFormatError(path, lineno, f"found {seq.shape[1]} dimension(s), earlier cases have {width}")
            width = seq.shape[1]
            if header.equal_length and header.series_length and seq.shape[0] != header.series_length:
                raise DataFormatError(path, lineno, f"series of length {seq.shape[0]}, @seriesLength says "
                                                    f"{header.series_length}")
            seqs.append(seq)
            labels.append(label)
    if not in_data:
        raise DataFormatError(path, lineno or None, "no @data line: not a .ts file")
    if not seqs:
        raise DataFormatError(path, lineno, "no cases after @data")
    if not (header.class_label or header.target_label):
        raise DataFormatError(path, None, "the file has no labels (@classLabel false and no @targetLabel); "
                                          "labelled sequences are needed")
    X = _finish(seqs, missing)
    y = np.array(labels, dtype=np.float64 if header.target_label else str)
    return (X, y, header) if return_header else (X, y)


# ---------------------------------------------------------------------- CSV
def _delimiter(path: PathLike, first_line: str) -> str:
    if os.fspath(path).lower().endswith(".tsv") or ("\t" in first_line and "," not in first_line):
        return "\t"
    return ","


def _csv_rows(path: PathLike) -> list:
    """(line number, cells) for every non-blank row."""
    with _open_text(path) as fh:
        text = fh.read()
    first = text.split("\n", 1)[0]
    reader = csv.reader(text.splitlines(), delimiter=_delimiter(path, first))
    rows = []
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                rows.append((reader.line_num, [c.strip() for c in cells]))
    except csv.Error as exc:
        raise DataFormatError(path, reader.line_num, f"not valid CSV ({exc})") from None
    if not rows:
        raise DataFormatError(path, None, "the file is empty")
    return rows


def _all_numbers(cells: Sequence[str]) -> bool:
    try:
        for c in cells:
            _number(c)
    except ValueError:
        return False
    return True


def load_labelled_csv(path: PathLike, *, missing: str = "interpolate") -> tuple:
    """Read labelled sequences from a CSV file (wide or long layout, see the module doc): ``(X, y)``."""
    _check_missing(missing)
    rows = _csv_rows(path)
    names = [c.lower() for c in rows[0][1]]
    if "id" in names and "label" in names:
        return _load_long(path, rows, names, missing)
    if not _all_numbers(rows[0][1][1:]):
        rows = rows[1:]  # a header row
        if not rows:
            raise DataFormatError(path, None, "only a header row, no sequences")
    seqs, labels = [], []
    for lineno, cells in rows:
        while cells and cells[-1] == "":
            cells = cells[:-1]
        if not cells or not cells[0]:
            raise DataFormatError(path, lineno, "the first cell (the label) is empty")
        if len(cells) < 2:
            raise DataFormatError(path, lineno, "a label but no values")
        values = []
        for k, cell in enumerate(cells[1:], 2):
            try:
                values.append(_number(cell))
            except ValueError:
                raise DataFormatError(path, lineno, f"column {k}: {cell!r} is not a number "
                                                    "(wide layout: label, then the values)") from None
        seqs.append(np.array(values)[:, None])
        labels.append(cells[0])
    return _finish(seqs, missing), np.array(labels, dtype=str)


def _load_long(path: PathLike, rows: list, names: list, missing: str) -> tuple:
    if len(set(names)) != len(names):
        raise DataFormatError(path, rows[0][0], "repeated column names in the header")
    id_col, label_col = names.index("id"), names.index("label")
    time_col = next((names.index(t) for t in ("time", "t", "step", "timestamp") if t in names), None)
    features = [j for j in range(len(names)) if j not in (id_col, label_col, time_col)]
    if not features:
        raise DataFormatError(path, rows[0][0], "no feature columns besides id and label")
    groups: dict = {}
    for lineno, cells in rows[1:]:
        if len(cells) != len(names):
            raise DataFormatError(path, lineno, f"{len(cells)} cells, the header has {len(names)}")
        key, label = cells[id_col], cells[label_col]
        if not key:
            raise DataFormatError(path, lineno, "the id cell is empty")
        if not label:
            raise DataFormatError(path, lineno, "the label cell is empty")
        try:
            values = [_number(cells[j]) for j in features]
            when = _number(cells[time_col]) if time_col is not None else 0.0
        except ValueError:
            bad = next(j for j in features + [time_col] if j is not None and not _all_numbers([cells[j]]))
            raise DataFormatError(path, lineno, f"column {names[bad]!r}: {cells[bad]!r} is not a number") from None
        group = groups.setdefault(key, {"label": label, "line": lineno, "steps": []})
        if group["label"] != label:
            raise DataFormatError(path, lineno, f"sequence {key!r} has label {label!r} here but "
                                                f"{group['label']!r} on line {group['line']}")
        group["steps"].append((when, values))
    if not groups:
        raise DataFormatError(path, None, "only a header row, no sequences")
    seqs, labels = [], []
    for group in groups.values():
        steps = sorted(group["steps"], key=lambda s: s[0]) if time_col is not None else group["steps"]
        seqs.append(np.array([v for _, v in steps], dtype=np.float64))
        labels.append(group["label"])
    return _finish(seqs, missing), np.array(labels, dtype=str)


def load_sequences(path: PathLike, *, missing: str = "interpolate") -> tuple:
    """Labelled sequences from a ``.ts`` file, or from a CSV/TSV file otherwise: ``(X, y)``."""
    if os.fspath(path).lower().endswith(".ts"):
        return load_ts(path, missing=missing)
    return load_labelled_csv(path, missing=missing)


# ---------------------------------------------------------------------- series CSV
@dataclass
class SeriesData:
    """A series read by :func:`read_series_csv`."""

    name: str
    y: np.ndarray  # (n,)
    dates: Optional[list]  # the date column's strings, for the n observed rows
    X: Optional[np.ndarray]  # (n, k) exogenous values aligned with y
    X_future: Optional[np.ndarray]  # (m, k) exogenous values of the rows after the last y value
    future_dates: Optional[list]


def read_series_csv(path: PathLike, column: Optional[str] = None, *, date_column: Optional[str] = None,
                    exog: Optional[Sequence[str]] = None) -> SeriesData:
    """Read a time series from a CSV file with a header row.

    ``column``: the series; by default the only column other than the date column.
    ``date_column``: labels for the steps; by default the first column when its values are
    not numbers. ``exog``: exogenous columns; rows at the end whose ``column`` cell is empty
    hold their future values. Any other missing or non-numeric value is an error naming the
    line.
    """
    rows = _csv_rows(path)
    header_line, header = rows[0]
    body = rows[1:]
    if not body:
        raise DataFormatError(path, None, "only a header row, no values")
    if len(set(header)) != len(header) or "" in header:
        raise DataFormatError(path, header_line, "the header row needs a distinct name for every column")

    def find(name: str, what: str) -> int:
        if name not in header:
            raise DataFormatError(path, header_line, f"no {what} column {name!r}; the columns are {header}")
        return header.index(name)

    if date_column is not None:
        date_idx: Optional[int] = find(date_column, "date")
    else:
        date_idx = 0 if len(header) > 1 and not _all_numbers([r[1][0] for r in body if r[1]]) else None
    exog_idx = [find(c, "exogenous") for c in (exog or [])]
    if column is not None:
        y_idx = find(column, "value")
    else:
        candidates = [j for j in range(len(header)) if j != date_idx and j not in exog_idx]
        if len(candidates) != 1:
            raise DataFormatError(path, header_line, f"several columns could be the series ({[header[j] for j in candidates]}); "
                                                     "choose one with --column")
        y_idx = candidates[0]
    if y_idx == date_idx or y_idx in exog_idx:
        raise DataFormatError(path, header_line, f"column {header[y_idx]!r} cannot be both the series and the "
                                                 "date or an exogenous column")

    values, exo, dates = [], [], []
    future_from = None
    for lineno, cells in body:
        if len(cells) < len(header):
            cells = cells + [""] * (len(header) - len(cells))
        cell = cells[y_idx]
        if cell in _MISSING and cell != "":
            raise DataFormatError(path, lineno, f"missing value {cell!r} in column {header[y_idx]!r}; "
                                                "fill it or drop the row")
        if cell == "":
            if not exog_idx:
                raise DataFormatError(path, lineno, f"empty cell in column {header[y_idx]!r}")
            future_from = len(values) if future_from is None else future_from
        elif future_from is not None:
            raise DataFormatError(path, lineno, f"a value of {header[y_idx]!r} after an empty one: only the "
                                                "last rows (the future of the exogenous columns) may leave it empty")
        try:
            values.append(math.nan if cell == "" else _number(cell))
        except ValueError:
            raise DataFormatError(path, lineno, f"column {header[y_idx]!r}: {cell!r} is not a number") from None
        row = []
        for j in exog_idx:
            try:
                v = _number(cells[j])
            except ValueError:
                raise DataFormatError(path, lineno, f"column {header[j]!r}: {cells[j]!r} is not a number") from None
            if math.isnan(v):
                raise DataFormatError(path, lineno, f"missing value in exogenous column {header[j]!r}")
            row.append(v)
        exo.append(row)
        dates.append(cells[date_idx] if date_idx is not None else None)
    n = len(values) if future_from is None else future_from
    if n == 0:
        raise DataFormatError(path, None, f"no values in column {header[y_idx]!r}")
    X = np.array(exo, dtype=np.float64) if exog_idx else None
    return SeriesData(
        name=header[y_idx],
        y=np.array(values[:n], dtype=np.float64),
        dates=dates[:n] if date_idx is not None else None,
        X=None if X is None else X[:n],
        X_future=None if X is None else X[n:],
        future_dates=dates[n:] if date_idx is not None else None,
    )


__all__ = ["DataFormatError", "SeriesData", "TsHeader", "load_labelled_csv", "load_sequences", "load_ts",
           "read_series_csv"]
