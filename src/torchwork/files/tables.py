"""Writing a table (predictions) to CSV or Parquet, atomically."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from torchwork.core.errors import InputError
from torchwork.files.atomic import atomic_write


def write_table(frame: Any, out: str | os.PathLike[str]) -> Path:
    """Write a DataFrame to ``.csv``/``.tsv`` or ``.parquet``, atomically."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix in (".parquet", ".pq"):
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        return atomic_write(out, buf.getvalue())
    if suffix not in (".csv", ".tsv", ".txt"):
        raise InputError(f"--out {out}: write .csv or .parquet")
    return atomic_write(out, frame.to_csv(index=False, sep="\t" if suffix == ".tsv" else ","))
