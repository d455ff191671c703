"""Bad input: one line on stderr naming the file, column, row or flag and the rule; exit 2;
no run folder left behind, not even a partial one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.support import assert_one_line_error, cli, run_cli


@pytest.fixture
def good_csv(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(60, 3)), columns=["a", "b", "c"])
    df["y"] = df.a - 2 * df.b + 0.5
    path = tmp_path / "good.csv"
    df.to_csv(path, index=False)
    return path


def train_fails(tmp_path, *args, fragments=(), code=2):
    out = tmp_path / "run"
    result = cli("train", *args, "--out", str(out), "--epochs", "3", "-q")
    line = assert_one_line_error(result, *fragments, code=code)
    assert not out.exists() and not (tmp_path / "run.partial").exists()
    return line


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.slow
def test_missing_file_in_a_new_process(tmp_path):
    """One case end to end through a real process: no traceback, exit 2, nothing written."""
    out = tmp_path / "run"
    result = run_cli("train", str(tmp_path / "nope.csv"), "--target", "y", "--out", str(out))
    assert_one_line_error(result, "nope.csv", "no such file")
    assert not out.exists() and not (tmp_path / "run.partial").exists()


def test_missing_file(tmp_path):
    train_fails(tmp_path, str(tmp_path / "nope.csv"), "--target", "y", fragments=("nope.csv", "no such file"))


def test_empty_file(tmp_path):
    path = write(tmp_path, "empty.csv", "")
    train_fails(tmp_path, str(path), "--target", "y", fragments=("empty.csv", "empty file"))


def test_header_only(tmp_path):
    path = write(tmp_path, "header.csv", "a,y\n")
    train_fails(tmp_path, str(path), "--target", "y", fragments=("header.csv", "no rows"))


def test_a_directory(tmp_path):
    (tmp_path / "adir.csv").mkdir()
    train_fails(tmp_path, str(tmp_path / "adir.csv"), "--target", "y", fragments=("adir.csv", "is a folder"))


def numbers_csv(tmp_path, name, column, row, value, rows=30):
    """A CSV of numbers (a, b, y) with ``value`` put in ``column`` at 0-based data row ``row``."""
    lines = ["a,b,y"] + [f"{i},{2 * i + 1},{3 * i - 2}" for i in range(rows)]
    cells = lines[row + 1].split(",")
    cells["aby".index(column)] = value
    lines[row + 1] = ",".join(cells)
    return write(tmp_path, name, "\n".join(lines) + "\n")


def test_a_word_among_numbers_names_column_and_row(tmp_path):
    path = numbers_csv(tmp_path, "text.csv", "b", 1, "five")
    train_fails(tmp_path, str(path), "--target", "y",
                fragments=("text.csv", "column 'b'", "row 2 (line 3)", "'five' is not a number",
                           "--categorical b"))  # fmt: skip
    path = numbers_csv(tmp_path, "target.csv", "y", 4, "n/a?")
    train_fails(tmp_path, str(path), "--target", "y",
                fragments=("column 'y'", "row 5 (line 6)", "'n/a?' is not a number",
                           "--task classification"))  # fmt: skip


def test_missing_values_are_filled_and_counted(tmp_path):
    rng = np.random.default_rng(1)
    df = pd.DataFrame(rng.normal(size=(80, 3)), columns=["a", "b", "y"])
    df.loc[[3, 10, 11], "a"] = np.nan
    df.loc[[5, 6], "y"] = np.nan
    df.to_csv(tmp_path / "gaps.csv", index=False)
    result = cli("train", str(tmp_path / "gaps.csv"), "--target", "y", "--out", str(tmp_path / "run"), "--epochs", "2")
    assert result.returncode == 0, result.stderr
    assert "dropped 2 rows with a missing target" in result.stderr
    import json

    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["data"]["rows_used"] == 78 and info["data"]["dropped"] == {"missing_target": 2}
    assert info["data"]["filled"] == {"a": 3}
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    a = next(c for c in meta["preprocessing"]["columns"] if c["name"] == "a")
    train_rows = df.dropna(subset=["y"])  # the split is shuffled: the median is of the training rows
    assert a["indicator"] is True and train_rows["a"].min() <= a["fill"] <= train_rows["a"].max()


def test_infinite_value(tmp_path):
    path = write(tmp_path, "inf.csv", "a,y\n1,3\n4,inf\n7,9\n")
    train_fails(tmp_path, str(path), "--target", "y", fragments=("column 'y'", "row 2 (line 3)", "infinite value"))


def test_value_too_large_for_float32(tmp_path):
    path = write(tmp_path, "big.csv", "a,y\n1,3\n1e300,6\n7,9\n")  # found before the rows are split
    train_fails(tmp_path, str(path), "--target", "y", fragments=("column 'a'", "row 2", "does not fit in float32"))


def test_ragged_rows_name_the_line(tmp_path):
    path = write(tmp_path, "ragged.csv", "a,b,y\n1,2,3\n4,5,6\n7,8\n1,2,3\n")
    train_fails(tmp_path, str(path), "--target", "y",
                fragments=("ragged.csv", "line 4 has 2 fields but the header has 3"))  # fmt: skip


def test_too_many_fields(tmp_path):
    path = write(tmp_path, "wide.csv", "a,b,y\n1,2,3\n4,5,6,7\n")
    train_fails(tmp_path, str(path), "--target", "y", fragments=("line 3 has 4 fields but the header has 3",))


def test_missing_target_column_lists_columns(good_csv, tmp_path):
    train_fails(tmp_path, str(good_csv), "--target", "price",
                fragments=("no column 'price'", "columns are 'a', 'b', 'c', 'y'"))  # fmt: skip


def test_missing_feature_column(good_csv, tmp_path):
    train_fails(tmp_path, str(good_csv), "--target", "y", "--features", "a,zz", fragments=("no column 'zz'",))


def test_duplicated_column(tmp_path):
    path = write(tmp_path, "dup.csv", "a,b,a,y\n1,2,3,4\n5,6,7,8\n")
    train_fails(tmp_path, str(path), "--target", "y", fragments=("dup.csv", "duplicated column 'a'"))


def test_target_is_also_a_feature(good_csv, tmp_path):
    train_fails(tmp_path, str(good_csv), "--target", "y", "--features", "a,y",
                fragments=("column 'y' is the target and also a feature",))  # fmt: skip


def test_too_few_rows_for_the_split(tmp_path):
    path = write(tmp_path, "tiny.csv", "a,y\n1,2\n3,4\n")
    train_fails(tmp_path, str(path), "--target", "y", fragments=("too few rows for the split", "2 rows"))


@pytest.mark.parametrize(
    ("flag", "value", "fragments"),
    [
        ("--epochs", "0", ("--epochs", "must be >= 1, got 0")),
        ("--lr", "-1", ("--lr", "must be > 0")),
        ("--val", "1.5", ("--val", "fraction in [0, 1)")),
        ("--batch-size", "abc", ("--batch-size: expected an integer, got 'abc'",)),
        ("--hidden", "64,x", ("--hidden", "expected an integer, got 'x'")),
        ("--dropout", "1.0", ("--dropout", "fraction in [0, 1)")),
        ("--device", "tpu", ("--device 'tpu'", "expected one of")),
    ],
)
def test_bad_flag_value(good_csv, tmp_path, flag, value, fragments):
    out = tmp_path / "run"
    result = cli("train", str(good_csv), "--target", "y", "--out", str(out), "-q", flag, value)
    assert_one_line_error(result, *fragments)
    assert not out.exists() and not (tmp_path / "run.partial").exists()


@pytest.mark.parametrize(
    ("flag", "value", "fragments"),
    [
        ("--model", "transformer", ("unknown model 'transformer'", "valid names: linear, mlp")),
        ("--loss", "hinge", ("unknown loss 'hinge'", "l1 (mae, l1loss), mse (l2, mseloss)")),
        ("--optimizer", "nadam", ("unknown optimizer 'nadam'", "sgd, adam, adamw, rmsprop, lbfgs")),
        ("--scheduler", "warm", ("unknown scheduler 'warm'", "cosine")),
        ("--activation", "swoosh", ("unknown activation 'swoosh'", "relu")),
        ("--model", "os:system", ("model 'os:system' is not an nn.Module subclass",)),
        ("--model", "nosuchmodule:Net", ("cannot import module 'nosuchmodule'",)),
    ],
)
def test_unknown_names(good_csv, tmp_path, flag, value, fragments):
    train_fails(tmp_path, str(good_csv), "--target", "y", flag, value, fragments=fragments)


def test_config_file_errors_name_the_key(good_csv, tmp_path):
    bad = write(tmp_path, "run.toml", 'target = "y"\nepochz = 3\n')
    train_fails(tmp_path, str(good_csv), "--config", str(bad), fragments=("run.toml: key 'epochz'", "unknown option"))
    bad = write(tmp_path, "run.yaml", "target: y\nlr: fast\n")
    train_fails(tmp_path, str(good_csv), "--config", str(bad), fragments=("run.yaml: key 'lr'", "expected a number"))
    bad = write(tmp_path, "broken.toml", "target = \n")
    train_fails(tmp_path, str(good_csv), "--config", str(bad), fragments=("broken.toml: not valid TOML",))
    bad = write(tmp_path, "list.yaml", "- 1\n- 2\n")
    train_fails(tmp_path, str(good_csv), "--config", str(bad), fragments=("list.yaml: expected a table",))


def test_no_target_lists_the_columns(good_csv, tmp_path):
    train_fails(tmp_path, str(good_csv), fragments=("no target", "--target", "columns are 'a', 'b', 'c', 'y'"))
    parquet = tmp_path / "good.parquet"
    pd.read_csv(good_csv).to_parquet(parquet)  # streamed: the columns from the file's first rows
    train_fails(tmp_path, str(parquet), "--stream", fragments=("no target", "columns are 'a', 'b', 'c', 'y'"))


def test_a_misspelt_target_gets_a_did_you_mean(good_csv, tmp_path):
    fragments = ("no column 'Y' (--target); did you mean 'y'?", "columns are 'a', 'b', 'c', 'y'")
    train_fails(tmp_path, str(good_csv), "--target", "Y", fragments=fragments)


def test_exclude_drops_a_column_from_flags_the_config_file_and_python(good_csv, tmp_path):
    """Issue 18 item 26: --exclude (a flag, a config key, a keyword of torchwork.train); the ID hint names it;
    predict and evaluate accept the excluded column in new rows."""
    import torchwork

    df = pd.read_csv(good_csv)
    df["id"] = [f"row{i}" for i in range(len(df))]
    path = tmp_path / "ids.csv"
    df.to_csv(path, index=False)
    line = train_fails(tmp_path, str(path), "--target", "y", fragments=("column 'id' looks like an identifier",))
    assert "--exclude id" in line and "--features" not in line
    assert cli("train", str(path), "--target", "y", "--exclude", "id", "--epochs", "2", "-q",
               "--out", str(tmp_path / "flag")).returncode == 0  # fmt: skip
    write(tmp_path, "run.toml", 'data = "ids.csv"\ntarget = "y"\nexclude = ["id", "c"]\nepochs = 2\n')
    assert cli("train", "--config", str(tmp_path / "run.toml"), "-q", "--out", str(tmp_path / "file")).returncode == 0
    run = torchwork.train(df, target="y", exclude=["id"], epochs=2, verbose=False)
    assert run.features == ["a", "b", "c"] and len(run.predict(df)) == len(df)
    assert torchwork.load_run(tmp_path / "flag").features == ["a", "b", "c"]
    assert torchwork.load_run(tmp_path / "file").features == ["a", "b"]
    out = tmp_path / "p.csv"
    assert cli("predict", str(tmp_path / "flag"), str(path), "--out", str(out)).returncode == 0
    assert list(pd.read_csv(out)["id"]) == list(df["id"])  # passed through
    result = cli("predict", str(tmp_path / "file"), str(path), "--out", str(tmp_path / "q.csv"), "--chunk-rows", "7")
    assert result.returncode == 0, result.stderr
    df["extra"] = 1.0  # a column the run never saw is still refused
    assert_one_line_error(cli("predict", str(tmp_path / "flag"), *_csv(tmp_path, df)), "unexpected columns 'extra'")


def _csv(tmp_path, df):
    df.to_csv(tmp_path / "new.csv", index=False)
    return [str(tmp_path / "new.csv"), "--out", str(tmp_path / "new-p.csv")]


def test_unknown_file_type(tmp_path):
    path = write(tmp_path, "data.xlsx", "a,b")
    train_fails(tmp_path, str(path), "--target", "y", fragments=("unknown file type '.xlsx'",))


def test_binary_garbage_as_csv(tmp_path):
    path = tmp_path / "junk.csv"
    path.write_bytes(b"\x00\x01\x02\xff\xfe\x00garbage")
    train_fails(tmp_path, str(path), "--target", "y", fragments=("junk.csv",))


def test_npy_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    train_fails(tmp_path, str(path), "--target", "0", fragments=("objects.npy", "refused", "never loads pickles"))


def test_existing_out_needs_overwrite(good_csv, tmp_path):
    (tmp_path / "run").mkdir()
    result = cli("train", str(good_csv), "--target", "y", "--out", str(tmp_path / "run"), "-q", "--epochs", "2")
    assert_one_line_error(result, "exists; pass --overwrite")


def test_drop_missing_drops_and_says_how_many(tmp_path):
    rng = np.random.default_rng(1)
    df = pd.DataFrame(rng.normal(size=(80, 2)), columns=["a", "y"])
    df.loc[[3, 10, 11], "a"] = np.nan
    path = tmp_path / "gaps.csv"
    df.to_csv(path, index=False)
    result = cli("train", str(path), "--target", "y", "--out", str(tmp_path / "run"), "--epochs", "2",
                 "--drop-missing")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "dropped 3 rows with missing values (--drop-missing)" in result.stderr
    import json

    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["data"]["rows_used"] == 77 and info["data"]["dropped"] == {"missing_target": 0, "missing_value": 3}


def test_nested_option_tables_are_checked_before_any_data_is_read(good_csv, tmp_path):
    bad = write(tmp_path, "opt.toml", 'target = "y"\n[optimizer_args]\nmomentun = 0.9\n')
    train_fails(tmp_path, str(good_csv), "--config", str(bad),
                fragments=("opt.toml: key 'optimizer_args'", "takes no option 'momentun'"))  # fmt: skip
    bad = write(tmp_path, "sch.toml", 'target = "y"\nscheduler = "step"\n[scheduler_args]\nstep_size = "x"\n')
    train_fails(tmp_path, str(good_csv), "--config", str(bad),
                fragments=("sch.toml: key 'scheduler_args'.step_size: expected an integer, got 'x'",))  # fmt: skip
    bad = write(tmp_path, "mod.toml", 'target = "y"\n[model_args]\nhidden = [4]\n')
    train_fails(tmp_path, str(good_csv), "--config", str(bad), fragments=("give 'hidden' as its own option",))


def test_line_numbers_are_left_out_when_lines_are_not_rows(tmp_path):
    body = "".join(f"{i},{i + 1}\n" for i in range(20))
    path = write(tmp_path, "blank.csv", "a,y\n1,2\n\n3,x\n" + body)
    line = train_fails(tmp_path, str(path), "--target", "y", fragments=("column 'y', row 2: 'x' is not a number",))
    assert "(line" not in line


# ------------------------------------------------- columns and classes (issue 9)
def test_an_identifier_column_is_refused_with_a_hint(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"id": [f"cust-{i:05d}" for i in range(200)], "a": rng.normal(size=200)})
    df["y"] = 2 * df.a
    df.to_csv(tmp_path / "ids.csv", index=False)
    train_fails(tmp_path, str(tmp_path / "ids.csv"), "--target", "y",
                fragments=("column 'id' looks like an identifier", "200 distinct values in 200 rows",
                           "--exclude id", "--categorical id"))  # fmt: skip


def test_decimal_commas_get_a_hint(tmp_path):
    lines = ["a;y"] + [f"{i},5;{i}" for i in range(30)]
    path = write(tmp_path, "eu.csv", "\n".join(lines) + "\n")
    train_fails(tmp_path, str(path), "--target", "y", fragments=("column 'a'", "decimal comma", "--decimal ,"))


def labels_csv(tmp_path, labels, name="labels.csv"):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=len(labels)), "label": labels})
    df.to_csv(tmp_path / name, index=False)
    return tmp_path / name


def test_a_target_with_one_class(tmp_path):
    path = labels_csv(tmp_path, ["yes"] * 40)
    train_fails(tmp_path, str(path), "--target", "label", fragments=("one class ('yes')", "nothing to classify"))


def test_a_class_too_small_for_a_stratified_split(tmp_path):
    path = labels_csv(tmp_path, ["cat"] * 30 + ["dog"] * 30 + ["emu"])
    train_fails(tmp_path, str(path), "--target", "label",
                fragments=("class 'emu' has 1 row", "stratified split into 2 parts"))  # fmt: skip


def test_more_classes_than_the_limit(tmp_path):
    path = labels_csv(tmp_path, [f"c{i % 8}" for i in range(80)])
    train_fails(tmp_path, str(path), "--target", "label", "--max-classes", "5",
                fragments=("8 classes, more than --max-classes 5",))  # fmt: skip


def test_regression_on_a_text_target(tmp_path):
    path = labels_csv(tmp_path, ["cat", "dog"] * 20)
    train_fails(tmp_path, str(path), "--target", "label", "--task", "regression",
                fragments=("--task regression needs numbers", "'label' holds labels"))  # fmt: skip


def test_a_label_never_seen_in_training_is_named_by_evaluate(tmp_path):
    path = labels_csv(tmp_path, ["cat", "dog"] * 30)
    assert (
        cli("train", str(path), "--target", "label", "--epochs", "2", "--out", str(tmp_path / "run"), "-q").returncode
        == 0
    )
    other = labels_csv(tmp_path, ["cat", "dog", "ferret", "dog"], name="new.csv")
    assert_one_line_error(cli("evaluate", str(tmp_path / "run"), str(other)),
                          "column 'label', row 3", "label 'ferret' was never seen in training",
                          "'cat', 'dog'")  # fmt: skip


# ---------------------------------------------------------------- issue 18: data edges
def test_numbers_stored_as_text_in_parquet_train(tmp_path):
    """Item 1's reproducer: a float column stored as strings gave a 48-line IndexError traceback."""
    a = np.random.default_rng(0).normal(size=300)
    pd.DataFrame({"a": a, "s": a.astype(str), "y": 2 * a}).to_parquet(tmp_path / "numstr.parquet")
    result = cli("train", str(tmp_path / "numstr.parquet"), "--target", "y", "--epochs", "2", "--out",
                 str(tmp_path / "r1"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "s numeric (numbers stored as text" in result.stdout + result.stderr


def test_a_parquet_binary_column_that_is_not_text_is_one_line(tmp_path):
    """Item 6: a Parquet ``binary`` column gave a UnicodeDecodeError traceback."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    a = np.random.default_rng(0).normal(size=100)
    pq.write_table(pa.table({"a": a, "b": pa.array([b"\xff\x00", b"ok"] * 50, pa.binary()), "y": 2 * a}),
                   tmp_path / "b.parquet")  # fmt: skip
    train_fails(tmp_path, str(tmp_path / "b.parquet"), "--target", "y",
                fragments=("b.parquet", "column 'b'", "not UTF-8 text"))  # fmt: skip
    train_fails(tmp_path, str(tmp_path / "b.parquet"), "--target", "y", "--drop-missing",
                fragments=("b.parquet", "column 'b'", "not UTF-8 text"))  # fmt: skip


def test_a_target_too_small_for_float32_is_one_line(tmp_path):
    """Item 14: a target of ~1e-300 became 0 and the run said RMSE 0 | R² 1."""
    a = np.random.default_rng(0).normal(size=200)
    pd.DataFrame({"a": a, "y": 1e-300 * (2 + a)}).to_csv(tmp_path / "tiny.csv", index=False)
    train_fails(tmp_path, str(tmp_path / "tiny.csv"), "--target", "y",
                fragments=("tiny.csv", "column 'y'", "line 2", "too small for float32"))  # fmt: skip


@pytest.mark.parametrize("chunked", [False, True])
def test_predict_on_a_header_only_file_says_no_rows(good_csv, tmp_path, chunked):
    """Item 16: predict needs no target, so a header-only file has "no rows", not "a missing target"."""
    assert (
        cli("train", str(good_csv), "--target", "y", "--epochs", "2", "-q", "--out", str(tmp_path / "r")).returncode
        == 0
    )
    for header in ("a,b,c,y\n", "a,b,c\n"):
        path = write(tmp_path, "header.csv", header)
        extra = ["--chunk-rows", "10"] if chunked else []
        out = tmp_path / "p.csv"
        result = cli("predict", str(tmp_path / "r"), str(path), "--out", str(out), *extra)
        line = assert_one_line_error(result, "header.csv", "no rows")
        assert "missing target" not in line and not out.exists()
