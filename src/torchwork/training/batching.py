"""Batches for the training and testing loops, and inference in batches.

A batch is what a fit's ``training_step`` receives: an ``(X, y)`` pair of tensors by default,
or any tuple or dict of tensors whose first dimension is the rows. The fast path,
:class:`TensorBatches`, keeps the data as tensors on the training device and takes each
epoch's batches by indexing a permutation: no per-row ``__getitem__``, no collate, no worker
processes. Rows are gathered a chunk of batches at
a time (one large ``index_select`` instead of many small ones) and batches are views into
that chunk, so memory stays at the data plus one chunk.

The permutation of an epoch is a pure function of ``(seed, epoch)``: a resumed run, and
every rank of a multi-process run, computes the same order without sharing state.
:class:`LoaderBatches` wraps a ``torch.utils.data.Dataset`` in a ``DataLoader`` driven by
the same permutation. :func:`predict` is inference as the tutorial makes it: ``model.eval()``
and ``torch.inference_mode()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from torchwork.core.errors import InputError
from torchwork.core.runtime import epoch_seed


# ------------------------------------------------------------------------------------ inference
def as_tensor(data: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A tensor from a tensor, NumPy array or nested list, converted to ``dtype`` if given."""
    t = data if isinstance(data, torch.Tensor) else torch.as_tensor(np.asarray(data))
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    return t


def model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def predict(model: nn.Module, X: Any, batch_size: int | None = 65536) -> torch.Tensor:
    """The model's outputs for ``X`` (run on the model's device, returned on the CPU)."""
    device, dtype = model_device(model), model_dtype(model)
    X = as_tensor(X, dtype)
    model.eval()
    with torch.inference_mode():
        if batch_size is None or len(X) <= batch_size:
            return model(X.to(device)).cpu()
        parts = [model(X[i : i + batch_size].to(device)).cpu() for i in range(0, len(X), batch_size)]
        return torch.cat(parts)


# -------------------------------------------------------------------------------------- batches
# Rows gathered per index_select when shuffling: large enough to amortise the call,
# small enough (a few MB for typical widths) to keep peak memory near the data's size.
CHUNK_ROWS = 65536

Batch = Any  # an (X, y) pair of tensors, or any tuple or dict of tensors with the rows first


def _each(batch: Batch, fn: Any) -> Batch:
    """``fn`` applied to each tensor of a batch, keeping its structure (a dict stays a dict)."""
    if isinstance(batch, dict):
        return {k: fn(v) for k, v in batch.items()}
    return tuple(fn(t) for t in batch)


def tensors_of(batch: Batch) -> list[torch.Tensor]:
    return list(batch.values()) if isinstance(batch, dict) else list(batch)


def rows_of(batch: Batch) -> int:
    """The rows of a batch: its first tensor's length."""
    return len(tensors_of(batch)[0])


def select(batch: Batch, index: torch.Tensor) -> Batch:
    """Rows ``index`` of every tensor of a batch (copies)."""
    return _each(batch, lambda t: t.index_select(0, index))


def sliced(batch: Batch, lo: int, hi: int) -> Batch:
    """Rows ``lo:hi`` of every tensor of a batch (views)."""
    return _each(batch, lambda t: t[lo:hi])


def to_device(batch: Batch, device: torch.device, non_blocking: bool = False) -> Batch:
    return _each(batch, lambda t: t.to(device, non_blocking=non_blocking))


def epoch_permutation(n: int, seed: int, epoch: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """The order of the ``n`` rows in ``epoch`` (a CPU ``int64`` tensor, written to ``out`` if given)."""
    generator = torch.Generator()
    generator.manual_seed(epoch_seed(seed, epoch))
    if out is not None:
        return torch.randperm(n, generator=generator, out=out)
    return torch.randperm(n, generator=generator)


class Batches(Protocol):
    n_rows: int
    batch_size: int

    @property
    def n_batches(self) -> int: ...

    def batch_sizes(self) -> list[int]: ...

    def set_seed(self, seed: int) -> None: ...

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]: ...


class TensorBatches:
    """Mini-batches of in-memory tensors (a pair, a tuple or a dict of them), batched by index.

    ``batch_size=None`` (or one at least the number of rows) gives one full batch per
    epoch, in the data's order, as the tutorial trains.
    """

    def __init__(self, data: Batch, batch_size: int | None = None, shuffle: bool = True, seed: int = 0) -> None:
        lengths = {len(t) for t in tensors_of(data)}
        if len(lengths) != 1:
            raise InputError(f"the training tensors have different numbers of rows: {sorted(lengths)}")
        self.data = data
        self.n_rows = lengths.pop()
        if self.n_rows == 0:
            raise InputError("no rows to train on")
        self.shuffle, self.seed = shuffle, seed
        self.batch_size = min(batch_size or self.n_rows, self.n_rows)

    def set_seed(self, seed: int) -> None:
        self.seed = seed

    @property
    def full_batch(self) -> bool:
        return self.batch_size == self.n_rows

    @property
    def n_batches(self) -> int:
        return -(-self.n_rows // self.batch_size)

    def batch_sizes(self) -> list[int]:
        full, rest = divmod(self.n_rows, self.batch_size)
        return [self.batch_size] * full + ([rest] if rest else [])

    def order(self, epoch: int, out: torch.Tensor | None = None) -> torch.Tensor | None:
        """The row indices of ``epoch``; ``None`` means the data's own order."""
        return epoch_permutation(self.n_rows, self.seed, epoch, out) if self.shuffle else None

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of ``epoch`` from batch number ``start`` on."""
        B, n = self.batch_size, self.n_rows
        if self.full_batch:
            if start == 0:
                yield self.data
            return
        order = self.order(epoch)
        if order is None:  # sequential: batches are views, nothing is copied
            for lo in range(start * B, n, B):
                yield sliced(self.data, lo, lo + B)
            return
        device = tensors_of(self.data)[0].device
        order = order.to(device, non_blocking=True)
        chunk = max(1, CHUNK_ROWS // B) * B
        # One buffer per epoch, refilled chunk by chunk: no allocation per chunk or per batch.
        # A batch is a view into it, valid until the next chunk is gathered (after its step).
        buffers = _each(self.data, lambda t: t.new_empty((min(chunk, n), *t.shape[1:])))
        for lo in range(start * B, n, chunk):
            idx = order[lo : lo + chunk]
            m = len(idx)
            if isinstance(self.data, dict):
                gathered: Batch = {k: torch.index_select(t, 0, idx, out=buffers[k][:m]) for k, t in self.data.items()}
            else:
                gathered = tuple(
                    torch.index_select(t, 0, idx, out=b[:m]) for t, b in zip(self.data, buffers, strict=True)
                )
            for b in range(0, m, B):
                yield sliced(gathered, b, b + B)


def eval_batches(data: Batch, batch_size: int | None) -> Iterator[Batch]:
    """Evaluation batches: consecutive views, or the whole set at once."""
    n = rows_of(data)
    B = n if batch_size is None else max(1, batch_size)
    for lo in range(0, n, B):
        yield sliced(data, lo, lo + B)


class EpochSampler(torch.utils.data.Sampler[int]):
    """A sampler that yields :func:`epoch_permutation` (or ``0..n-1``) for the current epoch."""

    def __init__(self, n: int, shuffle: bool, seed: int) -> None:
        self.n, self.shuffle, self.seed, self.epoch, self.start = n, shuffle, seed, 0, 0

    def __iter__(self) -> Iterator[int]:
        order = epoch_permutation(self.n, self.seed, self.epoch) if self.shuffle else torch.arange(self.n)
        return iter(order[self.start :].tolist())

    def __len__(self) -> int:
        return self.n - self.start


class LoaderBatches:
    """Batches from a ``Dataset`` through a ``DataLoader``, for data that does not fit in memory.

    Each item is an ``(x, y)`` pair (features made ``dtype``, targets ``target_dtype``) or any tuple
    or dict of tensors (moved as they are); batches are moved to ``device`` as they come.
    """

    def __init__(
        self,
        dataset: torch.utils.data.Dataset[Any],
        batch_size: int,
        device: torch.device,
        shuffle: bool = True,
        seed: int = 0,
        num_workers: int = 0,
        dtype: torch.dtype | None = None,
        target_dtype: torch.dtype | None = None,
    ) -> None:
        self.n_rows = len(dataset)  # type: ignore[arg-type]
        if self.n_rows == 0:
            raise InputError("no rows to train on")
        self.batch_size = min(batch_size, self.n_rows)
        self.device, self.dtype, self.target_dtype = device, dtype, target_dtype
        self.sampler = EpochSampler(self.n_rows, shuffle, seed)
        self.loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=num_workers,
            pin_memory=device.type == "cuda",
            # Its own generator: iterating must not draw from the fit's (dropout's), or a resumed
            # run would see another dropout stream.
            generator=torch.Generator(),
        )

    @property
    def n_batches(self) -> int:
        return -(-self.n_rows // self.batch_size)

    def batch_sizes(self) -> list[int]:
        full, rest = divmod(self.n_rows, self.batch_size)
        return [self.batch_size] * full + ([rest] if rest else [])

    def set_seed(self, seed: int) -> None:
        self.sampler.seed = seed

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        self.sampler.epoch, self.sampler.start = epoch, start * self.batch_size
        for batch in self.loader:
            if isinstance(batch, list | tuple) and len(batch) == 2:
                xb, yb = batch
                yield (xb.to(self.device, self.dtype or xb.dtype, non_blocking=True),
                       yb.to(self.device, self.target_dtype or yb.dtype, non_blocking=True))  # fmt: skip
            else:
                yield to_device(batch, self.device, non_blocking=True)


class OnDevice:
    """Batches made elsewhere (on the CPU, streamed from disk) moved to ``device`` as they are used."""

    def __init__(self, batches: Any, device: torch.device) -> None:
        self.batches, self.device = batches, device

    def __getattr__(self, name: str) -> Any:
        return getattr(self.batches, name)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        for batch in self.batches.epoch(epoch, start):
            yield to_device(batch, self.device, non_blocking=True)


def is_batches(data: Any) -> bool:
    """Batches made elsewhere (data streamed from disk): anything with ``epoch`` and ``batch_sizes``."""
    return callable(getattr(data, "epoch", None)) and callable(getattr(data, "batch_sizes", None))


def is_dataset(data: Any) -> bool:
    return isinstance(data, torch.utils.data.Dataset) and not isinstance(data, tuple | list | dict)


def as_batch(data: Any, name: str, device: torch.device, dtype: torch.dtype, targets: str) -> Batch:
    """Data held in memory as tensors on ``device``.

    An ``(X, y)`` pair: features in ``dtype``, targets in ``dtype`` or as class indices (``targets``
    is ``"classes"``). Any other tuple or dict: each tensor (or array) moved as it is, for a
    ``training_step`` of your own.
    """
    if isinstance(data, dict) or (isinstance(data, tuple | list) and len(data) != 2):
        if not data:
            raise InputError(f"{name} data is empty")
        batch = _each(data if isinstance(data, dict) else tuple(data), lambda t: as_tensor(t).to(device))
        lengths = {len(t) for t in tensors_of(batch)}
        if len(lengths) != 1:
            raise InputError(f"{name}: its tensors have different numbers of rows: {sorted(lengths)}")
        return batch
    try:
        X, y = data
    except (TypeError, ValueError):
        raise InputError(f"{name} data must be an (X, y) pair, a tuple or dict of tensors, or a Dataset") from None
    X = as_tensor(X, dtype).to(device)
    y = as_tensor(y)
    if targets == "classes":
        if y.is_floating_point() and not bool((y == y.round()).all()):
            raise InputError(f"{name}: the loss takes class indices, but y holds non-integer values")
        y = y.long()
    else:
        y = y.to(dtype)
    y = y.to(device)
    if len(X) != len(y):
        raise InputError(f"{name}: X has {len(X)} rows but y has {len(y)}")
    return X, y


def train_batches(
    train: Any, batch_size: int | None, shuffle: bool, seed: int, num_workers: int, device: torch.device,
    dtype: torch.dtype, targets: str,
) -> Batches:  # fmt: skip
    """The training batches for data in memory (batched by index) or a ``Dataset`` (through a DataLoader)."""
    if isinstance(train, TensorBatches | LoaderBatches) or is_batches(train):
        return train
    if is_dataset(train):
        y_dtype = torch.long if targets == "classes" else dtype
        return LoaderBatches(train, batch_size or 256, device, shuffle, seed, num_workers, dtype, y_dtype)
    return TensorBatches(as_batch(train, "train", device, dtype, targets), batch_size, shuffle, seed)
