"""Files you can trust: malicious pickles never run, damaged files are refused, saves are
atomic and failures are never reported as saved, architectures are checked before loading."""

from __future__ import annotations

import builtins
import collections
import copyreg
import errno
import functools
import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.support import TUTORIAL_FIXTURES, assert_one_line_error, cli, run_cli
from torchwork.core.errors import InputError, IntegrityError, OutputError, TrainingDiverged, UnsafeFileError
from torchwork.files.atomic import atomic_write
from torchwork.files.checkpoint import Checkpointer, load_checkpoint
from torchwork.files.integrity import MANIFEST, write_manifest
from torchwork.files.weights import load_into, load_state_dict, save_state_dict
from torchwork.models.tabular import MLP
from torchwork.runs.folder import load_run
from torchwork.training.callbacks import Callback
from torchwork.training.trainer import Trainer

# ----------------------------------------------------------------- the corpus
CANARY = "CANARY"  # a payload that runs creates this file in the current folder


class System:
    def __reduce__(self):
        return (os.system, (f"touch {CANARY}",))


class Eval:
    def __reduce__(self):
        return (builtins.eval, (f"open({CANARY!r}, 'w').close()",))


class Exec:
    def __reduce__(self):
        return (builtins.exec, (f"open({CANARY!r}, 'w').close()",))


class Popen:
    def __reduce__(self):
        return (subprocess.Popen, (["touch", CANARY],))


class Partial:
    def __reduce__(self):
        return (functools.partial(os.system, f"touch {CANARY}"), ())


def nested_state_dict(payload):
    """A state_dict that looks right, with the payload deep inside."""
    return collections.OrderedDict(weight=torch.ones(2), meta={"layers": [(1, payload)]})


def stack_global_memo() -> bytes:
    """Protocol 4: the names come through the memo, not next to STACK_GLOBAL."""
    return b"\x80\x04\x8c\x02os\x94\x8c\x06system\x94h\x00h\x01\x93\x8c\x0ctouch CANARY\x94\x85\x94R\x94."


def protocol0_inst() -> bytes:
    return b"(S'touch CANARY'\nios\nsystem\np0\n."


def extension_pickle() -> bytes:
    copyreg.add_extension("os", "system", 0xBEEF)
    try:
        return pickle.dumps(System(), protocol=2)
    finally:
        copyreg.remove_extension("os", "system", 0xBEEF)


def torch_zip_with(payload_pickle: bytes) -> bytes:
    """A real torch.save zip whose data.pkl is replaced by ``payload_pickle``."""
    buf = io.BytesIO()
    torch.save({"w": torch.ones(1)}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = payload_pickle if info.filename.endswith("data.pkl") else src.read(info.filename)
            dst.writestr(info, data)
    return out.getvalue()


def corpus() -> dict[str, bytes]:
    items: dict[str, bytes] = {}
    for proto in range(pickle.HIGHEST_PROTOCOL + 1):
        items[f"os.system-p{proto}"] = pickle.dumps(System(), protocol=proto)
    items["eval"] = pickle.dumps(Eval(), protocol=2)
    items["exec"] = pickle.dumps(Exec(), protocol=4)
    items["popen"] = pickle.dumps(Popen(), protocol=3)
    items["functools.partial"] = pickle.dumps(Partial(), protocol=2)
    items["nested-reducer"] = pickle.dumps(nested_state_dict(System()), protocol=2)
    items["nested-eval-p5"] = pickle.dumps(nested_state_dict(Eval()), protocol=5)
    items["stack-global-memo"] = stack_global_memo()
    items["protocol0-inst"] = protocol0_inst()
    items["ext-opcode"] = extension_pickle()
    items["torch-zip-os.system"] = torch_zip_with(pickle.dumps(System(), protocol=2))
    items["torch-zip-nested"] = torch_zip_with(pickle.dumps(nested_state_dict(Eval()), protocol=2))
    return items


CORPUS = corpus()
LIVE_CHECK = "import pickle, sys, torch, zipfile, io\nraw = open(sys.argv[1], 'rb').read()\n" \
    "torch.load(io.BytesIO(raw), weights_only=False) if raw[:2] == b'PK' else pickle.loads(raw)\n"  # fmt: skip


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", [n for n in CORPUS if n != "ext-opcode"])
@pytest.mark.slow
def test_corpus_is_live(tmp_path, name):
    """The control: unpickled the unsafe way, in another process, each payload does run."""
    path = tmp_path / "payload.bin"
    path.write_bytes(CORPUS[name])
    subprocess.run([sys.executable, "-c", LIVE_CHECK, str(path)], cwd=tmp_path, capture_output=True, timeout=120)
    assert (tmp_path / CANARY).exists(), name


@pytest.mark.parametrize("suffix", [".pth", ".pt", ".bin", ".safetensors", ".ckpt"])
@pytest.mark.parametrize("name", list(CORPUS))
def test_malicious_files_are_refused_and_nothing_runs(in_tmp, name, suffix):
    path = in_tmp / f"model{suffix}"
    path.write_bytes(CORPUS[name])
    with pytest.raises((UnsafeFileError, InputError)) as err:
        load_state_dict(path)
    message = str(err.value)
    assert str(path) in message and ("nothing was run" in message or "not a weights file" in message), message
    result = cli("inspect", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not (in_tmp / CANARY).exists()


def test_refusals_name_what_would_have_run(in_tmp):
    path = in_tmp / "model.pth"
    path.write_bytes(CORPUS["torch-zip-os.system"])
    line = assert_one_line_error(cli("inspect", str(path)), "model.pth", "refused")
    assert "posix.system" in line or "os.system" in line
    path.write_bytes(torch_zip_with(stack_global_memo()))  # protocol 4: the names reach STACK_GLOBAL through the memo
    assert_one_line_error(cli("inspect", str(path)), "refused", "names os.system")
    path.write_bytes(CORPUS["stack-global-memo"])  # a bare pickle: a legacy stream, refused before it is read
    assert_one_line_error(cli("inspect", str(path)), "refused", "legacy")
    assert not (in_tmp / CANARY).exists()


@pytest.mark.slow
def test_inspect_in_a_new_process_runs_nothing(in_tmp):
    for name in ("os.system-p2", "torch-zip-nested", "protocol0-inst"):
        (in_tmp / "m.pth").write_bytes(CORPUS[name])
        result = run_cli("inspect", "m.pth", cwd=in_tmp)
        assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not (in_tmp / CANARY).exists()


@pytest.fixture
def small_run(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(120, 3)), columns=["a", "b", "y"])
    df.to_csv(tmp_path / "d.csv", index=False)
    result = cli("train", str(tmp_path / "d.csv"), "--target", "y", "--epochs", "4", "--checkpoint-every", "2",
                 "--out", str(tmp_path / "run"), "-q")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return tmp_path / "run"


def test_malicious_weights_in_a_run_are_refused_even_with_a_forged_manifest(small_run, monkeypatch):
    monkeypatch.chdir(small_run)
    for name in ("os.system-p4", "torch-zip-os.system"):
        (small_run / "model.safetensors").write_bytes(CORPUS[name])
        write_manifest(small_run)  # an attacker can recompute hashes: the format check must hold
        with pytest.raises(UnsafeFileError, match="expected a safetensors file"):
            load_run(small_run)
        assert cli("predict", str(small_run), str(small_run.parent / "d.csv")).returncode == 2
    assert not (small_run / CANARY).exists()


def test_malicious_checkpoint_is_refused_on_resume(small_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    partial = tmp_path / "other.partial"
    (partial / "checkpoints").mkdir(parents=True)
    (partial / "checkpoints" / "last.safetensors").write_bytes(CORPUS["os.system-p2"])
    assert_one_line_error(cli("resume", str(tmp_path / "other")), "last.safetensors", "refused")
    assert not (tmp_path / CANARY).exists()


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".csv", ".parquet"])
def test_malicious_data_files_are_refused(in_tmp, suffix):
    path = in_tmp / f"data{suffix}"
    if suffix == ".npz":
        np.savez(path, X=np.array([System()], dtype=object), y=np.zeros(1))
    else:
        path.write_bytes(CORPUS["os.system-p2"])
    result = cli("train", str(path), "--target", "y", "--out", str(in_tmp / "run"), "-q")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not (in_tmp / CANARY).exists() and not (in_tmp / "run").exists()


# -------------------------------------------------------------- integrity
def flip_bit(path: Path, position: int) -> bytes:
    original = path.read_bytes()
    data = bytearray(original)
    data[position] ^= 0x04
    path.write_bytes(bytes(data))
    return original


def test_every_file_of_a_run_is_checked_for_flipped_bits_and_truncation(small_run):
    files = sorted(p for p in small_run.rglob("*") if p.is_file())
    assert small_run / "checkpoints" / "last.safetensors" in files and small_run / MANIFEST in files
    for path in files:
        size = path.stat().st_size
        for damage in ("first", "middle", "last", "truncate", "empty"):
            original = path.read_bytes()
            if damage in ("first", "middle", "last"):
                flip_bit(path, {"first": 0, "middle": size // 2, "last": size - 1}[damage])
            else:
                path.write_bytes(original[: size // 2] if damage == "truncate" else b"")
            try:
                with pytest.raises(IntegrityError) as err:
                    load_run(small_run)
                assert str(path) in str(err.value) or (path.name == MANIFEST and MANIFEST in str(err.value))
                if path.name != MANIFEST:
                    assert "expected" in str(err.value) and "sha256" in str(err.value)
            finally:
                path.write_bytes(original)
    load_run(small_run)  # whole again


def test_a_flipped_bit_is_one_line_at_the_cli(small_run):
    original = flip_bit(small_run / "model.safetensors", 200)
    line = assert_one_line_error(cli("predict", str(small_run), str(small_run.parent / "d.csv")), "model.safetensors")
    assert "expected sha256" in line and "actual" in line
    (small_run / "model.safetensors").write_bytes(original)


def test_checkpoint_detects_its_own_damage(small_run):
    path = small_run / "checkpoints" / "last.safetensors"
    state, extra = load_checkpoint(path)
    assert extra["config"]["epochs"] == 4 and state["fit"]["epoch"] == 4
    size = path.stat().st_size
    for position in (10, size // 2, size - 3):
        original = flip_bit(path, position)
        with pytest.raises((IntegrityError, InputError)):
            load_checkpoint(path)
        path.write_bytes(original)
    path.write_bytes(original[:-100])
    with pytest.raises((IntegrityError, InputError)):
        load_checkpoint(path)


def test_missing_manifest_is_refused(small_run):
    (small_run / MANIFEST).unlink()
    with pytest.raises(IntegrityError, match=r"manifest\.json: missing"):
        load_run(small_run)


# ------------------------------------------------------------ atomic saves
def test_atomic_write_leaves_old_file_when_writing_fails(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def boom(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OutputError, match=r"cannot write .*f\.bin: No space left on device"):
        atomic_write(target, b"new contents")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary file left


def test_failed_save_is_never_reported_as_saved(tmp_path, monkeypatch):
    def boom(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    result = cli("demo", "--out", str(tmp_path), "--device", "cpu")
    line = assert_one_line_error(result, "No space left on device", code=1)
    assert "cannot write" in line
    assert "Saving model to" not in result.stdout
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.slow
def test_a_failed_run_save_keeps_the_trained_run_to_finish_later(tmp_path, monkeypatch):
    """Training had finished (its last checkpoint is on disk): a failed write keeps it, never reports it saved,
    and `torchwork resume` finishes it without training again."""
    rng = np.random.default_rng(0)
    pd.DataFrame(rng.normal(size=(60, 2)), columns=["a", "y"]).to_csv(tmp_path / "d.csv", index=False)
    real_replace = os.replace

    def fail_on_manifest(src, dst):
        if str(dst).endswith(MANIFEST):
            raise OSError(errno.EROFS, "Read-only file system")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", fail_on_manifest)
    result = cli(
        "train", str(tmp_path / "d.csv"), "--target", "y", "--epochs", "2", "--out", str(tmp_path / "run"), "-q"
    )
    assert_one_line_error(result, "manifest.json", "Read-only file system", code=1)
    assert "run:" not in result.stdout
    assert not (tmp_path / "run").exists()
    _, extra = load_checkpoint(tmp_path / "run.partial" / "checkpoints" / "last.safetensors")
    assert extra["finished"] is True
    monkeypatch.setattr(os, "replace", real_replace)  # the disk works again
    resumed = cli("resume", str(tmp_path / "run"), "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert "training had finished" in resumed.stderr and (tmp_path / "run" / MANIFEST).exists()


@pytest.mark.slow
def test_full_disk_for_real(tmp_path):
    """A 64 KiB tmpfs: the demo cannot fit; it fails with one line and leaves whole files only."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        result = run_cli("demo", "--out", str(mount), "--device", "cpu")
        assert_one_line_error(result, "No space left on device", code=1)
        for path in mount.rglob("*"):
            assert not path.name.endswith(".tmp")
            if path.suffix == ".png":
                assert path.read_bytes().endswith(b"IEND\xaeB`\x82")  # whole, or absent
    finally:
        subprocess.run(["umount", str(mount)], check=True)


# ------------------------------------------------- diverging never overwrites
def test_divergence_keeps_the_last_good_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    pd.DataFrame(rng.normal(size=(100, 2)), columns=["a", "y"]).to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "c.toml").write_text('model = "tests.custom_models:NaNAfter"\n[model_args]\nafter = 14\n')
    result = cli("train", str(tmp_path / "d.csv"), "--target", "y", "--config", str(tmp_path / "c.toml"),
                 "--batch-size", "20", "--epochs", "10", "--checkpoint-every", "1", "--early-stopping", "0",
                 "--test", "0.15", "--out", str(tmp_path / "run"), "-q", "--trust-model-code")  # fmt: skip
    # 70 training rows in batches of 20 = 4 steps an epoch; step 15 is epoch 4, batch 3.
    line = assert_one_line_error(result, "training diverged", "epoch 4, batch 3", code=1)
    assert "the last good checkpoint is" in line and "(after 3 epochs and 12 steps)" in line
    state, _ = load_checkpoint(tmp_path / "run.partial" / "checkpoints" / "last.safetensors")
    assert state["fit"]["epoch"] == 3 and state["fit"]["step"] == 12
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_non_finite_weights_are_not_checkpointed(tmp_path):
    path = tmp_path / "c.safetensors"
    checkpointer = Checkpointer(path, every_epochs=1)
    trainer = Trainer(loss="mse", epochs=1, device="cpu", callbacks=[checkpointer])
    model = torch.nn.Linear(2, 1)
    trainer.fit(model, (torch.randn(8, 2), torch.randn(8, 1)))
    good = path.read_bytes()
    with torch.no_grad():
        model.weight.fill_(float("inf"))
    with pytest.raises(TrainingDiverged, match=r"the weight weight became inf") as caught:
        checkpointer.save(trainer.last_fit)
    assert caught.value.quantity == "weight weight"
    assert path.read_bytes() == good


def test_a_fit_that_diverges_keeps_its_last_good_checkpoint_and_names_it(tmp_path):
    class Poison(Callback):
        def on_epoch_end(self, fit, logs):
            if fit.state.epoch == 2:
                with torch.no_grad():
                    fit.model.weight.fill_(float("inf"))

    path = tmp_path / "c.safetensors"
    trainer = Trainer(loss="mse", epochs=4, device="cpu", callbacks=[Poison(), Checkpointer(path, every_epochs=1)])
    with pytest.raises(TrainingDiverged, match=r"last good checkpoint is .*c.safetensors \(after 1 epochs") as caught:
        trainer.fit(torch.nn.Linear(2, 1), (torch.randn(8, 2), torch.randn(8, 1)))
    assert caught.value.quantity == "weight weight"
    state, _ = load_checkpoint(path)
    assert state["fit"]["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())


# ------------------------------------------------------ architecture checks
def test_mismatched_architecture_lists_keys_and_changes_nothing(tmp_path):
    torch.manual_seed(0)
    source = MLP(3, hidden=(4,))
    save_state_dict(source, tmp_path / "m.safetensors")
    target = MLP(3, hidden=(4, 4))
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(InputError) as err:
        load_into(target, tmp_path / "m.safetensors")
    message = str(err.value)
    assert "missing keys: net.4.weight, net.4.bias" in message
    assert "mismatched shapes: net.2.weight (file (1, 4), model (4, 4)), net.2.bias (file (1,), model (4,))" in message
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())


def test_tutorial_fixtures_still_load_with_the_values_the_tutorial_printed():
    """The scan refuses nothing a plain ``torch.save(model.state_dict())`` writes (here, from a GPU)."""
    expected = {
        "01_pytorch_workflow_model_0.pth": {"weights": 0.5784, "bias": 0.3513},
        "01_pytorch_workflow_model_1.pth": {"linear_layer.weight": 0.6968, "linear_layer.bias": 0.3025},
    }
    for name, values in expected.items():
        state = load_state_dict(TUTORIAL_FIXTURES / name)
        assert {k: round(v.item(), 4) for k, v in state.items()} == values


def test_run_with_edited_architecture_fails_before_loading(small_run):
    meta = json.loads((small_run / "model.json").read_text())
    meta["architecture"]["args"]["hidden"] = [32, 32]
    (small_run / "model.json").write_text(json.dumps(meta))
    write_manifest(small_run)
    with pytest.raises(InputError, match=r"does not fit MLP; nothing was loaded; mismatched shapes"):
        load_run(small_run)
