"""Step one of the recipe: read the table, pick its columns and rows, infer each column's kind and
the task, split the rows, and fit the preprocessing on the training rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from torchwork.core.errors import InputError
from torchwork.data.preprocess import Preprocessor, TargetEncoder, as_float
from torchwork.data.readers import read_table
from torchwork.data.split import split_indices
from torchwork.data.tables import Rows, Table, infer_columns, infer_task, no_target, pick_columns, rows_to_use
from torchwork.models.registry import accepts
from torchwork.runs.config import TrainConfig
from torchwork.runs.streamed import prepare_stream, wants_stream
from torchwork.training.components import LOSSES

PARTS = ("train", "val", "test")


@dataclass
class Prepared:
    """The rows used, ordered train | val | test, encoded, with the preprocessing fitted on train."""

    table: Table
    rows: np.ndarray  # positions in table.frame of the rows used, train rows first
    parts: dict[str, slice]
    pre: Preprocessor
    X: np.ndarray  # model inputs, float32
    y: np.ndarray  # model targets: float32 (n, k), or int64 class codes (n,)
    truth: np.ndarray  # targets in their own units (float64 (n, k)), or class codes
    dropped: dict[str, int] = field(default_factory=dict)
    filled: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Data streamed from disk (:class:`~torchwork.runs.stream_table.Streamed`): the arrays above
    # then hold a sample of each part, and the parts are read in chunks to train and evaluate.
    stream: Any = None

    def size(self, part: str) -> int:
        """Rows of ``part`` in the arrays (of a streamed table: in its sample)."""
        s = self.parts[part]
        return s.stop - s.start

    def rows_in(self, part: str) -> int:
        """Rows of ``part`` in the data (streamed or not)."""
        return int(self.stream.sizes[part]) if self.stream is not None else self.size(part)

    def tensors(self, part: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The part's model inputs and targets as tensors (views, no copy); ``None`` if empty."""
        if self.size(part) == 0:
            return None
        s = self.parts[part]
        return torch.from_numpy(self.X[s]), torch.from_numpy(self.y[s])


def prepare(
    config: TrainConfig, data: Any = None, table: Table | None = None, encoding: str | None = None, given: Any = None
) -> Prepared:
    """Read ``data`` (or ``config.data``) and make it ready to train on, as ``config`` says.

    ``encoding`` of categories (``codes`` or ``onehot``) defaults to what the model takes; a
    class of yours is imported only here, after the data is read and its columns checked.
    """
    if table is None and wants_stream(config, data):
        return _prepare_streamed(config, data, encoding or input_encoding(config, given))
    if table is None:
        source = data if data is not None else config.data
        if source is None:
            raise InputError("no data: give a data file (DATA or 'data' in the config file)")
        table = read_table(source, encoding=config.encoding, delimiter=config.delimiter, decimal=config.decimal)
    if not config.target:
        raise no_target(table)
    targets, features = pick_columns(table, config.target, config.features, config.exclude)
    task, hint = infer_task(table, targets, config.task, max_classes=config.max_classes)
    notes = [hint] if hint else []
    rows, dropped = rows_to_use(table, targets, features, drop_missing=config.drop_missing)
    columns = infer_columns(table, features, categorical=config.categorical, numeric=config.numeric)
    frame = table.frame

    def where(i: int) -> str:
        return table.where(int(rows[i]))

    for col in columns:  # every value of every numeric column checked before the rows are split
        if col.kind == "numeric":
            as_float(frame[col.name].iloc[rows], col.name, table.source, where)
    stratify, names = None, None
    if task == "classification":
        target = TargetEncoder.fit_classification(targets[0], frame[targets[0]].iloc[rows], binary_logit=True)
        _check_classes(table, target, config)
        codes = target.codes(frame[targets[0]].iloc[rows], table.source, where)
        if config.shuffle:
            stratify, names = codes, [str(c) for c in target.classes]
    else:
        values = np.column_stack([as_float(frame[t].iloc[rows], t, table.source, where) for t in targets])
    try:
        train, val, test = split_indices(len(rows), config.val, config.test, shuffle=config.shuffle, seed=config.seed,
                                         stratify=stratify, names=names)  # fmt: skip
    except InputError as exc:
        inferred = hint and task == "classification" and str(exc).startswith("class ")  # classes chosen from numbers
        other = "; or pass --task regression to fit the numbers" if inferred else ""
        raise InputError(f"{table.source}: {exc}{other}") from None
    if task == "regression":
        target = TargetEncoder.fit_regression(targets, values[train], config.standardize)
    elif len(target.classes) == 2 and (
        isinstance(config.class_weight, dict)
        or (config.loss != "auto" and LOSSES.canonical(config.loss) == "cross_entropy")
    ):
        target.outputs = 2  # two logits (cross-entropy, as asked or for per-class weights) instead of one
    order = np.concatenate([train, val, test])
    rows = rows[order]
    encoding = encoding or input_encoding(config, given)
    pre = Preprocessor.fit(frame.iloc[rows[: len(train)]], columns, target, standardize=config.standardize,
                           encoding=encoding, source=table.source)  # fmt: skip
    used = Rows(frame, rows)  # each column taken in the rows' order as it is encoded
    encoded = pre.inputs(used, table.source, where)
    n1, n2 = len(train), len(train) + len(val)
    parts = {"train": slice(0, n1), "val": slice(n1, n2), "test": slice(n2, len(rows))}
    truth = pre.target_values(used, table.source, where)
    if task == "regression" and config.target_transform == "log":
        notes.append(log_target(config, truth, targets))
        pre.target = TargetEncoder.fit_regression(targets, truth[parts["train"]], config.standardize, log=True)
    return Prepared(table, rows, parts, pre, encoded.X, pre.targets(used, table.source, where), truth, dropped,
                    encoded.filled, notes)  # fmt: skip


def log_target(config: TrainConfig, truth: np.ndarray, targets: list[str]) -> str:
    """``--target-transform log``: every target must be >= 0; the line that says it is learnt in log space."""
    if (truth < 0).any():
        raise InputError(f"{config.where('target_transform')}: log needs targets >= 0; "
                         f"{', '.join(targets)} has negative values")  # fmt: skip
    return f"{', '.join(targets)} learnt as log(1 + target) ({config.where('target_transform')})"


def _prepare_streamed(config: TrainConfig, data: Any, encoding: str) -> Prepared:
    """A table too big for memory: scanned once; the arrays hold a sample of each part (see runs.streamed)."""
    if config.target_transform == "log":
        raise InputError(f"{config.where('target_transform')}: log is for data in memory; streamed targets are "
                         "learnt as they are")  # fmt: skip
    sample, streamed, samples = prepare_stream(config, data, encoding)
    pre = streamed.pre
    if pre.task == "classification":
        _check_classes(sample, pre.target, config)
    frame = sample.frame
    sizes = [len(samples[p]) for p in PARTS]
    bounds = np.cumsum([0, *sizes])
    parts = {p: slice(int(bounds[i]), int(bounds[i + 1])) for i, p in enumerate(PARTS)}
    source = streamed.source
    chunks = f"{len(source.units)} chunk{'' if len(source.units) == 1 else 's'}"
    notes = [f"streamed: {source.rows} rows in {chunks}; column kinds, medians and plots "
             f"from a sample of {len(frame)} rows; scalers, vocabularies and least squares from every row"]  # fmt: skip
    return Prepared(sample, np.arange(len(frame)), parts, pre, pre.inputs(frame, source.name).X,
                    pre.targets(frame, source.name), pre.target_values(frame, source.name), dict(streamed.scan.dropped),
                    dict(streamed.scan.filled), notes, stream=streamed)  # fmt: skip


def _check_classes(table: Table, target: TargetEncoder, config: TrainConfig) -> None:
    n = len(target.classes)
    if n < 2:
        raise InputError(
            f"{table.source}: the target {target.names[0]!r} has one class ({target.classes[0]!r}): "
            "there is nothing to classify"
        )
    if n > config.max_classes:
        raise InputError(
            f"{table.source}: the target {target.names[0]!r} has {n} classes, more than {config.where('max_classes')} "
            f"{config.max_classes}; raise it if that is right, or use --task regression for numbers"
        )


def input_encoding(config: TrainConfig, given: Any = None) -> str:
    """``codes`` for models with embeddings (torchwork's, or a class or factory taking ``categories``),
    else ``onehot`` (your own model gets plain numbers, categories as one-hot columns)."""
    if given is not None:
        return "codes" if not isinstance(given, nn.Module) and accepts(given, "categories") else "onehot"
    if ":" not in config.model:
        return "codes"
    from torchwork.models.registry import import_class

    return "codes" if accepts(import_class(config.model), "categories") else "onehot"
