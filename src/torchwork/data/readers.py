"""Reading a user's data into a :class:`~torchwork.data.tables.Table`.

Inputs: CSV (read with pyarrow, which refuses ragged rows), Parquet, ``.npy``/``.npz``
(never with pickles), and in Python pandas DataFrames, NumPy arrays and tensors. Every
input becomes a pandas DataFrame with string column names. A problem is an
:class:`InputError`: one line that names the file (and the line, where it can) and the rule.

What is auto-detected in a CSV file, and what is not:

- the **delimiter**, when not given: among ``,`` ``;`` tab ``|`` (but the decimal mark), the
  one that the header has and every one of the first 50 records has as often (outside
  quotes), the most frequent if several do; ``.tsv`` files are tab-separated without looking.
  A file where none is consistent gets the header's most frequent one, so a ragged row is
  reported (naming its line and the detected delimiter); a header with none is one column.
- the **encoding** is *not* detected: UTF-8 unless given (a UTF-8 byte-order mark is fine).
  A byte that is not valid in the encoding is an error naming its line, never a guess.
- the **decimal** mark is *not* detected: ``.`` unless given (``,`` for spreadsheets written
  in much of Europe). Numbers like ``1,5`` in a ``;`` file stay text, so the column check
  refuses them, and can hint ``--decimal ,`` from ``table.options``.
- the column **types** are pyarrow's inference over the whole file (numbers, booleans,
  dates, text); nothing is coerced by guessing at the decimal mark or the encoding.

A CSV table records what was used on the instance: ``table.options`` (``encoding``,
``delimiter``, ``decimal``) and ``table.lines_match_rows`` (every data row is one file line,
so ``first_line + row`` is its line). Hostile files are refused before anything is read:
anything but a regular file, a ``.npy``/``.npz`` header that disagrees with the file's size,
and a file that would need more memory than the machine has available.

The readers of each format are :mod:`~torchwork.data.csv_parse` (with
:mod:`~torchwork.data.csv_text`), :mod:`~torchwork.data.parquet_files` and
:mod:`~torchwork.data.npy_files`; the checks they share are in :mod:`~torchwork.data.filechecks`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from torchwork.core.errors import InputError
from torchwork.data.csv_parse import CSV_MEMORY_FACTOR, read_csv
from torchwork.data.csv_text import csv_options
from torchwork.data.filechecks import available_memory, human_size, memory_hint, open_regular
from torchwork.data.frames import frame_from_array
from torchwork.data.npy_files import npy_memory, read_npy, read_npz
from torchwork.data.parquet_files import read_parquet
from torchwork.data.tables import Table

# Also imported from here by other packages: the CLI checks the CSV options, the streamed recipe
# sizes its memory budget.
__all__ = ["available_memory", "csv_options", "npy_memory", "read_table"]


SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet",
            ".npy": "npy", ".npz": "npz"}  # fmt: skip
_NOT_REGULAR = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
                stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFSOCK: "a socket"}  # fmt: skip


def read_table(
    data: Any, *, name: str = "data", encoding: str | None = None, delimiter: str | None = None,
    decimal: str | None = None,
) -> Table:  # fmt: skip
    """Read a file path, DataFrame, array, tensor or ``{name: column}`` mapping into a :class:`Table`.

    ``encoding``, ``delimiter`` and ``decimal`` apply to CSV files (the CLI's ``--encoding``,
    ``--delimiter``, ``--decimal``); None means UTF-8, detected, and ``.``. They are checked
    whatever ``data`` is, and ignored for other inputs: a run replays its training options
    on whatever it predicts for.
    """
    options = csv_options(encoding, delimiter, decimal)
    if isinstance(data, str | os.PathLike):
        return _read_file(Path(data), options)
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
    return Table(frame_from_array(np.asarray(data), name), name)


# ------------------------------------------------------------------- files
def _read_file(path: Path, options: dict[str, str | None]) -> Table:
    source = str(path)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"{source}: no such file") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{source}: is a folder, not a data file")
    if not stat.S_ISREG(st.st_mode):
        what = _NOT_REGULAR.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise InputError(f"{source}: is {what}, not a data file; torchwork reads regular files only")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"{source}: unknown file type {path.suffix!r}; expected one of {', '.join(SUFFIXES)}")
    if st.st_size == 0:
        raise InputError(f"{source}: empty file")
    need = st.st_size * CSV_MEMORY_FACTOR if kind == "csv" else st.st_size
    try:
        if kind == "parquet":
            return read_parquet(path)
        with open_regular(path) as f:
            if kind == "csv":
                return read_csv(f, source, st.st_size, path.suffix.lower(), options)
            if kind == "npy":
                return read_npy(f, source, st.st_size)
            return read_npz(f, source)
    except MemoryError:
        raise InputError(
            f"{source}: ran out of memory reading it (it needs about {human_size(need)} or more); " + memory_hint(kind)
        ) from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror or exc})") from None
