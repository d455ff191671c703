"""The preprocessing of a table, fitted on the training rows and saved as data.

A :class:`Preprocessor` turns a table's feature columns into the model's input matrix and
its target columns into the model's targets, and the model's outputs back into the
target's units. It is fitted on the training rows only, and it is stored in ``model.json``
as plain JSON (never pickled), so ``predict``, ``evaluate`` and ``export`` apply exactly
what training applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from torchwork.data.scaling import Standardizer


@dataclass
class Preprocessor:
    features: list[str]
    target: list[str]
    x_scaler: Standardizer
    y_scaler: Standardizer

    @classmethod
    def fit(
        cls, X: np.ndarray, y: np.ndarray, features: list[str], target: list[str], *, standardize: bool = True
    ) -> Preprocessor:
        """Fitted on the training rows ``X`` (n, d) and ``y`` (n, k)."""
        if standardize:
            return cls(list(features), list(target), Standardizer.fit(X), Standardizer.fit(y))
        return cls(list(features), list(target), Standardizer.identity(X.shape[1]), Standardizer.identity(y.shape[1]))

    @property
    def n_inputs(self) -> int:
        return len(self.features)

    @property
    def n_outputs(self) -> int:
        return len(self.target)

    def inputs(self, X: np.ndarray) -> np.ndarray:
        """The model's input rows (float32) for raw feature rows."""
        return self.x_scaler.transform(X).astype(np.float32)

    def targets(self, y: np.ndarray) -> np.ndarray:
        """The model's targets (float32) for raw target rows."""
        return self.y_scaler.transform(y).astype(np.float32)

    def outputs_to_target(self, outputs: np.ndarray) -> np.ndarray:
        """Model outputs (n, k) back in the target's units (float64)."""
        return self.y_scaler.inverse(np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1))

    def to_json(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "target": self.target,
            "scalers": {"x": self.x_scaler.to_json(), "y": self.y_scaler.to_json()},
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Preprocessor:
        return cls(
            [str(f) for f in doc["features"]],
            [str(t) for t in doc["target"]],
            Standardizer.from_json(doc["scalers"]["x"]),
            Standardizer.from_json(doc["scalers"]["y"]),
        )
