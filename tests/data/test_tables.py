"""Column kinds and the task, inferred from the values, and the encoders fitted on training rows."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from torchwork.core.errors import InputError
from torchwork.data.preprocess import (
    CategoryEncoder,
    DatetimeEncoder,
    NumericEncoder,
    Preprocessor,
    TargetEncoder,
    as_text,
)
from torchwork.data.tables import Table, infer_columns, infer_task, listed, pick_columns


def table(**columns) -> Table:
    return Table(pd.DataFrame(columns), "t.csv", first_line=2)


def test_kinds_from_values_and_overrides():
    n = 40
    t = table(
        x=np.arange(n, dtype=float), code=np.arange(n) % 3, word=["a", "b"] * (n // 2), flag=[True, False] * (n // 2),
        cat=pd.Categorical(["u", "v"] * (n // 2)), when=pd.date_range("2024-01-01", periods=n, freq="D"),
        day=[dt.date(2024, 1, 1 + i % 28) for i in range(n)],
    )  # fmt: skip
    kinds = {c.name: c.kind for c in infer_columns(t, list(t.frame.columns))}
    assert kinds == {"x": "numeric", "code": "numeric", "word": "categorical", "flag": "categorical",
                     "cat": "categorical", "when": "datetime", "day": "datetime"}  # fmt: skip
    overridden = {c.name: c.kind for c in infer_columns(t, ["code", "x"], categorical=["code"])}
    assert overridden == {"code": "categorical", "x": "numeric"}
    with pytest.raises(InputError, match=r"--categorical names 'nope', which is not a feature column"):
        infer_columns(t, ["x"], categorical=["nope"])
    with pytest.raises(InputError, match=r"--categorical and --numeric both name 'x'"):
        infer_columns(t, ["x"], categorical=["x"], numeric=["x"])


def test_identifiers_and_typos_are_refused_with_hints():
    ids = table(id=[f"user{i}" for i in range(100)])
    with pytest.raises(InputError, match=r"column 'id' looks like an identifier .*100 distinct values in 100 rows"):
        infer_columns(ids, ["id"])
    assert infer_columns(ids, ["id"], categorical=["id"])[0].kind == "categorical"  # asked for: done
    typo = table(v=[str(i) for i in range(50)] + ["5O"])
    with pytest.raises(InputError, match=r"t.csv: column 'v', row 51: '5O' is not a number"):
        infer_columns(typo, ["v"])


def test_the_task_from_the_target():
    assert infer_task(table(y=["cat", "dog"] * 10), ["y"], "auto") == ("classification", None)
    assert infer_task(table(y=[True, False] * 10), ["y"], "auto") == ("classification", None)
    task, hint = infer_task(table(y=[0, 1, 2] * 10), ["y"], "auto")  # 3 integers in 30 rows: classes
    assert task == "classification" and "3 distinct integers in 30 rows" in hint and "--task regression" in hint
    assert infer_task(table(y=np.linspace(0, 1, 30)), ["y"], "auto") == ("regression", None)
    assert infer_task(table(y=[0, 1] * 10), ["y"], "classification") == ("classification", None)
    with pytest.raises(InputError, match=r"classification takes one target column, got 2"):
        infer_task(table(a=["x", "y"] * 5, b=["u", "v"] * 5), ["a", "b"], "auto")


def test_numeric_encoder_fills_with_the_training_median_and_flags_gaps():
    values = np.array([1.0, np.nan, 3.0, 10.0, np.nan])
    enc = NumericEncoder.fit("x", values, standardize=True)
    assert enc.fill == 3.0 and enc.indicator  # median of 1, 3, 10
    filled = np.array([1.0, 3.0, 3.0, 10.0, 3.0])
    assert enc.mean == pytest.approx(filled.mean()) and enc.scale == pytest.approx(filled.std())
    out, missing = enc.encode(np.array([np.nan, 3.0]))
    np.testing.assert_allclose(out, [(3.0 - enc.mean) / enc.scale] * 2)
    assert missing.tolist() == [True, False]


def test_category_encoder_codes_unknown_missing_and_rare():
    train = pd.Series(["a"] * 5 + ["b"] * 4 + ["c"] * 2 + [None] + ["d"])  # c, d rare (< 3 rows)
    enc = CategoryEncoder.fit("g", train)
    assert enc.categories == ["a", "b"] and enc.rare == ["c", "d"]
    assert (enc.missing_code, enc.rare_code, enc.n_codes) == (1, 2, 5)
    assert enc.labels() == ["<unknown>", "<missing>", "<rare>", "a", "b"]
    codes, missing, unknown = enc.encode(pd.Series(["b", None, "d", "zebra", "a"]))
    assert codes.tolist() == [4, 1, 2, 0, 3] and (missing, unknown) == (1, 1)
    assert as_text(pd.Series([3, 3.0, "3", True, np.nan])).tolist() == ["3", "3", "3", "True", None]


def test_dates_become_numeric_parts():
    stamps = pd.Series(pd.to_datetime(["2024-03-01 10:30", "2023-12-31 00:00", None]))
    enc = DatetimeEncoder.fit("when", stamps, standardize=False)
    assert enc.parts == ["year", "month", "day", "day_of_week", "day_of_year", "hour"] and enc.indicator
    parts = DatetimeEncoder.split(stamps)
    assert parts["year"][:2].tolist() == [2024, 2023] and parts["day_of_year"][1] == 365
    assert parts["hour"][0] == 10.5 and np.isnan(parts["month"][2])


def test_preprocessor_round_trips_through_json_and_onehot_matches_codes():
    frame = pd.DataFrame({"x": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0], "g": ["a", "a", "a", "b", "b", "b"],
                          "y": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]})  # fmt: skip
    t = Table(frame, "f")
    cols = infer_columns(t, ["x", "g"])
    target = TargetEncoder.fit_regression(["y"], frame[["y"]].to_numpy(), True)
    codes = Preprocessor.fit(frame, cols, target, encoding="codes")
    onehot = Preprocessor.fit(frame, cols, target, encoding="onehot")
    again = Preprocessor.from_json(codes.to_json())
    np.testing.assert_array_equal(again.inputs(frame).X, codes.inputs(frame).X)
    X = codes.inputs(frame).X
    assert codes.input_names == ["x", "x is missing", "g"] and X[2, 1] == 1.0
    np.testing.assert_array_equal(codes.design(X), onehot.design(onehot.inputs(frame).X))
    assert onehot.input_names == ["x", "x is missing", "g=a", "g=b"]


def test_class_labels_keep_their_type_and_unseen_labels_are_named():
    target = TargetEncoder.fit_classification("y", pd.Series([2, 10, 2, 10, 1]), binary_logit=True)
    assert target.classes == [1, 2, 10] and target.outputs == 3  # numeric order, ints stay ints
    binary = TargetEncoder.fit_classification("y", pd.Series(["no", "yes", "no"]), binary_logit=True)
    assert binary.classes == ["no", "yes"] and binary.outputs == 1
    assert binary.codes(pd.Series(["yes", "no"]), "f", str).tolist() == [1, 0]
    with pytest.raises(InputError, match=r"the label 'maybe' was never seen in training"):
        binary.codes(pd.Series(["yes", "maybe"]), "f", lambda i: f"row {i + 1}")


# ------------------------------------------------- issue 17 item 2: the task of a numeric target
@pytest.mark.parametrize(
    ("values", "task"),
    [
        ([0, 1] * 15, "classification"),  # two values: binary, whatever they are
        ([1, 2] * 15, "classification"),
        ([0.0, 1.0] * 15, "classification"),
        ([-1.5, 2.5] * 15, "classification"),
        (["0", "1"] * 15, "classification"),  # numbers written as text: the same rule
        ([True, False] * 15, "classification"),
        (list(range(10)) * 10, "classification"),  # 10 integers in 100 rows: at most 10 % distinct
        (list(range(11)) * 10, "classification"),  # 11 in 110 rows is 10 %: still classes (AutoGluon's <=) ...
        (list(range(12)) * 9, "regression"),  # ... 12 in 108 rows is more
        ([float(i % 10) for i in range(100)], "classification"),  # integers stored as floats
        ([i % 10 + 0.5 for i in range(100)], "regression"),  # not integers
        (list(range(70)) * 18, "regression"),  # 70 in 1260 rows: more than 5 % on a table over 1000 rows
        (list(range(50)) * 24, "classification"),  # 50 in 1200 rows: 4.2 %
        (list(range(150)) * 20, "regression"),  # few enough for AutoGluon (5 %), more than --max-classes (100)
    ],
)
def test_the_task_of_numbers_follows_autogluons_rule(values, task):
    got, note = infer_task(table(y=values), ["y"], "auto")
    assert got == task, (values[:12], got, note)
    if isinstance(values[0], bool):
        assert note is None  # labels: nothing was chosen from numbers
    elif got == "classification":
        assert "--task regression" in note
    distinct = len(set(values))
    if got == "regression" and distinct <= 100 and all(float(v).is_integer() for v in values):
        assert f"{distinct} distinct integers" in note and "--task classification" in note


def test_the_task_asked_for_wins_and_max_classes_bounds_the_rule():
    assert infer_task(table(y=[0, 1] * 15), ["y"], "regression") == ("regression", None)
    assert infer_task(table(y=list(range(10)) * 10), ["y"], "classification") == ("classification", None)
    task, note = infer_task(table(y=list(range(10)) * 10), ["y"], "auto", max_classes=9)
    assert task == "regression" and note is None
    assert infer_task(table(y=[0, 1] * 15, z=[1, 2] * 15), ["y", "z"], "auto") == ("regression", None)
    two = infer_task(table(y=[2, 1] * 15), ["y"], "auto")[1]
    assert "two values (1 and 2)" in two


# ------------------------------------------------------- issue 18: values as tables store them
def test_numbers_written_as_text_are_numbers_and_the_column_says_so(tmp_path):
    """Item 1: a float column stored as strings (Parquet, pd.read_csv(dtype=str), pandas' str dtype)."""
    import torchwork

    rng = np.random.default_rng(0)
    a = rng.normal(size=200)
    numbers = pd.DataFrame({"a": a, "s": 3 * a + 1, "y": 2 * a - a**2})
    numbers.to_csv(tmp_path / "n.csv", index=False)
    as_text_frame = pd.read_csv(tmp_path / "n.csv", dtype=str)
    assert not pd.api.types.is_numeric_dtype(as_text_frame["s"].dtype)
    for frame in (as_text_frame, as_text_frame.astype(object)):
        columns = {c.name: c for c in infer_columns(Table(frame, "n.csv"), ["a", "s"])}
        assert columns["s"].kind == "numeric" and "numbers stored as text" in columns["s"].reason
        assert "--categorical s" in columns["s"].reason
    zips = table(zip=["02139", "10001", "94105", "60601"] * 10)
    assert infer_columns(zips, ["zip"])[0].kind == "numeric"
    kwargs = {"target": "y", "epochs": 3, "verbose": False, "seed": 0, "hidden": [8]}
    from_numbers = torchwork.train(pd.read_csv(tmp_path / "n.csv"), **kwargs)
    from_text = torchwork.train(as_text_frame, **kwargs)
    assert from_text.task == "regression"
    np.testing.assert_allclose(from_text.predict(numbers), from_numbers.predict(numbers), rtol=1e-6, atol=1e-9)


def test_parquet_durations_are_seconds_and_decimals_floats(tmp_path):
    """Item 1: Parquet ``duration`` and ``decimal`` columns (and the same pandas types in Python)."""
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    from torchwork.data.preprocess import as_float
    from torchwork.data.readers import read_table

    ms = np.array([1500, 250, 0, 86_400_000] * 10)
    cents = [decimal.Decimal(f"{v}.{v % 100:02d}") for v in range(40)]
    pq.write_table(pa.table({"t": pa.array(ms, pa.duration("ms")), "d": pa.array(cents, pa.decimal128(9, 2)),
                             "y": np.arange(40.0)}), tmp_path / "p.parquet")  # fmt: skip
    t = read_table(tmp_path / "p.parquet")
    kinds = {c.name: (c.kind, c.reason) for c in infer_columns(t, ["t", "d"])}
    assert kinds == {"t": ("numeric", "durations, in seconds"), "d": ("numeric", "decimal numbers, as floats")}
    np.testing.assert_array_equal(as_float(t.frame["t"], "t", t.source, t.where), ms / 1000)
    np.testing.assert_array_equal(as_float(t.frame["d"], "d", t.source, t.where), [float(c) for c in cents])
    assert infer_task(t, ["t"], "auto") == ("regression", None)  # a duration target: seconds, a regression


@pytest.mark.parametrize(
    ("values", "what"),
    [
        ([[1, 2], [3]], "lists"),
        ([{"k": 1}, {"k": 2}], "dicts"),
        ([(1, 2), (3, 4)], "tuples"),
        ([{1}, {2}], "sets"),
        ([np.zeros(2), np.ones(2)], "arrays"),
        ([1 + 2j, 3j], "complex numbers"),
        (np.array([1 + 2j, 3j]), "complex numbers"),
        ([b"\xff\xfe", b"ok"], "bytes that are not UTF-8"),
        (["a", [1]], "lists"),  # one list among text
    ],
)
def test_python_objects_no_column_holds_are_refused_naming_the_column(values, what):
    """Item 17: lists, dicts, tuples, bytes or complex numbers raised raw TypeError/UnicodeDecodeError/IndexError."""
    import torchwork

    n = 40
    column = (list(values) * n)[:n] if not isinstance(values, np.ndarray) else np.resize(values, n)
    frame = pd.DataFrame({"a": np.arange(n, dtype=float), "c": pd.Series(list(column), dtype=column.dtype
                          if isinstance(column, np.ndarray) else object), "y": np.arange(n) * 0.5})  # fmt: skip
    t = Table(frame, "X")
    with pytest.raises(InputError, match=rf"X: column 'c'.*{what.split()[0]}"):
        infer_columns(t, ["a", "c"])
    with pytest.raises(InputError, match=rf"X: column 'c'.*{what.split()[0]}"):
        infer_task(t, ["c"], "auto")
    for options in ({}, {"drop_missing": True}):  # every path through the Python API: one InputError
        with pytest.raises(InputError, match=r"column 'c'"):
            torchwork.train(frame, target="y", epochs=1, verbose=False, **options)
        with pytest.raises(InputError, match=r"column 'c'"):
            torchwork.train(frame.drop(columns="y"), target="c", epochs=1, verbose=False, **options)


def test_utf8_bytes_are_text_matched_as_text():
    """Item 6: a Parquet ``binary`` column (bytes in pandas) of UTF-8 text is text, its categories decoded."""
    frame = pd.DataFrame({"b": [b"red", b"blue", b"caf\xc3\xa9"] * 10})
    t = Table(frame, "p.parquet")
    assert infer_columns(t, ["b"])[0].kind == "categorical"
    encoder = CategoryEncoder.fit("b", frame["b"])
    assert sorted(encoder.categories) == ["blue", "café", "red"]
    codes, _, unknown = encoder.encode(pd.Series(["red", "café", "green"]))  # the same values as text
    assert unknown == 1 and codes[0] > 0 and codes[1] > 0


def test_values_too_small_for_float32_are_refused_as_too_large_ones_are():
    """Item 14: targets of ~1e-300 became 0 in float32 (1e300 was refused); metrics then said RMSE 0, R² 1."""
    from torchwork.data.preprocess import as_float

    t = table(y=[1e-300 * (1 + i) for i in range(30)])
    with pytest.raises(InputError, match=r"t.csv: column 'y', row 1: 1e-300 is too small for float32"):
        as_float(t.frame["y"], "y", t.source, t.where)
    with pytest.raises(InputError, match=r"does not fit in float32"):
        as_float(pd.Series([1e300]), "y", "t.csv", lambda i: f"row {i + 1}")
    kept = as_float(pd.Series([0.0, -0.0, 1.2e-38, -3e-30, np.nan]), "y", "t.csv", lambda i: f"row {i + 1}")
    np.testing.assert_array_equal(kept[:4], [0.0, 0.0, 1.2e-38, -3e-30])  # zero and normal float32 values stay


def test_no_rows_is_said_so_even_without_a_target():
    """Item 16: ``predict`` on a header-only file said "every row has a missing target"."""
    from torchwork.data.tables import rows_to_use

    empty = Table(pd.DataFrame({"a": pd.Series([], dtype=float), "y": pd.Series([], dtype=float)}), "h.csv")
    for targets in ([], ["y"]):
        with pytest.raises(InputError, match=r"^h.csv: no rows$"):
            rows_to_use(empty, targets, ["a"], drop_missing=False)


def test_zero_rows_decode_to_zero_predictions():
    """Item 3: an empty chunk's outputs decoded to "cannot reshape array of size 0"."""
    pre = Preprocessor([], {}, {}, TargetEncoder("regression", ["y"], [1.0], [2.0], outputs=1))
    assert pre.decode(np.empty((0, 1), np.float32)).shape == (0, 1)
    pre.target = TargetEncoder("classification", ["y"], classes=["a", "b", "c"], outputs=3)
    assert pre.decode(np.empty((0, 3), np.float32)).shape == (0, 3)
    pre.target = TargetEncoder("classification", ["y"], classes=["a", "b"], outputs=1)
    assert pre.decode(np.empty(0, np.float32)).shape == (0, 2)


def test_a_misspelt_column_gets_the_closest_names_and_a_long_list_is_shortened():
    """Issue 18 item 26: --target powr said only "no column 'powr'", and listed every column."""
    t = table(hour=[1, 2], cloud_cover=[0.1, 0.2], wind_speed=[3, 4], power=[5, 6])
    for flag, kwargs, wrong, right in [
        ("--target", {"target": ["powr"]}, "powr", "power"),
        ("--features", {"target": ["power"], "features": ["hour", "clod"]}, "clod", "cloud_cover"),
        ("--exclude", {"target": ["power"], "exclude": ["Hour"]}, "Hour", "hour"),
    ]:
        with pytest.raises(InputError) as err:
            pick_columns(t, **kwargs)
        assert f"no column {wrong!r} ({flag}); did you mean {right!r}?" in str(err.value)
    with pytest.raises(InputError, match=r"--numeric names 'wnd', which is not a feature column; did you mean 'wind_"):
        infer_columns(t, ["hour", "wind_speed"], numeric=["wnd"])
    wide = Table(pd.DataFrame(np.zeros((1, 500)), columns=[f"c{i}" for i in range(500)]), "wide.csv")
    with pytest.raises(InputError) as err:
        pick_columns(wide, ["y"])
    assert str(err.value).endswith(f"columns are {listed([f'c{i}' for i in range(12)])}, ... and 488 more")
    assert len(str(err.value)) < 300


def test_exclude_leaves_columns_out_of_the_features():
    """Issue 18 item 26: dropping one column took retyping every other one with --features."""
    t = table(id=[1, 2], a=[1.0, 2.0], b=[3.0, 4.0], y=[0.0, 1.0])
    assert pick_columns(t, ["y"], exclude=["id"]) == (["y"], ["a", "b"])
    assert pick_columns(t, ["y"], exclude=["id", "b"]) == (["y"], ["a"])
    for kwargs, message in [
        ({"exclude": ["y"]}, "--exclude names 'y', the target"),
        ({"features": ["a", "id"], "exclude": ["id"]}, "--features and --exclude both name 'id'"),
        ({"exclude": ["id", "a", "b"]}, "no feature columns (every column is a target or excluded)"),
    ]:
        with pytest.raises(InputError) as err:
            pick_columns(t, ["y"], **kwargs)
        assert message in str(err.value)
