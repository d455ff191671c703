"""Exports run without torchwork and predict what torchwork predicts."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import torchwork.runs.run as export_module
from tests.support import ROOT, assert_one_line_error, cli
from torchwork.runs.folder import load_run

pytestmark = pytest.mark.slow  # exporters and a fresh Python per format

LOADERS = {
    "onnx": "import onnxruntime as ort\ns = ort.InferenceSession(sys.argv[1])\n"
            "pred = s.run(None, {s.get_inputs()[0].name: x})[0]",
    "exported": "import torch\np = torch.export.load(sys.argv[1]).module()\n"
                "pred = p(torch.from_numpy(x)).detach().numpy()",
    "torchscript": "import torch\nm = torch.jit.load(sys.argv[1])\npred = m(torch.from_numpy(x)).detach().numpy()",
}  # fmt: skip
SCRIPT = """
import sys, numpy as np
x = np.load(sys.argv[2]).astype(np.float32)
{load}
assert "torchwork" not in sys.modules
np.save(sys.argv[3], pred)
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    df = pd.DataFrame(X, columns=["a", "b", "c"])
    df["y"] = 100 + 10 * np.tanh(X[:, 0]) + 5 * X[:, 1]  # far from 0: the scalers must be in the export
    df.to_csv(tmp / "d.csv", index=False)
    assert (
        cli("train", str(tmp / "d.csv"), "--target", "y", "--epochs", "30", "--out", str(tmp / "run"), "-q").returncode
        == 0
    )
    return tmp / "run"


@pytest.mark.parametrize("fmt", ["onnx", "exported", "torchscript"])
def test_export_round_trip_without_torchwork(run_dir, tmp_path, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    out = tmp_path / f"model.{fmt}"
    result = cli("export", str(run_dir), "--format", fmt, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "its outputs match torchwork's on 30 rows" in result.stdout
    rows = np.random.default_rng(1).normal(size=(17, 3))
    np.save(tmp_path / "x.npy", rows)
    script = SCRIPT.format(load=LOADERS[fmt])
    done = subprocess.run([sys.executable, "-c", script, str(out), str(tmp_path / "x.npy"), str(tmp_path / "p.npy")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    expected = load_run(run_dir).predict(pd.DataFrame(rows, columns=["a", "b", "c"]))
    np.testing.assert_allclose(np.load(tmp_path / "p.npy").reshape(expected.shape), expected, rtol=1e-5)


def test_default_output_path_is_beside_the_run(run_dir):
    result = cli("export", str(run_dir), "--format", "exported")
    assert result.returncode == 0, result.stderr
    assert (run_dir.parent / "run.pt2").is_file()


def test_a_mismatching_export_is_not_written(run_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "_run_exported", lambda data, fmt, x: np.zeros((len(x), 1)))
    out = tmp_path / "bad.pt2"
    assert_one_line_error(cli("export", str(run_dir), "--format", "exported", "--out", str(out)),
                          "differ from torchwork's", "nothing was written", code=1)  # fmt: skip
    assert not out.exists()


def test_export_with_explicit_rows(run_dir, tmp_path):
    pd.DataFrame(np.ones((4, 3)), columns=["c", "b", "a"]).to_csv(tmp_path / "rows.csv", index=False)
    result = cli("export", str(run_dir), "--format", "exported", "--data", str(tmp_path / "rows.csv"),
                 "--out", str(tmp_path / "m.pt2"))  # fmt: skip
    assert result.returncode == 0 and "on 4 rows" in result.stdout


@pytest.mark.parametrize(("fmt", "name"), [("exported", "a torch.export program"), ("torchscript", "TorchScript")])
def test_the_export_line_names_the_format_in_words(run_dir, tmp_path, fmt, name):
    """Issue 18, item 30: not "exported runs/x as exported to runs/x.pt2"."""
    out = tmp_path / f"model.{fmt}"
    result = cli("export", str(run_dir), "--format", fmt, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"exported {run_dir} as {name} to {out} "), result.stdout
    assert "as exported" not in result.stdout


def test_the_default_format_without_the_onnx_extra_says_how_to_install_it(run_dir, tmp_path, monkeypatch):
    """Issue 18, item 21: 'cannot export this model as onnx: No module named 'onnxscript'', exit 1, no hint."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # and importing it fails, as on a plain install
    line = assert_one_line_error(cli("export", str(run_dir), "--out", str(tmp_path / "m.onnx")),
                                 "--format onnx needs onnxscript", "pip install 'torchwork[onnx]'",
                                 "--format exported")  # fmt: skip
    assert line.startswith("torchwork: error: --format onnx"), line
    assert not (tmp_path / "m.onnx").exists()


def test_export_help_says_what_the_file_takes_as_the_readme_does():
    from click.testing import CliRunner

    from torchwork.cli import cli as command

    shown = " ".join(CliRunner().invoke(command, ["export", "--help"]).output.split())
    readme = " ".join((ROOT / "README.md").read_text().split())
    for words in ("takes raw rows, not encoded ones", "NaN where missing", "a category as its code"):
        assert words in shown and words in readme, words
    assert "pip install 'torchwork[onnx]'" in shown
