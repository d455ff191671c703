"""The command line: the demo in a subprocess, inspect, and one-line errors for bad arguments."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import TUTORIAL_FIXTURES, assert_one_line_error, run_cli


def test_help_does_not_import_torch():
    code = (
        "import sys; from torchwork.cli import main; rc = main(['--help']); "
        "heavy = [m for m in ('torch', 'pandas', 'matplotlib', 'numpy') if m in sys.modules]; "
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout
    assert "demo" in out.stdout and "inspect" in out.stdout


@pytest.mark.slow
def test_demo_runs_and_writes_what_it_promises(tmp_path):
    result = run_cli("demo", "--out", str(tmp_path), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "Epoch: 0 | MAE Train Loss: 0.31288138031959534 | MAE Test Loss: 0.48106518387794495 " in result.stdout
    assert "Using device: cpu" in result.stdout
    for name in ("01_pytorch_workflow_model_0.pth", "01_pytorch_workflow_model_1.pth"):
        assert (tmp_path / "models" / name).stat().st_size > 0
    assert len(list((tmp_path / "plots").glob("*.png"))) == 5
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_inspect_fixtures():
    for name, device in (
        ("01_pytorch_workflow_model_0.pth", "cpu"),
        ("01_pytorch_workflow_model_1.pth", "cuda:0"),
    ):
        result = run_cli("inspect", str(TUTORIAL_FIXTURES / name))
        assert result.returncode == 0, result.stderr
        assert f"saved from: {device}" in result.stdout
    result = run_cli("inspect", "--json", str(TUTORIAL_FIXTURES / "01_pytorch_workflow_model_1.pth"))
    desc = json.loads(result.stdout)
    assert desc["tensors"][0]["name"] == "linear_layer.weight"
    assert desc["tensors"][0]["values"] == [[pytest.approx(0.6968093514442444)]]


@pytest.mark.slow
def test_bad_device_is_one_line():
    assert_one_line_error(run_cli("demo", "--device", "tpu"), "--device 'tpu'", "expected one of")


@pytest.mark.slow
def test_cuda_without_cuda_is_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_one_line_error(run_cli("demo", "--device", "cuda"), "--device 'cuda'", "CUDA is not available")


@pytest.mark.slow
def test_unwritable_out_is_one_line(tmp_path):
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
    elif os.path.isdir("/sys/kernel"):
        locked = Path("/sys")  # root writes anywhere, but not into sysfs
    else:
        pytest.skip("no unwritable folder for root here")
    assert_one_line_error(run_cli("demo", "--out", str(locked / "x")), str(locked / "x"), code=1)


@pytest.mark.slow
def test_out_that_is_a_file_is_one_line(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    assert_one_line_error(run_cli("demo", "--out", str(afile)), str(afile), code=1)


@pytest.mark.slow
def test_inspect_missing_file_is_one_line(tmp_path):
    assert_one_line_error(run_cli("inspect", str(tmp_path / "nope.pth")), "nope.pth", "no such file")


def test_unknown_option_is_one_line():
    assert_one_line_error(run_cli("demo", "--epochs", "3"), "No such option", "--epochs")


def test_missing_argument_is_one_line():
    assert_one_line_error(run_cli("inspect"), "Missing argument 'FILE_OR_RUN_DIR'")


@pytest.mark.slow
def test_train_help_does_not_import_torch():
    code = (
        "import sys; from torchwork.cli import main; rc = main(['train', '--help']); "
        "heavy = [m for m in ('torch', 'pandas', 'matplotlib', 'numpy') if m in sys.modules]; "
        "print('HEAVY', heavy); sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out and "Devices and processes:" in out


def test_train_help_groups_its_options_with_target_first_and_defaults_in_words():
    """Issue 18, item 25: 45 flat options, --target sixth, `[default: required]`, `[default: ]`, `[default: False]`."""
    from tests.support import cli

    result = cli("train", "--help")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    titles = [line[:-1] for line in out.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert titles == ["Data", "Model", "Training", "Output", "Devices and processes", "Other options"], titles
    sections = {
        title: [line.split()[0].rstrip(",") for line in body.splitlines() if line.startswith("  -")]
        for title, body in zip(titles, re.split(r"^(?:Data|Model|Training|Output|Devices and processes|Other "
                                                r"options):$", out, flags=re.M)[1:], strict=True)
    }  # fmt: skip
    assert sections["Data"][0] == "--target"
    assert sections["Output"][:3] == ["--out", "--overwrite", "-q"]
    assert "--nproc" in sections["Devices and processes"] and "--device" in sections["Devices and processes"]
    assert "--trust-model-code" in sections["Model"] and "--config" in sections["Data"]
    for shown in ("[default: required]", "[default: ]", "[default: False]", "[default: True]"):
        assert shown not in out, shown
    flat = " ".join(out.split())
    assert "Required (here or in --config)" in flat and "[default: on]" in flat and "[default: off]" in flat


def test_every_option_of_the_configuration_is_in_one_of_the_groups():
    from torchwork.runs.config import GROUPS, group_of, option_fields

    assert all(group_of(field.name) in GROUPS for field in option_fields())
