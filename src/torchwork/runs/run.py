"""A trained model with everything needed to use it, and to export it.

:class:`Run` holds the model, its preprocessing, baselines, metrics and history: ``predict``,
``predict_proba``, ``evaluate``, and ``predict_file`` (a file of any size, a chunk at a time).

``torchwork export`` writes the model with its preprocessing as a file that runs without
torchwork (:func:`export_run`): ``onnx`` (``torch.onnx.export``, dynamo; checked with
onnxruntime), ``exported`` (a ``torch.export`` ``.pt2`` program) or ``torchscript``
(``torch.jit.trace``, deprecated by PyTorch in favour of ``torch.export``). The exported model
(:class:`Deployable`) takes one float32 row per example: the numeric columns (and the parts of
date columns) as they are, NaN where a value is missing, then each categorical column's code;
``<file>.vocabulary.json``, written beside it, lists the inputs in order and each category's
code. Inside, missing values are filled and flagged and numbers standardized as in training;
out come predictions in the target's units, or a classifier's class probabilities. Before
success is reported the file is loaded back the way a user would load it and its outputs are
compared with torchwork's; nothing is written if they differ.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from torchwork.core.errors import InputError, TorchworkError, counted
from torchwork.data.preprocess import MAX_LOG_TARGET, NumericEncoder, Preprocessor
from torchwork.data.readers import read_table
from torchwork.data.tables import Rows, Table, check_schema, rows_to_use
from torchwork.files.atomic import atomic_write, sha256_file
from torchwork.runs.recipe import Baselines, model_predictions, score
from torchwork.training.loop import History


# ----------------------------------------------------------------------- a trained model to use
def _row_count(value: Any) -> int:
    """A split's row count as run.json holds it; anything else (a forged file) counts as none."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


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
    lines = [f"{counted(n, 'missing value')} of {c!r} filled in as in training" for c, n in filled.items()]
    lines += [f"{counted(n, 'row')} with a value of {c!r} never seen in training (treated as unknown)"
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
    def excluded(self) -> list[str]:
        """The columns ``--exclude`` left out of training: expected in new rows, passed through."""
        return [str(c) for c in self.config.get("exclude") or []]

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
        check_schema(table, self.features, self.target, allow_extra=allow_extra, excluded=self.excluded)
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

        from torchwork.data.readers import chunked_tables
        from torchwork.files.atomic import TableWriter

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
                         allow_extra=allow_extra, excluded=self.excluded)  # fmt: skip
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
        seen = self.trained_on(data)
        if seen:
            result["notes"] = [seen]
        if p.filled:
            result["filled"] = p.filled
        if p.unknown:
            result["unknown"] = p.unknown
        return result

    def trained_on(self, data: Any) -> str | None:
        """A sentence when ``data`` is the data this run was trained on (the SHA-256 ``run.json`` keeps):
        its metrics then score rows the model was fitted to, and only the test split was held out."""
        data_info = self.info.get("data") if isinstance(self.info, dict) else None
        known = data_info.get("sha256") if isinstance(data_info, dict) else None
        if not isinstance(known, str) or not known:
            return None  # a run.json without the hash (or a forged one): nothing to say
        if isinstance(data, str | os.PathLike):
            if not Path(data).is_file() or sha256_file(data) != known:
                return None
            name = str(data)
        elif isinstance(data, Table) or hasattr(data, "columns"):
            frame = data.frame if isinstance(data, Table) else data
            if frame_digest(frame) != known:
                return None
            name = "these rows"
        else:
            return None
        split = self.info.get("split")
        split = split if isinstance(split, dict) else {}
        train, val, test = (_row_count(split.get(p)) for p in ("train", "val", "test"))
        text = f"{name} is the data this run was trained on (same SHA-256): {counted(train, 'row')} of it"
        text += " trained the model"
        if val:
            text += f" and {val} chose its epoch"
        if test:
            return text + (f"; these metrics are not a test score: only its {counted(test, 'test row')} were held out "
                           "(their metrics are the run's test split in metrics.json)")  # fmt: skip
        return text + "; these metrics are not a test score: the run held no test rows out (--test 0, the default)"


def frame_digest(frame: Any) -> str:
    """The SHA-256 ``run.json`` keeps of a table given as a DataFrame: its column names, then its values."""
    import hashlib

    import pandas as pd

    digest = hashlib.sha256(json.dumps([str(c) for c in frame.columns]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------- exported files, checked
FORMATS = {"onnx": ".onnx", "exported": ".pt2", "torchscript": ".pt"}
# What each format is called in a sentence ("exported RUN as <this> to FILE").
FORMAT_NAMES = {"onnx": "ONNX", "exported": "a torch.export program", "torchscript": "TorchScript"}


class ExportError(TorchworkError):
    """The exported model could not be written, or does not predict what torchwork predicts."""


def export_module(
    module: nn.Module, fmt: str, out: str | os.PathLike[str], inputs: torch.Tensor, expected: np.ndarray
) -> dict[str, Any]:
    """Write ``module`` as ``fmt`` to ``out`` after checking that, loaded back the way a user
    would load it, it maps ``inputs`` to ``expected``; return what was checked.

    Nothing is written if the export fails or its outputs differ (relative 1e-4).
    """
    check_format(fmt)
    module = module.cpu().eval()
    example = inputs[:8] if len(inputs) > 1 else inputs.repeat(2, 1)  # one row would fix the batch size at 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch's deprecation and exporter chatter
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            data = _serialize(module, fmt, example)
        except Exception as exc:  # an exporter failing on a model: say which and why
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"cannot export this model as {fmt}: {first}") from None
        got = _run_exported(data, fmt, inputs)
    scale = 1.0 + float(np.abs(expected).max())
    worst = float(np.abs(got.reshape(expected.shape) - expected).max())
    if not worst <= 1e-4 * scale:
        raise ExportError(
            f"the {fmt} model's outputs differ from torchwork's by up to {worst:.3g} on {len(inputs)} rows; "
            "nothing was written"
        )
    atomic_write(out, data)
    return {"format": fmt, "path": str(out), "rows_checked": len(inputs), "max_abs_difference": worst}


ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")  # the exporter's two, and the runtime that checks the file


def check_format(fmt: str) -> None:
    """An export format this install can write: ONNX needs the ``onnx`` extra (else how to get it, exit 2)."""
    import importlib.util

    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt != "onnx":
        return
    missing = [name for name in ONNX_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise InputError(
            f"--format onnx needs {', '.join(missing)}: pip install 'torchwork[onnx]' "
            "(or --format exported, which a plain install writes)"
        )


def _serialize(module: nn.Module, fmt: str, example: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    batch = torch.export.Dim("batch")
    if fmt == "onnx":
        program = torch.onnx.export(
            module, (example,), dynamo=True, input_names=["features"], output_names=["prediction"],
            dynamic_shapes=({0: batch},), verbose=False,
        )  # fmt: skip
        if program is None:
            raise ExportError("torch.onnx.export returned nothing")
        program.save(buf)  # type: ignore[arg-type]  # a file object works, as the tests show
    elif fmt == "exported":
        torch.export.save(torch.export.export(module, (example,), dynamic_shapes=({0: batch},)), buf)
    else:
        torch.jit.save(torch.jit.trace(module, example), buf)
    return buf.getvalue()


def _run_exported(data: bytes, fmt: str, x: torch.Tensor) -> np.ndarray:
    """Load the bytes as a user would, without torchwork, and predict ``x``."""
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise ExportError("checking an ONNX export needs onnxruntime: pip install 'torchwork[onnx]'") from None
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    if fmt == "exported":
        program = torch.export.load(io.BytesIO(data))
        with torch.inference_mode():
            return program.module()(x).numpy()
    loaded = torch.jit.load(io.BytesIO(data))
    with torch.inference_mode():
        return loaded(x).numpy()


# --------------------------------------------------------------------------------------- export


def _tensor(values: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=torch.float32)


class Deployable(nn.Module):
    """Raw rows in (see the module's docstring), predictions out; the preprocessing as buffers."""

    fill: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor
    indicator_index: torch.Tensor
    y_mean: torch.Tensor
    y_scale: torch.Tensor

    def __init__(self, model: nn.Module, pre: Preprocessor) -> None:
        super().__init__()
        self.model = model
        parts: list[NumericEncoder] = []
        indicators: list[int] = []
        for enc in pre.numeric.values():
            first = len(parts)
            parts += [enc] if isinstance(enc, NumericEncoder) else enc.numeric
            if enc.indicator:
                indicators.append(first)  # a date column is missing when its year is
        self.n_numeric = len(parts)
        self.n_codes = len(pre.categorical)
        self.register_buffer("fill", _tensor([e.fill for e in parts]))
        self.register_buffer("mean", _tensor([e.mean for e in parts]))
        self.register_buffer("scale", _tensor([e.scale for e in parts]))
        self.register_buffer("indicator_index", torch.as_tensor(indicators, dtype=torch.long))
        self.onehot = pre.encoding == "onehot"
        self.cardinalities = list(pre.cardinalities)
        t = pre.target
        self.task, self.outputs = t.task, t.outputs
        self.register_buffer("y_mean", _tensor(t.mean or [0.0]))
        self.register_buffer("y_scale", _tensor(t.scale or [1.0]))
        self.register_buffer("temperature", _tensor([t.temperature]))
        self.log_target = t.log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = x[:, : self.n_numeric]
        missing = torch.isnan(values)
        filled = torch.where(missing, self.fill, values)
        blocks = [(filled - self.mean) / self.scale, missing[:, self.indicator_index].to(x.dtype)]
        codes = x[:, self.n_numeric :]
        if self.onehot:
            for j, n in enumerate(self.cardinalities):
                c = codes[:, j].long()
                blocks.append(nn.functional.one_hot(c, n)[:, 1:].to(x.dtype))
        else:
            blocks.append(codes)
        out = self.model(torch.cat(blocks, dim=1))
        if self.task == "regression":
            y = out * self.y_scale + self.y_mean
            return torch.expm1(torch.clamp(y, max=MAX_LOG_TARGET)) if self.log_target else y
        out = out / self.temperature
        if self.outputs == 1:
            p = torch.sigmoid(out)
            return torch.cat([1 - p, p], dim=1)
        return torch.softmax(out, dim=1)


def check_rows(run: Run, data: Any = None) -> Any:
    """Rows (a table) to check an export on: ``data``'s, or the run's validation rows."""
    from torchwork.data.readers import read_table

    if data is not None:
        return read_table(data).frame
    from torchwork.runs.config import TrainConfig
    from torchwork.runs.prepare import prepare

    source = run.info["data"]["source"]
    if source.startswith("<") or not Path(source).is_file():
        raise InputError(f"the run's data file {source} is gone: give rows to check the export with --data FILE")
    if sha256_file(source) != run.info["data"]["sha256"]:
        raise InputError(f"{source}: changed since training; give rows to check the export with --data FILE")
    prepared = prepare(TrainConfig().updated(run.config, source="config.json"), source, encoding=run.pre.encoding)
    part = next(p for p in ("val", "test", "train") if prepared.size(p))
    return prepared.table.frame.iloc[prepared.rows[prepared.parts[part]]]


def export_run(run: Run, fmt: str, out: str | os.PathLike[str], frame: Any) -> dict[str, Any]:
    """Write ``run``'s model as ``fmt`` to ``out`` (and its vocabulary beside it), checked on ``frame``'s rows."""
    pre = run.pre
    missing = [f for f in pre.features if f not in frame.columns]
    if missing:
        raise InputError(f"the rows to check the export on lack columns {', '.join(map(repr, missing))}")
    raw = pre.raw_inputs(frame)
    expected = model_predictions(run.model, pre, pre.inputs(frame).X)
    module = Deployable(run.model, pre).eval()
    result = export_module(module, fmt, out, torch.from_numpy(raw), expected)
    vocabulary = Path(f"{out}.vocabulary.json")
    atomic_write(vocabulary, json.dumps(pre.vocabulary(), indent=2) + "\n")
    return {**result, "vocabulary": str(vocabulary)}
