"""A table read from a user's data: its columns, what each one is, the task, and the rows to use.

:func:`pick_columns` picks the target and the feature columns, :func:`rows_to_use` the rows (a
row with a missing target is dropped and counted, never imputed), :func:`check_schema` checks
a table against a saved model's columns. :func:`infer_columns` says what each column is:

- ``numeric``: numbers (integers stay numeric unless named in ``--categorical``);
- ``categorical``: text, booleans, pandas ``category`` (and Parquet dictionary) columns, and
  any column named in ``--categorical``;
- ``datetime``: dates and timestamps (pandas ``datetime64``, Arrow dates), expanded into
  numeric parts (year, month, day, day of week, day of year, and hour when times are present).

``--numeric`` forces a column to be numbers. A text column that is unique on almost every row
(an ID, a free-text field) is refused with a hint rather than encoded into thousands of
categories; a text column of numbers with a few typos, or of numbers written with a decimal
comma, is refused with a hint naming the value. :func:`infer_task` says whether the target is
a regression or a classification. A problem is an :class:`InputError` that names the file,
the column and the row, and the rule.
"""

from __future__ import annotations

import datetime as dt
import decimal
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from torchwork.core.errors import InputError


# ---------------------------------------------------------------- a table, its columns and rows
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


MAX_LISTED = 12  # columns named in a message before "... and N more"


def listed(names: Sequence[Any], limit: int = MAX_LISTED) -> str:
    """``"'a', 'b', 'c'"``; of more than ``limit`` names the first ones and ``"and 488 more"``."""
    shown = ", ".join(repr(str(n)) for n in names[:limit])
    return shown if len(names) <= limit else f"{shown}, ... and {len(names) - limit} more"


def did_you_mean(name: str, names: Sequence[Any]) -> str:
    """``" did you mean 'power'?"`` (the closest of ``names``, by difflib's ratio), or ``""``.

    A name that differs only in case comes first; a misspelt start of a longer name (``clod`` for
    ``cloud_cover``) is matched against that many characters of each name.
    """
    texts = [str(n) for n in names]
    close = [t for t in texts if t.lower() == name.lower()] or difflib.get_close_matches(name, texts, n=3)
    if not close and len(name) >= 3:
        starts = {t[: len(name) + 1]: t for t in reversed(texts) if len(t) > len(name) + 1}
        close = [starts[s] for s in difflib.get_close_matches(name, list(starts), n=3, cutoff=0.75)]
    return f" did you mean {' or '.join(map(repr, close))}?" if close else ""


def resolve(table: Table, column: str, flag: str = "--features") -> str:
    """The column ``column`` names (``flag`` gave it): a name, or for an array's numbered columns an index."""
    columns = list(table.frame.columns)
    if column in columns:
        return column
    try:  # arrays have numbered columns: --target -1 is the last one
        index = int(column)
        if all(str(c).isdigit() for c in columns) and -len(columns) <= index < len(columns):
            return columns[index]
    except ValueError:
        pass
    raise InputError(
        f"{table.source}: no column {column!r} ({flag});{did_you_mean(str(column), columns)} "
        f"columns are {listed(columns)}"
    )


def check_schema(
    table: Table, features: list[str], target: list[str], *, allow_extra: bool = False, excluded: Sequence[str] = ()
) -> None:
    """The columns a saved model needs: every feature present; nothing unknown unless ``allow_extra``.

    The target may be present (labelled data) or not, and the columns left out in training
    (``excluded``, ``--exclude``); the order of columns does not matter.
    """
    columns = list(table.frame.columns)
    missing = [f for f in features if f not in columns]
    extra = [c for c in columns if c not in features and c not in target and c not in excluded]
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


def no_target(table: Table) -> InputError:
    """The error for a run given no target: it lists the columns to choose from."""
    return InputError(
        f"{table.source}: no target: pass --target COLUMN (or 'target' in the config file); "
        f"columns are {listed(list(table.frame.columns))}"
    )


def pick_columns(
    table: Table, target: list[str] | None, features: list[str] | None = None, exclude: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """The target and feature columns: checked to exist, to be distinct, and to leave a feature.

    ``features=None`` means every column but the targets and those in ``exclude`` (``--exclude``).
    ``target=None`` picks features only. A name that is no column gets the closest ones.
    """
    if len(table.frame) == 0:
        raise InputError(f"{table.source}: no rows")
    targets = [resolve(table, t, "--target") for t in (target or [])]
    excluded = [resolve(table, e, "--exclude") for e in exclude]
    aimed = [e for e in excluded if e in targets]
    if aimed:
        raise InputError(f"--exclude names {aimed[0]!r}, the target; --exclude leaves out feature columns")
    if features is None:
        feats = [c for c in table.frame.columns if c not in targets and c not in excluded]
    else:
        feats = [resolve(table, f, "--features") for f in features]
        dups = sorted({f for f in feats if feats.count(f) > 1})
        if dups:
            raise InputError(f"--features names {', '.join(map(repr, dups))} more than once")
        both = [f for f in feats if f in excluded]
        if both:
            raise InputError(f"--features and --exclude both name {', '.join(map(repr, both))}; give one of them")
    both = [t for t in targets if t in feats]
    if both:
        raise InputError(f"{table.source}: column {both[0]!r} is the target and also a feature")
    if not feats:
        rest = " or excluded" if excluded else ""
        raise InputError(f"{table.source}: no feature columns (every column is a target{rest})")
    return targets, feats


def missing_mask(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Rows with a missing value (None, NaN, an empty string) in any of ``columns``."""
    mask = np.zeros(len(frame), dtype=bool)
    for name in columns:
        s = frame[name]
        mask |= s.isna().to_numpy()
        if s.dtype == object:  # any Python objects: only text can be blank (bytes are not decoded here)
            mask |= s.map(_blank, na_action="ignore").fillna(False).to_numpy(dtype=bool)
        elif pd.api.types.is_string_dtype(s.dtype):
            mask |= (s.str.strip() == "").fillna(False).to_numpy(dtype=bool)
    return mask


def _blank(value: Any) -> bool:
    return isinstance(value, str) and not value.strip()


def rows_to_use(
    table: Table, targets: list[str], features: list[str], *, drop_missing: bool
) -> tuple[np.ndarray, dict[str, int]]:
    """The rows to train or evaluate on, and how many were dropped and why.

    A row whose target is missing is dropped (never imputed); with ``drop_missing`` a row with
    a missing feature value is dropped too (otherwise missing features are filled in later).
    """
    if len(table.frame) == 0:  # a header and no rows: nothing is missing, there is nothing
        raise InputError(f"{table.source}: no rows")
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


# ------------------------------------------------------------ what each column is, and the task
KINDS = ("numeric", "categorical", "datetime")
TASKS = ("auto", "regression", "classification")
# A text column with at least this share of distinct values (and more than ID_MIN of them) looks like an ID.
ID_SHARE, ID_MIN = 0.9, 20
# The task of a numeric target (AutoGluon's rule, autogluon.core.utils.infer_problem_type): two distinct
# values are a binary classification; integers with few distinct values (at most CLASS_SHARE of the rows,
# CLASS_SHARE_LARGE on tables of more than LARGE_TABLE rows, and at most --max-classes) are classes;
# anything else is a regression.
CLASS_SHARE, CLASS_SHARE_LARGE, LARGE_TABLE = 0.1, 0.05, 1000

# Python objects a column cannot hold, by what they are called, and what to do instead.
_NESTED = (list, tuple, dict, set, frozenset, np.ndarray)
_REFUSED: tuple[tuple[tuple[type, ...], str, str], ...] = (
    (_NESTED, "lists, tuples, dicts, sets or arrays", "spread them into one column each, or turn them into text"),
    ((complex, np.complexfloating), "complex numbers", "split them into a real and an imaginary column"),
)
SMALLEST_FLOAT32 = float(np.finfo(np.float32).tiny)  # the smallest normal float32: below it digits are lost


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


def stored_as(table: Table, name: str, s: pd.Series) -> str | None:
    """How a column stores its values, where torchwork converts them: ``"duration"`` (timedeltas:
    seconds), ``"decimal"`` (Python decimals: floats), ``"bytes"`` (UTF-8 text), ``"bool"`` (Python
    true/false values in an object column), or None.

    Values no column may hold (lists, dicts, tuples, sets, arrays, complex numbers, bytes that are
    not UTF-8 text) raise an :class:`InputError` naming the column and the row.
    """
    if pd.api.types.is_complex_dtype(s.dtype):
        raise InputError(
            f"{table.source}: column {name!r} holds complex numbers; torchwork reads numbers, text, true/false "
            "values and dates: split them into a real and an imaginary column"
        )
    if pd.api.types.is_timedelta64_dtype(s.dtype):
        return "duration"
    if s.dtype != object:
        return None
    values = s.dropna()
    types = set(map(type, values))
    for refused, what, hint in _REFUSED:
        if any(issubclass(t, refused) for t in types):
            i = int(np.flatnonzero([isinstance(v, refused) for v in values])[0])
            raise InputError(
                f"{table.source}: column {name!r}, {table.where(int(values.index[i]))}: holds {what} "
                f"({values.iloc[i]!r:.40}); torchwork reads numbers, text, true/false values and dates: {hint}"
            )
    if any(issubclass(t, bytes | bytearray) for t in types):
        for i, v in enumerate(values):
            if isinstance(v, bytes | bytearray):
                try:
                    bytes(v).decode("utf-8")
                except UnicodeDecodeError:
                    raise InputError(
                        f"{table.source}: column {name!r}, {table.where(int(values.index[i]))}: holds bytes that are "
                        f"not UTF-8 text ({bytes(v)!r:.40}); torchwork reads numbers, text, true/false values and "
                        f"dates: decode them, or leave the column out with --exclude {name}"
                    ) from None
        return "bytes"
    if types and all(issubclass(t, bool | np.bool_) for t in types):
        return "bool"
    if types and all(issubclass(t, decimal.Decimal | int | float) for t in types) and decimal.Decimal in types:
        return "decimal"
    return None


def _text_kind(table: Table, name: str, s: pd.Series) -> Column:
    """A text column: numbers (with a few bad values: refused), dates, an ID (refused) or categories."""
    values = s.dropna()
    values = values[values.astype(str).str.strip() != ""]
    if len(values) == 0:
        return Column(name, "categorical", "text (every value missing)")
    numbers = pd.to_numeric(values, errors="coerce")
    parsed = numbers.notna().mean()
    if parsed == 1:  # every value a number written as text (zip codes, a CSV read with dtype=str): numbers
        return Column(name, "numeric", f"numbers stored as text; --categorical {name} reads them as categories")
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
            f"{len(values)} rows): leave it out with --exclude {name}, or pass --categorical {name} to encode it anyway"
        )
    return Column(name, "categorical", "text")


def infer_columns(
    table: Table,
    features: list[str],
    *,
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
) -> list[Column]:
    """The kind of each feature column, from its values and the ``--categorical``/``--numeric`` overrides.

    Durations are numbers of seconds, decimals numbers, numbers written as text numbers (the
    column's reason says so), bytes UTF-8 text; a column of lists, dicts, complex numbers or
    bytes that are not text is refused, overrides or not.
    """
    both = sorted(set(categorical) & set(numeric))
    if both:
        raise InputError(f"--categorical and --numeric both name {', '.join(map(repr, both))}")
    for flag, names in (("--categorical", categorical), ("--numeric", numeric)):
        unknown = [n for n in names if n not in features]
        if unknown:
            name = unknown[0]
            raise InputError(
                f"{flag} names {name!r}, which is not a feature column;{did_you_mean(name, features)} "
                f"the features are {listed(features)}"
            )
    columns = []
    for name in features:
        s = table.frame[name]
        stored = stored_as(table, name, s)
        if name in categorical:
            columns.append(Column(name, "categorical", "named in --categorical"))
        elif name in numeric:
            columns.append(Column(name, "numeric", "named in --numeric"))
        elif stored == "duration":
            columns.append(Column(name, "numeric", "durations, in seconds"))
        elif stored == "decimal":
            columns.append(Column(name, "numeric", "decimal numbers, as floats"))
        elif stored == "bytes":
            columns.append(_text_kind(table, name, s.map(_decoded, na_action="ignore")))
        elif pd.api.types.is_bool_dtype(s.dtype) or stored == "bool":
            columns.append(Column(name, "categorical", "true/false values"))
        elif isinstance(s.dtype, pd.CategoricalDtype):
            columns.append(Column(name, "categorical", "a category column"))
        elif _is_datetime(s):
            columns.append(Column(name, "datetime", "dates"))
        elif pd.api.types.is_numeric_dtype(s.dtype):
            columns.append(Column(name, "numeric", "numbers"))
        else:
            columns.append(_text_kind(table, name, s))
    return columns


def _decoded(value: Any) -> Any:
    return bytes(value).decode("utf-8") if isinstance(value, bytes | bytearray) else value


def infer_task(table: Table, targets: list[str], requested: str, *, max_classes: int = 100) -> tuple[str, str | None]:
    """``("regression" | "classification", a note or None)`` for the target columns.

    Auto: a text, boolean or category target is classification. A numeric one (numbers written
    as text and decimals included; durations are always a regression) follows AutoGluon's rule
    (see :data:`CLASS_SHARE`): two distinct values are a binary classification; integers with
    few distinct values are classes; anything else is a regression. The note says what was
    chosen from numbers, and the flag that chooses the other.
    """
    if requested not in TASKS:
        raise InputError(f"--task {requested!r}: expected one of {', '.join(TASKS)}")
    kinds = {}
    for name in targets:
        s = table.frame[name]
        stored = stored_as(table, name, s)
        numeric = stored in ("duration", "decimal") or (
            pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)
        )
        if (
            not numeric
            and stored not in ("bytes", "bool")
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
        kinds[name] = "duration" if stored == "duration" else "numeric" if numeric else "labels"
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
    if len(targets) != 1 or kinds[targets[0]] == "duration":
        return "regression", None
    return _task_of_numbers(targets[0], pd.to_numeric(table.frame[targets[0]], errors="coerce"), max_classes)


def _task_of_numbers(name: str, numbers: pd.Series, max_classes: int) -> tuple[str, str | None]:
    """AutoGluon's rule for a numeric target (see :data:`CLASS_SHARE`), and the note that says so."""
    values = numbers.dropna().to_numpy(dtype="float64")
    if not np.isfinite(values).all():  # numbers, one of them infinite: refused as a value, not taken for a class
        return "regression", None
    distinct = np.unique(values)
    if len(distinct) == 2:
        low, high = (_number(v) for v in distinct)
        return "classification", (
            f"the target {name!r} holds two values ({low} and {high}): trained as a binary classification; "
            "pass --task regression to fit them as numbers"
        )
    if len(distinct) < 2 or not np.all(distinct == np.round(distinct)):
        return "regression", None
    share = CLASS_SHARE_LARGE if len(values) > LARGE_TABLE else CLASS_SHARE
    few = len(distinct) <= min(share * len(values), max_classes)
    if few:
        return "classification", (
            f"the target {name!r} holds {len(distinct)} distinct integers in {len(values)} rows: trained as a "
            f"classification of {len(distinct)} classes; pass --task regression to fit them as numbers"
        )
    if len(distinct) > max_classes:
        return "regression", None
    return "regression", (
        f"the target {name!r} holds {len(distinct)} distinct integers in {len(values)} rows (more than "
        f"{share:.0%} of the rows, too many to be classes): trained as regression; pass --task classification "
        "if they are classes"
    )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# ------------------------------------------------------ DataFrames from Arrow tables and arrays
def to_pandas(table: Any) -> pd.DataFrame:
    """The DataFrame of an Arrow table, freeing each Arrow column as it is converted; every column writable."""
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    for i in range(frame.shape[1]):  # a column Arrow handed over without a copy is read-only
        column = frame.iloc[:, i]
        if isinstance(column.dtype, np.dtype):
            array = np.asarray(column.array)
            if not array.flags.writeable:
                frame.isetitem(i, array.copy())
            del array
        del column
    return frame


def frame_from_array(a: np.ndarray, source: str) -> pd.DataFrame:
    if a.dtype == object:
        raise InputError(f"{source}: holds Python objects, not numbers")
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2:
        raise InputError(f"{source}: expected a 2-D array (rows x columns), got shape {a.shape}")
    return pd.DataFrame(a, columns=[str(i) for i in range(a.shape[1])])
