"""Standardization of features and targets, fitted on the training split only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Standardizer:
    """``(x - mean) / scale`` per column; a constant column gets scale 1 (it is only centred)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, data: np.ndarray) -> Standardizer:
        data = np.asarray(data, dtype=np.float64)
        mean = data.mean(axis=0)
        std = data.std(axis=0)
        return cls(mean, np.where(std > 0, std, 1.0))

    @classmethod
    def identity(cls, width: int) -> Standardizer:
        return cls(np.zeros(width), np.ones(width))

    def transform(self, data: np.ndarray) -> np.ndarray:
        return (np.asarray(data, dtype=np.float64) - self.mean) / self.scale

    def inverse(self, data: np.ndarray) -> np.ndarray:
        return np.asarray(data, dtype=np.float64) * self.scale + self.mean

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Standardizer:
        return cls(np.asarray(doc["mean"], dtype=np.float64), np.asarray(doc["scale"], dtype=np.float64))
