"""Everything random about a streamed row as a function of its global number and the seed: its part
of the split, its sample key, and the uniform sample the keys select (:class:`Reservoir`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

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
