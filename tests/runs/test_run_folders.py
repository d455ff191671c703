"""Run folders never lose a user's data: real processes racing, killed while finishing, folders that
appear, --overwrite on folders that are not runs, predictions that would replace a file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import torchwork
from tests.support import ENV, ROOT, assert_one_line_error, cli
from torchwork.core.errors import IntegrityError
from torchwork.files.checkpoint import load_checkpoint
from torchwork.files.integrity import verify_manifest

pytestmark = pytest.mark.slow

BASE = ["--target", "y", "--batch-size", "16", "--hidden", "8", "-q"]
TRAIN = [*BASE, "--epochs", "6"]
SLOW = [*BASE, "--epochs", "400", "--early-stopping", "0"]  # long enough to race against


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["y"] = X @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=200)
    frame.to_csv(tmp_path / "d.csv", index=False)
    return tmp_path / "d.csv"


def driver(mode: str, n: int, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.kill_driver", mode, str(n), *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600, **kw)  # fmt: skip


def popen(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "torchwork", *args], cwd=cwd or ROOT, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)  # fmt: skip


def training_into(out: Path, data: Path) -> subprocess.Popen:
    """A slow training into ``out``, once it has claimed ``out.partial`` (and is still running)."""
    proc = popen("train", str(data), *SLOW, "--out", str(out))
    deadline = time.monotonic() + 60
    while not Path(f"{out}.partial").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, proc.communicate()[1]
    return proc


def weights(run: Path) -> bytes:
    return (run / "model.safetensors").read_bytes()


def test_two_trainings_into_one_folder_one_wins_the_other_names_it(data, tmp_path):
    out = tmp_path / "conc"
    first = training_into(out, data)
    second = cli("train", str(data), *TRAIN, "--out", str(out))
    line = assert_one_line_error(second, f"{out}.partial", "being written by process", code=75)
    assert f"process {first.pid} " in line
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    verify_manifest(out)  # the winner's folder is whole
    assert not Path(f"{out}.partial").exists()


def test_simultaneous_starts_never_share_a_folder(data, tmp_path):
    """Started together: with one --out, exactly one succeeds; with the default folder, both do, apart."""
    for trial in range(3):
        out = tmp_path / f"same-{trial}"
        procs = [popen("train", str(data), *TRAIN, "--out", str(out)) for _ in range(2)]
        errors = [p.communicate(timeout=300)[1] for p in procs]
        assert sorted(p.returncode for p in procs) == [0, 75], errors
        verify_manifest(out)
    procs = [popen("train", str(data), *TRAIN, cwd=tmp_path) for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all((r / "manifest.json").exists() for r in runs)


def test_a_folder_that_appears_during_training_is_never_replaced(data, tmp_path):
    out = tmp_path / "run"
    proc = training_into(out, data)
    out.mkdir()
    (out / "thesis.txt").write_text("my thesis")  # a user's folder, made while the run trains
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "appeared while the run was trained" in err and "Traceback" not in err
    assert (out / "thesis.txt").read_text() == "my thesis" and sorted(p.name for p in out.iterdir()) == ["thesis.txt"]
    (out / "thesis.txt").rename(tmp_path / "thesis.txt")
    out.rmdir()
    done = cli("resume", str(out), "-q")  # the finished run was kept: it is only moved into place
    assert done.returncode == 0, done.stderr
    verify_manifest(out)


def test_overwrite_replaces_only_runs_and_never_the_data(data, tmp_path):
    mydocs = tmp_path / "mydocs"
    (mydocs / "sub").mkdir(parents=True)
    (mydocs / "thesis.txt").write_text("mine")
    assert_one_line_error(cli("train", str(data), *TRAIN, "--out", str(mydocs), "--overwrite"),
                          "is not a torchwork run", "replaces only runs")  # fmt: skip
    assert (mydocs / "thesis.txt").read_text() == "mine" and (mydocs / "sub").is_dir()
    datadir = tmp_path / "datadir"
    datadir.mkdir()
    (datadir / "d.csv").write_bytes(data.read_bytes())
    assert_one_line_error(cli("train", str(datadir / "d.csv"), *TRAIN, "--out", str(datadir), "--overwrite"),
                          "is inside it")  # fmt: skip
    assert (datadir / "d.csv").exists()
    run = tmp_path / "run"
    assert cli("train", str(data), *TRAIN, "--out", str(run)).returncode == 0
    (run / "notes.txt").write_text("my notes")  # a run a user has added to is not torchwork's alone any more
    assert_one_line_error(cli("train", str(data), *TRAIN, "--out", str(run), "--overwrite"),
                          "holds files torchwork did not write (notes.txt)")  # fmt: skip
    (run / "notes.txt").unlink()
    assert cli("train", str(data), *TRAIN, "--seed", "3", "--out", str(run), "--overwrite").returncode == 0
    assert json.loads((run / "config.json").read_text())["seed"] == 3


@pytest.mark.parametrize("out", [".", "/", ""])
def test_out_that_names_no_folder_is_one_line(data, out):
    assert_one_line_error(cli("train", str(data), *TRAIN, "--out", out, "--overwrite"), "give a folder name")


@pytest.fixture
def reference(data, tmp_path):
    out = tmp_path / "reference"
    assert driver("none", 0, "train", str(data), *TRAIN, "--out", str(out)).returncode == 0
    return out


@pytest.mark.parametrize("n", [1, 4, 9])  # model.safetensors; the first plot; the manifest (the last file)
def test_killed_while_finishing_then_resume_writes_it_out_without_training(data, tmp_path, reference, n):
    out = tmp_path / f"run-{n}"
    killed = driver("finish", n, "train", str(data), *TRAIN, "--out", str(out))
    assert killed.returncode == -signal.SIGKILL
    _, extra = load_checkpoint(Path(f"{out}.partial") / "checkpoints" / "last.safetensors")
    assert extra["finished"] is True
    resumed = driver("step", 1, "resume", str(out))  # would die at a first training step: there is none
    assert resumed.returncode == 0, resumed.stderr
    assert "training had finished" in resumed.stderr
    assert weights(out) == weights(reference)
    assert (out / "metrics.json").read_text() == (reference / "metrics.json").read_text()


def test_sigint_while_finishing_keeps_the_run(data, tmp_path, monkeypatch):
    import torchwork.runs.folder as folder

    real = folder.write_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(folder, "write_run", interrupted)
    monkeypatch.setattr("torchwork.runs.lifecycle.write_run", interrupted)
    out = tmp_path / "run"
    result = cli("train", str(data), *TRAIN, "--out", str(out))
    line = assert_one_line_error(result, "interrupted by SIGINT", "training had finished", code=130)
    assert f"torchwork resume {out}" in line
    monkeypatch.setattr("torchwork.runs.lifecycle.write_run", real)
    assert cli("resume", str(out), "-q").returncode == 0 and (out / "manifest.json").exists()


def test_killed_between_the_swap_and_the_clean_up_of_overwrite(data, tmp_path):
    out = tmp_path / "run"
    assert cli("train", str(data), *TRAIN, "--out", str(out)).returncode == 0
    old = weights(out)
    killed = driver("swapped", 0, "train", str(data), *TRAIN, "--seed", "5", "--out", str(out), "--overwrite")
    assert killed.returncode == -signal.SIGKILL
    verify_manifest(out)  # RUN_DIR holds a whole run: the new one
    assert weights(out) != old and json.loads((out / "config.json").read_text())["seed"] == 5
    leftover = Path(f"{out}.partial")  # the old run, whole, under the partial name
    assert weights(leftover) == old
    again = cli("train", str(data), *TRAIN, "--seed", "6", "--out", str(out), "--overwrite")
    assert again.returncode == 0, again.stderr
    assert not leftover.exists()


def test_predict_out_never_replaces_a_file_silently(tmp_path, sensors_run, sensors_csv):
    new = tmp_path / "new.csv"
    new.write_bytes(sensors_csv.read_bytes())
    out = tmp_path / "pred.csv"
    out.write_text("precious")
    out.chmod(0o600)
    assert_one_line_error(cli("predict", str(sensors_run), str(new), "--out", str(out)), "exists; pass --overwrite")
    assert out.read_text() == "precious"
    assert cli("predict", str(sensors_run), str(new), "--out", str(out), "--overwrite").returncode == 0
    assert out.stat().st_mode & 0o777 == 0o600 and "prediction" in out.read_text()
    assert_one_line_error(cli("predict", str(sensors_run), str(new), "--out", str(new), "--overwrite"),
                          "is the input")  # fmt: skip
    assert new.read_bytes() == sensors_csv.read_bytes()


def test_the_bytes_checked_are_the_bytes_loaded(tmp_path, sensors_csv):
    """A racing writer swaps model.safetensors with another run's: a load never returns the other's weights."""
    a, b = tmp_path / "a", tmp_path / "b"
    for out, seed in ((a, 0), (b, 1)):
        torchwork.train(str(sensors_csv), target="power", epochs=2, seed=seed, out=out, verbose=False)
    mine, theirs = weights(a), weights(b)
    target = a / "model.safetensors"
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            for payload in (theirs, mine):
                tmp = a / ".swap.tmp"
                tmp.write_bytes(payload)
                os.replace(tmp, target)

    swapper = threading.Thread(target=swap)
    swapper.start()
    loaded = refused = 0
    expected = torchwork.load_run(b).model.state_dict()  # the other run's weights, never to be seen
    try:
        for _ in range(300):
            try:
                run = torchwork.load_run(a)
            except IntegrityError:
                refused += 1
                continue
            loaded += 1
            assert any(not v.equal(expected[k]) for k, v in run.model.state_dict().items())
    finally:
        stop.set()
        swapper.join()
    assert loaded > 0 and refused > 0  # the race really happened, both ways
