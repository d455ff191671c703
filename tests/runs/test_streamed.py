"""Training on data streamed from disk: exact statistics, exact metrics, bounded memory, exact resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import torchwork
from tests.support import ENV, ROOT, assert_one_line_error, run_cli
from torchwork.data.stream import parts_of
from torchwork.evaluation.metrics import classification_metrics, regression_metrics

SPLIT = {"seed": 0, "val": 0.15, "test": 0.15}  # a test part asked for (the default has none): all three checked


def table(n: int, seed: int = 0, classes: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    city = rng.choice(["Oslo", "Lima", "Pune"], n)
    y = X @ [2.0, -1.0, 0.5] + np.where(city == "Lima", 1.5, 0.0) + np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=n)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["city"] = city
    frame["y"] = np.where(y > 0.3, "high", "low") if classes else y
    return frame


def write(path, frame, row_group=500):
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=row_group)
    return path


def split_rows(n: int) -> dict[str, np.ndarray]:
    """The documented split of a streamed table: each row by the hash of its number."""
    parts = parts_of(np.arange(n), SPLIT["seed"], SPLIT["val"], SPLIT["test"])
    return {name: np.flatnonzero(parts == code) for name, code in (("train", 0), ("val", 1), ("test", 2))}


@pytest.fixture(scope="module")
def streamed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("streamed")
    frame = table(4000)
    path = write(tmp / "t.parquet", frame)
    run = torchwork.train(str(path), target="y", out=tmp / "run", stream=True, epochs=3, test=SPLIT["test"],
                          verbose=False)  # fmt: skip
    return frame, run, tmp


def test_the_run_says_it_streamed_and_splits_by_row_hash(streamed):
    frame, run, _ = streamed
    rows = split_rows(len(frame))
    assert run.info["split"] == {p: len(r) for p, r in rows.items()}
    assert run.info["data"]["streamed"] and run.info["data"]["rows"] == 4000
    assert any(n.startswith("streamed: 4000 rows in 8 chunks") for n in run.info["notes"])


def test_scalers_and_vocabularies_come_from_every_training_row(streamed):
    frame, run, _ = streamed
    train = frame.iloc[split_rows(len(frame))["train"]]
    for name in ("a", "b", "c"):
        enc = run.pre.numeric[name]
        assert enc.mean == pytest.approx(train[name].mean(), rel=1e-12)
        assert enc.scale == pytest.approx(train[name].std(ddof=0), rel=1e-10)
    assert run.pre.target.mean[0] == pytest.approx(train["y"].mean(), rel=1e-12)
    assert sorted(run.pre.categorical["city"].categories) == ["Lima", "Oslo", "Pune"]


def test_least_squares_is_solved_exactly_on_every_training_row(streamed):
    frame, run, _ = streamed
    train = frame.iloc[split_rows(len(frame))["train"]]
    design = run.pre.design(run.pre.inputs(train).X)
    A = np.hstack([design, np.ones((len(design), 1))])
    coef, *_ = np.linalg.lstsq(A, run.pre.targets(train).astype(np.float64), rcond=None)
    ls = run.baselines.fitted["least_squares"]
    # the one-hot columns of a category always seen sum to one, like the intercept: the solution is
    # not unique, its fitted values are
    np.testing.assert_allclose(ls.predict(design), A @ coef, rtol=1e-9, atol=1e-9)


# The streamed pass predicts in chunks of another size than run.predict does: float32 kernels may
# round a row's prediction differently by batch shape (an ulp, 6e-8 relative, on some CPUs), and the
# float64 sums then differ in far later digits. 1e-6 relative allows that on any CPU; a row left
# out or counted twice among ~1000 moves a metric by ~1e-3.
FLOAT32_ROWS = 1e-6


def test_metrics_count_every_row_of_each_part_exactly(streamed):
    frame, run, tmp = streamed
    for part, rows in split_rows(len(frame)).items():
        rows_frame = frame.iloc[rows]
        expected = regression_metrics(rows_frame[["y"]].to_numpy(), run.predict(rows_frame.drop(columns="y")))
        for key, value in expected.items():
            assert run.metrics["model"][part][key] == pytest.approx(value, rel=FLOAT32_ROWS), (part, key)
    saved = json.loads((tmp / "run" / "metrics.json").read_text())
    assert saved["rows"] == run.info["split"]


def test_a_streamed_classifier_reports_exact_metrics_and_roc_auc_on_the_sample(tmp_path):
    frame = table(3000, seed=1, classes=True)
    path = write(tmp_path / "c.parquet", frame)
    run = torchwork.train(str(path), target="y", stream=True, epochs=2, test=SPLIT["test"], verbose=False)
    rows = frame.iloc[split_rows(len(frame))["test"]]
    truth = np.array([run.classes.index(v) for v in rows["y"]])
    expected = classification_metrics(truth, run.predict_proba(rows.drop(columns="y")))
    got = run.metrics["model"]["test"]
    for key in ("accuracy", "balanced_accuracy", "f1_macro", "log_loss"):
        assert got[key] == pytest.approx(expected[key], rel=FLOAT32_ROWS), key
    assert got["confusion_matrix"] == expected["confusion_matrix"]
    assert got["roc_auc_rows"] == len(rows)  # the test part is smaller than its sample: every row
    assert got["roc_auc"] == pytest.approx(expected["roc_auc"], rel=FLOAT32_ROWS)


@pytest.mark.slow
def test_a_folder_of_parquet_files_streams_and_the_memory_budget_chooses_streaming(tmp_path):
    frame = table(2000, seed=2)
    folder = tmp_path / "parts"
    folder.mkdir()
    write(folder / "part-0.parquet", frame.iloc[:1200])
    write(folder / "part-1.parquet", frame.iloc[1200:])
    result = run_cli("train", str(folder), "--target", "y", "--out", str(tmp_path / "r"), "--epochs", "1")
    assert result.returncode == 0, result.stderr
    assert "streamed: 2000 rows in 5 chunks" in result.stderr  # row groups of 500: 3 + 2
    single = write(tmp_path / "one.parquet", table(40_000, seed=2), row_group=10_000)  # about 3 MB in memory
    budget = run_cli("train", str(single), "--target", "y", "--out", str(tmp_path / "s"), "--epochs", "1",
                     "--memory-budget", "1MiB", "--batch-size", "1024")  # fmt: skip
    assert budget.returncode == 0, budget.stderr
    assert "streamed: 40000 rows" in budget.stderr


@pytest.mark.slow
def test_what_streaming_cannot_do_is_one_line(tmp_path):
    csv = tmp_path / "t.csv"
    table(50).to_csv(csv, index=False)
    assert_one_line_error(run_cli("train", str(csv), "--target", "y", "--stream"), "torchwork convert")
    path = write(tmp_path / "t.parquet", table(300))
    lbfgs = run_cli(
        "train", str(path), "--target", "y", "--stream", "--optimizer", "lbfgs", "--out", str(tmp_path / "x")
    )
    assert_one_line_error(lbfgs, "lbfgs needs every row at once")
    assert not (tmp_path / "x").exists()


# The peak of this process's own memory: VmHWM (ru_maxrss would count the parent's pages, which
# a forked child holds until its exec).
PEAK = """
import sys
import torchwork
torchwork.train(sys.argv[1], target="y", stream=True, epochs=1, batch_size=4096, model="linear", verbose=False)
status = open("/proc/self/status").read().split("VmHWM:")[1]
print(int(status.split()[0]) * 1024)
"""


def _peak(path) -> int:
    out = subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True, env=ENV, cwd=ROOT,
                         timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak from /proc/self/status")
def test_peak_memory_does_not_grow_with_the_data(tmp_path):
    """Two tables 16x apart (6 MB and 102 MB of numbers), each streamed in a fresh process.

    Read into memory, the larger would take about 2x its 102 MB more than the smaller; streamed,
    the difference is the allocators' noise (Arrow's pool, the C heap): a few tens of MB at most.
    """
    peaks = {}
    for rows in (100_000, 1_600_000):
        rng = np.random.default_rng(0)
        X = rng.normal(size=(rows, 7))
        frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(7)])
        frame["y"] = X @ np.arange(7) + rng.normal(size=rows)
        path = write(tmp_path / f"{rows}.parquet", frame, row_group=50_000)
        peaks[rows] = min(_peak(path) for _ in range(2))  # the allocators' noise is one-sided
    data_growth = 1_500_000 * 8 * 8  # bytes of numbers added
    growth = peaks[1_600_000] - peaks[100_000]
    assert growth < 0.35 * data_growth, (peaks, growth / data_growth)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["truncate", "rewrite"])
def test_data_changed_while_streaming_is_one_line_and_the_run_resumes_once_restored(tmp_path, mode):
    """Issue 18 items 7 and 13: a Parquet file truncated in place while it streamed gave a traceback
    (``OSError: File too short``) and lost the partial run; one rewritten with the same schema was not
    noticed, and run.json named the data from before the change. Now: one line naming the file, the
    partial run and its checkpoint kept; with the file restored, the run resumes bit for bit."""
    path = write(tmp_path / "t.parquet", table(3000, seed=3), row_group=400)
    original = path.read_bytes()
    args = ["train", str(path), "--target", "y", "--stream", "--epochs", "4", "--batch-size", "128",
            "--checkpoint-every", "1", "--early-stopping", "0", "-q"]  # fmt: skip
    full = run_cli(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    changed = subprocess.run([sys.executable, "-m", "tests.data_change_driver", mode, "2", str(path), *args,
                              "--out", str(tmp_path / "k")], cwd=ROOT, env=ENV, capture_output=True, text=True,
                             timeout=600)  # fmt: skip
    assert path.read_bytes() != original  # the driver did change it
    line = assert_one_line_error(changed, str(path), "changed while the run was reading it",
                                 "the run is kept in", "restore the data", "torchwork resume")  # fmt: skip
    assert "bytes, was" in line or "was modified (same size)" in line
    assert (tmp_path / "k.partial" / "checkpoints" / "last.safetensors").is_file()
    assert not (tmp_path / "k").exists()
    path.write_bytes(original)
    resumed = run_cli("resume", str(tmp_path / "k"), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "full" / "model.safetensors").read_bytes() == (tmp_path / "k" / "model.safetensors").read_bytes()
    run_json = json.loads((tmp_path / "k" / "run.json").read_text())
    assert run_json["data"]["sha256"] == json.loads((tmp_path / "full" / "run.json").read_text())["data"]["sha256"]


@pytest.mark.slow
def test_a_killed_streamed_run_resumes_bit_identically(tmp_path):
    path = write(tmp_path / "t.parquet", table(3000, seed=3), row_group=400)
    args = ["train", str(path), "--target", "y", "--stream", "--epochs", "4", "--batch-size", "128",
            "--checkpoint-every", "1", "--early-stopping", "0", "-q"]  # fmt: skip
    full = run_cli(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    killed = subprocess.run([sys.executable, "-m", "tests.kill_driver", "after-save", "2", *args, "--out",
                             str(tmp_path / "k")], cwd=ROOT, env=ENV, capture_output=True, text=True,
                            timeout=600)  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    resumed = run_cli("resume", str(tmp_path / "k"), "-q")
    assert resumed.returncode == 0, resumed.stderr
    a = (tmp_path / "full" / "model.safetensors").read_bytes()
    b = (tmp_path / "k" / "model.safetensors").read_bytes()
    assert a == b
