"""Tables larger than memory: a Parquet file, a folder of Parquet files, or a ``.npy`` array, read in chunks.

A :class:`Source` is a list of units (:class:`Unit`: a Parquet row group, or a block of ``.npy``
rows read through a memory map), each read on its own. Every row has a global number (its
position in the table), and everything random about it is a function of that number and the
seed:

- **the split**: :func:`parts_of` hashes the row number (SplitMix64) into [0, 1) and gives
  the row to test, validation or training by the fractions: the same rows every epoch and
  every run, whatever the order in which chunks are read;
- **the sample**: :func:`sample_keys` ranks rows by another hash; the rows with the smallest
  keys are a uniform sample without replacement (:class:`Reservoir`; bounded: what column
  kinds, medians, the report's plots and the logistic-regression baseline are fitted on);
- **the order**: each epoch reads the units in a permutation of ``(seed, epoch)`` and shuffles
  rows within a bounded buffer (:class:`StreamBatches`).

:class:`Moments` keeps exact counts, means and variances merged chunk by chunk (Chan et al.).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from torchwork.core.errors import DataChanged, InputError, one_line
from torchwork.core.runtime import epoch_seed
from torchwork.data.readers import npy_memory

# ----------------------------------------------------------------------- the chunks of a source
NPY_BLOCK_BYTES = 16 << 20  # rows of a .npy read per unit: about this many bytes


@dataclass(frozen=True)
class Unit:
    """One chunk of the table: ``index`` is the row group (Parquet) or the first row (``.npy``)."""

    path: str
    index: int
    rows: int
    first: int  # the global number of its first row


def _stamp(path: Path) -> tuple[int, int]:
    """What says that a file changed, without reading it: its size and modification time (ns)."""
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".parquet", ".pq") and p.is_file())


class Source:
    """The chunks of a Parquet file, a folder of Parquet files (in name order) or a ``.npy`` file.

    The data must not change while a run reads it (its SHA-256, in ``run.json``, is taken once):
    each file's size and modification time are taken when the source is opened and checked before
    every chunk is read (:meth:`check_unchanged` checks them all, and a folder's files); a file that
    changed, or that can no longer be read (truncated in place), raises :class:`DataChanged`.
    """

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
        self.files = [str(f) for f in files]
        self._stamps = {str(f): _stamp(f) for f in files}
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
            raise InputError(f"{path}: not a readable Parquet file ({one_line(exc, 200, first_line=False)})") from None
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            raise InputError(f"{path}: duplicated column {', '.join(map(repr, dups))}")
        units = []
        for i in range(meta.num_row_groups):
            n = meta.row_group(i).num_rows
            if n:  # an empty row group is no chunk: every reader of the units may assume rows
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
            raise InputError(f"{path}: not a readable NumPy array ({one_line(exc, 200, first_line=False)})") from None

    def read(self, unit: Unit, columns: list[str] | None = None) -> pd.DataFrame:
        """The unit's rows (only ``columns``, if given) as a DataFrame."""
        return self.frame(self.fetch(unit, columns), columns)

    def fetch(self, unit: Unit, columns: list[str] | None = None) -> Any:
        """The unit's raw rows (an Arrow table, or a NumPy block): the I/O, which may run in another thread."""
        with self._lock:  # one reader of a file at a time (the training and evaluation threads share them)
            self._check_file(unit.path)  # before a memory map of a shortened .npy is read (SIGBUS)
            try:
                reader = self._readers.get(unit.path)
                if reader is None:
                    reader = self._readers[unit.path] = self._open(Path(unit.path))
                if self.kind == "npy":
                    return np.array(reader[unit.index : unit.index + unit.rows])  # a copy of the block
                return reader.read_row_group(unit.index, columns=columns)
            except (OSError, ValueError) as exc:  # pyarrow's errors are OSError (IO) or ValueError (invalid)
                self._check_file(unit.path)  # changed while it was read: say that
                chunk = f"row group {unit.index}" if self.kind == "parquet" else f"rows from {unit.index + 1}"
                raise DataChanged(
                    f"{unit.path}: {chunk} cannot be read any more ({one_line(exc, 120)}); the file was readable "
                    "when the run started: was it truncated or rewritten?"
                ) from None

    def check_unchanged(self) -> None:
        """Every file as it was when the source was opened (and a folder's files the same ones)."""
        for path in self.files:
            self._check_file(path)
        if self.path.is_dir():
            now = _listing(self.path)
            before = sorted(Path(f).name for f in self.files)
            if now != before:
                added, gone = sorted(set(now) - set(before)), sorted(set(before) - set(now))
                what = "; ".join(
                    f"{label} {', '.join(names)}" for label, names in (("added", added), ("removed", gone)) if names
                )
                raise DataChanged(f"{self.name}: its Parquet files changed while the run read them ({what})")

    def _check_file(self, path: str) -> None:
        try:
            now: tuple[int, int] | None = _stamp(Path(path))
        except OSError:
            now = None
        before = self._stamps[path]
        if now != before:
            how = "is gone" if now is None else (
                f"is {now[0]} bytes, was {before[0]}" if now[0] != before[0] else "was modified (same size)"
            )  # fmt: skip
            raise DataChanged(
                f"{path}: changed while the run was reading it ({how}); a run reads the same data from start to end"
            )

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


# -------------------------------------------------------------------- row hashes and the sample
SPLIT_SALT, SAMPLE_SALT = 0x5EED_5B11, 0x5A3B_1E5


# --------------------------------------------------------------------- hashes
def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, element-wise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def uniform(rows: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """A number in [0, 1) for each global row number, a pure function of (row, seed, salt)."""
    key = _mix(np.asarray([seed % 2**63, salt], dtype=np.uint64)).sum(dtype=np.uint64)
    with np.errstate(over="ignore"):
        bits = _mix(rows.astype(np.uint64) ^ key)
    return (bits >> np.uint64(11)).astype(np.float64) / float(1 << 53)


PART_CODES = {"train": 0, "val": 1, "test": 2}


def parts_of(rows: np.ndarray, seed: int, val: float, test: float) -> np.ndarray:
    """0 (train), 1 (validation) or 2 (test) for each global row number: stable across runs and chunkings."""
    u = uniform(rows, seed, SPLIT_SALT)
    return np.where(u < test, 2, np.where(u < test + val, 1, 0)).astype(np.int8)


def sample_keys(rows: np.ndarray, seed: int) -> np.ndarray:
    """Keys whose smallest ``k`` rows are a uniform sample of ``k`` rows."""
    return uniform(rows, seed, SAMPLE_SALT)


class Reservoir:
    """The ``k`` rows with the smallest sample keys seen so far (a uniform sample, bounded memory)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.frames: list[pd.DataFrame] = []
        self.keys = np.empty(0)
        self.size = 0

    def add(self, frame: pd.DataFrame, keys: np.ndarray) -> None:
        if not len(frame):
            return
        self.frames.append(frame.reset_index(drop=True))
        self.keys = np.concatenate([self.keys, keys])
        self.size += len(frame)
        if self.size > 2 * self.k:
            self._trim()

    def _trim(self) -> None:
        frame = pd.concat(self.frames, ignore_index=True)
        keep = np.sort(np.argpartition(self.keys, self.k - 1)[: self.k]) if len(self.keys) > self.k else None
        if keep is not None:
            frame, self.keys = frame.iloc[keep].reset_index(drop=True), self.keys[keep]
        self.frames, self.size = [frame], len(frame)

    def frame(self) -> pd.DataFrame:
        """The sample, in the order of its keys (so: independent of the order chunks came in)."""
        if not self.frames:
            return pd.DataFrame()
        self._trim()
        order = np.argsort(self.keys, kind="stable")
        return self.frames[0].iloc[order].reset_index(drop=True)


# -------------------------------------------------------------------------------- exact moments
class Moments:
    """Exact count, mean and variance of columns of numbers, merged chunk by chunk (Chan et al.)."""

    def __init__(self, width: int) -> None:
        self.n = np.zeros(width)
        self.mean = np.zeros(width)
        self.m2 = np.zeros(width)

    def add(self, values: np.ndarray) -> None:
        """``values`` (rows, width), NaN where missing (left out)."""
        present = ~np.isnan(values)
        n = present.sum(axis=0).astype(np.float64)
        if not n.any():
            return
        filled = np.where(present, values, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, filled.sum(axis=0) / np.maximum(n, 1), 0.0)
            m2 = np.where(present, (values - mean) ** 2, 0.0).sum(axis=0)
        total = self.n + n
        delta = mean - self.mean
        with np.errstate(invalid="ignore", divide="ignore"):
            self.mean = np.where(total > 0, self.mean + delta * n / np.maximum(total, 1), 0.0)
            self.m2 = self.m2 + m2 + np.where(total > 0, delta**2 * self.n * n / np.maximum(total, 1), 0.0)
        self.n = total

    def with_fill(self, column: int, fill: float, missing: int) -> tuple[float, float]:
        """Mean and (population) standard deviation of the column once ``missing`` gaps hold ``fill``."""
        n, mean, m2 = self.n[column], self.mean[column], self.m2[column]
        total = n + missing
        if total == 0:
            return 0.0, 1.0
        new_mean = (n * mean + missing * fill) / total
        new_m2 = m2 + n * (mean - new_mean) ** 2 + missing * (fill - new_mean) ** 2
        return float(new_mean), float(math.sqrt(max(new_m2 / total, 0.0)))


# -------------------------------------------------------------------------------------- batches


# -------------------------------------------------------------------- batches
class StreamBatches:
    """Training batches streamed from a :class:`Source`: every row of a part once per epoch.

    Each epoch reads the units in a permutation of ``(seed, epoch)`` (the next unit read in a
    background thread while the current one trains), keeps up to ``buffer_rows`` encoded rows
    (and at least two units' rows) and draws each batch at random from them (seeded by
    ``(seed, epoch)``): rows mix across units within that bound. Without shuffling, units and
    rows come in the table's order.

    ``share=(rank, processes)``: this process's share in a process group. Every rank draws the
    same permutation of the units and reads every ``processes``-th of it (rank r: positions r,
    r + processes, ...), so the ranks read disjoint units and together all of them, each unit
    once per epoch. The ranks must take the same number of steps: an epoch is ``n_batches``
    full batches on every rank, as many as the rank with the fewest rows can always fill (from
    ``unit_rows``, the part's rows in each unit, whatever the permutation); a rank's rows beyond
    that are left out of that epoch (with row groups of equal size, fewer than a batch).
    """

    def __init__(
        self, source: Source, units: list[Unit], rows: int, encode: Callable[[pd.DataFrame, Unit], tuple[Any, Any]],
        batch_size: int, shuffle: bool, seed: int, buffer_rows: int = 1 << 16, columns: list[str] | None = None,
        share: tuple[int, int] | None = None, unit_rows: list[int] | None = None,
    ) -> None:  # fmt: skip
        if rows == 0:
            raise InputError(f"{source.name}: no rows to train on")
        self.source, self.units, self.encode = source, units, encode
        self.n_rows, self.batch_size = rows, min(batch_size, rows)
        self.shuffle, self.seed = shuffle, seed
        self.buffer_rows = max(buffer_rows, 4 * self.batch_size)
        self.columns = columns  # the columns to read (None: every one)
        self.share = share
        self.steps: int | None = None  # in a share: the full batches every rank takes per epoch
        if share is not None:
            self.batch_size = batch_size
            self.steps = self._steps(share[1], unit_rows or [u.rows for u in units])
            self.n_rows = self.steps * batch_size
            self.real, self.current = batch_size, batch_size * share[1]  # what GlobalBatchLoss reads

    def _steps(self, processes: int, unit_rows: list[int]) -> int:
        fewest = len(self.units) // processes  # the units the rank with the fewest gets
        if fewest == 0:
            raise InputError(
                f"{self.source.name}: {len(self.units)} row group(s) for {processes} processes: each process needs "
                "at least one; write it in smaller row groups (pyarrow's row_group_size) or use fewer processes"
            )
        steps = sum(sorted(unit_rows)[:fewest]) // self.batch_size
        if steps == 0:
            raise InputError(
                f"{self.source.name}: with {processes} processes, the one with the fewest rows may get "
                f"{sum(sorted(unit_rows)[:fewest])}, less than a batch ({self.batch_size}); use a smaller "
                "--batch-size or fewer processes"
            )
        return steps

    @property
    def full_batch(self) -> bool:
        return False

    @property
    def n_batches(self) -> int:
        return -(-self.n_rows // self.batch_size)

    def batch_sizes(self) -> list[int]:
        if self.share is not None and self.steps is not None:
            return [self.batch_size * self.share[1]] * self.steps  # the global batches
        full, rest = divmod(self.n_rows, self.batch_size)
        return [self.batch_size] * full + ([rest] if rest else [])

    def set_seed(self, seed: int) -> None:
        self.seed = seed

    def _order(self, epoch: int) -> list[Unit]:
        order = list(self.units)
        if self.shuffle:
            rng = np.random.default_rng(epoch_seed(self.seed, epoch))
            order = [self.units[i] for i in rng.permutation(len(self.units))]
        return order if self.share is None else order[self.share[0] :: self.share[1]]

    def chunks(self, order: list[Unit]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Encoded chunks, in ``order``, the next read while the current one is used."""
        if not order:
            return
        # The file is read in another thread (Arrow releases the GIL); the rows are decoded here
        # (memory allocated and freed by one thread stays in one allocator arena).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="torchwork-read") as pool:
            pending: Future[Any] = pool.submit(self.source.fetch, order[0], self.columns)
            for i in range(len(order)):
                raw = pending.result()
                if i + 1 < len(order):
                    pending = pool.submit(self.source.fetch, order[i + 1], self.columns)
                X, y = self._decode(raw, order[i])
                del raw
                if len(X):
                    yield X, y

    def _decode(self, raw: Any, unit: Unit) -> tuple[torch.Tensor, torch.Tensor]:
        X, y = self.encode(self.source.frame(raw, self.columns), unit)
        return torch.from_numpy(np.require(X, requirements="W")), torch.from_numpy(np.require(y, requirements="W"))

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of ``epoch`` from batch number ``start`` on (earlier ones are drawn, not yielded)."""
        batches = self._shuffled(epoch) if self.shuffle else self._in_order()
        for b, batch in enumerate(batches):
            if b >= self.n_batches:
                break
            if b >= start:
                yield batch

    def _in_order(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        B = self.batch_size
        carry: tuple[torch.Tensor, torch.Tensor] | None = None
        for X, y in self.chunks(self._order(0)):
            if carry is not None:
                X, y = torch.cat([carry[0], X]), torch.cat([carry[1], y])
            full = len(X) // B * B
            for lo in range(0, full, B):
                yield X[lo : lo + B], y[lo : lo + B]
            carry = (X[full:], y[full:]) if full < len(X) else None
        if carry is not None:
            yield carry

    def _shuffled(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Rows gathered into a buffer of ``buffer_rows`` (at least two units' rows); each batch drawn
        from it at random, its slots then filled with the buffer's last rows; at the end, the rest in
        a random order."""
        B = self.batch_size
        rng = np.random.default_rng(epoch_seed(self.seed, epoch) ^ 0x5F5F)
        X_buf: torch.Tensor | None = None
        y_buf: torch.Tensor | None = None
        held = 0
        for X, y in self.chunks(self._order(epoch)):
            if X_buf is None or y_buf is None or held + len(X) > len(X_buf):
                cap = max(self.buffer_rows, held + len(X))
                X_new, y_new = X.new_empty((cap, *X.shape[1:])), y.new_empty((cap, *y.shape[1:]))
                if X_buf is not None and y_buf is not None:
                    X_new[:held], y_new[:held] = X_buf[:held], y_buf[:held]
                X_buf, y_buf = X_new, y_new
            X_buf[held : held + len(X)] = X
            y_buf[held : held + len(X)] = y
            held += len(X)
            # Draw only from at least two units' rows (a unit may be larger than the buffer).
            while held >= max(self.buffer_rows, 2 * len(X)):
                drawn = rng.choice(held, B, replace=False)
                idx = torch.from_numpy(drawn)
                xb, yb = X_buf[idx], y_buf[idx]  # copies
                tail = np.arange(held - B, held)
                keep = torch.from_numpy(np.setdiff1d(tail, drawn))
                holes = torch.from_numpy(np.setdiff1d(drawn, tail))
                X_buf[holes], y_buf[holes] = X_buf[keep], y_buf[keep]
                held -= B
                yield xb, yb
        if X_buf is None or y_buf is None:
            return
        rest = torch.from_numpy(rng.permutation(held))
        for lo in range(0, held, B):
            idx = rest[lo : lo + B]
            yield X_buf[idx], y_buf[idx]


class StreamEval:
    """A part of the table streamed in order, for the testing loop: ``epoch()`` yields encoded chunks.

    ``share=(rank, processes)``: this process reads every ``processes``-th unit (rank r: r, r +
    processes, ...); the ranks' losses are summed over the group (each row counted once).
    """

    def __init__(self, batches: StreamBatches, share: tuple[int, int] | None = None) -> None:
        self.batches = batches
        self.n_rows = batches.n_rows
        self.units = list(batches.units) if share is None else list(batches.units)[share[0] :: share[1]]

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield from self.batches.chunks(self.units)
