"""What a new user trips over in the first hour (issue 10), each as it was met.

Only the trip-ups that no other test covers are here; the others are tested where they belong:
random bytes as a CSV in a new process (``tests/data/test_readers.py``), ``resume`` and
``inspect`` of ``RUN`` and ``RUN.partial`` (``tests/runs/test_resume.py``), ``Run.predict``'s and
``Regressor.predict``'s shape (``tests/runs/test_runs.py``, ``tests/test_estimator.py``) and the
type of ``Trainer.fit``'s ``history["epoch"]`` (``tests/training/test_loop.py``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import torchwork
from tests.support import ENV, ROOT, assert_one_line_error, cli, run_cli

pytestmark = pytest.mark.slow  # a new user's first hour: whole runs, new processes

COMMANDS = ("demo", "train", "predict", "evaluate", "inspect", "resume", "export")


def linear_csv(path: Path, n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Three features and two targets, ``y`` and ``z``, each a line of them plus a little noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["y"] = X @ [1.0, -2.0, 0.5] + 3.0 + 0.1 * rng.normal(size=n)
    frame["z"] = X @ [0.5, 0.0, -1.0] - 1.0 + 0.1 * rng.normal(size=n)
    frame.to_csv(path, index=False)
    return frame


# ----------------------------------------------------------- the command line
def test_a_bare_torchwork_prints_its_usage_on_several_lines_and_exits_0():
    result = run_cli()
    assert result.returncode == 0, (result.returncode, result.stderr)
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) >= 10, result.stdout
    assert lines[0].startswith("Usage: torchwork"), lines[0]
    assert "error" not in result.stdout.lower()
    listed = result.stdout.split("Commands:", 1)[1].splitlines()
    names = [line.split()[0] for line in listed if line.startswith("  ") and line.split()]
    assert set(COMMANDS) <= set(names), names


@pytest.mark.parametrize(
    ("twice", "flag"),
    [
        (("--epochs", "3", "--epochs", "4"), "--epochs"),
        (("--target", "y", "--target", "z"), "--target"),
        (("--lr", "0.1", "--lr=0.2"), "--lr"),
        (("--shuffle", "--no-shuffle"), "--shuffle"),
        (("-q", "--quiet"), "-q"),
    ],
    ids=["epochs", "target", "lr", "shuffle", "quiet"],
)
def test_a_single_valued_flag_given_twice_is_an_error_naming_it(tmp_path, twice, flag):
    linear_csv(tmp_path / "d.csv")
    args = ["train", str(tmp_path / "d.csv"), "--out", str(tmp_path / "run"), *twice]
    if "--target" not in twice:
        args += ["--target", "y"]
    assert_one_line_error(cli(*args), flag, "given 2 times")
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_predict_refuses_a_flag_given_twice(tmp_path, sensors_run, sensors_csv):
    result = cli("predict", str(sensors_run), str(sensors_csv), "--out", str(tmp_path / "a.csv"),
                 "--out", str(tmp_path / "b.csv"))  # fmt: skip
    assert_one_line_error(result, "--out", "given 2 times")
    assert not list(tmp_path.iterdir())


def test_a_comma_list_of_targets_trains_one_model_for_all_of_them(tmp_path):
    frame = linear_csv(tmp_path / "d.csv")
    result = cli("train", str(tmp_path / "d.csv"), "--target", "y,z", "--model", "linear", "--epochs", "20",
                 "--out", str(tmp_path / "run"), "-q")  # fmt: skip
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["preprocessing"]["target"] == ["y", "z"]
    assert meta["preprocessing"]["features"] == ["a", "b", "c"]
    assert meta["architecture"]["args"]["out_features"] == 2
    assert json.loads((tmp_path / "run" / "config.json").read_text())["target"] == ["y", "z"]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"]["val"]["r2"] > 0.95  # both lines are learnt, not one of them
    run = torchwork.load_run(tmp_path / "run")
    predictions = run.predict(frame[["a", "b", "c"]])
    assert predictions.shape == (len(frame), 2)
    for j, name in enumerate(("y", "z")):
        assert np.corrcoef(predictions[:, j], frame[name])[0, 1] > 0.99, name
    shown = cli("predict", str(tmp_path / "run"), str(tmp_path / "d.csv"))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0] == "a,b,c,y,z,y_pred,z_pred"


def test_an_array_with_target_minus_one_trains_on_its_last_column():
    rng = np.random.default_rng(0)
    array = rng.normal(size=(120, 4))
    array[:, 3] = array[:, :3] @ [1.0, -1.0, 2.0] + 0.5
    run = torchwork.train(array, target=-1, epochs=3, verbose=False)
    assert run.meta["preprocessing"]["target"] == ["3"]
    assert run.meta["preprocessing"]["features"] == ["0", "1", "2"]
    same = torchwork.train(array, target=3, epochs=3, verbose=False)
    for name, value in same.model.state_dict().items():
        assert torch.equal(run.model.state_dict()[name], value), name
    assert run.predict(array[:5, :3]).shape == (5,)


# ------------------------------------------------------------ your own model
class ScriptNet(nn.Module):
    """A model "defined in a script": its ``__module__`` is made ``__main__`` below."""

    def __init__(self, in_features: int, out_features: int, width: int = 6) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, width), nn.Tanh(), nn.Linear(width, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture
def script_class(monkeypatch):
    monkeypatch.setattr(ScriptNet, "__module__", "__main__")
    return ScriptNet


def test_passing_your_class_to_train_is_consent_to_use_it(tmp_path, script_class):
    frame = linear_csv(tmp_path / "d.csv")
    with pytest.warns(UserWarning, match=r"load_run\(path, model="):
        torchwork.train(frame.drop(columns="z"), target="y", model=script_class, epochs=2, verbose=False)


def test_a_class_from_a_script_warns_at_training_and_loads_when_passed_back(tmp_path, script_class):
    frame = linear_csv(tmp_path / "d.csv").drop(columns="z")
    with pytest.warns(UserWarning, match=r"'__main__:ScriptNet' cannot be rebuilt .*load_run\(path, model="):
        run = torchwork.train(frame, target="y", model=script_class, epochs=3, out=tmp_path / "run", verbose=False)
    assert json.loads((tmp_path / "run" / "model.json").read_text())["architecture"]["class"] == "__main__:ScriptNet"
    with pytest.raises(torchwork.InputError, match=r"model=<the class>"):
        torchwork.load_run(tmp_path / "run", trust_model_code=True)
    loaded = torchwork.load_run(tmp_path / "run", model=script_class)
    assert type(loaded.model) is script_class
    rows = frame[["a", "b", "c"]].iloc[:7]
    np.testing.assert_array_equal(loaded.predict(rows), run.predict(rows))
    assert loaded.predict(rows).shape == (7,)


def test_the_warning_points_at_your_call_to_train(tmp_path, script_class):
    frame = linear_csv(tmp_path / "d.csv").drop(columns="z")
    with pytest.warns(UserWarning, match="cannot be rebuilt") as record:
        torchwork.train(frame, target="y", model=script_class, epochs=1, verbose=False)
    assert [w.filename for w in record if "cannot be rebuilt" in str(w.message)] == [__file__]


def test_a_class_importable_from_its_module_trains_without_a_warning(tmp_path, recwarn):
    from tests.custom_models import TinyNet

    frame = linear_csv(tmp_path / "d.csv").drop(columns="z")
    torchwork.train(frame, target="y", model=TinyNet, epochs=2, verbose=False)
    assert not [w for w in recwarn if "cannot be rebuilt" in str(w.message)]


MODULE = """
from torch import nn


class Net(nn.Module):
    def __init__(self, in_features, out_features, width=5):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(in_features, width), nn.Tanh(), nn.Linear(width, out_features))

    def forward(self, x):
        return self.body(x)
"""


def test_predict_finds_a_model_module_in_the_current_folder(tmp_path, monkeypatch):
    """``--trust-model-code`` imports ``mymodule:Net`` from the folder you run in, without ``PYTHONPATH=.``."""
    work = tmp_path / "work"
    work.mkdir()
    name = f"first_hour_{uuid.uuid4().hex[:8]}"
    (work / f"{name}.py").write_text(textwrap.dedent(MODULE))
    linear_csv(work / "d.csv")
    monkeypatch.chdir(work)
    try:
        trained = cli(
            "train", "d.csv", "--target", "y", "--model", f"{name}:Net", "--epochs", "2", "--out", "run", "-q"
        )
    finally:
        sys.modules.pop(name, None)
    assert trained.returncode == 0, trained.stderr
    assert json.loads((work / "run" / "model.json").read_text())["architecture"]["class"] == f"{name}:Net"
    env = {"PYTHONPATH": str(ROOT)}  # the repository, for tests and an uninstalled torchwork; not `work`
    assert str(work) not in ENV.get("PYTHONPATH", "").split(os.pathsep)
    launchers = [[sys.executable, "-m", "torchwork"]]
    script = Path(sys.executable).with_name("torchwork")
    if script.exists():
        launchers.append([str(script)])  # the console script, as a user runs it
    for launcher in launchers:
        result = subprocess.run([*launcher, "predict", "run", "d.csv", "--trust-model-code"], cwd=work,
                                capture_output=True, text=True, env={**os.environ, **env}, timeout=300)  # fmt: skip
        assert result.returncode == 0, (launcher, result.stderr)
        assert result.stdout.splitlines()[0] == "a,b,c,y,z,prediction" and len(result.stdout.splitlines()) == 121
    # From another folder the module is not there: one line that names it (the folder is what makes it work).
    elsewhere = run_cli("predict", str(work / "run"), str(work / "d.csv"), "--trust-model-code", cwd=tmp_path)
    assert_one_line_error(elsewhere, f"cannot import module {name!r}")


# ------------------------------------------------------------------ messages
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_swapped_arguments_get_a_hint_at_the_order(sensors_run, sensors_csv, command):
    assert_one_line_error(cli(command, str(sensors_csv), str(sensors_run)), "not a run folder", "RUN_DIR then DATA")


# ---------------------------------------------------------- real-world files
def test_a_latin1_file_is_one_line_and_reads_with_its_encoding(tmp_path):
    rng = np.random.default_rng(0)
    cities = ["München", "Köln", "Zürich", "Göteborg"]
    rows = ["stadt,temperatur,wert"] + [
        f"{cities[i % 4]},{t:.4f},{2 * t + i % 4:.4f}" for i, t in enumerate(rng.normal(size=120))
    ]
    path = tmp_path / "städte.csv"
    path.write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    result = run_cli("train", str(path), "--target", "wert", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert "Exception ignored" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert_one_line_error(result, "städte.csv", "line 2", "0xFC", "--encoding")
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()
    ok = cli("train", str(path), "--target", "wert", "--encoding", "latin-1", "--model", "linear", "--epochs", "5",
             "--out", str(tmp_path / "run"), "-q")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    columns = json.loads((tmp_path / "run" / "model.json").read_text())["preprocessing"]["columns"]
    assert sorted(columns[0]["categories"]) == sorted(cities)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["model"]["val"]["r2"] > 0.99


def test_semicolons_and_decimal_commas_train_with_their_options(tmp_path):
    rng = np.random.default_rng(1)
    ab = rng.normal(size=(150, 2))
    rows = ["a;b;y"] + [f"{a:.4f};{b:.2f};{a - 2 * b + 1000:.3f}".replace(".", ",") for a, b in ab]
    (tmp_path / "eu.csv").write_text("\n".join(rows) + "\n")
    assert_one_line_error(
        cli("train", str(tmp_path / "eu.csv"), "--target", "y", "--out", str(tmp_path / "x")), "--decimal"
    )
    result = cli("train", str(tmp_path / "eu.csv"), "--target", "y", "--delimiter", ";", "--decimal", ",",
                 "--model", "linear", "--out", str(tmp_path / "run"), "-q")  # fmt: skip
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["delimiter"], config["decimal"]) == (";", ",")
    pre = json.loads((tmp_path / "run" / "model.json").read_text())["preprocessing"]
    assert [c["kind"] for c in pre["columns"]] == ["numeric", "numeric"]
    # 1,5 read as 1.5 (not 15 or 1.5e4): the training rows' statistics are those of the numbers written
    assert 0.5 < pre["columns"][0]["scale"] < 2 and abs(pre["columns"][0]["mean"]) < 0.5
    assert pre["targets"]["mean"][0] == pytest.approx(1000, abs=1)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"]["val"]["r2"] > 0.999


# -------------------------------------------------------------------- epochs
def test_epochs_are_counted_from_1_and_the_best_one_is_named_the_same_everywhere(tmp_path):
    """The best epoch of run.json is a row of history.csv, the weights restored are that epoch's, and the
    console, inspect and the report name it by the same number."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(80, 3))
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["y"] = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 + 0.5 * rng.normal(size=80)  # noisy: the MLP overfits
    frame.to_csv(tmp_path / "d.csv", index=False)
    result = cli("train", str(tmp_path / "d.csv"), "--target", "y", "--batch-size", "8", "--lr", "0.01",
                 "--early-stopping", "1", "--out", str(tmp_path / "run"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "run"
    info = json.loads((run_dir / "run.json").read_text())
    history = pd.read_csv(run_dir / "history.csv")
    best, epochs = info["best_epoch"], info["epochs_run"]
    assert info["stopped_early"] and 1 <= best < epochs, info
    assert history["epoch"].tolist() == list(range(1, epochs + 1))
    assert history["epoch"].dtype == np.int64
    # best_epoch names the row with the lowest validation loss (an improvement must beat the best by 0.1%)
    row = history.loc[history["epoch"] == best].iloc[0]
    lowest = history.loc[history["val_loss"].idxmin()]
    assert row["val_loss"] <= lowest["val_loss"] * (1 + 1e-3), (best, int(lowest["epoch"]))
    assert (history.loc[history["epoch"] < best, "val_loss"] > row["val_loss"]).all()
    # ... and the weights restored are that epoch's: the validation MSE of the run is that row's loss
    # (history.csv holds it in standardized units)
    scale = json.loads((run_dir / "model.json").read_text())["preprocessing"]["targets"]["scale"][0]
    val_mse = json.loads((run_dir / "metrics.json").read_text())["model"]["val"]["mse"]
    assert val_mse == pytest.approx(row["val_loss"] * scale**2, rel=1e-5)
    # the console's "epoch N/M" is history.csv's epoch N
    printed = re.findall(r"^epoch (\d+)/(\d+) \| .*val_loss ([0-9.e+-]+)", result.stderr, flags=re.M)
    assert printed and printed[0][0] == "1" and int(printed[-1][0]) == epochs
    for n, total, loss in printed:
        assert total == "1000"
        assert float(loss) == pytest.approx(history.loc[history["epoch"] == int(n), "val_loss"].item(), rel=1e-5)
    shown = cli("inspect", str(run_dir))
    assert f"{epochs} epochs on cpu, best epoch {best} (stopped early)" in shown.stdout, shown.stdout
    html = (run_dir / "report.html").read_text()
    assert re.search(rf"<b>{best}</b><span>best epoch</span>", html)
    loaded = torchwork.load_run(run_dir)
    assert loaded.info["best_epoch"] == best
    assert loaded.history["epoch"] == list(range(1, epochs + 1))
    assert all(type(e) is int for e in loaded.history["epoch"])
    assert loaded.predict(frame[["a", "b", "c"]]).shape == (80,)  # one target: (n,), as scikit-learn's


def test_the_history_of_a_run_in_memory_counts_epochs_in_ints(tmp_path):
    frame = linear_csv(tmp_path / "d.csv").drop(columns="z")
    run = torchwork.train(frame, target="y", epochs=4, verbose=False)
    assert run.history["epoch"] == [1, 2, 3, 4]
    assert all(type(e) is int for e in run.history["epoch"])
