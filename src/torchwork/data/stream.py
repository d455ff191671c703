"""Tables larger than memory: a Parquet file, a folder of Parquet files, or a ``.npy`` array, read in chunks.

A table is a list of :class:`Unit`\\ s (a Parquet row group, or a block of ``.npy`` rows read
through a memory map), each read on its own. Every row has a global number (its position in
the table), and everything random about it is a function of that number and the seed:

- **the split**: :func:`parts_of` hashes the row number (SplitMix64) into [0, 1) and gives
  the row to test, validation or training by the fractions: the same rows every epoch and
  every run, whatever the order in which chunks are read;
- **the sample**: :func:`sample_keys` ranks rows by another hash; the rows with the smallest
  keys are a uniform sample without replacement (bounded: what column kinds, medians, the
  report's plots and the logistic-regression baseline are fitted on);
- **the order**: each epoch reads the units in a permutation of ``(seed, epoch)`` and shuffles
  rows within a bounded buffer (:class:`StreamBatches`).

The chunks are :mod:`~torchwork.data.stream_source`'s, the hashes and the sample
:mod:`~torchwork.data.row_hash`'s, the exact moments :mod:`~torchwork.data.moments`'; this
module streams the batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import torch

from torchwork.core.errors import InputError
from torchwork.core.seeding import epoch_seed
from torchwork.data.moments import Moments
from torchwork.data.row_hash import PART_CODES, Reservoir, parts_of, sample_keys
from torchwork.data.stream_source import Source, Unit

# Also imported from here by other packages (the streamed recipe, the benchmarks).
__all__ = [
    "PART_CODES",
    "Moments",
    "Reservoir",
    "Source",
    "StreamBatches",
    "StreamEval",
    "Unit",
    "parts_of",
    "sample_keys",
]


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
            self.real, self.current = batch_size, batch_size * share[1]  # what ScaledLoss reads

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
