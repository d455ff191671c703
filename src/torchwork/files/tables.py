"""Writing a table (predictions) to CSV or Parquet, atomically, and never over a user's file by accident."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    """Write a DataFrame to ``.csv``/``.tsv`` or ``.parquet``, atomically; a replaced file keeps its mode."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"--out {out}: write .csv, .tsv or .parquet")
    check_output(out, overwrite=overwrite, inputs=[])
    if suffix in (".parquet", ".pq"):
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        data: bytes | str = buf.getvalue()
    else:
        data = frame.to_csv(index=False, sep="\t" if suffix == ".tsv" else ",")
    return atomic_write(out, data, keep_mode=True)
