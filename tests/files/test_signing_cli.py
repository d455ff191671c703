"""Signing at the command line (issue 11, item 11): `torchwork sign RUN --key KEY`, then `--verify-key PUB`
on predict, evaluate, inspect and export. A run edited after signing (its manifest recomputed), an unsigned
run and a run signed by another key are refused in one line; without --verify-key nothing changes."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.support import assert_one_line_error, cli, refuse_network, run_cli, write_keys
from torchwork.files.integrity import SIGNATURE, write_manifest

pytestmark = pytest.mark.slow  # signs and verifies in new processes


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    refuse_network(monkeypatch)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, Path]:
    """(data.csv, run): one short, unsigned run; tests sign copies of it."""
    tmp = tmp_path_factory.mktemp("signing-cli")
    frame = pd.DataFrame({"a": [float(i % 17) for i in range(90)], "b": [float(i % 5) for i in range(90)]})
    frame["y"] = 2 * frame.a - frame.b + 1
    frame.to_csv(tmp / "data.csv", index=False)
    result = cli("train", str(tmp / "data.csv"), "--target", "y", "--epochs", "3", "--hidden", "8",
                 "--out", str(tmp / "run"), "-q")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return tmp / "data.csv", tmp / "run"


@pytest.fixture
def keys(tmp_path) -> dict[str, tuple[Path, Path]]:
    return {name: write_keys(tmp_path, name) for name in ("alice", "mallory")}


@pytest.fixture
def signed(base, keys, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(base[1], run)
    result = cli("sign", str(run), "--key", str(keys["alice"][0]))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"signed {run}: {run / SIGNATURE}"
    return run


def predictions(result) -> pd.Series:
    assert result.returncode == 0, result.stderr
    return pd.read_csv(io.StringIO(result.stdout))["prediction"]


def shift_scaler_mean(run: Path, by: float = 1000.0) -> None:
    """The edit the manifest cannot see: a feature's scaler mean moved, then the manifest rewritten."""
    meta = json.loads((run / "model.json").read_text())
    column = next(c for c in meta["preprocessing"]["columns"] if c["name"] == "a")
    column["mean"] += by
    (run / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_manifest(run)


# ------------------------------------------------------------ round trip
def test_sign_then_predict_with_verify_key_in_real_processes(base, keys, tmp_path):
    data, run = base
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    signed = run_cli("sign", str(copy), "--key", str(keys["alice"][0]))
    assert signed.returncode == 0 and signed.stdout.startswith(f"signed {copy}"), signed.stderr
    assert (copy / SIGNATURE).is_file()
    verified = run_cli("predict", str(copy), str(data), "--verify-key", str(keys["alice"][1]))
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr == f"signature verified (key {keys['alice'][1]})\n"  # stdout is the CSV alone
    pd.testing.assert_series_equal(predictions(verified), predictions(cli("predict", str(run), str(data))))


def test_every_command_that_loads_a_run_verifies_it(base, signed, keys, tmp_path):
    data, _ = base
    public = str(keys["alice"][1])
    assert cli("evaluate", str(signed), str(data), "--verify-key", public).returncode == 0
    shown = cli("inspect", str(signed), "--verify-key", public)
    assert shown.returncode == 0 and "parameters:" in shown.stdout, shown.stderr
    assert shown.stderr == f"signature verified (key {public})\n"  # issue 18, item 24: it said nothing


def test_verify_key_never_passes_in_silence_where_there_is_nothing_to_verify(signed, keys, tmp_path):
    public = str(keys["alice"][1])
    partial = tmp_path / "other.partial"
    shutil.copytree(signed, partial)
    assert_one_line_error(cli("inspect", str(partial), "--verify-key", public), "an unfinished run is not signed")
    weights = signed / "model.safetensors"
    assert_one_line_error(cli("inspect", str(weights), "--verify-key", public), "not a weights file")


# ------------------------------------------------------------ refusals
def test_an_edited_scaler_with_a_recomputed_manifest_is_refused_with_verify_key(base, signed, keys):
    data, _ = base
    before = predictions(cli("predict", str(signed), str(data)))
    shift_scaler_mean(signed)
    after = predictions(cli("predict", str(signed), str(data)))  # the attack is real: the manifest is fooled
    assert (after - before).abs().min() > 1.0
    public = str(keys["alice"][1])
    for command in (["predict", str(signed), str(data)], ["evaluate", str(signed), str(data)],
                    ["inspect", str(signed)], ["export", str(signed)]):  # fmt: skip
        result = cli(*command, "--verify-key", public)
        line = assert_one_line_error(result, f"{signed}: does not match its signature", "model.json changed")
        assert "the run is not trusted" in line or "changed since it was signed" in line
        assert result.stdout == ""
    assert not list(signed.parent.glob("*.onnx"))


def test_an_unsigned_run_is_refused_with_verify_key(base, keys):
    data, run = base
    for command in (["predict", str(run), str(data)], ["inspect", str(run)]):
        result = cli(*command, "--verify-key", str(keys["alice"][1]))
        assert_one_line_error(result, f"{run}: not signed (no {SIGNATURE})", "--verify-key asks for a signed run")
        assert result.stdout == ""
    assert cli("predict", str(run), str(data)).returncode == 0  # signing is optional: without a key, it loads


def test_a_run_signed_by_another_key_is_refused(base, signed, keys):
    data, _ = base
    assert cli("sign", str(signed), "--key", str(keys["mallory"][0])).returncode == 0
    result = cli("predict", str(signed), str(data), "--verify-key", str(keys["alice"][1]))
    assert_one_line_error(result, str(signed / SIGNATURE), f"does not verify with the public key {keys['alice'][1]}")
    assert cli("predict", str(signed), str(data), "--verify-key", str(keys["mallory"][1])).returncode == 0


def test_an_edit_resigned_by_another_key_is_refused_in_a_new_process(base, signed, keys):
    """Mallory shifts the scaler, rewrites the manifest and signs with her key: Alice's key refuses it."""
    data, _ = base
    shift_scaler_mean(signed)
    assert cli("sign", str(signed), "--key", str(keys["mallory"][0])).returncode == 0
    result = run_cli("predict", str(signed), str(data), "--verify-key", str(keys["alice"][1]))
    assert_one_line_error(result, "does not verify with the public key")
    assert result.stdout == ""


def test_a_removed_signature_is_refused(base, signed, keys):
    data, _ = base
    (signed / SIGNATURE).unlink()
    assert_one_line_error(cli("predict", str(signed), str(data), "--verify-key", str(keys["alice"][1])), "not signed")


def test_a_damaged_signature_is_one_line(base, signed, keys):
    data, _ = base
    (signed / SIGNATURE).write_bytes(b"\x00garbage")
    result = cli("predict", str(signed), str(data), "--verify-key", str(keys["alice"][1]))
    assert_one_line_error(result, f"{signed / SIGNATURE}: damaged (not a model signature)")


# ------------------------------------------------------------ sign's own errors
def test_sign_errors_are_one_line_and_sign_nothing(base, keys, tmp_path):
    _, run = base
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert_one_line_error(
        cli("sign", str(copy), "--key", str(keys["alice"][1])), "a public key: sign with the private one"
    )
    assert_one_line_error(cli("sign", str(copy), "--key", str(tmp_path / "missing.pem")), "cannot read the private key")
    assert_one_line_error(cli("sign", str(tmp_path / "nothing"), "--key", str(keys["alice"][0])), "no such run folder")
    (copy / "history.csv").write_text("epoch,train_loss\n1,0.0\n")  # damage: the manifest no longer matches
    assert_one_line_error(cli("sign", str(copy), "--key", str(keys["alice"][0])), "history.csv")
    assert not (copy / SIGNATURE).exists()


def test_sign_with_a_password_from_the_environment(base, tmp_path, monkeypatch):
    data, run = base
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    private, public = write_keys(tmp_path, "locked", password=b"s3cret")
    assert_one_line_error(cli("sign", str(copy), "--key", str(private)), "encrypted: give its password")
    assert_one_line_error(cli("sign", str(copy), "--key", str(private), "--password-env", "TW_TEST_UNSET"),
                          "no such environment variable")  # fmt: skip
    monkeypatch.setenv("TW_TEST_PASSWORD", "s3cret")
    assert cli("sign", str(copy), "--key", str(private), "--password-env", "TW_TEST_PASSWORD").returncode == 0
    assert cli("predict", str(copy), str(data), "--verify-key", str(public)).returncode == 0
