"""Baselines a model is measured against, fitted on the same training rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from torchwork.evaluation.metrics import _as_2d


class LeastSquares:
    """Ordinary least squares with an intercept, solved in closed form (``numpy.linalg.lstsq``)."""

    def fit(self, X: Any, y: Any) -> LeastSquares:
        A = _as_2d(X)
        A1 = np.hstack([A, np.ones((len(A), 1))])
        coef, *_ = np.linalg.lstsq(A1, _as_2d(y), rcond=None)
        self.coef_, self.intercept_ = coef[:-1], coef[-1]
        return self

    def predict(self, X: Any) -> np.ndarray:
        return _as_2d(X) @ self.coef_ + self.intercept_
