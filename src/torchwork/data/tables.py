"""A table read from a user's data, and the choice of its columns and rows.

:func:`pick_columns` picks the target and the feature columns, :func:`rows_to_use` the
rows (a row with a missing target is dropped and counted, never imputed), and
:func:`check_schema` checks a table against a saved model's columns. A problem is an
:class:`InputError` that names the file, the column and the row, and the rule. Reading files
is :mod:`torchwork.data.readers`' job; what each column is, :mod:`torchwork.data.columns`'.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from torchwork.core.errors import InputError


@dataclass
class Table:
    """Rows read from one source.

    ``first_line`` is the file line of row 0 (CSV only); ``lines_match_rows`` says whether
    each data row is one line (no blank lines or quoted line breaks), so that a row can be
    named by its line; ``options`` are the CSV options used (encoding, delimiter, decimal).
    """

    frame: pd.DataFrame
    source: str
    first_line: int | None = None
    lines_match_rows: bool = False
    options: dict[str, str] | None = None
    offset: int = 0  # rows of the source before this table's first (a chunk of a larger file)

    def where(self, row: int) -> str:
        """``"row 3 (line 4)"``: a 1-based data row, and its file line when the lines map to rows."""
        line = f" (line {self.first_line + row})" if self.first_line is not None and self.lines_match_rows else ""
        return f"row {self.offset + row + 1}{line}"


class Rows:
    """The rows ``rows`` of ``frame``, in that order, taken a column at a time.

    What the encoders read of a table (``rows[name]``, ``len(rows)``), without a copy of the
    whole frame in the rows' order: only the column being encoded is copied.
    """

    def __init__(self, frame: pd.DataFrame, rows: np.ndarray) -> None:
        self.frame, self.rows = frame, rows

    def __getitem__(self, name: str) -> pd.Series:
        return self.frame[name].iloc[self.rows]

    def __len__(self) -> int:
        return len(self.rows)


def resolve(table: Table, column: str) -> str:
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


def pick_columns(
    table: Table, target: list[str] | None, features: list[str] | None = None
) -> tuple[list[str], list[str]]:
    """The target and feature columns: checked to exist, to be distinct, and to leave a feature.

    ``features=None`` means every column but the targets. ``target=None`` picks features only.
    """
    if len(table.frame) == 0:
        raise InputError(f"{table.source}: no rows")
    targets = [resolve(table, t) for t in (target or [])]
    if features is None:
        feats = [c for c in table.frame.columns if c not in targets]
    else:
        feats = [resolve(table, f) for f in features]
        dups = sorted({f for f in feats if feats.count(f) > 1})
        if dups:
            raise InputError(f"--features names {', '.join(map(repr, dups))} more than once")
    both = [t for t in targets if t in feats]
    if both:
        raise InputError(f"{table.source}: column {both[0]!r} is the target and also a feature")
    if not feats:
        raise InputError(f"{table.source}: no feature columns (every column is a target)")
    return targets, feats


def missing_mask(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Rows with a missing value (None, NaN, an empty string) in any of ``columns``."""
    mask = np.zeros(len(frame), dtype=bool)
    for name in columns:
        s = frame[name]
        mask |= s.isna().to_numpy()
        if s.dtype == object or pd.api.types.is_string_dtype(s.dtype):
            mask |= (s.astype(str).str.strip() == "").to_numpy() & s.notna().to_numpy()
    return mask


def rows_to_use(
    table: Table, targets: list[str], features: list[str], *, drop_missing: bool
) -> tuple[np.ndarray, dict[str, int]]:
    """The rows to train or evaluate on, and how many were dropped and why.

    A row whose target is missing is dropped (never imputed); with ``drop_missing`` a row with
    a missing feature value is dropped too (otherwise missing features are filled in later).
    """
    drop = missing_mask(table.frame, targets) if targets else np.zeros(len(table.frame), dtype=bool)
    dropped = {"missing_target": int(drop.sum())}
    if drop_missing:
        gaps = missing_mask(table.frame, features) & ~drop
        dropped["missing_value"] = int(gaps.sum())
        drop |= gaps
    rows = np.flatnonzero(~drop)
    if len(rows) == 0:
        what = "a missing target" if not drop_missing else "a missing value"
        raise InputError(f"{table.source}: every row has {what}")
    return rows, dropped
