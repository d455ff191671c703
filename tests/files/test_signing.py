"""Signed run folders: what the key holder signed verifies, and any change, added or removed file,
other key or damaged signature is refused with one line, without the network."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.support import refuse_network, write_keys
from torchwork.core.errors import InputError, IntegrityError, TorchworkError, UnsafeFileError
from torchwork.files.integrity import (
    MANIFEST,
    SIGNATURE,
    is_signed,
    sign_folder,
    verify_folder,
    verify_manifest,
    write_manifest,
)

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    refuse_network(monkeypatch)


def make_run(folder: Path, model_bytes: int = 4096) -> Path:
    """A fake run folder: the files a run holds, about ``model_bytes`` of weights, and its manifest."""
    (folder / "plots").mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    meta = {"format": "torchwork-model/1", "preprocessing": {"x_scaler": {"mean": [1.5], "std": [2.0]}}}
    (folder / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    (folder / "config.json").write_text('{"epochs": 3}\n')
    (folder / "run.json").write_text('{"seconds": 1.0}\n')
    (folder / "metrics.json").write_text('{"test": {"mae": 0.1}}\n')
    (folder / "history.csv").write_text("epoch,train_loss\n1,0.5\n2,0.25\n")
    (folder / "model.safetensors").write_bytes(os.urandom(model_bytes))
    (folder / "checkpoints" / "last.safetensors").write_bytes(os.urandom(model_bytes))
    (folder / "plots" / "loss.png").write_bytes(os.urandom(model_bytes // 2))
    (folder / "report.html").write_text("<html>report</html>\n")
    write_manifest(folder)
    return folder


@pytest.fixture
def keys(tmp_path):
    return write_keys(tmp_path, "alice")


@pytest.fixture
def signed(tmp_path, keys):
    run = make_run(tmp_path / "run")
    sign_folder(run, keys[0])
    return run


def one_line(exc: BaseException) -> str:
    """The error reads as one line that the CLI prints, with no chained traceback."""
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text, text
    chained = exc.__cause__ is not None or (exc.__context__ is not None and not exc.__suppress_context__)
    assert not chained, "raise ... from None: the CLI shows no chain"
    return text


# ------------------------------------------------------------ what verifies
def test_sign_then_verify(signed, keys):
    assert is_signed(signed)
    verify_folder(signed, keys[1])
    verify_manifest(signed)  # the signature is not in the manifest and does not disturb it


def test_signature_is_a_key_signed_bundle_listing_every_file(signed):
    bundle = json.loads((signed / SIGNATURE).read_text())
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert bundle["verificationMaterial"]["tlogEntries"] == []  # no transparency log: nothing left the machine
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    names = {r["name"] for r in statement["predicate"]["resources"]}
    assert names == {
        "model.json", "config.json", "run.json", "metrics.json", "history.csv", "model.safetensors",
        "checkpoints/last.safetensors", "plots/loss.png", "report.html", MANIFEST,
    }  # fmt: skip
    assert statement["predicate"]["serialization"]["ignore_paths"] == [SIGNATURE]
    assert not [p for p in signed.iterdir() if p.name.endswith(".tmp")]  # written atomically, nothing left over


def test_resigning_replaces_the_signature(signed, keys, tmp_path):
    bob_private, bob_public = write_keys(tmp_path, "bob")
    sign_folder(signed, bob_private)
    verify_folder(signed, bob_public)
    with pytest.raises(IntegrityError):
        verify_folder(signed, keys[1])


def test_an_encrypted_private_key_with_its_password(tmp_path):
    private, public = write_keys(tmp_path, "locked", password=b"s3cret")
    run = make_run(tmp_path / "run")
    with pytest.raises(InputError, match="encrypted: give its password"):
        sign_folder(run, private)
    with pytest.raises(InputError, match="password is wrong"):
        sign_folder(run, private, password="wrong")
    sign_folder(run, private, password="s3cret")
    verify_folder(run, public)


def test_renaming_or_moving_the_folder_keeps_the_signature(signed, keys, tmp_path):
    moved = signed.rename(tmp_path / "elsewhere")
    verify_folder(moved, keys[1])


# ------------------------------------------------------------ what does not
def test_a_deliberate_edit_with_a_recomputed_manifest_is_caught(signed, keys):
    """The attack the manifest cannot see: shift every prediction by 1000, then rewrite the manifest."""
    meta = json.loads((signed / "model.json").read_text())
    meta["preprocessing"]["x_scaler"]["mean"][0] += 1000
    (signed / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    write_manifest(signed)
    verify_manifest(signed)  # the manifest is fooled
    with pytest.raises(IntegrityError) as err:
        verify_folder(signed, keys[1])
    text = one_line(err.value)
    assert text.startswith(f"{signed}: does not match its signature")
    assert "manifest.json, model.json changed since it was signed" in text


@pytest.mark.parametrize("added", ["extra.txt", "plots/extra.png", ".hidden", ".git/config", ".gitignore", "x.tmp"])
def test_an_added_file_is_caught_hidden_and_git_ones_too(signed, keys, added):
    path = signed / added
    path.parent.mkdir(exist_ok=True)
    path.write_text("planted\n")
    with pytest.raises(IntegrityError) as err:
        verify_folder(signed, keys[1])
    assert f"{added} added since it was signed" in one_line(err.value)


def test_an_added_empty_folder_does_not_matter_but_a_file_in_it_does(signed, keys):
    (signed / "empty").mkdir()
    verify_folder(signed, keys[1])
    (signed / "empty" / "payload.bin").write_bytes(b"\x00")
    with pytest.raises(IntegrityError, match=r"empty/payload\.bin added"):
        verify_folder(signed, keys[1])


@pytest.mark.parametrize("removed", ["history.csv", "plots/loss.png", MANIFEST])
def test_a_removed_file_is_caught(signed, keys, removed):
    (signed / removed).unlink()
    with pytest.raises(IntegrityError) as err:
        verify_folder(signed, keys[1])
    assert f"{removed} removed since it was signed" in one_line(err.value)


def test_a_changed_byte_in_the_weights_is_caught(signed, keys):
    path = signed / "checkpoints" / "last.safetensors"
    data = bytearray(path.read_bytes())
    data[100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"checkpoints/last\.safetensors changed"):
        verify_folder(signed, keys[1])


def test_a_symlink_is_refused(signed, keys, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text("{}\n")
    (signed / "link.json").symlink_to(outside)
    with pytest.raises(IntegrityError) as err:
        verify_folder(signed, keys[1])
    assert "link.json: a symbolic link" in one_line(err.value)
    with pytest.raises(InputError, match="a symbolic link"):
        sign_folder(signed, tmp_path / "alice.pem")


def test_a_symlinked_signature_is_refused(signed, keys, tmp_path):
    moved = tmp_path / "sig-elsewhere"
    (signed / SIGNATURE).rename(moved)
    (signed / SIGNATURE).symlink_to(moved)
    with pytest.raises(IntegrityError, match="a symbolic link"):
        verify_folder(signed, keys[1])


def test_another_public_key_is_refused(signed, tmp_path):
    _, mallory_public = write_keys(tmp_path, "mallory")
    with pytest.raises(IntegrityError) as err:
        verify_folder(signed, mallory_public)
    text = one_line(err.value)
    assert text.startswith(f"{signed / SIGNATURE}: does not verify with the public key {mallory_public}")


def test_resigning_with_another_key_is_caught(signed, keys, tmp_path):
    """Mallory edits the run and signs it with her own key: Alice's public key refuses it."""
    mallory_private, _ = write_keys(tmp_path, "mallory")
    (signed / "metrics.json").write_text('{"test": {"mae": 0.0001}}\n')
    write_manifest(signed)
    sign_folder(signed, mallory_private)
    with pytest.raises(IntegrityError, match="does not verify with the public key"):
        verify_folder(signed, keys[1])


def test_a_forged_key_hint_with_the_wrong_signature_is_caught(signed, keys, tmp_path):
    """A signature made by another key, with the hint edited to name Alice's key: the ECDSA check refuses it."""
    mallory_private, _ = write_keys(tmp_path, "mallory")
    alice_hint = json.loads((signed / SIGNATURE).read_text())["verificationMaterial"]["publicKey"]["hint"]
    sign_folder(signed, mallory_private)
    bundle = json.loads((signed / SIGNATURE).read_text())
    bundle["verificationMaterial"]["publicKey"]["hint"] = alice_hint
    (signed / SIGNATURE).write_text(json.dumps(bundle))
    with pytest.raises(IntegrityError, match="does not verify with the public key"):
        verify_folder(signed, keys[1])


def test_an_edited_payload_is_caught(signed, keys):
    """Someone rewrites the signed list of files to match an edit: the ECDSA signature no longer matches."""
    bundle = json.loads((signed / SIGNATURE).read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["serialization"]["ignore_paths"].append("planted.py")
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (signed / SIGNATURE).write_text(json.dumps(bundle))
    (signed / "planted.py").write_text("import os\n")
    with pytest.raises(IntegrityError, match="does not verify with the public key"):
        verify_folder(signed, keys[1])


@pytest.mark.parametrize(
    "garbage",
    [b"", b"garbage\n", b"\x00\xff" * 64, b"{}", b'{"mediaType": 1}', b"[1, 2]", b'{"dsseEnvelope": {"payload": "!"}}'],
)
def test_a_damaged_signature_is_one_line(signed, keys, garbage):
    (signed / SIGNATURE).write_bytes(garbage)
    with pytest.raises(IntegrityError) as err:
        verify_folder(signed, keys[1])
    assert one_line(err.value) == f"{signed / SIGNATURE}: damaged (not a model signature); the run is not trusted"


def test_a_truncated_signature_is_refused(signed, keys):
    data = (signed / SIGNATURE).read_bytes()
    (signed / SIGNATURE).write_bytes(data[: len(data) // 2])
    with pytest.raises(IntegrityError) as err:
        verify_folder(signed, keys[1])
    assert "damaged" in one_line(err.value)


def test_a_signature_made_ignoring_files_is_refused(tmp_path, keys):
    """A key holder's model_signing signature that skips .git files would let files in unseen: refused."""
    from model_signing import hashing, signing

    run = make_run(tmp_path / "run")
    config = signing.Config().use_elliptic_key_signer(private_key=keys[0])
    config.set_hashing_config(hashing.Config().set_ignored_paths(paths=[SIGNATURE], ignore_git_paths=True))
    config.sign(run, run / SIGNATURE)
    (run / ".gitignore").write_text("planted\n")
    with pytest.raises(IntegrityError) as err:
        verify_folder(run, keys[1])
    assert "made with settings torchwork does not accept" in one_line(err.value)


# ------------------------------------------------------------ unsigned, keys, folders
def test_an_unsigned_run_with_a_key_is_unsafe(tmp_path, keys):
    run = make_run(tmp_path / "run")
    assert not is_signed(run)
    with pytest.raises(UnsafeFileError) as err:
        verify_folder(run, keys[1])
    assert one_line(err.value) == f"{run}: not signed (no {SIGNATURE}); --verify-key asks for a signed run"
    assert err.value.exit_code == 2


def test_the_error_classes_exit_2(signed, keys, tmp_path):
    (signed / "extra").write_text("x")
    with pytest.raises(TorchworkError) as err:
        verify_folder(signed, keys[1])
    assert type(err.value) is IntegrityError and err.value.exit_code == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a key\n", "not a PEM private key"),
        (b"", "not a PEM private key"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a PEM private key"),
    ],
)
def test_a_private_key_file_that_is_not_a_key(tmp_path, content, message):
    run = make_run(tmp_path / "run")
    bad = tmp_path / "bad.pem"
    bad.write_bytes(content)
    with pytest.raises(InputError) as err:
        sign_folder(run, bad)
    assert one_line(err.value).startswith(f"{bad}: {message}")
    assert not is_signed(run)


def test_keys_of_the_wrong_kind(tmp_path, keys):
    from cryptography.hazmat.primitives.asymmetric import ed25519

    run = make_run(tmp_path / "run")
    with pytest.raises(InputError, match="a public key: sign with the private one"):
        sign_folder(run, keys[1])
    with pytest.raises(InputError, match="a private key: verify with the public one"):
        verify_folder(run, keys[0])
    ed = tmp_path / "ed.pem"
    ed.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(InputError, match="not an elliptic-curve private key on P-256"):
        sign_folder(run, ed)
    with pytest.raises(InputError, match="cannot read the private key"):
        sign_folder(run, tmp_path / "missing.pem")
    with pytest.raises(InputError, match="cannot read the public key"):
        verify_folder(run, tmp_path / "missing.pub")


def test_only_run_folders_are_signed(tmp_path, keys):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "model.json").write_text("{}")
    with pytest.raises(InputError, match=f"not a torchwork run \\(no {MANIFEST}\\)"):
        sign_folder(plain, keys[0])
    with pytest.raises(InputError, match="no such run folder"):
        sign_folder(tmp_path / "missing", keys[0])
    with pytest.raises(InputError, match="no such run folder"):
        verify_folder(tmp_path / "missing", keys[1])
    assert not is_signed(plain)


def test_a_damaged_run_is_not_signed(tmp_path, keys):
    run = make_run(tmp_path / "run")
    (run / "history.csv").write_text("epoch,train_loss\n1,0.1\n")
    with pytest.raises(IntegrityError, match=r"history\.csv"):
        sign_folder(run, keys[0])
    assert not is_signed(run)


def test_without_the_extra_the_error_says_how_to_install(monkeypatch, tmp_path, keys):
    run = make_run(tmp_path / "run")
    for name in [m for m in sys.modules if m == "model_signing" or m.startswith("model_signing.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "model_signing", None)  # import model_signing raises ImportError
    with pytest.raises(InputError) as err:
        sign_folder(run, keys[0])
    assert "pip install 'torchwork[signing]'" in one_line(err.value)
    (run / SIGNATURE).write_text("{}")
    with pytest.raises(InputError, match="torchwork\\[signing\\]"):
        verify_folder(run, keys[1])


# --------------------------------------------------------- fresh process
def test_a_fresh_process_signs_and_verifies(tmp_path, keys):
    """Signing needs nothing set up by an earlier call in the process (how long it takes is benchmarks' to say)."""
    run = make_run(tmp_path / "run", model_bytes=40_000)
    code = (
        "import sys\n"
        "from torchwork.files.integrity import sign_folder, verify_folder\n"
        "sign_folder(sys.argv[1], sys.argv[2]); verify_folder(sys.argv[1], sys.argv[3])\n"
        "print('verified')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", code, str(run), str(keys[0]), str(keys[1])],
        capture_output=True, text=True, env=env, check=True,
    )  # fmt: skip
    assert out.stdout.strip() == "verified"
