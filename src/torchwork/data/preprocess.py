"""The preprocessing of a table, fitted on the training rows and saved as plain JSON.

A :class:`Preprocessor` turns a table's feature columns into the model's input matrix and
its target columns into the model's targets, and the model's outputs back into the
target's units or labels. It is fitted on the training rows only and stored in
``model.json`` (never pickled), so ``predict``, ``evaluate``, the estimators and ``export``
apply exactly what training applied. One encoder per column:

- :class:`NumericEncoder`: a missing value is filled with the training median (and the column
  gets a missing-indicator input when training had gaps); then standardized.
- :class:`DatetimeEncoder`: numeric parts (year, month, day, day of week, day of year, and hour
  when times are present), each encoded as a numeric column.
- :class:`CategoryEncoder`: a vocabulary of the training values. Code 0 is "unknown" (a value
  never seen in training: its embedding is fixed at zero, so it adds nothing), then "missing"
  if training had missing values, then "rare" (values with fewer than ``min_count`` training
  rows share it) if there were any, then one code per category, most frequent first.
- :class:`TargetEncoder`: standardized numbers for regression; class codes for classification,
  with the labels kept in their own type and spelling.

The input matrix (float32) is laid out as: the numeric block (numeric columns, then the
parts of date columns, standardized; then a 0/1 missing-indicator per column that had
gaps in training), then one column of category codes per categorical column (``"codes"``,
for models with embeddings) or their one-hot columns (``"onehot"``, for your own models).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from torchwork.core.errors import InputError
from torchwork.data.tables import SMALLEST_FLOAT32, Column, Rows

# ----------------------------------------------------------------------- one encoder per column
DATETIME_PARTS = ("year", "month", "day", "day_of_week", "day_of_year")
RARE_BELOW = 3  # a category with fewer training rows than this shares the "rare" code


def as_text(values: pd.Series) -> pd.Series:
    """Values as the strings categories are matched by: ``3``, ``3.0`` and ``"3"`` are all ``"3"``;
    missing values are None."""

    def one(v: Any) -> str | None:
        if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
            return None
        if isinstance(v, bool | np.bool_):
            return "True" if v else "False"
        if isinstance(v, int | np.integer):
            return str(int(v))
        if isinstance(v, float | np.floating):
            return str(int(v)) if float(v).is_integer() else repr(float(v))
        if isinstance(v, bytes | bytearray):  # UTF-8 text (training refuses bytes that are not)
            return bytes(v).decode("utf-8", "replace")
        return str(v)

    return pd.Series([one(v) for v in values.to_numpy(dtype=object)], index=values.index, dtype=object)


def as_float(values: pd.Series, name: str, source: str, where: Any) -> np.ndarray:
    """A numeric column as float64 (NaN for missing): durations in seconds, decimals and numbers
    written as text as numbers. Infinities, and values float32 cannot hold (beyond its largest, or
    nonzero below its smallest normal number, where it keeps fewer digits or none), are errors
    naming the row."""
    if pd.api.types.is_bool_dtype(values.dtype):
        out = values.astype("float64").to_numpy()
    elif pd.api.types.is_timedelta64_dtype(values.dtype):
        out = values.dt.total_seconds().to_numpy(dtype="float64", na_value=np.nan)
    elif pd.api.types.is_numeric_dtype(values.dtype):
        out = values.to_numpy(dtype="float64", na_value=np.nan)
    else:
        coerced = pd.to_numeric(values, errors="coerce")
        text = values.astype(str).str.strip()
        bad = [
            int(i) for i in np.flatnonzero(coerced.isna().to_numpy() & values.notna().to_numpy()) if text.iloc[i] != ""
        ]
        if bad:
            raise InputError(f"{source}: column {name!r}, {where(bad[0])}: {values.iloc[bad[0]]!r} is not a number")
        out = coerced.to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(over="ignore"):
        too_big = np.isinf(out) | (np.isfinite(out) & ~np.isfinite(out.astype(np.float32)))
    if too_big.any():
        i = int(np.flatnonzero(too_big)[0])
        kind = "infinite value" if np.isinf(out[i]) else f"{out[i]!r} does not fit in float32"
        raise InputError(f"{source}: column {name!r}, {where(i)}: {kind}")
    too_small = (out != 0) & (np.abs(out) < SMALLEST_FLOAT32)  # NaN compares False
    if too_small.any():
        i = int(np.flatnonzero(too_small)[0])
        raise InputError(
            f"{source}: column {name!r}, {where(i)}: {float(out[i])!r} is too small for float32 (a nonzero value "
            f"below {SMALLEST_FLOAT32:.3g} loses its digits or becomes 0); rescale the column"
        )
    return out


@dataclass
class NumericEncoder:
    name: str
    fill: float
    mean: float
    scale: float
    indicator: bool  # training had missing values: the model gets a 0/1 "missing" input too

    @classmethod
    def fit(cls, name: str, values: np.ndarray, standardize: bool) -> NumericEncoder:
        present = values[~np.isnan(values)]
        fill = float(np.median(present)) if len(present) else 0.0
        filled = np.where(np.isnan(values), fill, values)
        std = float(filled.std()) if standardize else 1.0
        mean = float(filled.mean()) if standardize else 0.0
        return cls(name, fill, mean, std if std > 0 else 1.0, bool(np.isnan(values).any()))

    def encode(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(standardized values, missing mask)."""
        missing = np.isnan(values)
        return (np.where(missing, self.fill, values) - self.mean) / self.scale, missing


@dataclass
class DatetimeEncoder:
    name: str
    parts: list[str]
    numeric: list[NumericEncoder]
    indicator: bool

    @staticmethod
    def split(values: pd.Series) -> dict[str, np.ndarray]:
        """The parts of dates (NaN where a date is missing)."""
        stamps = pd.to_datetime(values, errors="coerce", utc=True) if values.dtype == object else values
        if getattr(stamps.dt, "tz", None) is not None:
            stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
        out = {part: getattr(stamps.dt, part).to_numpy(dtype="float64", na_value=np.nan) for part in DATETIME_PARTS}
        out["hour"] = (
            stamps.dt.hour.to_numpy(dtype="float64", na_value=np.nan)
            + stamps.dt.minute.to_numpy(dtype="float64", na_value=np.nan) / 60
        )
        return out

    @classmethod
    def fit(cls, name: str, values: pd.Series, standardize: bool) -> DatetimeEncoder:
        split = cls.split(values)
        parts = list(DATETIME_PARTS)
        hours = split["hour"][~np.isnan(split["hour"])]
        if len(hours) and np.any(hours != 0):
            parts.append("hour")
        numeric = [NumericEncoder.fit(f"{name}.{p}", split[p], standardize) for p in parts]
        return cls(name, parts, numeric, bool(np.isnan(split["year"]).any()))


@dataclass
class CategoryEncoder:
    name: str
    categories: list[str]
    rare: list[str] = field(default_factory=list)
    missing_code: int | None = None
    rare_code: int | None = None

    @classmethod
    def fit(cls, name: str, values: pd.Series, min_count: int = RARE_BELOW) -> CategoryEncoder:
        text = as_text(values)
        return cls.from_counts(name, text.dropna().value_counts().to_dict(), bool(text.isna().any()), min_count)

    @classmethod
    def from_counts(
        cls, name: str, counts: dict[str, int], missing: bool, min_count: int = RARE_BELOW
    ) -> CategoryEncoder:
        """From each value's count in the training rows (as text) and whether any was missing."""
        # most frequent first, then by value: the same vocabulary from the same rows, always
        order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        common = [v for v, c in order if c >= min_count]
        rare = sorted(v for v, c in order if c < min_count)
        code = 1
        missing_code = None
        if missing:
            missing_code, code = code, code + 1
        rare_code = None
        if rare:
            rare_code, code = code, code + 1
        return cls(name, common, rare, missing_code, rare_code)

    @property
    def n_codes(self) -> int:
        return 1 + (self.missing_code is not None) + (self.rare_code is not None) + len(self.categories)

    def encode(self, values: pd.Series) -> tuple[np.ndarray, int, int]:
        """(codes, rows whose value was missing, rows whose value training never saw)."""
        first = 1 + (self.missing_code is not None) + (self.rare_code is not None)
        lookup = {v: first + i for i, v in enumerate(self.categories)}
        if self.rare_code is not None:
            lookup.update(dict.fromkeys(self.rare, self.rare_code))
        text = as_text(values)
        missing = text.isna().to_numpy()
        codes = text.map(lookup).to_numpy(dtype="float64", na_value=np.nan)
        unknown = np.isnan(codes) & ~missing
        codes = np.where(missing, self.missing_code or 0, codes)
        codes = np.where(unknown, 0, codes)
        return codes.astype(np.int64), int(missing.sum()), int(unknown.sum())

    def labels(self) -> list[str]:
        """A name for each code, in order (for reports)."""
        names = ["<unknown>"]
        if self.missing_code is not None:
            names.append("<missing>")
        if self.rare_code is not None:
            names.append("<rare>")
        return names + self.categories


@dataclass
class TargetEncoder:
    """Regression: ``mean``/``scale`` per target column, of ``log(1 + y)`` when ``log``
    (``--target-transform log``). Classification: ``classes`` (labels in their own JSON type:
    str, int, float or bool), ``outputs`` (1 logit for two classes with ``bce``, one per class
    otherwise) and ``temperature``, which divides the logits before the softmax (fitted on
    validation rows after training: :mod:`~torchwork.evaluation.calibration`)."""

    task: str
    names: list[str]
    mean: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    classes: list[Any] = field(default_factory=list)
    outputs: int = 1
    temperature: float = 1.0
    log: bool = False

    @classmethod
    def fit_regression(cls, names: list[str], y: np.ndarray, standardize: bool, log: bool = False) -> TargetEncoder:
        if log:
            y = np.log1p(y)
        if not standardize:
            return cls("regression", names, [0.0] * y.shape[1], [1.0] * y.shape[1], outputs=y.shape[1], log=log)
        std = y.std(axis=0)
        return cls("regression", names, y.mean(axis=0).tolist(), np.where(std > 0, std, 1.0).tolist(),
                   outputs=y.shape[1], log=log)  # fmt: skip

    def encode_values(self, y: np.ndarray) -> np.ndarray:
        """Regression targets in their units (n, k) to what the model learns: standardized (of log(1 + y))."""
        return ((np.log1p(y) if self.log else y) - np.asarray(self.mean)) / np.asarray(self.scale)

    def decode_values(self, out: np.ndarray) -> np.ndarray:
        """The inverse of :meth:`encode_values`, in float64 (a log-space prediction past e^700 is capped there)."""
        y = out * np.asarray(self.scale) + np.asarray(self.mean)
        return np.expm1(np.minimum(y, MAX_LOG_TARGET)) if self.log else y

    @classmethod
    def fit_classification(cls, name: str, values: pd.Series, binary_logit: bool) -> TargetEncoder:
        present = values.dropna()
        keys = as_text(present)
        firsts = present.groupby(keys.to_numpy(), sort=False).first()
        numeric = pd.api.types.is_numeric_dtype(present.dtype) and not pd.api.types.is_bool_dtype(present.dtype)
        labels = [_plain(v) for v in firsts.to_numpy()]
        labels.sort(key=lambda v: (float(v), str(v)) if numeric else (str(v),))
        outputs = 1 if (binary_logit and len(labels) == 2) else len(labels)
        return cls("classification", [name], classes=labels, outputs=outputs)

    def codes(self, values: pd.Series, source: str, where: Any) -> np.ndarray:
        """Class codes of labels; a label training never saw is an error naming it and its row."""
        lookup = {as_text(pd.Series([c])).iloc[0]: i for i, c in enumerate(self.classes)}
        text = as_text(values)
        codes = text.map(lookup)
        unseen = codes.isna().to_numpy() & text.notna().to_numpy()
        if unseen.any():
            i = int(np.flatnonzero(unseen)[0])
            raise InputError(
                f"{source}: column {self.names[0]!r}, {where(i)}: the label {values.iloc[i]!r} was never seen in "
                f"training (the model knows {', '.join(map(repr, self.classes))})"
            )
        return np.array(codes.to_numpy(dtype="int64"))  # a writable copy: tensors are made from it


def _plain(value: Any) -> Any:
    """A label as a JSON value in its own type."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value if isinstance(value, str | int) else str(value)


# ----------------------------------------------------------------------------- the preprocessor
@dataclass
class Encoded:
    """Model inputs for some rows, and what had to be filled in or was never seen."""

    X: np.ndarray  # (n, inputs) float32
    filled: dict[str, int] = field(default_factory=dict)  # column -> missing values filled
    unknown: dict[str, int] = field(default_factory=dict)  # column -> categories never seen in training


def _no_where(i: int) -> str:
    return f"row {i + 1}"


def _check_standardized(values: np.ndarray, name: str, source: str, where: Any) -> None:
    """A value that fits float32 may not once standardized (3.4e38 / a scale below 1): say where."""
    with np.errstate(over="ignore"):
        bad = ~np.isfinite(values.astype(np.float32))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{source}: column {name!r}, {where(i)}: too large once standardized (more than float32 holds)"
        )


MAX_LOG_TARGET = 700.0  # exp(700) ~ 1e304: below float64's largest
TEMPERATURE_RANGE = (0.05, 20.0)  # what a saved classifier's temperature may be (and calibration's search)


def _finite(value: Any, what: str, positive: bool = False) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or (positive and not value > 0):
        raise ValueError(f"{what} is {value!r:.40}, not a {'positive ' if positive else ''}finite number")
    return float(value)


def _flag(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} is {value!r:.40}, not true or false")
    return value


def _numeric_from_json(name: str, doc: dict[str, Any], indicator: bool) -> NumericEncoder:
    return NumericEncoder(name, _finite(doc["fill"], f"{name}: fill"), _finite(doc["mean"], f"{name}: mean"),
                          _finite(doc["scale"], f"{name}: scale", positive=True), indicator)  # fmt: skip


@dataclass
class Preprocessor:
    columns: list[Column]
    numeric: dict[str, NumericEncoder | DatetimeEncoder]
    categorical: dict[str, CategoryEncoder]
    target: TargetEncoder
    encoding: str = "codes"  # or "onehot"

    # ------------------------------------------------------------------ fit
    @classmethod
    def fit(
        cls, frame: pd.DataFrame, columns: list[Column], target: TargetEncoder, *, standardize: bool = True,
        encoding: str = "codes", source: str = "data",
    ) -> Preprocessor:  # fmt: skip
        """Fitted on ``frame`` (the training rows only)."""
        numeric: dict[str, NumericEncoder | DatetimeEncoder] = {}
        categorical: dict[str, CategoryEncoder] = {}
        for col in columns:
            values = frame[col.name]
            if col.kind == "numeric":
                numeric[col.name] = NumericEncoder.fit(col.name, as_float(values, col.name, source, _no_where),
                                                       standardize)  # fmt: skip
            elif col.kind == "datetime":
                numeric[col.name] = DatetimeEncoder.fit(col.name, values, standardize)
            else:
                categorical[col.name] = CategoryEncoder.fit(col.name, values)
        return cls(list(columns), numeric, categorical, target, encoding)

    # --------------------------------------------------------------- layout
    @property
    def features(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def target_names(self) -> list[str]:
        return self.target.names

    @property
    def task(self) -> str:
        return self.target.task

    def _numeric_encoders(self) -> list[tuple[str, NumericEncoder]]:
        out: list[tuple[str, NumericEncoder]] = []
        for name, enc in self.numeric.items():
            out += [(name, enc)] if isinstance(enc, NumericEncoder) else [(name, e) for e in enc.numeric]
        return out

    @property
    def indicators(self) -> list[str]:
        return [name for name, enc in self.numeric.items() if enc.indicator]

    @property
    def n_numeric(self) -> int:
        """Inputs in the numeric block (values, date parts, missing indicators)."""
        return len(self._numeric_encoders()) + len(self.indicators)

    @property
    def cardinalities(self) -> list[int]:
        """Codes per categorical column (the unknown code included)."""
        return [enc.n_codes for enc in self.categorical.values()]

    @property
    def n_inputs(self) -> int:
        if self.encoding == "codes":
            return self.n_numeric + len(self.categorical)
        return self.n_numeric + sum(n - 1 for n in self.cardinalities)

    @property
    def n_outputs(self) -> int:
        return self.target.outputs

    @property
    def input_names(self) -> list[str]:
        names = [enc.name for _, enc in self._numeric_encoders()] + [f"{n} is missing" for n in self.indicators]
        if self.encoding == "codes":
            return names + list(self.categorical)
        for name, enc in self.categorical.items():
            names += [f"{name}={label}" for label in enc.labels()[1:]]
        return names

    # ------------------------------------------------------------ transform
    def inputs(self, frame: pd.DataFrame | Rows, source: str = "data", where: Any = _no_where) -> Encoded:
        """The model's inputs (float32) for rows of ``frame`` that have the feature columns."""
        n = len(frame)
        # Each column is written into X as it is encoded: the float64 columns never all live at once.
        X = np.empty((n, self.n_inputs), dtype=np.float32)
        j = 0  # the next numeric column; missing-value indicators follow every numeric column
        flag = sum(1 if isinstance(e, NumericEncoder) else len(e.parts) for e in self.numeric.values())
        filled: dict[str, int] = {}
        unknown: dict[str, int] = {}
        for name, enc in self.numeric.items():
            if isinstance(enc, NumericEncoder):
                values, missing = enc.encode(as_float(frame[name], name, source, where))
                _check_standardized(values, name, source, where)
                X[:, j] = values
                j += 1
                del values
            else:
                parts = DatetimeEncoder.split(frame[name])
                missing = np.isnan(parts["year"])
                for p, e in zip(enc.parts, enc.numeric, strict=True):
                    X[:, j] = e.encode(parts[p])[0]
                    j += 1
            if missing.any():
                filled[name] = int(missing.sum())
            if enc.indicator:
                X[:, flag] = missing
                flag += 1
        codes = []
        for name, cat in self.categorical.items():
            c, missing_count, unknown_count = cat.encode(frame[name])
            codes.append(c)
            if missing_count:
                filled[name] = missing_count
            if unknown_count:
                unknown[name] = unknown_count
        j = flag
        for c, cardinality in zip(codes, self.cardinalities, strict=True):
            if self.encoding == "codes":
                X[:, j] = c
                j += 1
            else:
                X[:, j : j + cardinality - 1] = 0.0  # one-hot, written in place
                known = c > 0
                X[np.flatnonzero(known), j + c[known] - 1] = 1.0
                j += cardinality - 1
        return Encoded(X, filled, unknown)

    def raw_inputs(self, frame: pd.DataFrame, source: str = "data", where: Any = _no_where) -> np.ndarray:
        """What an exported model takes (float32): the numeric values and date parts as they are
        (NaN where missing), then each categorical column's code (see :meth:`vocabulary`)."""
        blocks: list[np.ndarray] = []
        for name, enc in self.numeric.items():
            if isinstance(enc, NumericEncoder):
                blocks.append(as_float(frame[name], name, source, where))
            else:
                parts = DatetimeEncoder.split(frame[name])
                blocks += [parts[p] for p in enc.parts]
        blocks += [cat.encode(frame[name])[0].astype(np.float64) for name, cat in self.categorical.items()]
        return np.column_stack(blocks).astype(np.float32) if blocks else np.zeros((len(frame), 0), np.float32)

    def vocabulary(self) -> dict[str, Any]:
        """How to make an exported model's inputs from a table's rows, as plain JSON."""
        inputs: list[dict[str, Any]] = []
        for name, enc in self.numeric.items():
            if isinstance(enc, NumericEncoder):
                inputs.append({"name": name, "kind": "number", "missing": "NaN"})
            else:
                inputs += [{"name": f"{name}.{p}", "kind": f"the {p} of date column {name!r}", "missing": "NaN"}
                           for p in enc.parts]  # fmt: skip
        for name, cat in self.categorical.items():
            first = cat.n_codes - len(cat.categories)
            inputs.append({"name": name, "kind": "category code",
                           "codes": {label: first + i for i, label in enumerate(cat.categories)},
                           "rare": {"values": cat.rare, "code": cat.rare_code}, "missing_code": cat.missing_code,
                           "unknown_code": 0})  # fmt: skip
        t = self.target
        outputs = ({"kind": "values", "names": t.names} if t.task == "regression"
                   else {"kind": "class probabilities", "classes": t.classes})  # fmt: skip
        return {"format": "torchwork-vocabulary/1", "inputs": inputs, "outputs": outputs,
                "values_match": "categories are matched as text: 3, 3.0 and '3' are '3'; True is 'True'"}  # fmt: skip

    def design(self, X: np.ndarray) -> np.ndarray:
        """The baselines' design matrix: the numeric block, then one-hot categories (the unknown
        code adds nothing). ``X`` itself when it is that already (the baselines compute in float64)."""
        if self.encoding == "onehot" or not self.categorical:
            return X
        numeric = X[:, : self.n_numeric].astype(np.float64)
        blocks = [numeric]
        for j, cardinality in enumerate(self.cardinalities):
            c = X[:, self.n_numeric + j].astype(np.int64)
            onehot = np.zeros((len(X), cardinality - 1))
            known = c > 0
            onehot[np.flatnonzero(known), c[known] - 1] = 1.0
            blocks.append(onehot)
        return np.hstack(blocks)

    def targets(self, frame: pd.DataFrame | Rows, source: str = "data", where: Any = _no_where) -> np.ndarray:
        """The model's targets: standardized float32 (n, k); class codes int64 (n,); or, for a
        classifier with one logit (two classes), 0/1 as float32 (n, 1)."""
        t = self.target
        if t.task == "classification":
            codes = t.codes(frame[t.names[0]], source, where)
            return codes.astype(np.float32).reshape(-1, 1) if t.outputs == 1 else codes
        y = np.column_stack([as_float(frame[n], n, source, where) for n in t.names])
        if t.log and (y < 0).any():
            i = int(np.flatnonzero((y < 0).any(axis=1))[0])
            raise InputError(f"{source}: {where(i)}: a negative target, and the model learns log(1 + target)")
        return t.encode_values(y).astype(np.float32)

    def target_values(self, frame: pd.DataFrame | Rows, source: str = "data", where: Any = _no_where) -> np.ndarray:
        """The targets in their own units (float64 (n, k)) or as class codes (int64 (n,))."""
        t = self.target
        if t.task == "classification":
            return t.codes(frame[t.names[0]], source, where)
        return np.column_stack([as_float(frame[n], n, source, where) for n in t.names])

    def decode(self, outputs: np.ndarray) -> np.ndarray:
        """Model outputs to predictions: target units (float64 (n, k)), or class probabilities (n, C)."""
        t = self.target
        out = np.asarray(outputs, dtype=np.float64)
        out = out.reshape(len(out), -1) if len(out) else out.reshape(0, t.outputs)  # no rows: (0, outputs)
        if t.task == "regression":
            return t.decode_values(out)
        out = out / t.temperature
        if out.shape[1] == 1:  # one logit: the second class's
            with np.errstate(over="ignore"):  # exp(-(very negative)): inf, and p exactly 0
                p = 1.0 / (1.0 + np.exp(-out[:, 0]))
            return np.column_stack([1.0 - p, p])
        out = out - out.max(axis=1, keepdims=True)
        e = np.exp(out)
        return e / e.sum(axis=1, keepdims=True)

    def labels(self, proba: np.ndarray) -> list[Any]:
        """The predicted label of each row (the most probable class; ties to the first)."""
        return [self.target.classes[i] for i in np.argmax(proba, axis=1)]

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        cols = []
        for c in self.columns:
            doc: dict[str, Any] = {"name": c.name, "kind": c.kind, "reason": c.reason}
            enc = self.numeric.get(c.name) or self.categorical[c.name]
            if isinstance(enc, NumericEncoder):
                doc.update(fill=enc.fill, mean=enc.mean, scale=enc.scale, indicator=enc.indicator)
            elif isinstance(enc, DatetimeEncoder):
                parts = [{"part": p, "fill": e.fill, "mean": e.mean, "scale": e.scale}
                         for p, e in zip(enc.parts, enc.numeric, strict=True)]  # fmt: skip
                doc.update(parts=parts, indicator=enc.indicator)
            else:
                doc.update(categories=enc.categories, rare=enc.rare, missing_code=enc.missing_code,
                           rare_code=enc.rare_code)  # fmt: skip
            cols.append(doc)
        t = self.target
        target: dict[str, Any] = {"task": t.task, "names": t.names, "outputs": t.outputs}
        target.update({"mean": t.mean, "scale": t.scale, "log": t.log} if t.task == "regression"
                      else {"classes": t.classes, "temperature": t.temperature})  # fmt: skip
        return {"features": self.features, "target": t.names, "task": t.task, "encoding": self.encoding,
                "columns": cols, "targets": target}  # fmt: skip

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Preprocessor:
        """The preprocessor :meth:`to_json` wrote; a value of the wrong kind or size raises ValueError.

        Every value is checked here, where it is loaded: a forged one is refused in one line, not
        turned into a traceback (or a silently wrong prediction) when rows are encoded.
        """
        columns: list[Column] = []
        numeric: dict[str, NumericEncoder | DatetimeEncoder] = {}
        categorical: dict[str, CategoryEncoder] = {}
        for c in doc["columns"]:
            name = str(c["name"])
            columns.append(Column(name, str(c["kind"]), str(c.get("reason", ""))))
            if c["kind"] == "numeric":
                numeric[name] = _numeric_from_json(name, c, _flag(c["indicator"], f"{name}: indicator"))
            elif c["kind"] == "datetime":
                parts = [str(p["part"]) for p in c["parts"]]
                encs = [_numeric_from_json(f"{name}.{p['part']}", p, False) for p in c["parts"]]
                numeric[name] = DatetimeEncoder(name, parts, encs, _flag(c["indicator"], f"{name}: indicator"))
            elif c["kind"] == "categorical":
                missing_code, rare_code = c["missing_code"], c["rare_code"]
                if not (missing_code is None or (type(missing_code) is int and missing_code == 1)):  # 0 is unknown
                    raise ValueError(f"{name}: missing_code {missing_code!r:.40} is not 1 or null")
                next_code = 1 + (missing_code is not None)
                if not (rare_code is None or (type(rare_code) is int and rare_code == next_code)):
                    raise ValueError(f"{name}: rare_code {rare_code!r:.40} is not {next_code} or null")
                categorical[name] = CategoryEncoder(
                    name, [str(v) for v in c["categories"]], [str(v) for v in c["rare"]], missing_code, rare_code
                )
            else:
                raise ValueError(f"unknown column kind {c['kind']!r}")
        t = doc["targets"]
        target = TargetEncoder(
            str(t["task"]), [str(n) for n in t["names"]], [_finite(v, "target mean") for v in t.get("mean", [])],
            [_finite(v, "target scale", positive=True) for v in t.get("scale", [])], list(t.get("classes", [])),
            int(t["outputs"]), _finite(t.get("temperature", 1.0), "target temperature", positive=True),
            _flag(t.get("log", False), "target log"),
        )  # fmt: skip
        if target.task == "regression":
            if not len(target.names) == len(target.mean) == len(target.scale) == target.outputs >= 1:
                raise ValueError("the target's names, means, scales and outputs do not match in number")
        elif target.task == "classification":
            n = len(target.classes)
            if n < 2 or target.outputs not in ((1, 2) if n == 2 else (n,)) or len(target.names) != 1:
                raise ValueError(f"{n} classes with {target.outputs} outputs is not a classifier torchwork writes")
            low, high = TEMPERATURE_RANGE
            if not low <= target.temperature <= high:
                raise ValueError(f"the target's temperature {target.temperature:.6g} is outside [{low}, {high}]")
        else:
            raise ValueError(f"unknown task {target.task!r}")
        return cls(columns, numeric, categorical, target, str(doc.get("encoding", "codes")))
