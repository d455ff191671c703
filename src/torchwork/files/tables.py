"""Writing a table (predictions) to CSV or Parquet, atomically, and never over a user's file by accident."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Sequence
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


class TableWriter:
    """Arrow tables appended to one CSV or Parquet file (the first table's columns and types for all)."""

    def __init__(self, f: IO[bytes], suffix: str) -> None:
        self.f, self.suffix = f, suffix
        self.writer: Any = None
        self.schema: Any = None

    @classmethod
    def atomic(cls, out: str | os.PathLike[str], fill: Callable[[TableWriter], None], *, overwrite: bool) -> Path:
        """``fill(writer)`` writes the tables; ``out`` appears, whole, only when it returns."""
        out = Path(out)
        suffix = out.suffix.lower()
        if suffix not in SUFFIXES:
            raise InputError(f"--out {out}: write .csv, .tsv or .parquet")
        check_output(out, overwrite=overwrite, inputs=[])

        def write(f: IO[bytes]) -> None:
            writer = cls(f, suffix)
            fill(writer)
            writer.close()

        return atomic_write(out, write, keep_mode=True)

    def write(self, table: Any) -> None:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        first = self.schema is None
        if first:
            self.schema = table.schema.remove_metadata()
        table = table.replace_schema_metadata(None).cast(self.schema)
        if self.suffix in (".parquet", ".pq"):
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.f, self.schema)
            self.writer.write_table(table)
            return
        delimiter = "\t" if self.suffix == ".tsv" else ","
        if first:
            header = io.StringIO()
            csv.writer(header, delimiter=delimiter, lineterminator="\n").writerow(self.schema.names)
            self.f.write(header.getvalue().encode())
        # pyarrow's "needed" quotes every text value; quote a chunk only if one of its texts needs it
        quoting = "needed" if _needs_quotes(table, delimiter) else "none"
        options = pacsv.WriteOptions(delimiter=delimiter, quoting_style=quoting, include_header=False)
        pacsv.write_csv(table, self.f, options)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _needs_quotes(table: Any, delimiter: str) -> bool:
    import pyarrow as pa
    import pyarrow.compute as pc

    pattern = "[" + re.escape(delimiter) + '"\r\n]'
    for column in table.columns:
        text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        if text and pc.any(pc.match_substring_regex(column, pattern)).as_py():
            return True
    return False
