"""The recipe for data larger than memory: the same steps as in memory, in chunks.

Chosen with ``--stream``, or when a Parquet file or folder or a ``.npy`` would need more than
``--memory-budget`` in memory (default: half the memory available). Memory stays bounded by
a chunk (a Parquet row group, or 16 MiB of ``.npy`` rows), the shuffle buffer and the sample.

1. One pass over the data (:func:`scan`): the split of each row (a hash of its row number: see
   :mod:`torchwork.data.stream`), rows with a missing target dropped and counted, exact
   moments of the numeric columns and the target on the training rows, exact counts of every
   category and class, and a uniform sample of each part (50,000 training rows, 10,000 of
   validation and test).
2. Column kinds are inferred on the sample; the preprocessing is fitted on it, then its
   scalers and vocabularies are replaced by the exact ones from the pass. The medians that
   fill missing numbers, and the parts of date columns, come from the sample.
3. A second pass solves least squares from the normal equations (exact); logistic regression
   is fitted on the sample.
4. Training streams the training rows every epoch (:class:`~torchwork.data.stream.StreamBatches`)
   and the validation rows for the testing loop; evaluation streams each part and computes
   the metrics exactly (:class:`StreamMetrics`), except ROC-AUC, which is computed on the
   sample (``roc_auc_rows`` says on how many rows). The report's plots show the sample.

What differs from the in-memory recipe: the split is by hash (the same every run, not
stratified by class), and L-BFGS is not available (it needs every row at once).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from torchwork.core.errors import InputError
from torchwork.core.runtime import available_memory
from torchwork.data.preprocess import CategoryEncoder, NumericEncoder, Preprocessor, TargetEncoder, as_text
from torchwork.data.readers import npy_memory
from torchwork.data.stream import (
    PART_CODES,
    Moments,
    Reservoir,
    Source,
    StreamBatches,
    StreamEval,
    Unit,
    parts_of,
    sample_keys,
)
from torchwork.data.tables import Table, infer_columns, infer_task, missing_mask, no_target, pick_columns
from torchwork.evaluation.baselines import LeastSquares, LogisticRegression, MajorityClass
from torchwork.evaluation.calibration import calibration_bins, expected_calibration_error
from torchwork.evaluation.metrics import classification_metrics
from torchwork.runs.config import TrainConfig


# ----------------------------------------------------------------------- metrics chunk by chunk
class StreamMetrics:
    """Metrics accumulated chunk by chunk: exact sums for regression; the confusion matrix and
    log loss for classes (ROC-AUC comes from the sample)."""

    def __init__(self, regression: bool, n_classes: int) -> None:
        self.regression, self.n_classes, self.n = regression, n_classes, 0
        self.sums: dict[str, Any] = {}
        self.shift: np.ndarray | None = None

    def add(self, truth: np.ndarray, out: np.ndarray) -> None:
        if self.regression:
            t, p = truth.reshape(len(truth), -1), out.reshape(len(out), -1)
            if self.shift is None:
                self.shift = t.mean(axis=0)
            err = p - t
            for key, value in (
                ("abs", np.abs(err).sum(axis=0)),
                ("sq", (err**2).sum(axis=0)),
                ("t", (t - self.shift).sum(axis=0)),
                ("tt", ((t - self.shift) ** 2).sum(axis=0)),
            ):
                self.sums[key] = self.sums.get(key, 0.0) + value  # fmt: skip
        else:
            C = self.n_classes
            pred = np.argmax(out, axis=1)
            cm = np.bincount(truth * C + pred, minlength=C * C).reshape(C, C)
            eps = np.finfo(np.float64).eps
            loss = -np.log(np.clip(out[np.arange(len(truth)), truth], eps, 1 - eps)).sum()
            self.sums["cm"] = self.sums.get("cm", 0) + cm
            self.sums["log_loss"] = self.sums.get("log_loss", 0.0) + loss
            self.sums["bins"] = self.sums.get("bins", 0.0) + calibration_bins(truth, out)
        self.n += len(truth)

    def result(self) -> dict[str, Any]:
        n = self.n
        if self.regression:
            s = self.sums
            mse_cols = s["sq"] / n
            ss_tot = s["tt"] - s["t"] ** 2 / n
            with np.errstate(divide="ignore", invalid="ignore"):
                r2 = np.where(ss_tot > 0, 1 - s["sq"] / np.where(ss_tot > 0, ss_tot, 1), 0.0)
            r2 = np.where((ss_tot <= 0) & (s["sq"] == 0), 1.0, r2)
            mse = float(np.mean(mse_cols))
            return {"mae": float(np.mean(s["abs"] / n)), "mse": mse, "rmse": float(np.sqrt(mse)),
                    "r2": float(np.mean(r2))}  # fmt: skip
        cm = self.sums["cm"]
        tp = np.diag(cm).astype(np.float64)
        support, predicted = cm.sum(axis=1).astype(np.float64), cm.sum(axis=0).astype(np.float64)
        recall = np.divide(tp, support, out=np.zeros(len(tp)), where=support > 0)
        denom = support + predicted
        f1 = np.divide(2 * tp, denom, out=np.zeros(len(tp)), where=denom > 0)
        return {"accuracy": float(tp.sum() / n), "balanced_accuracy": float(recall[support > 0].mean()),
                "f1_macro": float(f1.mean()), "log_loss": float(self.sums["log_loss"] / n),
                "ece": expected_calibration_error(self.sums["bins"]), "roc_auc": None,
                "confusion_matrix": cm.tolist()}  # fmt: skip


def roc_auc_on_sample(truth: np.ndarray, proba: np.ndarray) -> float | None:
    if len(truth) == 0:
        return None
    return classification_metrics(truth, proba)["roc_auc"]


# --------------------------------------------------------------------------- the streamed table
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


# --------------------------------------------------------------- the pass and the preprocessing
MAX_CATEGORIES = 100_000  # distinct values a text column may have when streamed


# ---------------------------------------------------------------- the pass
def scan(source: Source, config: TrainConfig, targets: list[str], features: list[str], task: str) -> Scan:
    """One pass: the split, drops, exact moments and counts, and the samples (see the module)."""
    found = Scan()
    columns = features + targets
    for unit in source.units:
        frame = source.read(unit, columns)
        rows = unit.first + np.arange(len(frame))
        usable = usable_rows(frame, None, rows, targets, features, config.drop_missing)
        found.dropped["missing_target"] += int((~usable_rows(frame, None, rows, targets, [], False)).sum())
        if config.drop_missing:
            found.dropped["missing_value"] = found.dropped.get("missing_value", 0) + int(
                (~usable).sum() - (~usable_rows(frame, None, rows, targets, [], False)).sum()
            )
        parts = parts_of(rows, config.seed, config.val, config.test)
        keys = sample_keys(rows, config.seed)
        for part, code in PART_CODES.items():
            mask = usable & (parts == code)
            found.sizes[part] += int(mask.sum())
            found.unit_sizes[part].append(int(mask.sum()))
            found.samples[part].add(frame.loc[mask], keys[mask])
        used = frame.loc[usable]
        for name in features:
            gaps = int(used[name].isna().sum())
            if gaps:
                found.filled[name] = found.filled.get(name, 0) + gaps
        train = frame.loc[usable & (parts == PART_CODES["train"])]
        _count(found, train, features, targets, task, source.name)
        if task == "classification":
            for counts, rows_of in ((found.labels, used), (found.train_labels, train)):
                for label, n in rows_of[targets[0]].value_counts().items():
                    counts[label] = counts.get(label, 0) + int(n)
    return found


def _count(found: Scan, train: pd.DataFrame, features: list[str], targets: list[str], task: str, source: str) -> None:
    if not found.numeric:
        numeric_targets = targets if task == "regression" else []
        found.numeric = [c for c in features if _is_number(train[c])] + numeric_targets
        found.moments = Moments(len(found.numeric))
    assert found.moments is not None
    if found.numeric and len(train):
        values = np.column_stack([pd.to_numeric(train[c], errors="coerce").to_numpy("float64", na_value=np.nan)
                                  for c in found.numeric])  # fmt: skip
        found.moments.add(values)
    for c in features:
        found.missing[c] = found.missing.get(c, 0) + int(train[c].isna().sum())
        if not _is_number(train[c]):
            counts = found.categories.setdefault(c, {})
            for value, n in as_text(train[c]).dropna().value_counts().items():
                counts[value] = counts.get(value, 0) + int(n)
            if len(counts) > MAX_CATEGORIES:
                raise InputError(f"{source}: column {c!r} has more than {MAX_CATEGORIES} distinct values; "
                                 f"it looks like an ID or free text: leave it out with --exclude {c}")  # fmt: skip


def _is_number(s: pd.Series) -> bool:
    return (pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)
            and not pd.api.types.is_complex_dtype(s.dtype))  # fmt: skip


# ------------------------------------------------------------- preparation
def prepare_stream(config: TrainConfig, data: Any, encoding: str) -> tuple[Table, Streamed, dict[str, pd.DataFrame]]:
    """Scan ``data`` once and fit the preprocessing: the sample as a table (train | val | test),
    the :class:`Streamed` table, and the sample of each part."""
    source = Source(data if data is not None else str(config.data))
    head = Table(source.head(), source.name)
    if not config.target:
        raise no_target(head)
    targets, features = pick_columns(head, config.target, config.features, config.exclude)
    task, _ = infer_task(head, targets, config.task)
    found = scan(source, config, targets, features, task)
    if not found.sizes["train"]:
        raise InputError(f"{source.name}: no training rows (every row has a missing target, or --test/--val take all)")
    samples = {p: r.frame() for p, r in found.samples.items()}
    frame = pd.concat([samples[p] for p in PART_CODES], ignore_index=True)
    sample = Table(frame, source.name)
    columns = infer_columns(sample, features, categorical=config.categorical, numeric=config.numeric)
    if task == "classification":
        labels = pd.Series(list(found.labels))
        target = TargetEncoder.fit_classification(targets[0], labels, binary_logit=True)
    else:
        assert found.moments is not None
        idx = [found.numeric.index(t) for t in targets]
        mean = [float(found.moments.mean[i]) for i in idx]
        std = [float(np.sqrt(found.moments.m2[i] / max(found.moments.n[i], 1))) for i in idx]
        scale = [s if s > 0 and config.standardize else 1.0 for s in std]
        mean = mean if config.standardize else [0.0] * len(targets)
        target = TargetEncoder("regression", targets, mean, scale, outputs=len(targets))
    pre = Preprocessor.fit(samples["train"], columns, target, standardize=config.standardize, encoding=encoding,
                           source=source.name)  # fmt: skip
    _exact(pre, found, config.standardize)
    return sample, Streamed(source, config, pre, features, targets, found), samples


def _exact(pre: Preprocessor, found: Scan, standardize: bool) -> None:
    """Replace the sample's scalers and vocabularies by those of every training row."""
    assert found.moments is not None
    for name, enc in pre.numeric.items():
        if isinstance(enc, NumericEncoder) and name in found.numeric:
            i = found.numeric.index(name)
            missing = found.missing.get(name, 0)
            if standardize:
                mean, std = found.moments.with_fill(i, enc.fill, missing)
                enc.mean, enc.scale = mean, std if std > 0 else 1.0
            enc.indicator = missing > 0
    for name in list(pre.categorical):
        counts = found.categories.get(name)
        if counts is not None:
            pre.categorical[name] = CategoryEncoder.from_counts(name, counts, found.missing.get(name, 0) > 0)


# ---------------------------------------------------------------------------- whether to stream


def wants_stream(config: TrainConfig, data: Any) -> bool:
    """Whether ``data`` (a path) is streamed: asked for, a folder, or too big for the memory budget."""
    source = data if data is not None else config.data
    if not isinstance(source, str | os.PathLike):
        if config.stream:
            raise InputError(f"{config.where('stream')}: streams a file (Parquet or .npy), not data in memory")
        return False
    path = Path(source)
    if config.stream:
        return True
    if path.is_dir():  # a folder of Parquet files (any other folder is the reader's to refuse)
        return any(p.suffix.lower() in (".parquet", ".pq") for p in path.iterdir())
    if path.suffix.lower() not in (".parquet", ".pq", ".npy") or not path.is_file():
        return False
    budget = config.memory_budget or (available_memory() or 1 << 62) // 2
    return _in_memory_bytes(path) > budget


def _in_memory_bytes(path: Path) -> int:
    """About what the in-memory reader needs for a Parquet or .npy file (as it estimates it)."""
    try:
        if path.suffix.lower() == ".npy":
            return npy_memory(path)
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as f:
            meta = f.metadata
            encoded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            return 2 * max(encoded, 8 * meta.num_rows * meta.num_columns)
    except Exception:  # the reader says what is wrong with the file
        return 0
