"""pandas DataFrames from what the readers hold: an Arrow table, a NumPy array of rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from torchwork.core.errors import InputError


def to_pandas(table: Any) -> pd.DataFrame:
    """The DataFrame of an Arrow table, freeing each Arrow column as it is converted; every column writable."""
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    for i in range(frame.shape[1]):  # a column Arrow handed over without a copy is read-only
        column = frame.iloc[:, i]
        if isinstance(column.dtype, np.dtype):
            array = np.asarray(column.array)
            if not array.flags.writeable:
                frame.isetitem(i, array.copy())
            del array
        del column
    return frame


def frame_from_array(a: np.ndarray, source: str) -> pd.DataFrame:
    if a.dtype == object:
        raise InputError(f"{source}: holds Python objects, not numbers")
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2:
        raise InputError(f"{source}: expected a 2-D array (rows x columns), got shape {a.shape}")
    return pd.DataFrame(a, columns=[str(i) for i in range(a.shape[1])])
