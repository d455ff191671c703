"""What each column of a table is, inferred from its values and shown to the user.

Kinds:

- ``numeric``: numbers (integers stay numeric unless named in ``--categorical``);
- ``categorical``: text, booleans, pandas ``category`` (and Parquet dictionary) columns, and
  any column named in ``--categorical``;
- ``datetime``: dates and timestamps (pandas ``datetime64``, Arrow dates), expanded into
  numeric parts (year, month, day, day of week, day of year, and hour when times are present).

``--numeric`` forces a column to be numbers. A text column that is unique on almost every row
(an ID, a free-text field) is refused with a hint rather than encoded into thousands of
categories; a text column of numbers with a few typos, or of numbers written with a decimal
comma, is refused with a hint naming the value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from torchwork.core.errors import InputError
from torchwork.data.tables import Table

KINDS = ("numeric", "categorical", "datetime")
TASKS = ("auto", "regression", "classification")
# A text column with at least this share of distinct values (and more than ID_MIN of them) looks like an ID.
ID_SHARE, ID_MIN = 0.9, 20
# A numeric target with at most this many distinct integers gets a hint to pass --task classification.
FEW_CLASSES = 20


@dataclass(frozen=True)
class Column:
    """A feature column and the kind chosen for it, with the reason (shown in the run's report)."""

    name: str
    kind: str
    reason: str


def _is_datetime(s: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return True
    if s.dtype == object:
        values = s.dropna()
        return len(values) > 0 and all(isinstance(v, dt.date) for v in values.iloc[:1000])
    return False


def _text_kind(table: Table, name: str, s: pd.Series) -> Column:
    """A text column: numbers (with a few bad values: refused), dates, an ID (refused) or categories."""
    values = s.dropna()
    values = values[values.astype(str).str.strip() != ""]
    if len(values) == 0:
        return Column(name, "categorical", "text (every value missing)")
    numbers = pd.to_numeric(values, errors="coerce")
    parsed = numbers.notna().mean()
    if parsed >= 0.9:  # numbers, with a few values that are not
        bad = values.index[numbers.isna().to_numpy()][0]
        raise InputError(
            f"{table.source}: column {name!r}, {table.where(int(bad))}: {s.loc[bad]!r} is not a number "
            f"(the column's other values are numbers; fix it, or pass --categorical {name} to treat the column "
            "as categories)"
        )
    decimal_comma = pd.to_numeric(values.astype(str).str.replace(",", ".", regex=False), errors="coerce")
    if (table.options or {}).get("decimal", ".") == "." and decimal_comma.notna().mean() >= 0.9:
        example = values.iloc[int(np.flatnonzero(decimal_comma.notna().to_numpy())[0])]
        raise InputError(
            f"{table.source}: column {name!r} holds numbers written with a decimal comma ({example!r}); "
            "pass --decimal , to read them as numbers"
        )
    distinct = values.astype(str).nunique()
    if distinct > ID_MIN and distinct >= ID_SHARE * len(values):
        raise InputError(
            f"{table.source}: column {name!r} looks like an identifier or free text ({distinct} distinct values in "
            f"{len(values)} rows): leave it out with --features, or pass --categorical {name} to encode it anyway"
        )
    return Column(name, "categorical", "text")


def infer_columns(
    table: Table,
    features: list[str],
    *,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
) -> list[Column]:
    """The kind of each feature column, from its values and the ``--categorical``/``--numeric`` overrides."""
    both = sorted(set(categorical) & set(numeric))
    if both:
        raise InputError(f"--categorical and --numeric both name {', '.join(map(repr, both))}")
    for flag, names in (("--categorical", categorical), ("--numeric", numeric)):
        unknown = [n for n in names if n not in features]
        if unknown:
            raise InputError(f"{flag} names {', '.join(map(repr, unknown))}, which is not a feature column")
    columns = []
    for name in features:
        s = table.frame[name]
        if name in categorical:
            columns.append(Column(name, "categorical", "named in --categorical"))
        elif name in numeric:
            columns.append(Column(name, "numeric", "named in --numeric"))
        elif pd.api.types.is_bool_dtype(s.dtype):
            columns.append(Column(name, "categorical", "true/false values"))
        elif isinstance(s.dtype, pd.CategoricalDtype):
            columns.append(Column(name, "categorical", "a category column"))
        elif _is_datetime(s):
            columns.append(Column(name, "datetime", "dates"))
        elif pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_complex_dtype(s.dtype):
            columns.append(Column(name, "numeric", "numbers"))
        else:
            columns.append(_text_kind(table, name, s))
    return columns


def infer_task(table: Table, targets: list[str], requested: str) -> tuple[str, str | None]:
    """``("regression" | "classification", a hint or None)`` for the target columns.

    Auto: a text, boolean or category target is classification; a numeric one regression,
    with a hint when it holds only a few distinct integers.
    """
    if requested not in TASKS:
        raise InputError(f"--task {requested!r}: expected one of {', '.join(TASKS)}")
    kinds = {}
    for name in targets:
        s = table.frame[name]
        numeric = pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)
        if (
            not numeric
            and (s.dtype == object or pd.api.types.is_string_dtype(s.dtype))
            and requested != "classification"
        ):
            values = s.dropna()
            values = values[values.astype(str).str.strip() != ""]
            parsed = pd.to_numeric(values, errors="coerce")
            numeric = len(values) > 0 and bool(parsed.notna().all())
            if not numeric and len(values) and parsed.notna().mean() >= 0.9:  # numbers, with a typo
                bad = values.index[parsed.isna().to_numpy()][0]
                raise InputError(
                    f"{table.source}: column {name!r}, {table.where(int(bad))}: {s.loc[bad]!r} is not a number "
                    "(the target's other values are numbers; fix it, or pass --task classification if they are labels)"
                )
        kinds[name] = "numeric" if numeric else "labels"
    if requested == "regression":
        labels = [n for n, k in kinds.items() if k == "labels"]
        if labels:
            raise InputError(
                f"{table.source}: --task regression needs numbers, but the target {labels[0]!r} holds labels "
                "(text, true/false or categories); use --task classification"
            )
        return "regression", None
    if requested == "classification" or any(k == "labels" for k in kinds.values()):
        if len(targets) != 1:
            raise InputError(f"{table.source}: classification takes one target column, got {len(targets)}")
        return "classification", None
    hint = None
    if len(targets) == 1:
        values = pd.to_numeric(table.frame[targets[0]], errors="coerce").dropna()
        distinct = values.unique()
        if (
            2 <= len(distinct) <= FEW_CLASSES
            and np.all(distinct == np.round(distinct))
            and len(values) > 2 * len(distinct)
        ):
            hint = (
                f"the target {targets[0]!r} holds only {len(distinct)} distinct integers: trained as regression; "
                "pass --task classification if they are classes"
            )
    return "regression", hint
