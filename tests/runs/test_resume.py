"""Exact resume after a real SIGKILL: between epochs, mid-epoch, in the middle of writing a
checkpoint, several times in a row, and after SIGTERM; with shuffled mini-batches, dropout,
a scheduler and early stopping. The resumed run's final weights are bit-identical to a run
that was never interrupted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support import ENV, ROOT

pytestmark = pytest.mark.slow  # real processes, killed and resumed

# 300 rows -> 210 train rows -> 7 batches of 32 per epoch; checkpoints every 5 steps and
# every 2 epochs, so kills land at epoch boundaries and inside epochs.
TRAIN = ["--target", "y", "--epochs", "9", "--batch-size", "32", "--dropout", "0.2", "--scheduler", "cosine",
         "--hidden", "32,32", "--early-stopping", "50", "--checkpoint-every", "2", "--checkpoint-every-steps", "5",
         "-q"]  # fmt: skip


def driver(mode: str, n: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tests.kill_driver", mode, str(n), *args],
        cwd=ROOT, env=ENV, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    rng = np.random.default_rng(3)
    X = rng.uniform(-2, 2, size=(300, 3))
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    df["y"] = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.normal(size=300)
    df.to_csv(tmp / "data.csv", index=False)
    reference = driver("none", 0, "train", str(tmp / "data.csv"), *TRAIN, "--out", str(tmp / "reference"))
    assert reference.returncode == 0, reference.stderr
    return tmp


def assert_same_run(a: Path, b: Path) -> None:
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "model.json").read_text() == (b / "model.json").read_text()
    assert (a / "metrics.json").read_text() == (b / "metrics.json").read_text()
    ha, hb = (pd.read_csv(p / "history.csv").drop(columns="seconds") for p in (a, b))
    pd.testing.assert_frame_equal(ha, hb, check_exact=True)
    ia, ib = (json.loads((p / "run.json").read_text()) for p in (a, b))
    assert ia["epochs_run"] == ib["epochs_run"] and ia["best_epoch"] == ib["best_epoch"]


@pytest.mark.parametrize(
    ("mode", "n"),
    [
        ("after-save", 1),  # after the first step checkpoint (step 5, inside epoch 0)
        ("after-save", 4),  # around the first epoch-boundary checkpoint
        ("in-write", 3),  # mid-write: the temporary file is there, the rename is not
        ("step", 33),  # between checkpoints, mid-epoch: resume goes back to step 30
    ],
)
def test_sigkill_then_resume_is_bit_identical(data, mode, n):
    out = data / f"run-{mode}-{n}"
    killed = driver(mode, n, "train", str(data / "data.csv"), *TRAIN, "--out", str(out))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    partial = Path(f"{out}.partial")
    assert partial.is_dir() and not out.exists()
    assert not [p for p in partial.rglob("last.safetensors") if p.stat().st_size == 0]
    resumed = driver("none", 0, "resume", str(out), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert not partial.exists()
    assert_same_run(data / "reference", out)


def test_killed_again_while_resuming(data):
    out = data / "run-twice"
    assert driver("after-save", 2, "train", str(data / "data.csv"), *TRAIN, "--out", str(out)).returncode == -9
    assert driver("after-save", 3, "resume", str(out), "-q").returncode == -9
    assert driver("in-write", 2, "resume", str(out), "-q").returncode == -9
    assert driver("none", 0, "resume", str(out), "-q").returncode == 0
    assert_same_run(data / "reference", out)


def start_training(data: Path, out: Path) -> subprocess.Popen:
    """``torchwork train`` in the background; returns once its first checkpoint exists (or it ended)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "torchwork", "train", str(data / "data.csv"), *TRAIN, "--out", str(out)],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    checkpoint = Path(f"{out}.partial") / "checkpoints" / "last.safetensors"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


def test_external_kill_9_at_an_unplanned_moment(data):
    out = data / "run-external"
    proc = start_training(data, out)
    time.sleep(0.05)
    proc.kill()  # SIGKILL, wherever it is
    proc.communicate()
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be killed")
    assert driver("none", 0, "resume", str(out), "-q").returncode == 0
    assert_same_run(data / "reference", out)


def test_sigterm_writes_a_checkpoint_and_says_how_to_resume(data):
    out = data / "run-term"
    proc = start_training(data, out)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "interrupted by SIGTERM" in stderr and f"torchwork resume {out}" in stderr
    assert driver("none", 0, "resume", str(out), "-q").returncode == 0
    assert_same_run(data / "reference", out)


def test_resume_refuses_changed_data(data, tmp_path):
    csv = tmp_path / "data.csv"
    csv.write_bytes((data / "data.csv").read_bytes())
    out = tmp_path / "run"
    assert driver("after-save", 1, "train", str(csv), *TRAIN, "--out", str(out)).returncode == -9
    with csv.open("a") as f:
        f.write("0,0,0,0\n")
    result = driver("none", 0, "resume", str(out))
    assert result.returncode == 2 and "changed since the run started" in result.stderr
    assert "Traceback" not in result.stderr


def test_train_over_an_unfinished_run_points_to_resume(data, tmp_path):
    out = tmp_path / "run"
    assert driver("after-save", 1, "train", str(data / "data.csv"), *TRAIN, "--out", str(out)).returncode == -9
    again = driver("none", 0, "train", str(data / "data.csv"), *TRAIN, "--out", str(out))
    assert again.returncode == 2 and f"torchwork resume {out}" in again.stderr and "--overwrite" in again.stderr


def test_the_partial_path_works_for_inspect_and_resume(data, tmp_path):
    """The path an interrupt prints (RUN_DIR) and RUN_DIR.partial both work; inspect shows how far it got."""
    out = tmp_path / "run"
    assert driver("after-save", 2, "train", str(data / "data.csv"), *TRAIN, "--out", str(out)).returncode == -9
    partial = Path(f"{out}.partial")
    for path in (out, partial):
        shown = driver("none", 0, "inspect", str(path))
        assert shown.returncode == 0, shown.stderr
        assert "(unfinished)" in shown.stdout and "steps (checkpoint" in shown.stdout
        assert f"continue:   torchwork resume {out}" in shown.stdout
    assert "the run is not finished" in driver("none", 0, "predict", str(out), str(data / "data.csv")).stderr
    assert driver("none", 0, "resume", str(partial), "-q").returncode == 0
    assert_same_run(data / "reference", out)


def test_trained_with_progress_killed_and_resumed_quietly_is_the_uninterrupted_run(data):
    """Callback state is keyed by name: the progress display's presence does not shift early
    stopping's state (its best weights and counters) when a run is resumed with ``-q``."""
    out = data / "run-progress"
    loud = [arg for arg in TRAIN if arg != "-q"]
    killed = driver("after-save", 4, "train", str(data / "data.csv"), *loud, "--out", str(out))
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "epoch" in killed.stdout + killed.stderr  # the progress display was on
    assert driver("none", 0, "resume", str(out), "-q").returncode == 0
    assert_same_run(data / "reference", out)
