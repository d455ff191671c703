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
from torchwork.data.tables import Table, infer_columns, infer_task


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
