"""Consent to run code, and config files that attack (issue 11, items 8, 9 and 10).

Naming a class on the command line is consent to import it; naming it in a config file is not. A
module in the working directory is never imported by accident, and a name that imports something is
imported only after the data and every flag are checked. A YAML "billion laughs" or a file nested ten
thousand deep is refused in one line, fast, within a memory budget."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support import ENV, PEAK_PROBE, ROOT, assert_one_line_error, cli, run_cli
from torchwork.files.integrity import write_manifest

MIB = 1 << 20
ZEN = "The Zen of Python"


@pytest.fixture
def data(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(80, 3)), columns=["a", "b", "y"])
    frame.to_csv(tmp_path / "d.csv", index=False)
    return tmp_path / "d.csv"


def nothing_written(folder: Path, *keep: str) -> None:
    """No run folder (finished, partial or default ``runs/``) and no other file appeared in ``folder``."""
    assert sorted(p.name for p in folder.iterdir()) == sorted(keep)


# ------------------------------------------------------ --model and imports
@pytest.mark.parametrize("name", [".relative:X", "..parent:Net", ".this:Zen", ":Net", "mod:", "a\0b:Net"])
def test_a_model_name_that_is_not_an_absolute_import_is_one_line(data, tmp_path, name):
    result = cli("train", str(data), "--target", "y", "--model", name, "--out", str(tmp_path / "run"), "-q")
    assert_one_line_error(result, "expected a registered name or 'package.module:Class'")
    nothing_written(tmp_path, "d.csv")


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--target", "nope"], "no column 'nope'"),
        (["--target", "y", "--epochs", "0"], "--epochs"),
    ],
)
@pytest.mark.slow
def test_this_Zen_is_not_imported_before_the_data_and_flags_are_checked(data, tmp_path, flags, fragment):
    """``import this`` prints the Zen of Python: it must not, when the run fails anyway."""
    result = run_cli("train", str(data), *flags, "--model", "this:Zen", cwd=tmp_path)
    assert_one_line_error(result, fragment)
    assert ZEN not in result.stdout + result.stderr
    nothing_written(tmp_path, "d.csv")


@pytest.mark.slow
def test_this_Zen_named_on_the_command_line_is_imported_then_refused_in_one_line(data, tmp_path):
    """The control: naming it is consent, so it is imported (and prints); it is no model class: one line."""
    result = run_cli("train", str(data), "--target", "y", "--model", "this:Zen", cwd=tmp_path)
    assert_one_line_error(result, "model 'this:Zen'", "has no attribute 'Zen'")
    assert ZEN in result.stdout
    nothing_written(tmp_path, "d.csv")


EVIL = (
    "import pathlib\npathlib.Path('CANARY-{name}').touch()\n"
    "import torch\n\n\nclass Net(torch.nn.Module):\n"
    "    def __init__(self, in_features=1, out_features=1):\n"
    "        super().__init__()\n        self.linear = torch.nn.Linear(in_features, out_features)\n\n"
    "    def forward(self, x):\n        return self.linear(x)\n"
)


@pytest.fixture
def planted(tmp_path, data) -> Path:
    """A working directory holding evil.py (a model class) and yaml.py: importing either leaves a canary."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "evil.py").write_text(EVIL.format(name="evil"))
    (work / "yaml.py").write_text("import pathlib\npathlib.Path('CANARY-yaml').touch()\nraise ImportError('planted')\n")
    (work / "d.csv").write_bytes(data.read_bytes())
    (work / "evil.toml").write_text('model = "evil:Net"\ntarget = "y"\nepochs = 1\n')
    (work / "evil.yaml").write_text("model: evil:Net\ntarget: y\nepochs: 1\n")
    (work / "zen.toml").write_text('model = "this:Zen"\ntarget = "y"\n')
    return work


def canaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("CANARY*"))


# tests.support.ENV ends PYTHONPATH with an empty entry when none was set ("ROOT:"), and Python reads an
# empty entry as the working directory: torchwork takes it off (tested below); the others give a PYTHONPATH
# without one.
CLEAN = {"PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize("config", ["evil.toml", "evil.yaml"])
@pytest.mark.slow
def test_a_class_named_in_a_config_file_is_not_imported_without_trust(planted, config):
    before = sorted(p.name for p in planted.iterdir())
    result = run_cli("train", "d.csv", "--config", config, "--hidden", "4", cwd=planted, env=CLEAN)
    assert_one_line_error(result, f"{config}: key 'model'", "--trust-model-code")
    assert canaries(planted) == [] and ZEN not in result.stdout + result.stderr
    assert sorted(p.name for p in planted.iterdir()) == before  # no runs/ folder, nothing else


def test_zen_named_in_a_config_file_is_not_imported(planted, monkeypatch):
    monkeypatch.delitem(sys.modules, "this", raising=False)
    result = cli(
        "train", str(planted / "d.csv"), "--config", str(planted / "zen.toml"), "--out", str(planted / "run"), "-q"
    )
    assert_one_line_error(result, "zen.toml: key 'model'", "names the class 'this:Zen'", "--trust-model-code")
    assert "this" not in sys.modules and ZEN not in result.stdout


@pytest.mark.slow
def test_with_trust_the_config_files_class_is_imported_and_trains(planted):
    """The control: the canary works, and --trust-model-code is what lets evil.py in; yaml.py, in the same
    folder, stays out (``python -m`` put the working directory first on sys.path: torchwork takes it off)."""
    result = run_cli("train", "d.csv", "--config", "evil.yaml", "--out", "run", "-q", "--trust-model-code",
                     cwd=planted, env=CLEAN)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert canaries(planted) == ["CANARY-evil"]  # the YAML was read by the real PyYAML
    assert (planted / "run" / "manifest.json").exists()


@pytest.mark.slow
def test_an_empty_pythonpath_entry_does_not_import_from_the_working_directory(planted):
    (planted / "plain.yaml").write_text("target: y\nepochs: 1\nhidden: [4]\n")
    env = {"PYTHONPATH": str(ROOT) + os.pathsep}  # what `export PYTHONPATH=$PYTHONPATH:...` gives, reversed
    result = run_cli("train", "d.csv", "--config", "plain.yaml", "--out", "run", "-q", cwd=planted, env=env)
    assert canaries(planted) == []
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_a_run_naming_a_class_in_the_working_directory_is_not_imported_by_predict(planted):
    """A run folder whose model.json names evil:Net (its manifest recomputed): predict refuses before importing."""
    run = planted / "run"
    assert cli("train", str(planted / "d.csv"), "--target", "y", "--model", "linear", "--epochs", "1",
               "--out", str(run), "-q").returncode == 0  # fmt: skip
    meta = json.loads((run / "model.json").read_text())
    meta["architecture"] = {"class": "evil:Net", "args": meta["architecture"]["args"]}
    (run / "model.json").write_text(json.dumps(meta))
    write_manifest(run)
    result = run_cli("predict", "run", "d.csv", cwd=planted, env=CLEAN)
    assert_one_line_error(result, "'evil:Net'", "--trust-model-code")
    assert canaries(planted) == []


# -------------------------------------------------- config files that attack
def laughs(where: str, levels: int = 9) -> str:
    """A YAML "billion laughs": ``levels`` anchors, each nine aliases of the one before (9^9 strings)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    bomb = "\n".join("  " + line for line in lines)
    if where == "model_args":
        return f"target: y\nmodel: linear\nmodel_args:\n{bomb}\n"
    if where == "features":  # a list of lists of the bomb's levels
        return "target: y\nfeatures:\n" + "\n".join(f"  - {line.split(': ', 1)[1]}" for line in lines) + "\n"
    return "target:\n" + "\n".join(f"  - {line.split(': ', 1)[1]}" for line in lines) + "\n"


@pytest.mark.parametrize("where", ["model_args", "features", "target"])
def test_a_billion_laughs_is_refused_in_one_line_and_fast(data, tmp_path, where):
    config = tmp_path / "laughs.yaml"
    config.write_text(laughs(where))
    assert config.stat().st_size < 1000
    start = time.perf_counter()
    result = cli("train", str(data), "--config", str(config), "--out", str(tmp_path / "run"), "-q")
    assert_one_line_error(result, "laughs.yaml", "YAML anchors and aliases are not accepted")
    assert time.perf_counter() - start < 30.0  # a guard against a hang (a YAML bomb), not a speed test
    nothing_written(tmp_path, "d.csv", "laughs.yaml")


@pytest.mark.slow
def test_a_billion_laughs_in_a_new_process_stays_within_a_memory_budget(data, tmp_path):
    """The process reads its own peak RSS (VmHWM; ru_maxrss would start from the forking pytest's)."""
    config = tmp_path / "laughs.yaml"
    config.write_text(laughs("model_args"))
    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "peak"
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", PEAK_PROBE, "train", str(data), "--config", str(config)],
                                cwd=tmp_path, env={**ENV, "TORCHWORK_TEST_PEAK": str(peak)}, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        seconds, rss = time.perf_counter() - start, int(peak.read_text()) * 1024
    assert_one_line_error(result, "line 4: YAML anchors and aliases are not accepted")
    assert rss < 600 * MIB and seconds < 30, (rss / MIB, seconds)
    nothing_written(tmp_path, "d.csv", "laughs.yaml")


@pytest.mark.parametrize(
    "text",
    [
        "base: &b {epochs: 2}\n<<: *b\ntarget: y\n",  # a merge key is an alias too
        "target: &t y\n",  # an anchor alone
        "target: y\nfeatures: !!python/object/apply:os.system ['touch CANARY']\n",  # a tag that would run code
    ],
)
def test_yaml_anchors_merges_and_python_tags_are_refused(data, tmp_path, text):
    (tmp_path / "c.yaml").write_text(text)
    result = cli("train", str(data), "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "run"), "-q")
    assert_one_line_error(result, "c.yaml")
    nothing_written(tmp_path, "d.csv", "c.yaml")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("lists.toml", 'target = "y"\nfeatures = ' + "[" * 10_000 + "]" * 10_000 + "\n"),
        ("tables.toml", 'target = "y"\n[model_args]\nx = ' + "{a=" * 10_000 + "1" + "}" * 10_000 + "\n"),
        ("lists.yaml", "target: y\nfeatures: " + "[" * 10_000 + "]" * 10_000 + "\n"),
        ("maps.yaml", "target: y\nmodel_args: " + "{a: " * 10_000 + "1" + "}" * 10_000 + "\n"),
    ],
)
def test_a_config_nested_ten_thousand_deep_is_one_line(data, tmp_path, name, text):
    """Both parsers recurse once a level: a RecursionError was a traceback."""
    (tmp_path / name).write_text(text)
    start = time.perf_counter()
    result = cli("train", str(data), "--config", str(tmp_path / name), "--out", str(tmp_path / "run"), "-q")
    assert_one_line_error(result, name, "nested too deeply")
    assert time.perf_counter() - start < 30.0  # a guard against a hang, not a speed test
    nothing_written(tmp_path, "d.csv", name)


def test_a_config_file_over_a_mebibyte_is_refused_unread(data, tmp_path):
    (tmp_path / "big.toml").write_text('target = "y"\n' + "# padding\n" * 110_000)
    result = cli("train", str(data), "--config", str(tmp_path / "big.toml"), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "big.toml", "larger than 1 MiB")
    nothing_written(tmp_path, "d.csv", "big.toml")


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--seed", "-5"], "--seed: expected an integer from 0 to 2**64 - 1, got -5"),
        (["--seed", str(2**64)], "--seed: expected an integer from 0 to 2**64 - 1"),
        (["--lr", "1e39"], "--lr: 1e+39 is too large (more than float32 holds)"),
        (["--weight-decay", "1e39"], "--weight-decay: 1e+39 is too large"),
        (["--clip-grad", "inf"], "--clip-grad"),
    ],
)
def test_values_torch_cannot_take_are_refused_before_the_data_is_read(data, tmp_path, flags, fragment):
    """torch.manual_seed and NumPy refuse such seeds, and float32 such rates, mid-training: a traceback before."""
    result = cli("train", str(data), "--target", "y", "--epochs", "1", *flags, "--out", str(tmp_path / "run"))
    assert_one_line_error(result, fragment)
    nothing_written(tmp_path, "d.csv")


def test_the_largest_seed_and_rates_within_float32_train(data, tmp_path):
    """The twins: 2**64 - 1 is a seed, and a learning rate of 1e30 fits float32 (it diverges: exit 1, one line)."""
    ok = cli(
        "train", str(data), "--target", "y", "--epochs", "1", "--seed", str(2**64 - 1), "--out", str(tmp_path / "a")
    )
    assert ok.returncode == 0, ok.stderr
    big = cli("train", str(data), "--target", "y", "--epochs", "2", "--lr", "1e30", "--optimizer", "sgd",
              "--out", str(tmp_path / "b"), "-q")  # fmt: skip
    assert_one_line_error(big, "training diverged", code=1)
