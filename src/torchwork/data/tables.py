"""Reading a user's data and checking it before anything trains on it.

Inputs: CSV (read with pyarrow, which refuses ragged rows), Parquet, ``.npy``/``.npz``
(never with pickles), and in Python pandas DataFrames, NumPy arrays and tensors. Every
input becomes a pandas DataFrame with string column names; :func:`select` then picks the
target and the features and checks every value. A problem is an :class:`InputError` that
names the file, the column and the row, and the rule; nothing is coerced silently.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from torchwork.core.errors import InputError

SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet",
            ".npy": "npy", ".npz": "npz"}  # fmt: skip


@dataclass
class Table:
    """Rows read from one source. ``first_line`` is the file line of row 0 (CSV only)."""

    frame: pd.DataFrame
    source: str
    first_line: int | None = None

    def where(self, row: int) -> str:
        """``"row 3 (line 4)"``: a 1-based data row, and its file line when the lines map to rows."""
        line = f" (line {self.first_line + row})" if self.first_line is not None and self._one_line_per_row() else ""
        return f"row {row + 1}{line}"

    def _one_line_per_row(self) -> bool:
        """False when blank lines or quoted line breaks make line numbers differ from rows."""
        try:
            with open(self.source, "rb") as f:
                data = f.read()
        except OSError:
            return False
        lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        return lines == len(self.frame) + 1 and b"\n\n" not in data and b"\r\n\r\n" not in data


@dataclass
class Selected:
    """Checked numeric data: features ``X`` (n, d) and target ``y`` (n, k), as float64."""

    X: np.ndarray
    y: np.ndarray | None
    features: list[str]
    target: list[str]
    rows: np.ndarray  # positions in the table of the rows kept
    dropped: int = 0


def read_table(data: Any, *, name: str = "data") -> Table:
    """Read a file path, DataFrame, array, tensor or ``{name: column}`` mapping into a :class:`Table`."""
    if isinstance(data, str | os.PathLike):
        return _read_file(Path(data))
    if isinstance(data, pd.DataFrame):
        if data.columns.duplicated().any():
            dups = sorted({str(c) for c in data.columns[data.columns.duplicated()]})
            raise InputError(f"{name}: duplicated column {', '.join(map(repr, dups))}")
        frame = data.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
        return Table(frame, name)
    if isinstance(data, dict):
        return read_table(pd.DataFrame(data), name=name)
    if hasattr(data, "detach"):  # a tensor
        data = data.detach().cpu().numpy()
    return Table(_frame_from_array(np.asarray(data), name), name)


def _frame_from_array(a: np.ndarray, source: str) -> pd.DataFrame:
    if a.dtype == object:
        raise InputError(f"{source}: holds Python objects, not numbers")
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2:
        raise InputError(f"{source}: expected a 2-D array (rows x columns), got shape {a.shape}")
    return pd.DataFrame(a, columns=[str(i) for i in range(a.shape[1])])


def _read_file(path: Path) -> Table:
    source = str(path)
    if path.is_dir():
        raise InputError(f"{source}: is a folder, not a data file")
    if not path.exists():
        raise InputError(f"{source}: no such file")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"{source}: unknown file type {path.suffix!r}; expected one of {', '.join(SUFFIXES)}")
    if path.stat().st_size == 0:
        raise InputError(f"{source}: empty file")
    try:
        if kind == "csv":
            return _read_csv(path)
        if kind == "parquet":
            return _read_parquet(path)
        return _read_numpy(path, kind)
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror or exc})") from None


def _read_csv(path: Path) -> Table:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    source = str(path)
    ragged: list[Any] = []

    def on_bad_row(row: Any) -> str:
        ragged.append(row)
        return "error"

    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    parse = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_bad_row)
    convert = pacsv.ConvertOptions(strings_can_be_null=True)
    try:
        table = pacsv.read_csv(path, parse_options=parse, convert_options=convert)
        names = table.schema.names
        frame = table.to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as exc:
        if ragged:
            _raise_ragged(path, delimiter)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Empty CSV" in message:
            raise InputError(f"{source}: empty file (no header)") from None
        raise InputError(f"{source}: not a readable CSV file ({message})") from None
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise InputError(f"{source}: duplicated column {', '.join(map(repr, dups))} in the header")
    if any(n.strip() == "" for n in names):
        raise InputError(f"{source}: a column in the header has no name")
    return Table(frame, source, first_line=2)


def _raise_ragged(path: Path, delimiter: str) -> None:
    """Re-read single-threaded, which numbers the lines, to name the first ragged one."""
    import pyarrow.csv as pacsv

    found: list[Any] = []

    def on_bad_row(row: Any) -> str:
        found.append(row)
        return "error"

    with contextlib.suppress(Exception):  # it fails, as the first read did; we want `found`
        pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_bad_row),
        )
    row = found[0] if found else None
    if row is None:
        raise InputError(f"{path}: ragged rows (not every row has as many fields as the header)")
    line = f"line {row.number}" if row.number is not None else f"row {row.text!r}"
    raise InputError(f"{path}: {line} has {row.actual_columns} fields but the header has {row.expected_columns}")


def _read_parquet(path: Path) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable Parquet file ({message})") from None
    names = table.schema.names
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise InputError(f"{path}: duplicated column {', '.join(map(repr, dups))}")
    return Table(table.to_pandas(), str(path))


def _read_numpy(path: Path, kind: str) -> Table:
    source = str(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:  # object arrays need pickles, which are refused
        raise InputError(f"{source}: refused: {exc}".rstrip(".") + " (torchwork never loads pickles)") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{source}: not a readable {kind} file ({exc})") from None
    if kind == "npy":
        return Table(_frame_from_array(loaded, source), source)
    with loaded:
        names = list(loaded.files)
        try:
            arrays = {n: loaded[n] for n in names}
        except ValueError as exc:  # object arrays need pickles, which are refused
            raise InputError(f"{source}: refused: {exc} (torchwork never loads pickles)") from None
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(f"{source}: not a readable npz file ({exc})") from None
    if not names:
        raise InputError(f"{source}: holds no arrays")
    x_key = next((k for k in ("X", "x") if k in arrays), None)
    if x_key is not None and "y" in arrays:
        X, y = arrays[x_key], arrays["y"]
        X = X.reshape(len(X), -1) if X.ndim != 2 else X
        y = y.reshape(len(y), -1)
        if len(X) != len(y):
            raise InputError(f"{source}: {x_key} has {len(X)} rows but y has {len(y)}")
        frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
        for j in range(y.shape[1]):
            frame["y" if y.shape[1] == 1 else f"y{j}"] = y[:, j]
        return Table(frame, source)
    if len(names) == 1:
        return Table(_frame_from_array(arrays[names[0]], source), source)
    # Several 1-D arrays of one length: one column each.
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) != 1 or any(a.ndim != 1 for a in arrays.values()):
        raise InputError(
            f"{source}: expected arrays 'X' and 'y', one 2-D array, or 1-D columns of one length; got {names}"
        )
    return Table(pd.DataFrame(arrays), source)


def _numeric(table: Table, column: str) -> np.ndarray:
    """A column as float64; a value that is not a number is an error naming its row."""
    s = table.frame[column]
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("float64").to_numpy()
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_complex_dtype(s.dtype):
        return s.to_numpy(dtype="float64", na_value=np.nan)
    coerced = pd.to_numeric(s, errors="coerce")
    bad = np.flatnonzero(coerced.isna().to_numpy() & s.notna().to_numpy())
    if len(bad):
        i = int(bad[0])
        raise InputError(f"{table.source}: column {column!r}, {table.where(i)}: {s.iloc[i]!r} is not a number")
    return coerced.to_numpy(dtype="float64", na_value=np.nan)


def _resolve(table: Table, column: str) -> str:
    columns = list(table.frame.columns)
    if column in columns:
        return column
    try:  # arrays have numbered columns: --target -1 is the last one
        index = int(column)
        if all(c.isdigit() for c in columns) and -len(columns) <= index < len(columns):
            return columns[index]
    except ValueError:
        pass
    raise InputError(f"{table.source}: no column {column!r}; columns are {', '.join(map(repr, columns))}")


def check_schema(table: Table, features: list[str], target: list[str], *, allow_extra: bool = False) -> None:
    """The columns a saved model needs: every feature present; nothing unknown unless ``allow_extra``.

    The target may be present (labelled data) or not; the order of columns does not matter.
    """
    columns = list(table.frame.columns)
    missing = [f for f in features if f not in columns]
    extra = [c for c in columns if c not in features and c not in target]
    problems = []
    if missing:
        problems.append(f"missing columns {', '.join(map(repr, missing))}")
    if extra and not allow_extra:
        problems.append(f"unexpected columns {', '.join(map(repr, extra))} (pass --allow-extra-columns to keep them)")
    if problems:
        raise InputError(
            f"{table.source}: does not match the model's columns: {'; '.join(problems)}; "
            f"the model expects {', '.join(map(repr, features))}"
        )


def select(
    table: Table,
    target: str | list[str] | None,
    features: list[str] | None = None,
    *,
    drop_missing: bool = False,
) -> Selected:
    """Pick and check the target and feature columns.

    ``features=None`` means every column but the target. ``target=None`` selects features
    only (prediction). Missing values are an error unless ``drop_missing``, which drops the
    rows that have one and reports how many; NaN counts as missing; infinities and values
    beyond float32 are always errors.
    """
    frame = table.frame
    if len(frame) == 0:
        raise InputError(f"{table.source}: no rows")
    targets = [] if target is None else [target] if isinstance(target, str) else list(target)
    targets = [_resolve(table, t) for t in targets]
    if features is None:
        feats = [c for c in frame.columns if c not in targets]
    else:
        feats = [_resolve(table, f) for f in features]
        dups = sorted({f for f in feats if feats.count(f) > 1})
        if dups:
            raise InputError(f"--features names {', '.join(map(repr, dups))} more than once")
    both = [t for t in targets if t in feats]
    if both:
        raise InputError(f"{table.source}: column {both[0]!r} is the target and also a feature")
    if not feats:
        raise InputError(f"{table.source}: no feature columns (every column is a target)")

    columns = feats + targets
    values = np.column_stack([_numeric(table, c) for c in columns])
    missing = np.isnan(values)
    keep = np.arange(len(frame))
    dropped = 0
    if missing.any():
        if not drop_missing:
            i, j = (int(v[0]) for v in np.nonzero(missing))
            raise InputError(
                f"{table.source}: column {columns[j]!r}, {table.where(i)}: missing value "
                "(pass --drop-missing to drop rows with missing values)"
            )
        rows_missing = missing.any(axis=1)
        dropped = int(rows_missing.sum())
        keep = np.flatnonzero(~rows_missing)
        values = values[keep]
        if len(values) == 0:
            raise InputError(f"{table.source}: every row has a missing value")
    with np.errstate(over="ignore"):
        too_big = ~np.isfinite(values.astype(np.float32))
    if too_big.any():
        i, j = (int(v[0]) for v in np.nonzero(too_big))
        value = float(values[i, j])
        kind = "infinite value" if not np.isfinite(value) else f"{value!r} does not fit in float32"
        raise InputError(f"{table.source}: column {columns[j]!r}, {table.where(int(keep[i]))}: {kind}")
    X = values[:, : len(feats)]
    y = values[:, len(feats) :] if targets else None
    return Selected(X, y, feats, targets, keep, dropped)
