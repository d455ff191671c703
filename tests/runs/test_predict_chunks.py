"""``predict`` on a file a chunk of rows at a time: the same predictions as reading it whole."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import torchwork
from tests.support import assert_one_line_error, cli


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "city": rng.choice(["Oslo", "Lima"], n)})
    out["y"] = 2 * out["a"] - out["b"] + (out["city"] == "Lima") + 0.1 * rng.normal(size=n)
    out["label"] = np.where(out["y"] > 0.5, "high", "low")
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chunks")
    data = frame(600)
    regression = torchwork.train(data.drop(columns="label"), target="y", out=tmp / "reg", epochs=5, verbose=False)
    classifier = torchwork.train(data.drop(columns="y"), target="label", out=tmp / "cls", epochs=5, verbose=False)
    new = frame(1000, seed=1).drop(columns=["y", "label"])
    new.loc[::17, "a"] = np.nan  # filled in as in training
    new.loc[5, "city"] = "Pune"  # never seen: the unknown code
    new["note"] = ['said "hi", then left' if i % 50 == 0 else "plain" for i in range(len(new))]  # passes through
    path = tmp / "new.csv"
    new.to_csv(path, index=False)
    new.to_parquet(tmp / "new.parquet", index=False)
    return tmp, regression, classifier, new


@pytest.mark.parametrize("run_name", ["reg", "cls"])
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_chunks_give_what_the_whole_file_gives(runs, run_name, suffix):
    tmp, *_ = runs
    data = str(tmp / f"new{suffix}")
    whole = cli("predict", str(tmp / run_name), data, "--out", str(tmp / f"whole-{run_name}{suffix}"),
                "--allow-extra-columns", "--overwrite")  # fmt: skip
    chunked = cli("predict", str(tmp / run_name), data, "--out", str(tmp / f"chunked-{run_name}{suffix}"),
                  "--allow-extra-columns", "--chunk-rows", "64", "--overwrite")  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    assert chunked.returncode == 0, chunked.stderr
    # the same notes: 59 values filled in, one unknown city
    assert chunked.stderr.replace("chunked-", "whole-") == whole.stderr
    assert "1 row with a value of 'city' never seen" in chunked.stderr
    read = pd.read_csv if suffix == ".csv" else pd.read_parquet
    a, b = read(tmp / f"whole-{run_name}{suffix}"), read(tmp / f"chunked-{run_name}{suffix}")
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-12)
    assert list(b.columns[:4]) == ["a", "b", "city", "note"]


def test_a_bad_value_in_a_later_chunk_is_one_line_and_leaves_no_file(runs):
    tmp, *_ = runs
    bad = pd.read_csv(tmp / "new.csv")
    bad["a"] = bad["a"].astype(object)
    bad.loc[700, "a"] = "n/a?"
    bad.to_csv(tmp / "bad.csv", index=False)
    out = tmp / "bad-out.csv"
    result = cli("predict", str(tmp / "reg"), str(tmp / "bad.csv"), "--out", str(out), "--chunk-rows", "100",
                 "--allow-extra-columns")  # fmt: skip
    assert_one_line_error(result, "bad.csv", "n/a?")
    assert not out.exists() and not list(tmp.glob(".bad-out.csv*"))


def test_chunk_rows_needs_an_output_file(runs):
    tmp, *_ = runs
    assert_one_line_error(cli("predict", str(tmp / "reg"), str(tmp / "new.csv"), "--chunk-rows", "10"), "--out")


def test_convert_writes_parquet_that_streams(tmp_path):
    data = frame(3000, seed=2)
    data["count"] = np.arange(3000)  # integers: stored as floats (a later block may hold a gap)
    data.to_csv(tmp_path / "t.csv", index=False, sep=";", decimal=",")
    result = cli("convert", str(tmp_path / "t.csv"), str(tmp_path / "t.parquet"), "--decimal", ",")
    assert result.returncode == 0, result.stderr
    back = pd.read_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(back, data.astype({"count": "float64"}), check_exact=False, rtol=1e-15)
    run = torchwork.train(str(tmp_path / "t.parquet"), target="y", features=["a", "b", "city"], stream=True,
                          epochs=1, verbose=False)  # fmt: skip
    assert run.info["data"]["streamed"]
    again = cli("convert", str(tmp_path / "t.csv"), str(tmp_path / "t.parquet"), "--decimal", ",")
    assert_one_line_error(again, "exists", "--overwrite")
    assert_one_line_error(cli("convert", str(tmp_path / "t.csv"), str(tmp_path / "t.txt")), ".parquet")


# ---------------------------------------------------------------- issue 18: lines, not "after row 0"
@pytest.mark.parametrize("out_suffix", [".csv", ".parquet"])
def test_a_bad_value_is_named_by_its_line_in_any_chunk(runs, out_suffix):
    """Item 12: predict --chunk-rows 100 with a bad value at line 1501 said "after row 0"."""
    tmp, *_ = runs
    data = frame(2000, seed=3).drop(columns=["y", "label"])
    data["a"] = data["a"].astype(object)
    data.loc[1499, "a"] = "oops"  # data row 1500: line 1501 after the header
    data.to_csv(tmp / "late.csv", index=False)
    out = tmp / f"late-out{out_suffix}"
    result = cli("predict", str(tmp / "reg"), str(tmp / "late.csv"), "--out", str(out), "--chunk-rows", "100")
    assert_one_line_error(result, "late.csv", "line 1501 (row 1500)", "column 'a'", "'oops' is not a number")
    assert not out.exists() and not list(tmp.glob(".late-out*"))


def test_convert_refuses_what_is_not_csv_in_one_line(tmp_path):
    """Item 9: ``convert x.parquet out.parquet`` printed a 41-line ArrowInvalid traceback."""
    frame(50).to_parquet(tmp_path / "x.parquet")
    result = cli("convert", str(tmp_path / "x.parquet"), str(tmp_path / "out.parquet"))
    assert_one_line_error(result, "x.parquet", "Parquet file", "convert reads CSV")
    (tmp_path / "x.csv").write_bytes((tmp_path / "x.parquet").read_bytes())  # Parquet bytes named .csv
    assert_one_line_error(cli("convert", str(tmp_path / "x.csv"), str(tmp_path / "out.parquet")), "x.csv", "binary")
    (tmp_path / "ragged.csv").write_text("a,b\n1,2,3\n")
    assert_one_line_error(cli("convert", str(tmp_path / "ragged.csv"), str(tmp_path / "out.parquet")),
                          "ragged.csv", "not a readable CSV file")  # fmt: skip
    assert not (tmp_path / "out.parquet").exists()


def test_convert_names_the_line_of_a_bad_value_after_the_first_block_and_nothing_else(tmp_path):
    """Item 10: a bad row after the first block named "after row 143216" and then printed a
    ``ParquetWriter.__del__`` traceback; it is line 150001."""
    from tests.support import run_cli

    rng = np.random.default_rng(0)
    data = pd.DataFrame({"a": rng.normal(size=200_000), "b": rng.normal(size=200_000), "y": np.arange(200_000) * 0.5})
    data["a"] = data["a"].astype(object)
    data.loc[149_999, "a"] = "oops"  # data row 150000: line 150001
    data.to_csv(tmp_path / "big.csv", index=False)
    before = len(data.iloc[:149_999].to_csv(index=False))
    assert before > 4 << 20  # the bad value is beyond the first block (4 MiB), where the types come from
    result = run_cli("convert", str(tmp_path / "big.csv"), str(tmp_path / "big.parquet"), timeout=120)
    assert_one_line_error(result, "big.csv", "line 150001 (row 150000)", "column 'a'", "'oops'", "first")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv"]  # no output, no temporary file
