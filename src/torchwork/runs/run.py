"""A trained model with everything needed to use it: its preprocessing, columns, metrics, history."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from torchwork.core.errors import InputError
from torchwork.data.preprocess import Preprocessor
from torchwork.data.readers import read_table
from torchwork.data.tables import Selected, Table, check_schema, select
from torchwork.evaluation.baselines import LeastSquares
from torchwork.evaluation.metrics import regression_metrics
from torchwork.runs.recipe import predict_target
from torchwork.training.history import History


@dataclass
class Run:
    """A trained model and what it needs to be used on new rows.

    ``predict`` takes rows with the model's feature columns (a file, a DataFrame, ...) and
    returns predictions in the target's units: shape ``(n,)`` for one target, ``(n, k)``
    for ``k``. ``evaluate`` takes labelled rows and returns the metrics of the model and of
    the run's baseline.
    """

    model: nn.Module
    pre: Preprocessor
    config: dict[str, Any]
    history: History
    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def features(self) -> list[str]:
        return self.pre.features

    @property
    def target(self) -> list[str]:
        return self.pre.target

    def _select(self, data: Any, *, labelled: bool, drop_missing: bool, allow_extra: bool) -> tuple[Table, Selected]:
        table = data if isinstance(data, Table) else read_table(data)
        check_schema(table, self.features, self.target, allow_extra=allow_extra)
        if labelled:
            missing = [t for t in self.target if t not in table.frame.columns]
            if missing:
                raise InputError(
                    f"{table.source}: no target column {', '.join(map(repr, missing))} to evaluate against"
                )
        chosen = select(table, self.target if labelled else None, self.features, drop_missing=drop_missing)
        return table, chosen

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return predict_target(self.model, self.pre, X)

    def predict(self, data: Any, *, drop_missing: bool = False, allow_extra: bool = False) -> np.ndarray:
        """Predictions in the target's units: ``(n,)`` for one target, ``(n, k)`` for several."""
        _, chosen = self._select(data, labelled=False, drop_missing=drop_missing, allow_extra=allow_extra)
        preds = self._predict(chosen.X)
        return preds[:, 0] if len(self.target) == 1 else preds

    def predict_table(
        self, data: Any, *, column: str | None = None, drop_missing: bool = False, allow_extra: bool = False
    ) -> tuple[Any, int]:
        """The input rows with prediction columns added, and how many rows had missing values."""
        table, chosen = self._select(data, labelled=False, drop_missing=drop_missing, allow_extra=allow_extra)
        preds = self._predict(chosen.X)
        frame = table.frame.copy()
        if len(self.target) == 1:
            names = [column or "prediction"]
        else:  # one column per target
            names = [f"{column}_{t}" if column else f"{t}_pred" for t in self.target]
        for j, name in enumerate(names):
            if name in frame.columns:
                raise InputError(f"{table.source}: already has a column {name!r}; choose another with --column")
            full = np.full(len(frame), np.nan)
            full[chosen.rows] = preds[:, j]
            frame[name] = full
        return frame, chosen.dropped

    def evaluate(self, data: Any, *, drop_missing: bool = False, allow_extra: bool = True) -> dict[str, Any]:
        """Metrics of the model, and of the run's least-squares line, on labelled rows."""
        _, chosen = self._select(data, labelled=True, drop_missing=drop_missing, allow_extra=allow_extra)
        result: dict[str, Any] = {
            "rows": len(chosen.X),
            "dropped": chosen.dropped,
            "model": regression_metrics(chosen.y, self._predict(chosen.X)),
        }
        baseline = self.meta.get("baseline")
        if baseline:
            ls = LeastSquares()
            ls.coef_, ls.intercept_ = np.asarray(baseline["coef"]), np.asarray(baseline["intercept"])
            result["least_squares"] = regression_metrics(chosen.y, ls.predict(chosen.X))
        return result
