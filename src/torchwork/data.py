"""Data made ready: the tutorial's straight line, and splits into train/validation/test.

Splits are sequential by default, as the tutorial's ``X[:train_split]``; shuffled with a
seed on request. They work on anything indexable by an integer array with ``len()``:
tensors, NumPy arrays, or lists of them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from torchwork.errors import InputError


def make_line(
    weight: float = 0.7, bias: float = 0.3, start: float = 0, end: float = 1, step: float = 0.02
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tutorial's data: ``X = arange(start, end, step)`` as a column, ``y = weight * X + bias``."""
    if step <= 0 or end <= start:
        raise InputError(f"make_line needs start < end and step > 0, got {start}, {end}, {step}")
    X = torch.arange(start, end, step).unsqueeze(dim=1)
    y = weight * X + bias
    return X, y


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
            raise InputError(f"--{name} fraction must be in [0, 1), got {fraction}")
    if val + test >= 1.0:
        raise InputError(f"--val + --test must leave rows for training, got {val} + {test}")
    n_val, n_test = round(val * n), round(test * n)
    n_train = n - n_val - n_test
    if n_train < 1 or (val > 0 and n_val < 1) or (test > 0 and n_test < 1):
        raise InputError(
            f"too few rows for the split: {n} rows give train={n_train}, val={n_val}, test={n_test}; "
            "each part needs at least one row"
        )
    return SplitSizes(n_train, n_val, n_test)


def split_indices(
    n: int, val: float = 0.0, test: float = 0.2, shuffle: bool = False, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices of the train, validation and test parts (in that order)."""
    sizes = split_sizes(n, val, test)
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    cut1, cut2 = sizes.train, sizes.train + sizes.val
    return order[:cut1], order[cut1:cut2], order[cut2:]


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
