"""More hostile run folders and files (issue 11, items 8 and 9): a forged ``model.json`` whose architecture
asks for gigabytes, forged checkpoints handed to ``torchwork resume``, a .npy declaring 2 TiB and a
stride-0 view of 10^12 elements. An attacker recomputes the manifest (and a checkpoint's own hash); what
is forged must still be refused with one line, exit 2, fast, within a memory budget, and nothing that can
be resumed is thrown away. Beside each attack, the same forgery with honest contents works, so a refusal is
the attack's doing."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save as safetensors_save

from tests.support import ENV, PEAK_PROBE, assert_one_line_error, cli, run_cli
from torchwork.core.errors import InputError
from torchwork.files.integrity import write_manifest
from torchwork.files.weights import load_weights
from torchwork.runs.folder import load_run

MIB = 1 << 20


# ------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(data.csv, run): a short run whose last checkpoint marks training as finished."""
    tmp = tmp_path_factory.mktemp("hostile-more")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(120, 3)), columns=["a", "b", "y"])
    frame.to_csv(tmp / "data.csv", index=False)
    result = cli("train", str(tmp / "data.csv"), "--target", "y", "--epochs", "4", "--hidden", "16",
                 "--checkpoint-every", "2", "--out", str(tmp / "run"), "-q")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return tmp / "data.csv", tmp / "run"


def forge_model_json(run: Path, edit: Callable[[dict[str, Any]], object]) -> Path:
    """Edit the run's model.json, then recompute its manifest as an attacker can."""
    meta = json.loads((run / "model.json").read_text())
    edit(meta)
    (run / "model.json").write_text(json.dumps(meta))
    write_manifest(run)
    return run


def measured(args: list[str], cwd: Path, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float, int]:
    """``torchwork ARGS`` in a new process: its result, its seconds and its peak RSS in bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "peak"
        start = time.perf_counter()
        env = {**ENV, "TORCHWORK_TEST_PEAK": str(peak)}
        result = subprocess.run([sys.executable, "-c", PEAK_PROBE, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=timeout)  # fmt: skip
        return result, time.perf_counter() - start, int(peak.read_text()) * 1024


# ------------------------------------------- item 1: a forged architecture
@pytest.mark.slow
def test_a_forged_20000x20000_architecture_is_refused_fast_without_allocating_it(trained, copy_of, tmp_path):
    """hidden [20000, 20000] is 400M float32 weights (1.6 GB): refused from shapes alone, in a new process."""
    data, run = trained
    forged = forge_model_json(copy_of(run), lambda m: m["architecture"]["args"].update(hidden=[20000, 20000]))
    honest, honest_seconds, honest_rss = measured(["predict", str(run), str(data)], tmp_path)
    assert honest.returncode == 0 and honest.stdout.startswith("a,b,y,prediction"), honest.stderr
    result, seconds, rss = measured(["predict", str(forged), str(data)], tmp_path)
    line = assert_one_line_error(result, "model.safetensors", "does not fit MLP", "nothing was loaded")
    assert "model (20000, 20000)" in line
    assert rss < honest_rss + 150 * MIB, (rss / MIB, honest_rss / MIB)  # 1.6 GB would be allocated otherwise
    assert seconds < max(60.0, 3 * honest_seconds), seconds  # a hang guard, not a speed test
    assert not [p for p in tmp_path.iterdir() if p.name != forged.name]  # nothing written where it ran


def test_the_forged_architecture_is_refused_by_load_run_and_predict_in_process(trained, copy_of):
    data, run = trained
    forged = forge_model_json(copy_of(run), lambda m: m["architecture"]["args"].update(hidden=[20000, 20000]))
    with pytest.raises(InputError, match=r"does not fit MLP; nothing was loaded"):
        load_run(forged)
    assert_one_line_error(cli("predict", str(forged), str(data)), "does not fit MLP")
    assert_one_line_error(cli("evaluate", str(forged), str(data)), "does not fit MLP")


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(meta: dict[str, Any]) -> None:
        target = meta
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


ARCH = ("architecture", "args")
FORGED_MODEL_JSON = {
    "hidden-as-text": (_set((*ARCH, "hidden"), "64,64"), "hidden: expected a list of integers"),
    "hidden-of-1e300": (_set((*ARCH, "hidden"), [1e300]), "hidden: expected a list of integers"),
    "hidden-of-10^30": (_set((*ARCH, "hidden"), [10**30]), "model 'mlp': bad arguments"),
    "hidden-negative": (_set((*ARCH, "hidden"), [-5]), "hidden sizes must be >= 1"),
    "hidden-null": (_set((*ARCH, "hidden"), None), "hidden: expected a list of integers"),
    "in-features-negative": (_set((*ARCH, "in_features"), -3), "model 'mlp': bad arguments"),
    "out-features-negative": (_set((*ARCH, "out_features"), -3), "model 'mlp': bad arguments"),
    "unknown-argument": (_set((*ARCH, "evil"), 1), "unexpected keyword argument 'evil'"),
    "a-category-of-0": (_set((*ARCH, "categories"), [0]), "model 'mlp': bad arguments"),
    "out-features-0": (_set((*ARCH, "out_features"), 0), "does not fit MLP"),  # and no warning on the way
    "args-a-list": (_set(ARCH, [1, 2]), "its arguments must be a table"),
    "name-a-number": (_set(("architecture", "name"), 5), "model spec needs 'name' or 'class'"),
    "architecture-null": (_set(("architecture",), None), "not a torchwork run folder"),
    "preprocessing-null": (_set(("preprocessing",), None), "not a torchwork run folder"),
    "a-class-to-import": (_set(("architecture",), {"class": "this:Zen", "args": {}}), "--trust-model-code"),
}


@pytest.mark.parametrize("name", list(FORGED_MODEL_JSON))
def test_forged_model_json_is_one_line_for_predict_and_inspect(trained, copy_of, name):
    data, run = trained
    edit, fragment = FORGED_MODEL_JSON[name]
    forged = forge_model_json(copy_of(run), edit)
    start = time.perf_counter()
    assert_one_line_error(cli("predict", str(forged), str(data)), fragment)
    shown = cli("inspect", str(forged))  # inspect never builds the model: it works, or refuses in one line
    if shown.returncode:
        assert_one_line_error(shown, str(forged), "not a torchwork run folder")
    assert time.perf_counter() - start < 60.0  # a guard against a hang, not a speed test


def test_model_json_without_parameters_inspects_in_one_line_and_still_predicts(trained, copy_of):
    data, run = trained
    forged = forge_model_json(copy_of(run), lambda m: m.pop("parameters"))
    assert_one_line_error(cli("inspect", str(forged)), str(forged), "not a torchwork run folder", "parameters")
    assert cli("predict", str(forged), str(data)).returncode == 0  # prediction does not need the count


@pytest.mark.parametrize("key", ["architecture", "preprocessing", "versions"])
def test_inspect_of_model_json_with_a_value_of_the_wrong_kind_is_one_line(trained, copy_of, key):
    _, run = trained
    forged = forge_model_json(copy_of(run), _set((key,), "text"))
    assert_one_line_error(cli("inspect", str(forged)), str(forged), "not a torchwork run folder")
    assert_one_line_error(cli("inspect", str(forged), "--json"), str(forged), "not a torchwork run folder")


def test_the_honest_run_inspects_and_the_forger_rewrites_the_same_manifest(trained, copy_of):
    """The control: forging with no edit leaves a run that inspects and predicts as before."""
    data, run = trained
    same = forge_model_json(copy_of(run), lambda m: None)
    shown = cli("inspect", str(same))
    assert shown.returncode == 0 and "parameters:" in shown.stdout, shown.stderr
    assert cli("predict", str(same), str(data)).stdout == cli("predict", str(run), str(data)).stdout


# ------------------------------------------------ item 2: forged checkpoints
CKPT = Path("checkpoints") / "last.safetensors"


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The JSON tree and tensors of a checkpoint (a safetensors file; the tree in its header)."""
    weights = load_weights(path, safetensors_only=True)
    return json.loads(weights.metadata["torchwork_checkpoint"]), dict(weights.tensors)


def forge_checkpoint(header: str, tensors: dict[str, torch.Tensor]) -> bytes:
    """A checkpoint with ``header`` as its tree and its hash recomputed, as the format documents it:
    SHA-256 over the JSON, then over each tensor (by name): name, dtype, shape and bytes."""
    h = hashlib.sha256(header.encode())
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    metadata = {"torchwork_checkpoint": header, "sha256": h.hexdigest()}
    return safetensors_save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata)


def unfinished_run(tmp: Path, run: Path, checkpoint: bytes) -> Path:
    """RUN_DIR.partial holding the run's configuration and ``checkpoint``: what an interrupted run leaves."""
    partial = tmp / "interrupted.partial"
    (partial / "checkpoints").mkdir(parents=True)
    shutil.copy(run / "config.json", partial / "config.json")
    (partial / CKPT).write_bytes(checkpoint)
    return tmp / "interrupted"


def _edit(change: Callable[[dict[str, Any]], object], finished: bool = True) -> Callable[[dict[str, Any]], str]:
    def make(tree: dict[str, Any]) -> str:
        tree = copy.deepcopy(tree)
        if not finished:
            tree["extra"]["finished"] = False
            tree["state"]["fit"]["epoch"] = 2  # half way: resuming trains epochs 3 and 4
            for state in (tree["state"]["fit"], tree["state"]["callbacks"].get("EarlyStopping", {})):
                if (state.get("best_epoch") or 0) > 2:  # the best of epochs 1 and 2, as such a checkpoint holds
                    state["best_epoch"] = 2
        change(tree)
        return json.dumps(tree)

    return make


def _state(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda tree: tree["state"].__setitem__(key, value)


def _fit(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda tree: tree["state"]["fit"].__setitem__(key, value)


def _extra(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda tree: tree["extra"].__setitem__(key, value)


def _early_stopping(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda tree: tree["state"]["callbacks"]["EarlyStopping"].__setitem__(key, value)


FORGED_CHECKPOINTS: dict[str, tuple[Callable[[dict[str, Any]], str], str]] = {
    "nested-10^5-objects": (lambda tree: '{"a":' * 100_000 + "1" + "}" * 100_000, "maximum recursion depth"),
    "nested-10^5-lists": (lambda tree: "[" * 100_000 + "]" * 100_000, "maximum recursion depth"),
    "not-json": (lambda tree: "{", "not a torchwork checkpoint"),
    "a-list": (lambda tree: "[1, 2]", "unknown checkpoint format"),
    "no-state": (_edit(lambda tree: tree.pop("state")), "'state'"),
    "state-a-list": (_edit(lambda tree: tree.__setitem__("state", [1])), "no fit state"),
    "fit-empty": (_edit(_state("fit", {})), "its fit epoch is None, not a count"),
    "fit-epoch-as-text": (_edit(_fit("epoch", "x")), "its fit epoch is 'x', not a count"),
    "fit-epoch-as-text-unfinished": (_edit(_fit("epoch", "x"), finished=False), "its fit epoch is 'x'"),
    "fit-epoch-negative-unfinished": (_edit(_fit("epoch", -5), finished=False), "its fit epoch is -5"),
    "fit-stop-as-text": (_edit(_fit("stop", "no")), "its fit state is not one a fit writes"),
    "no-model": (_edit(lambda tree: tree["state"].pop("model")), "no model weights"),
    "model-of-numbers": (_edit(_state("model", {"net.0.weight": 1})), "no model weights"),
    "rng-a-number-unfinished": (_edit(_state("rng", 5), finished=False), "no rng state"),
    "callbacks-of-numbers": (_edit(_state("callbacks", {"EarlyStopping": 5})), "callback state"),
    "best-epoch-as-text": (_edit(_early_stopping("best_epoch", "x")), "callback state 'EarlyStopping'"),
    "history-as-text": (_edit(_state("history", "x")), "its history is not rows"),
    "history-of-numbers-unfinished": (_edit(_state("history", [5]), finished=False), "its history is not rows"),
    # the history as rows (how checkpoints before the columns were written; still read)
    "history-without-seconds": (
        _edit(_state("history", [{"epoch": 1, "train_loss": 0.5, "lr": 0.001}])),
        "its history is not rows",
    ),
    "history-with-an-extra-column": (
        _edit(_state("history", [{"epoch": 1, "train_loss": 0.5, "lr": 0.001, "seconds": 0.1, "evil": 1}])),
        "its history is not rows",
    ),
    # the history as columns (a tensor): names that do not match it, a column that is not one
    "history-columns-of-another-width": (
        _edit(lambda tree: tree["state"]["history"]["columns"].pop()),
        "its history's columns do not match its values",
    ),
    "history-columns-renamed": (
        _edit(lambda tree: tree["state"]["history"]["columns"].__setitem__(-1, "evil")),
        "its history is not rows",
    ),
    "history-values-not-a-tensor": (
        _edit(lambda tree: tree["state"]["history"].__setitem__("values", [[1.0]])),
        "its history is not a table of numbers",
    ),
    "finished-without-history": (_edit(_state("history", [])), "its history holds no epoch"),
    "config-a-list": (_edit(_extra("config", [1])), "its config is [1]"),
    "config-with-a-bad-value": (
        _edit(lambda tree: tree["extra"]["config"].__setitem__("epochs", "x")),
        "key 'epochs': expected an integer",
    ),
    "processes-as-text": (_edit(_extra("processes", "x")), "its processes is 'x', not a count"),
    "data-a-number": (_edit(_extra("data", 5)), "its data is 5"),
    "data-without-sha256": (_edit(lambda tree: tree["extra"]["data"].pop("sha256")), "its data has no SHA-256"),
    "tensor-that-is-not-there": (_edit(_state("model", {"__tensor__": "nope"})), "'nope'"),
    "items-that-are-not-pairs": (_edit(_state("model", {"__items__": [1, 2]})), "not a torchwork checkpoint"),
    # what a well-formed tree holds, but does not fit the run: the fit says so (its state is checked there)
    "optimizer-without-groups-unfinished": (
        _edit(_state("optimizer", {"state": {}}), finished=False),
        "the state to resume from does not fit this fit",
    ),
    "model-of-another-architecture-unfinished": (
        _edit(lambda tree: tree["state"]["model"].pop("net.0.weight"), finished=False),
        "the state to resume from does not fit this fit",
    ),
}


@pytest.mark.parametrize("name", list(FORGED_CHECKPOINTS))
def test_a_forged_checkpoint_is_one_line_on_resume_and_the_partial_run_is_kept(trained, tmp_path, name):
    _, run = trained
    tree, tensors = read_checkpoint(run / CKPT)
    make, fragment = FORGED_CHECKPOINTS[name]
    out = unfinished_run(tmp_path, run, forge_checkpoint(make(tree), tensors))
    forged = (Path(f"{out}.partial") / CKPT).read_bytes()
    start = time.perf_counter()
    result = cli("resume", str(out), "-q")
    assert_one_line_error(result, fragment)
    assert time.perf_counter() - start < 60.0  # a guard against a hang, not a speed test
    assert not out.exists()
    assert (Path(f"{out}.partial") / CKPT).read_bytes() == forged  # kept, as it was: nothing is thrown away
    shown = cli("inspect", f"{out}.partial")  # how far it got: shown, or refused in one line
    if shown.returncode:
        assert_one_line_error(shown)


@pytest.mark.parametrize("finished", [True, False])
def test_the_forger_is_right_an_unchanged_tree_resumes(trained, tmp_path, finished):
    """The control: the same forging with nothing changed gives a checkpoint that resumes (or writes out)."""
    _, run = trained
    tree, tensors = read_checkpoint(run / CKPT)
    out = unfinished_run(tmp_path, run, forge_checkpoint(_edit(lambda t: None, finished)(tree), tensors))
    result = cli("resume", str(out), "-q")
    assert result.returncode == 0, result.stderr
    assert ("training had finished" in result.stderr) is finished
    assert (out / "manifest.json").exists() and not Path(f"{out}.partial").exists()


@pytest.mark.slow
def test_a_forged_checkpoint_in_a_new_process_has_no_traceback(trained, tmp_path):
    _, run = trained
    _, tensors = read_checkpoint(run / CKPT)
    out = unfinished_run(tmp_path, run, forge_checkpoint('{"a":' * 100_000 + "1" + "}" * 100_000, tensors))
    result, seconds, rss = measured(["resume", str(out)], tmp_path)
    assert_one_line_error(result, "last.safetensors", "not a torchwork checkpoint")
    assert seconds < 30 and rss < 600 * MIB, (seconds, rss / MIB)
    assert Path(f"{out}.partial").is_dir() and not out.exists()


def test_a_checkpoint_without_its_configuration_is_one_line(trained, tmp_path):
    _, run = trained
    tree, tensors = read_checkpoint(run / CKPT)
    out = unfinished_run(tmp_path, run, forge_checkpoint(_edit(lambda t: t["extra"].pop("config"))(tree), tensors))
    assert_one_line_error(cli("resume", str(out), "-q"), "last.safetensors")
    assert Path(f"{out}.partial").is_dir()


def test_a_finished_checkpoint_whose_weights_do_not_fit_is_one_line(trained, tmp_path):
    _, run = trained
    tree, tensors = read_checkpoint(run / CKPT)
    make = _edit(lambda t: t["state"]["model"].pop("net.0.weight"))
    out = unfinished_run(tmp_path, run, forge_checkpoint(make(tree), tensors))
    assert_one_line_error(cli("resume", str(out), "-q"), "net.0.weight")
    assert Path(f"{out}.partial").is_dir()


# -------------------------------------------------------- item 7: sizes
def npy_declaring(shape: tuple[int, ...], size: int = 368) -> bytes:
    """A version 1.0 .npy of ``size`` bytes: a header declaring ``shape`` of float64, and no data."""
    text = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}"
    text += " " * (size - 10 - len(text) - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin-1")


@pytest.mark.slow
def test_a_368_byte_npy_declaring_2_TiB_is_one_line_for_train_and_predict(trained, tmp_path):
    _, run = trained
    path = tmp_path / "huge.npy"
    path.write_bytes(npy_declaring((2**37, 2)))
    assert path.stat().st_size == 368
    result, seconds, rss = measured(["train", str(path), "--target", "0", "--out", str(tmp_path / "r")], tmp_path)
    assert_one_line_error(result, "huge.npy", "(2.0 TiB)", "truncated or damaged")
    assert seconds < 30 and rss < 600 * MIB, (seconds, rss / MIB)
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()
    assert_one_line_error(cli("predict", str(run), str(path)), "huge.npy", "(2.0 TiB)")
    assert_one_line_error(cli("inspect", str(path)), "huge.npy", "not a weights file")
    ok = tmp_path / "ok.npy"  # the control: the same kind of file, honest, trains
    np.save(ok, np.random.default_rng(0).normal(size=(60, 3)))
    assert cli("train", str(ok), "--target", "2", "--epochs", "1", "--out", str(tmp_path / "ok"), "-q").returncode == 0


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.slow
def test_a_fifo_as_a_manifest_or_a_key_is_refused_without_reading_it(trained, copy_of, tmp_path):
    """Opening a FIFO to read it waits for a writer: the run folder's manifest and a key are refused first."""
    data, run = trained
    run = copy_of(run)
    (run / "manifest.json").unlink()
    os.mkfifo(run / "manifest.json")
    for command in (("inspect", str(run)), ("predict", str(run), str(data))):
        result = run_cli(*command, timeout=60)
        assert_one_line_error(result, "manifest.json: is a FIFO, not a regular file", "not trusted")
    os.mkfifo(tmp_path / "key.pub")
    result = run_cli("inspect", str(trained[1]), "--verify-key", str(tmp_path / "key.pub"), timeout=60)
    assert_one_line_error(result, "key.pub: cannot read the public key: is a FIFO")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_dev_zero_as_data_is_one_line_for_train_and_predict(trained, tmp_path):
    _, run = trained
    assert_one_line_error(cli("train", "/dev/zero", "--target", "y", "--out", str(tmp_path / "r")), "character device")
    assert_one_line_error(cli("predict", str(run), "/dev/zero"), "character device")
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()


@pytest.mark.slow
def test_a_stride_0_view_of_a_10_12_element_tensor_is_one_line(tmp_path):
    """torch.save of an expanded tensor keeps its stride-0 view: a 1-element storage seen as 10^12 values."""
    path = tmp_path / "view.pth"
    torch.save({"w": torch.zeros(1).expand(10**6, 10**6)}, path)
    assert path.stat().st_size < 4096
    start = time.perf_counter()
    assert_one_line_error(cli("inspect", str(path)), "view.pth", "refused")
    assert time.perf_counter() - start < 30.0  # a guard against a hang, not a speed test
    result, seconds, rss = measured(["inspect", str(path)], tmp_path)
    assert_one_line_error(result, "view.pth", "refused")
    assert seconds < 30 and rss < 600 * MIB, (seconds, rss / MIB)


def test_a_value_that_overflows_once_standardized_is_refused_in_one_line(trained, tmp_path):
    data, run = trained
    frame = pd.read_csv(data)
    frame.loc[4, "b"] = 3.4028235e38  # float32's largest is 3.4028234663852886e38: this rounds to it
    frame.to_csv(tmp_path / "big.csv", index=False)
    assert np.isfinite(np.float32(3.4028235e38))
    result = cli("predict", str(run), str(tmp_path / "big.csv"))  # the RuntimeWarning is an error under pytest
    assert_one_line_error(result, "column 'b'", "row 5", "too large once standardized")


def _npy_with_version(major: int, minor: int) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.arange(30.0).reshape(10, 3), version=(3, 0) if major == 3 else (1, 0))
    raw = bytearray(buf.getvalue())
    raw[6:8] = bytes([major, minor])
    return bytes(raw)


def _npy_header_cut_short() -> bytes:
    """A byte deleted inside the header: its declared length now takes in data bytes (numpy: tokenize.TokenError)."""
    buf = io.BytesIO()
    np.save(buf, np.arange(30.0).reshape(10, 3))
    raw = buf.getvalue()
    return raw[:69] + raw[70:]


@pytest.mark.parametrize("name", ["version-3.0", "version-9.9", "header-cut-short"])
def test_npy_headers_numpy_reads_differently_are_one_line(tmp_path, name):
    raw = {"version-3.0": lambda: _npy_with_version(3, 0), "version-9.9": lambda: _npy_with_version(9, 9),
           "header-cut-short": _npy_header_cut_short}[name]()  # fmt: skip
    (tmp_path / "d.npy").write_bytes(raw)
    result = cli("train", str(tmp_path / "d.npy"), "--target", "2", "--epochs", "1", "--out", str(tmp_path / "r"), "-q")
    if result.returncode:  # version 3.0 is a real format (UTF-8 field names): it may load; the others may not
        assert_one_line_error(result, "d.npy")
        assert not (tmp_path / "r").exists()
    else:
        assert name == "version-3.0", result.stdout


def _column(name: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(meta: dict[str, Any]) -> None:
        next(c for c in meta["preprocessing"]["columns"] if c["name"] == name)[key] = value

    return edit


@pytest.fixture(scope="module")
def with_categories(tmp_path_factory) -> tuple[Path, Path]:
    """(data.csv, run) of a table with a category column: its codes index the model's embedding."""
    tmp = tmp_path_factory.mktemp("categories")
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(90, 2)), columns=["a", "y"])
    frame.insert(1, "k", [["red", "green", "blue"][i % 3] for i in range(90)])
    frame.to_csv(tmp / "data.csv", index=False)
    result = cli("train", str(tmp / "data.csv"), "--target", "y", "--epochs", "2", "--hidden", "8",
                 "--out", str(tmp / "run"), "-q")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return tmp / "data.csv", tmp / "run"


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(_column("k", "missing_code", -0.5), id="missing-code-of--0.5"),
        pytest.param(_column("k", "missing_code", 99), id="missing-code-past-the-embedding"),
        pytest.param(_column("a", "scale", 0), id="scale-of-0"),
        pytest.param(_column("a", "indicator", -1), id="indicator-of--1"),
        pytest.param(_set(("preprocessing", "targets", "mean"), []), id="target-mean-empty"),
        pytest.param(_set(("baselines", "least_squares", "intercept"), []), id="intercept-empty"),
    ],
)
def test_forged_preprocessing_is_refused_on_load_in_one_line(with_categories, copy_of, edit):
    data, run = with_categories
    forged = forge_model_json(copy_of(run), edit)
    assert_one_line_error(cli("evaluate", str(forged), str(data)), str(forged))
    assert_one_line_error(cli("predict", str(forged), str(data)), str(forged))
