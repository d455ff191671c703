"""Exact moments of columns of numbers streamed in chunks: count, mean and variance, merged as they come."""

from __future__ import annotations

import math

import numpy as np


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
