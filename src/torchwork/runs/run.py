"""A trained model with everything needed to use it: its preprocessing, baselines, metrics, history."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from torchwork.core.errors import InputError
from torchwork.data.preprocess import Preprocessor
from torchwork.data.readers import read_table
from torchwork.data.tables import Rows, Table, check_schema, rows_to_use
from torchwork.runs.baselines import Baselines
from torchwork.runs.evaluating import model_predictions, score
from torchwork.training.history import History


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


@dataclass
class Prediction:
    """What predicting on some rows gave, and what it had to do to the rows."""

    values: np.ndarray  # regression: (n, k) in the target's units; classification: (n, classes) probabilities
    X: np.ndarray  # the encoded inputs (the baselines predict from them too)
    rows: np.ndarray  # positions in the table of the rows predicted
    truth: np.ndarray | None  # the labelled rows' targets (units or class codes), when asked for
    dropped: int  # rows left out (missing values, with drop_missing; or a missing target when labelled)
    filled: dict[str, int]  # column -> missing values filled in
    unknown: dict[str, int]  # column -> categories never seen in training

    def notes(self) -> list[str]:
        """One line each: what was filled in, what was never seen in training."""
        return _notes(self.filled, self.unknown)


@dataclass
class Counts:
    """What predicting a file chunk by chunk did to its rows, summed over the chunks."""

    rows: int = 0  # rows predicted
    dropped: int = 0
    filled: dict[str, int] = field(default_factory=dict)
    unknown: dict[str, int] = field(default_factory=dict)

    def add(self, p: Prediction) -> None:
        self.rows += len(p.rows)
        self.dropped += p.dropped
        for into, part in ((self.filled, p.filled), (self.unknown, p.unknown)):
            for key, count in part.items():
                into[key] = into.get(key, 0) + count

    def notes(self) -> list[str]:
        return _notes(self.filled, self.unknown)


def _notes(filled: dict[str, int], unknown: dict[str, int]) -> list[str]:
    lines = [f"{_count(n, 'missing value')} of {c!r} filled in as in training" for c, n in filled.items()]
    lines += [f"{_count(n, 'row')} with a value of {c!r} never seen in training (treated as unknown)"
              for c, n in unknown.items()]  # fmt: skip
    return lines


@dataclass
class Run:
    """A trained model and what it needs to be used on new rows.

    ``predict`` takes rows with the model's feature columns (a file, a DataFrame, ...) and
    returns predictions: for regression in the target's units, shape ``(n,)`` for one target
    and ``(n, k)`` for several; for classification the labels, in their own type and spelling.
    ``predict_proba`` gives a classifier's class probabilities; ``evaluate`` takes labelled
    rows and returns the metrics of the model and of the run's baselines.
    """

    model: nn.Module
    pre: Preprocessor
    baselines: Baselines
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
        return self.pre.target_names

    @property
    def task(self) -> str:
        return self.pre.task

    @property
    def classes(self) -> list[Any]:
        return list(self.pre.target.classes)

    def _table(self, data: Any) -> Table:
        if isinstance(data, Table):
            return data
        c = self.config
        return read_table(data, encoding=c.get("encoding"), delimiter=c.get("delimiter"), decimal=c.get("decimal"))

    def predicted(
        self, data: Any, *, labelled: bool = False, drop_missing: bool = False, allow_extra: bool = False
    ) -> tuple[Table, Prediction]:
        """The table of ``data`` and the model's predictions for its rows."""
        table = self._table(data)
        check_schema(table, self.features, self.target, allow_extra=allow_extra)
        if labelled:
            missing = [t for t in self.target if t not in table.frame.columns]
            if missing:
                raise InputError(
                    f"{table.source}: no target column {', '.join(map(repr, missing))} to evaluate against"
                )
        rows, dropped = rows_to_use(table, self.target if labelled else [], self.features, drop_missing=drop_missing)
        used = Rows(table.frame, rows)  # each column taken in the rows' order as it is encoded

        def where(i: int) -> str:
            return table.where(int(rows[i]))

        encoded = self.pre.inputs(used, table.source, where)
        truth = self.pre.target_values(used, table.source, where) if labelled else None
        values = model_predictions(self.model, self.pre, encoded.X)
        return table, Prediction(values, encoded.X, rows, truth, sum(dropped.values()), encoded.filled, encoded.unknown)

    def predict(self, data: Any, *, drop_missing: bool = False, allow_extra: bool = False) -> np.ndarray:
        """Regression: values in the target's units, ``(n,)`` or ``(n, k)``. Classification: labels ``(n,)``."""
        _, p = self.predicted(data, drop_missing=drop_missing, allow_extra=allow_extra)
        if self.task == "classification":
            return np.asarray(self.pre.labels(p.values))  # the labels' own type: ints stay ints, text text
        return p.values[:, 0] if len(self.target) == 1 else p.values

    def predict_proba(self, data: Any, *, drop_missing: bool = False, allow_extra: bool = False) -> np.ndarray:
        """A classifier's class probabilities, ``(n, classes)``, in the order of ``classes``."""
        if self.task != "classification":
            raise InputError("predict_proba: this run is a regression; use predict")
        return self.predicted(data, drop_missing=drop_missing, allow_extra=allow_extra)[1].values

    def predict_table(
        self, data: Any, *, column: str | None = None, proba: bool = True, drop_missing: bool = False,
        allow_extra: bool = False,
    ) -> tuple[Any, Prediction]:  # fmt: skip
        """The input rows with prediction columns added (and, for a classifier, a probability per class)."""
        table, p = self.predicted(data, drop_missing=drop_missing, allow_extra=allow_extra)
        frame = table.frame.copy()
        for name, values in self._columns(len(frame), list(frame.columns), table.source, p, column, proba).items():
            frame[name] = values
        return frame, p

    def _columns(
        self, n: int, existing: list[str], source: str, p: Prediction, column: str | None, proba: bool
    ) -> dict[str, np.ndarray]:
        """The prediction columns for ``n`` rows (empty where a row was left out); ``existing``: the rows' columns."""
        new: dict[str, np.ndarray] = {}
        if self.task == "classification":
            labels = np.full(n, None, dtype=object)
            labels[p.rows] = self.pre.labels(p.values)
            new[column or "prediction"] = labels
            if proba:
                for j, label in enumerate(self.classes):
                    full = np.full(n, np.nan)
                    full[p.rows] = p.values[:, j]
                    new[f"{column or 'proba'}_{label}"] = full
        else:
            names = [column or "prediction"] if len(self.target) == 1 else [
                f"{column}_{t}" if column else f"{t}_pred" for t in self.target
            ]  # fmt: skip
            for j, name in enumerate(names):
                full = np.full(n, np.nan)
                full[p.rows] = p.values[:, j]
                new[name] = full
        for name in new:
            if name in existing:
                raise InputError(f"{source}: already has a column {name!r}; choose another name with --column")
        return new

    def predict_file(
        self, data: str | os.PathLike[str], out: str | os.PathLike[str], *, rows: int = 65536,
        column: str | None = None, proba: bool = True, drop_missing: bool = False, allow_extra: bool = False,
        overwrite: bool = False,
    ) -> Counts:  # fmt: skip
        """Predict for a CSV or Parquet file ``rows`` rows at a time, writing ``out`` (CSV or Parquet) as it goes.

        Memory stays at a chunk whatever the file's size; ``out`` appears whole or not at all.
        Returns what was left out, filled in or never seen, summed over the chunks.
        """
        import pyarrow as pa

        from torchwork.data.chunks import chunked_tables
        from torchwork.files.tables import TableWriter

        c = self.config
        numbers = [name for name, enc in self.pre.numeric.items() if type(enc).__name__ == "NumericEncoder"]
        chunks = chunked_tables(data, numbers, rows=rows, encoding=c.get("encoding"), delimiter=c.get("delimiter"),
                                decimal=c.get("decimal"))  # fmt: skip
        total = Counts()
        label_type = pa.array(self.classes).type if self.task == "classification" else None

        def write(writer: TableWriter) -> None:
            with contextlib.closing(chunks):  # the file's reader is closed if a chunk fails
                self._write_chunks(chunks, str(data), writer, total, column, proba, drop_missing, allow_extra,
                                   label_type)  # fmt: skip

        TableWriter.atomic(out, write, overwrite=overwrite)
        return total

    def _write_chunks(self, chunks: Any, source: str, writer: Any, total: Counts, column: str | None, proba: bool,
                      drop_missing: bool, allow_extra: bool, label_type: Any) -> None:  # fmt: skip
        """Each chunk's rows as read (unchanged) and its prediction columns; only the model's columns
        are converted for it."""
        import pandas as pd
        import pyarrow as pa

        for batch, offset in chunks:
            names = batch.schema.names
            check_schema(Table(pd.DataFrame(columns=names), source), self.features, self.target,
                         allow_extra=allow_extra)  # fmt: skip
            needed = Table(batch.select(self.features).to_pandas(), source, offset=offset)
            _, p = self.predicted(needed, drop_missing=drop_missing)
            arrow = pa.Table.from_batches([batch])  # the rows as read: written back unchanged
            for name, values in self._columns(batch.num_rows, names, source, p, column, proba).items():
                kind = label_type if values.dtype == object else pa.float64()
                arrow = arrow.append_column(name, pa.array(values, type=kind, from_pandas=True))
            writer.write(arrow)
            total.add(p)

    def evaluate(self, data: Any, *, drop_missing: bool = False, allow_extra: bool = True) -> dict[str, Any]:
        """Metrics of the model, and of the run's baselines, on labelled rows."""
        _, p = self.predicted(data, labelled=True, drop_missing=drop_missing, allow_extra=allow_extra)
        assert p.truth is not None
        result: dict[str, Any] = {"task": self.task, "rows": len(p.rows), "dropped": p.dropped,
                                  "model": score(self.pre, p.truth, p.values)}  # fmt: skip
        for name, predicted in self.baselines.predictions(p.X).items():
            result[name] = score(self.pre, p.truth, predicted)
        if p.filled:
            result["filled"] = p.filled
        if p.unknown:
            result["unknown"] = p.unknown
        return result
