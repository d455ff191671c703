"""Reading a user's data into a :class:`~torchwork.data.tables.Table`.

Inputs: CSV (read with pyarrow, which refuses ragged rows), Parquet, ``.npy``/``.npz``
(never with pickles), and in Python pandas DataFrames, NumPy arrays and tensors. Every
input becomes a pandas DataFrame with string column names. A problem is an
:class:`InputError` that names the file (and the line, where it can) and the rule.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from torchwork.core.errors import InputError
from torchwork.data.tables import Table

SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet",
            ".npy": "npy", ".npz": "npz"}  # fmt: skip


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
