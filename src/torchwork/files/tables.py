"""Writing a table (predictions) to CSV or Parquet, atomically, and never over a user's file by accident."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from torchwork.core.errors import InputError
from torchwork.files.atomic import atomic_write

SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")


def check_output(out: str | os.PathLike[str], *, overwrite: bool, inputs: Sequence[str | os.PathLike[str]]) -> None:
    """Refuse to write ``out`` over an existing file without ``overwrite``, and over an input ever.

    Checked before any work is done, so a refused run costs nothing.
    """
    out = Path(out)
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder; give a file name")
    if out.exists() or out.is_symlink():
        for source in inputs:
            if Path(source).exists() and os.path.samefile(out, source):
                raise InputError(f"--out {out}: is the input {source}; predictions never write over their input")
        if not overwrite:
            raise InputError(f"--out {out}: exists; pass --overwrite to replace it")
        if not out.is_file():
            raise InputError(f"--out {out}: exists and is not a regular file")


def write_table(frame: Any, out: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write a DataFrame to ``.csv``/``.tsv`` or ``.parquet``, atomically; a replaced file keeps its mode.

    Written by pyarrow (streamed to the temporary file, several times faster than pandas'
    ``to_csv``); a column pyarrow cannot type (mixed Python objects) is written as text.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"--out {out}: write .csv, .tsv or .parquet")
    check_output(out, overwrite=overwrite, inputs=[])
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        mixed = [c for c in frame.columns if frame[c].dtype == object]
        table = pa.Table.from_pandas(frame.astype({c: "string" for c in mixed}), preserve_index=False)
    table = table.replace_schema_metadata(None)  # no pandas metadata in the file: data only

    def write(f: IO[bytes]) -> None:
        if suffix in (".parquet", ".pq"):
            pq.write_table(table, f)
        else:
            delimiter = "\t" if suffix == ".tsv" else ","
            header = io.StringIO()  # pyarrow quotes every name of the header; the csv module only where needed
            csv.writer(header, delimiter=delimiter, lineterminator="\n").writerow(table.column_names)
            f.write(header.getvalue().encode())
            options = pacsv.WriteOptions(delimiter=delimiter, quoting_style="needed", include_header=False)
            pacsv.write_csv(table, f, options)

    return atomic_write(out, write, keep_mode=True)
