"""Streamed data prepared in one pass (:func:`scan`): the split, the drops, exact moments and counts,
the samples; then the preprocessing, fitted on the sample with exact scalers and vocabularies."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from torchwork.core.errors import InputError
from torchwork.data.columns import infer_columns, infer_task
from torchwork.data.encoders import CategoryEncoder, NumericEncoder, TargetEncoder, as_text
from torchwork.data.preprocess import Preprocessor
from torchwork.data.stream import PART_CODES, Moments, Source, parts_of, sample_keys
from torchwork.data.tables import Table, pick_columns
from torchwork.runs.config import TrainConfig
from torchwork.runs.stream_table import Scan, Streamed, usable_rows

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
                                 "it looks like an ID or free text: leave it out with --features")  # fmt: skip


def _is_number(s: pd.Series) -> bool:
    return (pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)
            and not pd.api.types.is_complex_dtype(s.dtype))  # fmt: skip


# ------------------------------------------------------------- preparation
def prepare_stream(config: TrainConfig, data: Any, encoding: str) -> tuple[Table, Streamed, dict[str, pd.DataFrame]]:
    """Scan ``data`` once and fit the preprocessing: the sample as a table (train | val | test),
    the :class:`Streamed` table, and the sample of each part."""
    source = Source(data if data is not None else str(config.data))
    if not config.target:
        raise InputError("no target: pass --target COLUMN (or 'target' in the config file)")
    head = Table(source.head(), source.name)
    targets, features = pick_columns(head, config.target, config.features)
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
