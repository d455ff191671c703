"""A table streamed from disk: what one pass over it found, its split, each part read encoded in
chunks (to train, to evaluate, for least squares), and its baselines."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from torchwork.data.encoders import as_text
from torchwork.data.preprocess import Preprocessor
from torchwork.data.stream import PART_CODES, Moments, Reservoir, Source, StreamBatches, StreamEval, Unit, parts_of
from torchwork.data.tables import missing_mask
from torchwork.evaluation.baselines import LeastSquares, LogisticRegression, MajorityClass
from torchwork.runs.config import TrainConfig
from torchwork.runs.stream_metrics import StreamMetrics

SAMPLE = {"train": 50_000, "val": 10_000, "test": 10_000}


@dataclass
class Scan:
    """What one pass over the data found (see the module)."""

    sizes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PART_CODES, 0))
    unit_sizes: dict[str, list[int]] = field(default_factory=lambda: {p: [] for p in PART_CODES})  # per unit
    dropped: dict[str, int] = field(default_factory=lambda: {"missing_target": 0})
    samples: dict[str, Reservoir] = field(default_factory=lambda: {p: Reservoir(k) for p, k in SAMPLE.items()})
    numeric: list[str] = field(default_factory=list)  # columns of numbers (features, then targets)
    moments: Moments | None = None
    missing: dict[str, int] = field(default_factory=dict)  # training rows with a gap, per column
    filled: dict[str, int] = field(default_factory=dict)  # gaps per column over every used row
    categories: dict[str, dict[str, int]] = field(default_factory=dict)  # training counts of each text value
    labels: dict[Any, int] = field(default_factory=dict)  # every class label (used rows) and its count
    train_labels: dict[Any, int] = field(default_factory=dict)  # the training rows' labels and their counts


@dataclass
class Streamed:
    """A table streamed from ``source``: its split, its preprocessing, and how to read each part encoded."""

    source: Source
    config: TrainConfig
    pre: Preprocessor
    features: list[str]
    targets: list[str]
    scan: Scan

    @property
    def sizes(self) -> dict[str, int]:
        return self.scan.sizes

    def _encode(self, part: str) -> Any:
        code, config, pre, source = PART_CODES[part], self.config, self.pre, self.source.name
        columns = self.features + self.targets

        def encode(frame: pd.DataFrame, unit: Unit) -> tuple[np.ndarray, np.ndarray]:
            rows = unit.first + np.arange(len(frame))
            keep = (parts_of(rows, config.seed, config.val, config.test) == code) & usable_rows(frame, self, rows)
            chunk = frame.loc[keep, columns]
            where = _where_in(unit, np.flatnonzero(keep))
            X = pre.inputs(chunk, source, where).X
            return X, pre.targets(chunk, source, where)

        return encode

    def batches(
        self, part: str, batch_size: int, shuffle: bool, seed: int, share: tuple[int, int] | None = None
    ) -> StreamBatches:
        """``part``'s rows for training; ``share=(rank, processes)``: this rank's share of the units."""
        return StreamBatches(self.source, self.source.units, self.sizes[part], self._encode(part), batch_size,
                             shuffle, seed, columns=self.features + self.targets, share=share,
                             unit_rows=self.scan.unit_sizes[part])  # fmt: skip

    def evaluation(self, part: str, share: tuple[int, int] | None = None) -> StreamEval | None:
        """``part``'s rows for the testing loop, in the table's order (None when it has none);
        ``share=(rank, processes)``: this rank's units of them."""
        if not self.sizes[part]:
            return None
        return StreamEval(self.batches(part, 65536, False, 0), share)

    def _parts(self, frame: pd.DataFrame, unit: Unit) -> tuple[pd.DataFrame, np.ndarray]:
        """The chunk's usable rows and the part of each."""
        rows = unit.first + np.arange(len(frame))
        usable = usable_rows(frame, self, rows)
        parts = parts_of(rows, self.config.seed, self.config.val, self.config.test)
        return frame.loc[usable], parts[usable]

    def least_squares(self) -> LeastSquares:
        """Least squares on every training row, from the normal equations accumulated chunk by chunk."""
        ls = LeastSquares()
        columns = self.features + self.targets
        for unit in self.source.units:
            frame, parts = self._parts(self.source.read(unit, columns), unit)
            chunk = frame.loc[parts == PART_CODES["train"]]
            if len(chunk):
                ls.partial_fit(self.pre.design(self.pre.inputs(chunk, self.source.name).X), self.pre.targets(chunk))
        return ls.finish()

    def evaluate(
        self, names: list[str], predict: Callable[[np.ndarray], dict[str, np.ndarray]]
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """Each predictor's metrics on each part, in one pass. ``predict``: the encoded inputs of a
        chunk to every predictor's predictions (target units, or class probabilities), by name."""
        regression = self.pre.task == "regression"
        acc = {name: {p: StreamMetrics(regression, len(self.pre.target.classes)) for p in PART_CODES} for name in names}
        columns = self.features + self.targets
        for unit in self.source.units:
            frame, parts = self._parts(self.source.read(unit, columns), unit)
            X, truth = self.pre.inputs(frame, self.source.name).X, self.pre.target_values(frame, self.source.name)
            for name, out in predict(X).items():
                for part, code in PART_CODES.items():
                    mask = parts == code
                    if mask.any():
                        acc[name][part].add(truth[mask], out[mask])
        return {name: {p: m.result() for p, m in by_part.items() if m.n} for name, by_part in acc.items()}


def usable_rows(frame: pd.DataFrame, streamed: Streamed | None, rows: np.ndarray, targets: list[str] | None = None,
            features: list[str] | None = None, drop_missing: bool | None = None) -> np.ndarray:  # fmt: skip
    """Rows with a target (and, with ``--drop-missing``, every feature)."""
    targets = targets if targets is not None else streamed.targets if streamed else []
    features = features if features is not None else streamed.features if streamed else []
    drop = drop_missing if drop_missing is not None else bool(streamed and streamed.config.drop_missing)
    bad = missing_mask(frame, targets)
    if drop:
        bad |= missing_mask(frame, features)
    return ~bad


def _where_in(unit: Unit, positions: np.ndarray) -> Any:
    def where(i: int) -> str:
        return f"row {unit.first + int(positions[i]) + 1}"

    return where


# -------------------------------------------------------------- baselines
def stream_baselines(streamed: Streamed, sample_X: np.ndarray, sample_y: np.ndarray) -> dict[str, Any]:
    """Least squares from every training row; logistic regression and the majority class from the sample
    (the majority class from the exact class counts)."""
    pre = streamed.pre
    if pre.task == "regression":
        return {"least_squares": streamed.least_squares()}
    n = len(pre.target.classes)
    codes = {key: i for i, key in enumerate(as_text(pd.Series(pre.target.classes, dtype=object)))}
    counts = np.zeros(n)
    for label, k in streamed.scan.train_labels.items():
        counts[codes[as_text(pd.Series([label])).iloc[0]]] += k
    majority = MajorityClass()
    majority.frequencies_ = counts / counts.sum()
    return {"logistic_regression": LogisticRegression().fit(pre.design(sample_X), sample_y, n),
            "majority_class": majority}  # fmt: skip
