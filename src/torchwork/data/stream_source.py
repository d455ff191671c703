"""The chunks of a table to stream: a Parquet file, a folder of Parquet files, or a ``.npy`` array,
each chunk (a :class:`Unit`: a row group, or a block of rows) read on its own."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from torchwork.core.errors import InputError
from torchwork.data.npy_files import npy_memory

NPY_BLOCK_BYTES = 16 << 20  # rows of a .npy read per unit: about this many bytes


@dataclass(frozen=True)
class Unit:
    """One chunk of the table: ``index`` is the row group (Parquet) or the first row (``.npy``)."""

    path: str
    index: int
    rows: int
    first: int  # the global number of its first row


class Source:
    """The chunks of a Parquet file, a folder of Parquet files (in name order) or a ``.npy`` file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = str(path)
        if self.path.is_dir():
            files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in (".parquet", ".pq") and p.is_file())
            if not files:
                raise InputError(f"{self.name}: a folder to stream holds .parquet files; this one holds none")
            self.kind = "parquet"
        elif self.path.suffix.lower() in (".parquet", ".pq"):
            files, self.kind = [self.path], "parquet"
        elif self.path.suffix.lower() == ".npy":
            files, self.kind = [self.path], "npy"
        else:
            raise InputError(
                f"{self.name}: streaming reads Parquet (a file or a folder of files) or .npy; convert a CSV "
                f"once with: torchwork convert {self.name} {self.path.with_suffix('.parquet')}"
            )
        self.units: list[Unit] = []
        self.columns: list[str] = []
        first = 0
        for f in files:
            units, columns = self._parquet_units(f, first) if self.kind == "parquet" else self._npy_units(f, first)
            if self.columns and columns != self.columns:
                raise InputError(f"{f}: its columns differ from {files[0]}'s; a folder streams files of one table")
            self.columns = columns
            self.units += units
            first += sum(u.rows for u in units)
        self.rows = first
        if self.rows == 0:
            raise InputError(f"{self.name}: no rows")
        self._readers: dict[str, Any] = {}  # each file opened once (its footer or header parsed once), on first use
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_readers": {}, "_lock": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def _parquet_units(self, path: Path, first: int) -> tuple[list[Unit], list[str]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            with pq.ParquetFile(path) as f:
                meta, names = f.metadata, f.schema_arrow.names
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())[:200]})") from None
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise InputError(f"{path}: duplicated column {', '.join(map(repr, dups))}")
        units = []
        for i in range(meta.num_row_groups):
            n = meta.row_group(i).num_rows
            units.append(Unit(str(path), i, n, first))
            first += n
        return units, list(names)

    def _npy_units(self, path: Path, first: int) -> tuple[list[Unit], list[str]]:
        array = self._memmap(path)
        if array.ndim not in (1, 2) or array.dtype.hasobject or not np.issubdtype(array.dtype, np.number):
            raise InputError(f"{path}: streaming takes a 2-D array of numbers, got {array.dtype} {array.shape}")
        width = 1 if array.ndim == 1 else array.shape[1]
        block = max(1, NPY_BLOCK_BYTES // max(1, width * array.dtype.itemsize))
        units = [Unit(str(path), lo, min(block, len(array) - lo), first + lo) for lo in range(0, len(array), block)]
        return units, [str(i) for i in range(width)]

    @staticmethod
    def _memmap(path: Path) -> np.ndarray:
        npy_memory(path)  # its header checked first: sizes that do not match the file are one line, no memmap
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"{path}: not a readable NumPy array ({' '.join(str(exc).split())[:200]})") from None

    def read(self, unit: Unit, columns: list[str] | None = None) -> pd.DataFrame:
        """The unit's rows (only ``columns``, if given) as a DataFrame."""
        return self.frame(self.fetch(unit, columns), columns)

    def fetch(self, unit: Unit, columns: list[str] | None = None) -> Any:
        """The unit's raw rows (an Arrow table, or a NumPy block): the I/O, which may run in another thread."""
        with self._lock:  # one reader of a file at a time (the training and evaluation threads share them)
            reader = self._readers.get(unit.path)
            if reader is None:
                reader = self._readers[unit.path] = self._open(Path(unit.path))
            if self.kind == "npy":
                return np.array(reader[unit.index : unit.index + unit.rows])  # a copy of the block
            return reader.read_row_group(unit.index, columns=columns)

    def _open(self, path: Path) -> Any:
        if self.kind == "npy":
            return self._memmap(path)
        import pyarrow.parquet as pq

        return pq.ParquetFile(path)

    def frame(self, raw: Any, columns: list[str] | None = None) -> pd.DataFrame:
        """What :meth:`fetch` returned, as a DataFrame."""
        if isinstance(raw, np.ndarray):
            frame = pd.DataFrame(raw.reshape(len(raw), -1), columns=self.columns)
            return frame if columns is None else frame[columns]
        return raw.to_pandas()

    def head(self, columns: list[str] | None = None) -> pd.DataFrame:
        return self.read(self.units[0], columns)
