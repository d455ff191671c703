"""One encoder per column, fitted on the training rows, stored as plain JSON.

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
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from torchwork.core.errors import InputError

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
        return str(v)

    return pd.Series([one(v) for v in values.to_numpy(dtype=object)], index=values.index, dtype=object)


def as_float(values: pd.Series, name: str, source: str, where: Any) -> np.ndarray:
    """A numeric column as float64 (NaN for missing); infinities are errors naming the row."""
    if pd.api.types.is_bool_dtype(values.dtype):
        out = values.astype("float64").to_numpy()
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
    """Regression: ``mean``/``scale`` per target column. Classification: ``classes`` (labels in
    their own JSON type: str, int, float or bool) and ``outputs`` (1 logit for two classes with
    ``bce``, one per class otherwise)."""

    task: str
    names: list[str]
    mean: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    classes: list[Any] = field(default_factory=list)
    outputs: int = 1

    @classmethod
    def fit_regression(cls, names: list[str], y: np.ndarray, standardize: bool) -> TargetEncoder:
        if not standardize:
            return cls("regression", names, [0.0] * y.shape[1], [1.0] * y.shape[1], outputs=y.shape[1])
        std = y.std(axis=0)
        return cls("regression", names, y.mean(axis=0).tolist(), np.where(std > 0, std, 1.0).tolist(),
                   outputs=y.shape[1])  # fmt: skip

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
