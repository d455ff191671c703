"""The tutorial's data, and splits into train/validation/test.

:func:`make_line` is the tutorial's straight line with known parameters. Splits are
sequential by default, as the tutorial's ``X[:train_split]``; shuffled with a seed on
request, and stratified by class for classification (every class in every part, in
proportion). They work on anything indexable by an integer array with ``len()``: tensors,
NumPy arrays, or tuples of them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from torchwork.core.errors import InputError


# --------------------------------------------------------------------------------------- splits
class SplitSizes(NamedTuple):
    train: int
    val: int
    test: int


def split_sizes(n: int, val: float = 0.0, test: float = 0.2) -> SplitSizes:
    """Row counts for each part: validation and test get ``round(fraction * n)``, train the rest.

    With ``test=0.2`` and 50 rows this is the tutorial's ``int(0.8 * len(X))`` = 40 / 10.
    """
    for name, fraction in (("val", val), ("test", test)):
        if not 0.0 <= fraction < 1.0:
            raise InputError(f"the {name} fraction must be in [0, 1), got {fraction}")
    if val + test >= 1.0:
        raise InputError(f"the val and test fractions must leave rows for training, got {val} + {test}")
    n_val, n_test = round(val * n), round(test * n)
    n_train = n - n_val - n_test
    if n_train < 1 or (val > 0 and n_val < 1) or (test > 0 and n_test < 1):
        raise InputError(
            f"too few rows for the split: {n} rows give train={n_train}, val={n_val}, test={n_test}; "
            "each part needs at least one row"
        )
    return SplitSizes(n_train, n_val, n_test)


def split_indices(
    n: int,
    val: float = 0.0,
    test: float = 0.2,
    shuffle: bool = False,
    seed: int = 0,
    stratify: np.ndarray | None = None,
    names: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of the train, validation and test parts (in that order).

    ``stratify`` (one class code per row) keeps each class's share the same in every part:
    rows are ordered by class, randomly within a class, and each part takes every k-th row
    of that order (systematic sampling), so the part sizes are exactly :func:`split_sizes`'.
    ``names`` (class names, by code) make the error for a too-small class name it.
    """
    sizes = split_sizes(n, val, test)
    cut1, cut2 = sizes.train, sizes.train + sizes.val
    if stratify is None:
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        return order[:cut1], order[cut1:cut2], order[cut2:]
    codes = np.asarray(stratify)
    counts = np.bincount(codes)
    parts = 1 + (sizes.val > 0) + (sizes.test > 0)
    small = [c for c in range(len(counts)) if 0 < counts[c] < parts]
    if small:
        c = small[0]
        name = names[c] if names is not None else c
        raise InputError(
            f"class {name!r} has {counts[c]} row{'s' if counts[c] != 1 else ''}: a stratified split into "
            f"{parts} parts needs at least {parts} rows of every class (drop the class, or lower --val/--test)"
        )
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(n), codes))  # by class, randomly within a class
    pos = np.arange(n)
    test_mask = _every_kth(pos, n, sizes.test)
    rest = order[~test_mask]
    val_mask = _every_kth(np.arange(len(rest)), len(rest), sizes.val)
    test_rows, val_rows, train_rows = order[test_mask], rest[val_mask], rest[~val_mask]
    # Within a part, rows in a random order (not grouped by class).
    return tuple(rng.permutation(part) for part in (train_rows, val_rows, test_rows))  # type: ignore[return-value]


def _every_kth(pos: np.ndarray, n: int, count: int) -> np.ndarray:
    """A mask choosing ``count`` of ``n`` positions evenly: every (n/count)-th."""
    if count == 0:
        return np.zeros(n, dtype=bool)
    return (np.floor((pos + 1) * count / n) - np.floor(pos * count / n)) > 0


def take(data: Any, index: np.ndarray) -> Any:
    """Rows ``index`` of an array, a tensor, or a tuple of them; a contiguous run stays a view."""
    if isinstance(data, tuple):
        return tuple(take(part, index) for part in data)
    if len(index) and np.array_equal(index, np.arange(index[0], index[0] + len(index))):
        return data[int(index[0]) : int(index[0]) + len(index)]
    if isinstance(data, torch.Tensor):
        return data[torch.from_numpy(np.ascontiguousarray(index))]
    return data[index]


class Split(NamedTuple):
    train: Any
    val: Any
    test: Any


def split(X: Any, y: Any, val: float = 0.0, test: float = 0.2, shuffle: bool = False, seed: int = 0) -> Split:
    """Split features and targets into ``(X, y)`` pairs for train, validation and test.

    A part with fraction 0 is ``None``. Sequential by default, like the tutorial.
    """
    if len(X) != len(y):
        raise InputError(f"X has {len(X)} rows but y has {len(y)}")
    parts = split_indices(len(X), val, test, shuffle, seed)
    pairs = [take((X, y), idx) if len(idx) else None for idx in parts]
    return Split(*pairs)


# -------------------------------------------------------------------------- the tutorial's data
def make_line(
    weight: float = 0.7, bias: float = 0.3, start: float = 0, end: float = 1, step: float = 0.02
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tutorial's data: ``X = arange(start, end, step)`` as a column, ``y = weight * X + bias``."""
    if step <= 0 or end <= start:
        raise InputError(f"make_line needs start < end and step > 0, got {start}, {end}, {step}")
    X = torch.arange(start, end, step).unsqueeze(dim=1)
    y = weight * X + bias
    return X, y
