"""A run folder's integrity: its manifest, and its signature.

The manifest (``manifest.json``) holds the SHA-256 and size of every file, checked before
anything in the folder is parsed; the bytes checked are the bytes parsed. It detects damage,
not deliberate edits: anyone can change ``model.json`` and write the manifest again. A
signature made with an elliptic-curve private key (OpenSSF model signing, the
``torchwork[signing]`` extra; no network, no Sigstore) covers every file of the folder, hidden
ones and ``.git`` ones included, so a changed, added or removed file, another key or an altered
signature is refused. ``signature.sig`` is a Sigstore bundle (JSON): a DSSE envelope around an
in-toto statement that lists the SHA-256 of every file, the ECDSA signature over it, and the
SHA-256 of the signer's public key as a hint; no certificate, no transparency-log entry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from torchwork.core.errors import InputError, IntegrityError, TorchworkError, UnsafeFileError, one_line
from torchwork.files.atomic import TMP_SUFFIX, atomic_write, sha256_file
from torchwork.files.weights import read_regular_file

# --------------------------------------------------------------------------------- the manifest
MANIFEST = "manifest.json"
MANIFEST_FORMAT = "torchwork-manifest/1"
SIGNATURE = "signature.sig"  # written after the manifest by `torchwork sign`; never listed in it
PRIVATE_PREFIX = ".torchwork-"  # torchwork's own bookkeeping (who holds a folder): never listed


def _canonical(files: dict[str, dict[str, object]]) -> bytes:
    body = {"format": MANIFEST_FORMAT, "files": files}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _listed_files(folder: Path) -> list[str]:
    names = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if (
            path.is_file()
            and rel not in (MANIFEST, SIGNATURE)
            and not path.name.endswith(TMP_SUFFIX)
            and not path.name.startswith(PRIVATE_PREFIX)
        ):
            names.append(rel)
    return names


def write_manifest(folder: str | os.PathLike[str]) -> Path:
    """Record the SHA-256 and size of every file in ``folder`` in ``folder/manifest.json``.

    The manifest carries the hash of its own contents, so a damaged manifest is detected too.
    """
    folder = Path(folder)
    files = {
        rel: {"sha256": sha256_file(folder / rel), "bytes": (folder / rel).stat().st_size}
        for rel in _listed_files(folder)
    }
    doc = {"format": MANIFEST_FORMAT, "files": files, "sha256": hashlib.sha256(_canonical(files)).hexdigest()}
    return atomic_write(folder / MANIFEST, json.dumps(doc, indent=1, sort_keys=True) + "\n")


def _check_entry(folder: Path, manifest: Path, rel: Any, entry: Any) -> tuple[Path, str, int]:
    """A manifest entry, checked for its form before anything is opened: a relative path inside
    the folder, a SHA-256 in hex and a size."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise IntegrityError(f"{manifest}: lists a path outside the folder: {rel!r}")
    ok = (
        isinstance(entry, dict)
        and isinstance(entry.get("sha256"), str)
        and len(entry["sha256"]) == 64
        and all(c in "0123456789abcdef" for c in entry["sha256"])
        and type(entry.get("bytes")) is int
        and entry["bytes"] >= 0
    )
    if not ok:
        raise IntegrityError(f"{manifest}: damaged entry for {rel!r} (expected a sha256 and a size)")
    return folder / rel, entry["sha256"], entry["bytes"]


def verify_manifest(
    folder: str | os.PathLike[str], required: Iterable[str] = (), keep: Iterable[str] = ()
) -> dict[str, bytes]:
    """Check every file listed in ``folder/manifest.json``; return the bytes of the files in ``keep``.

    The bytes returned are the bytes that were hashed (each file is read once): parse them,
    not the file again, and a file swapped after the check is never the one loaded. A missing
    manifest, a damaged one, a file missing, truncated or changed, something that is not a
    regular file where the manifest lists one, or a ``required`` file that the manifest does
    not list raises :class:`IntegrityError` naming the file and, for a change, the expected
    and actual SHA-256.
    """
    folder = Path(folder)
    manifest = folder / MANIFEST
    if not manifest.exists() and not manifest.is_symlink():
        raise IntegrityError(f"{manifest}: missing; the folder cannot be checked, so it is not trusted")
    try:  # a FIFO or a device there is refused, not read (it would block)
        raw = read_regular_file(manifest, what="manifest")
    except InputError as exc:
        raise IntegrityError(f"{exc}; the folder is not trusted") from None
    try:
        doc = json.loads(raw)
        files, recorded = doc["files"], doc["sha256"]
        if doc["format"] != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError
        expected_self = hashlib.sha256(_canonical(files)).hexdigest()
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        raise IntegrityError(f"{manifest}: damaged (not a torchwork manifest)") from None
    if recorded != expected_self:
        raise IntegrityError(f"{manifest}: damaged (expected sha256 {recorded}, actual {expected_self})")
    for name in required:
        if name not in files:
            raise IntegrityError(f"{folder / name}: not listed in {manifest}")
    keep = set(keep)
    kept: dict[str, bytes] = {}
    for rel, entry in files.items():
        path, expected, size = _check_entry(folder, manifest, rel, entry)
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            raise IntegrityError(f"{path}: missing (listed in {manifest})") from None
        if not stat.S_ISREG(info.st_mode):
            raise IntegrityError(f"{path}: not a regular file (listed in {manifest} as one)")
        if info.st_size != size:
            raise IntegrityError(
                f"{path}: truncated or extended: expected {size} bytes (sha256 {expected}), found {info.st_size}"
            )
        if rel in keep:
            data = _read_exactly(path, size)
            actual = hashlib.sha256(data).hexdigest()
            kept[rel] = data
        else:
            actual = sha256_file(path)
        if actual != expected:
            raise IntegrityError(f"{path}: changed since it was written: expected sha256 {expected}, actual {actual}")
    return kept


def _read_exactly(path: Path, size: int) -> bytes:
    with open(path, "rb") as f:
        data = f.read(size + 1)
    if len(data) != size:
        raise IntegrityError(f"{path}: changed while it was read (expected {size} bytes, read {len(data)})")
    return data


def unlisted_files(folder: str | os.PathLike[str]) -> list[str]:
    """Files in ``folder`` that its manifest does not list (a user's own files, say); [] if none.

    Raises :class:`IntegrityError` if there is no readable manifest.
    """
    folder = Path(folder)
    try:
        listed = set(json.loads(read_regular_file(folder / MANIFEST, what="manifest"))["files"])
    except (InputError, ValueError, KeyError, TypeError):
        raise IntegrityError(f"{folder / MANIFEST}: missing or damaged") from None
    extra = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if (
            rel in (MANIFEST, SIGNATURE)
            or path.name.startswith(PRIVATE_PREFIX)
            or (path.is_dir() and not path.is_symlink())
        ):
            continue
        if rel not in listed:
            extra.append(rel)
    return extra


# ----------------------------------------------------------------------------------- signatures
INSTALL_HINT = "pip install 'torchwork[signing]'"
_CURVES = {"secp256r1", "secp384r1", "secp521r1"}  # what model_signing accepts: P-256, P-384, P-521
# What a torchwork signature must have been made with: every file but the signature, SHA-256, no symlinks.
_SERIALIZATION = {"method": "files", "hash_type": "sha256", "allow_symlinks": False, "ignore_paths": [SIGNATURE]}


def _library() -> tuple[ModuleType, ModuleType, ModuleType]:
    """model_signing's ``hashing``, ``signing`` and ``verifying`` modules, or an InputError with the install hint."""
    try:
        from model_signing import hashing, signing, verifying
    except ImportError as exc:
        missing = exc.name or "model_signing"
        raise InputError(
            f"signing runs needs the optional package model-signing ({missing} is missing): {INSTALL_HINT}"
        ) from None
    return hashing, signing, verifying


def _hashing_config(hashing: ModuleType) -> Any:
    """Hash every file (SHA-256), .git ones included, except the signature; refuse symlinks."""
    return hashing.Config().set_ignored_paths(paths=[SIGNATURE], ignore_git_paths=False).set_allow_symlinks(False)


def _name(rel: str) -> str:
    return rel if rel.isprintable() else ascii(rel)


def _read_key(path: Path, what: str) -> bytes:
    try:  # a regular file only: a FIFO given as a key would block
        return read_regular_file(path, "", what=what)
    except InputError as exc:
        raise InputError(f"{path}: cannot read the {what}{exc}") from None


def _check_curve(path: Path, key: Any, what: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) or key.curve.name not in _CURVES:
        raise InputError(f"{path}: not an elliptic-curve {what} on P-256, P-384 or P-521 (what signing uses)")


def _check_private_key(path: Path, password: bytes | None) -> None:
    """A PEM elliptic-curve private key that opens with ``password``, or InputError."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    data = _read_key(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password)
    except TypeError:
        rule = "encrypted: give its password" if password is None else "not encrypted, but a password was given"
        raise InputError(f"{path}: the private key is {rule}") from None
    except (ValueError, UnsupportedAlgorithm):
        hint = " (a public key: sign with the private one)" if b"PUBLIC KEY" in data else ""
        wrong = ", or the password is wrong" if password is not None else ""
        raise InputError(f"{path}: not a PEM private key{wrong}{hint}") from None
    _check_curve(path, key, "private key")


def _check_public_key(path: Path) -> None:
    """A PEM elliptic-curve public key, or InputError."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    data = _read_key(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        hint = " (a private key: verify with the public one)" if b"PRIVATE KEY" in data else ""
        raise InputError(f"{path}: not a PEM public key{hint}") from None
    _check_curve(path, key, "public key")


def _check_tree(folder: Path, error: type[TorchworkError], rule: str) -> None:
    """Plain files and folders only: a symbolic link or a special file raises ``error``."""
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise error(f"{path}: a symbolic link; {rule}")
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise error(f"{path}: not a plain file; {rule}")


def _statement(raw: bytes) -> dict[str, Any]:
    """The in-toto statement inside a signature's DSSE envelope (not checked here)."""
    statement = json.loads(base64.b64decode(json.loads(raw)["dsseEnvelope"]["payload"], validate=True))
    if not isinstance(statement, dict):
        raise ValueError("not an in-toto statement")
    return statement


def _differences(folder: Path, raw: bytes) -> str:
    """Which files changed, appeared or disappeared since signing ("" if the statement cannot say)."""
    try:
        resources = _statement(raw)["predicate"]["resources"]
        signed = {r["name"]: r["digest"] for r in resources if r["algorithm"] == "sha256"}
        if len(signed) != len(resources):
            return ""
    except (ValueError, KeyError, TypeError):
        return ""
    actual = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {SIGNATURE}
    changed = sorted(rel for rel in actual & signed.keys() if sha256_file(folder / rel) != signed[rel])
    groups = [
        (changed, "changed"),
        (sorted(actual - signed.keys()), "added"),
        (sorted(signed.keys() - actual), "removed"),
    ]
    parts = [f"{', '.join(map(_name, names))} {verb}" for names, verb in groups if names]
    return "; ".join(parts) + " since it was signed" if parts else ""


def _verify_error(folder: Path, public_key: Path, raw: bytes, exc: Exception) -> IntegrityError:
    """The one-line IntegrityError for whatever model_signing raised."""
    from cryptography.exceptions import InvalidSignature

    sig = folder / SIGNATURE
    text = one_line(exc, None, first_line=False)
    if isinstance(exc, InvalidSignature) or text.startswith("Key mismatch"):
        return IntegrityError(f"{sig}: does not verify with the public key {public_key} (another key signed the run, "
                              "or the signature was altered); the run is not trusted")  # fmt: skip
    if text.startswith("Signature mismatch"):  # the signature is authentic; the files are not what it lists
        detail = _differences(folder, raw) or text
        return IntegrityError(f"{folder}: does not match its signature: {detail}; the run is not trusted")
    if isinstance(exc, OSError):
        return IntegrityError(f"{folder}: cannot be checked against its signature: {exc.strerror or exc}")
    return IntegrityError(f"{sig}: damaged (not a model signature); the run is not trusted")


def is_signed(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a signature (not whether it verifies)."""
    return os.path.lexists(Path(folder) / SIGNATURE)


def sign_folder(
    folder: str | os.PathLike[str], private_key: str | os.PathLike[str], *, password: str | None = None
) -> Path:
    """Sign every file of the run ``folder`` with a PEM elliptic-curve private key; return ``folder/signature.sig``.

    The folder must be a torchwork run whose manifest checks; a previous signature is replaced.
    No network is used.
    """
    folder, key = Path(folder), Path(private_key)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such run folder")
    if not (folder / MANIFEST).is_file():
        raise InputError(f"{folder}: not a torchwork run (no {MANIFEST}); only run folders are signed")
    hashing, signing, _ = _library()
    secret = password.encode() if password is not None else None
    _check_private_key(key, secret)
    _check_tree(folder, InputError, "a signed run holds plain files only")
    verify_manifest(folder)  # never sign damage
    with tempfile.TemporaryDirectory(prefix="torchwork-sign-") as tmp:
        out = Path(tmp) / SIGNATURE
        try:
            # model_signing passes the password on to cryptography, which wants bytes.
            config = signing.Config().use_elliptic_key_signer(private_key=key, password=secret)
            config.set_hashing_config(_hashing_config(hashing)).sign(folder.resolve(), out)
        except OSError as exc:
            raise InputError(f"{folder}: cannot be signed: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise InputError(f"{folder}: cannot be signed: {one_line(exc)}") from None
        data = out.read_bytes()
    return atomic_write(folder / SIGNATURE, data)


def verify_folder(folder: str | os.PathLike[str], public_key: str | os.PathLike[str]) -> None:
    """Check that ``folder`` is exactly what the holder of ``public_key``'s private key signed.

    Call it before anything in the folder is parsed. No signature: UnsafeFileError. A file changed,
    added or removed, a symbolic link, another key, or a damaged signature: IntegrityError. No network.
    """
    folder, key = Path(folder), Path(public_key)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such run folder")
    hashing, _, verifying = _library()
    _check_public_key(key)
    sig = folder / SIGNATURE
    if not is_signed(folder):
        raise UnsafeFileError(f"{folder}: not signed (no {SIGNATURE}); --verify-key asks for a signed run")
    _check_tree(folder, IntegrityError, "a signed run holds plain files only, so the run is not trusted")
    try:
        raw = sig.read_bytes()
    except OSError as exc:
        raise IntegrityError(f"{sig}: cannot be read: {exc.strerror or exc}") from None
    # The library reads a private copy, so the bytes it verifies are the bytes read below.
    with tempfile.TemporaryDirectory(prefix="torchwork-verify-") as tmp:
        copy = Path(tmp) / SIGNATURE
        copy.write_bytes(raw)
        try:
            config = verifying.Config().use_elliptic_key_verifier(public_key=key)
            config.set_hashing_config(_hashing_config(hashing)).verify(folder.resolve(), copy)
        except Exception as exc:  # model_signing raises ValueError, KeyError, InvalidSignature, pydantic's, ...
            raise _verify_error(folder, key, raw, exc) from None
    # Authentic now. A signature made with other settings (ignoring .git files, say) could let files in unseen.
    try:
        serialization = _statement(raw)["predicate"]["serialization"]
        settings = {k: serialization.get(k) for k in _SERIALIZATION}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise IntegrityError(f"{sig}: damaged (not a model signature); the run is not trusted") from None
    if settings != _SERIALIZATION:
        raise IntegrityError(f"{sig}: made with settings torchwork does not accept ({json.dumps(serialization)}); "
                             f"sign the run with torchwork sign")  # fmt: skip
