"""A table read from a user's data, and checking its columns before anything trains on it.

:func:`select` picks the target and the features and checks every value. A problem is an
:class:`InputError` that names the file, the column and the row, and the rule; nothing is
coerced silently. Reading files is :mod:`torchwork.data.readers`' job.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from torchwork.core.errors import InputError


@dataclass
class Table:
    """Rows read from one source. ``first_line`` is the file line of row 0 (CSV only)."""

    frame: pd.DataFrame
    source: str
    first_line: int | None = None

    def where(self, row: int) -> str:
        """``"row 3 (line 4)"``: a 1-based data row, and its file line when the lines map to rows."""
        line = f" (line {self.first_line + row})" if self.first_line is not None and self._one_line_per_row() else ""
        return f"row {row + 1}{line}"

    def _one_line_per_row(self) -> bool:
        """False when blank lines or quoted line breaks make line numbers differ from rows."""
        try:
            with open(self.source, "rb") as f:
                data = f.read()
        except OSError:
            return False
        lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
        return lines == len(self.frame) + 1 and b"\n\n" not in data and b"\r\n\r\n" not in data


@dataclass
class Selected:
    """Checked numeric data: features ``X`` (n, d) and target ``y`` (n, k), as float64."""

    X: np.ndarray
    y: np.ndarray | None
    features: list[str]
    target: list[str]
    rows: np.ndarray  # positions in the table of the rows kept
    dropped: int = 0


def _numeric(table: Table, column: str) -> np.ndarray:
    """A column as float64; a value that is not a number is an error naming its row."""
    s = table.frame[column]
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype("float64").to_numpy()
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_complex_dtype(s.dtype):
        return s.to_numpy(dtype="float64", na_value=np.nan)
    coerced = pd.to_numeric(s, errors="coerce")
    bad = np.flatnonzero(coerced.isna().to_numpy() & s.notna().to_numpy())
    if len(bad):
        i = int(bad[0])
        raise InputError(f"{table.source}: column {column!r}, {table.where(i)}: {s.iloc[i]!r} is not a number")
    return coerced.to_numpy(dtype="float64", na_value=np.nan)


def _resolve(table: Table, column: str) -> str:
    columns = list(table.frame.columns)
    if column in columns:
        return column
    try:  # arrays have numbered columns: --target -1 is the last one
        index = int(column)
        if all(c.isdigit() for c in columns) and -len(columns) <= index < len(columns):
            return columns[index]
    except ValueError:
        pass
    raise InputError(f"{table.source}: no column {column!r}; columns are {', '.join(map(repr, columns))}")


def check_schema(table: Table, features: list[str], target: list[str], *, allow_extra: bool = False) -> None:
    """The columns a saved model needs: every feature present; nothing unknown unless ``allow_extra``.

    The target may be present (labelled data) or not; the order of columns does not matter.
    """
    columns = list(table.frame.columns)
    missing = [f for f in features if f not in columns]
    extra = [c for c in columns if c not in features and c not in target]
    problems = []
    if missing:
        problems.append(f"missing columns {', '.join(map(repr, missing))}")
    if extra and not allow_extra:
        problems.append(f"unexpected columns {', '.join(map(repr, extra))} (pass --allow-extra-columns to keep them)")
    if problems:
        raise InputError(
            f"{table.source}: does not match the model's columns: {'; '.join(problems)}; "
            f"the model expects {', '.join(map(repr, features))}"
        )


def select(
    table: Table,
    target: str | list[str] | None,
    features: list[str] | None = None,
    *,
    drop_missing: bool = False,
) -> Selected:
    """Pick and check the target and feature columns.

    ``features=None`` means every column but the target. ``target=None`` selects features
    only (prediction). Missing values are an error unless ``drop_missing``, which drops the
    rows that have one and reports how many; NaN counts as missing; infinities and values
    beyond float32 are always errors.
    """
    frame = table.frame
    if len(frame) == 0:
        raise InputError(f"{table.source}: no rows")
    targets = [] if target is None else [target] if isinstance(target, str) else list(target)
    targets = [_resolve(table, t) for t in targets]
    if features is None:
        feats = [c for c in frame.columns if c not in targets]
    else:
        feats = [_resolve(table, f) for f in features]
        dups = sorted({f for f in feats if feats.count(f) > 1})
        if dups:
            raise InputError(f"--features names {', '.join(map(repr, dups))} more than once")
    both = [t for t in targets if t in feats]
    if both:
        raise InputError(f"{table.source}: column {both[0]!r} is the target and also a feature")
    if not feats:
        raise InputError(f"{table.source}: no feature columns (every column is a target)")

    columns = feats + targets
    values = np.column_stack([_numeric(table, c) for c in columns])
    missing = np.isnan(values)
    keep = np.arange(len(frame))
    dropped = 0
    if missing.any():
        if not drop_missing:
            i, j = (int(v[0]) for v in np.nonzero(missing))
            raise InputError(
                f"{table.source}: column {columns[j]!r}, {table.where(i)}: missing value "
                "(pass --drop-missing to drop rows with missing values)"
            )
        rows_missing = missing.any(axis=1)
        dropped = int(rows_missing.sum())
        keep = np.flatnonzero(~rows_missing)
        values = values[keep]
        if len(values) == 0:
            raise InputError(f"{table.source}: every row has a missing value")
    with np.errstate(over="ignore"):
        too_big = ~np.isfinite(values.astype(np.float32))
    if too_big.any():
        i, j = (int(v[0]) for v in np.nonzero(too_big))
        value = float(values[i, j])
        kind = "infinite value" if not np.isfinite(value) else f"{value!r} does not fit in float32"
        raise InputError(f"{table.source}: column {columns[j]!r}, {table.where(int(keep[i]))}: {kind}")
    X = values[:, : len(feats)]
    y = values[:, len(feats) :] if targets else None
    return Selected(X, y, feats, targets, keep, dropped)
