"""Writing files so that they are either whole or absent, and checking them later.

Every file torchwork writes goes through :func:`atomic_write`: the bytes go to a
temporary file in the same folder, are flushed and fsynced, the file is renamed over its
final name with ``os.replace``, and the folder is fsynced. A crash leaves the old file or
the new one, never half of one. A run folder carries a SHA-256 manifest
(:func:`write_manifest`) that :func:`verify_manifest` checks before anything is parsed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path
from typing import IO

from torchwork.errors import IntegrityError, TorchworkError

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "torchwork-manifest/1"
_TMP_SUFFIX = ".tmp"


class OutputError(TorchworkError):
    """A file could not be written (read-only folder, full disk, ...). Exit code 1."""


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _file_mode()


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename or a new entry in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes | str | Callable[[IO[bytes]], None]) -> Path:
    """Write ``data`` (bytes, text, or a function that writes to a binary file) to ``path`` atomically."""
    path = Path(path)
    directory = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP_SUFFIX, dir=directory)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _MODE)
        os.replace(tmp, path)
        fsync_dir(directory)
    except BaseException as exc:
        with suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    return path


def ensure_dir(path: str | os.PathLike[str]) -> Path:
    """Create a folder (and its parents); a failure names the folder."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {path}: {exc.strerror or exc}") from None
    if not os.access(path, os.W_OK):
        raise OutputError(f"cannot write to folder {path}: permission denied")
    return path


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _canonical(files: dict[str, dict[str, object]]) -> bytes:
    body = {"format": MANIFEST_FORMAT, "files": files}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _listed_files(folder: Path) -> list[str]:
    names = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel != MANIFEST and not path.name.endswith(_TMP_SUFFIX):
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


def verify_manifest(folder: str | os.PathLike[str], required: Iterable[str] = ()) -> dict[str, str]:
    """Check every file listed in ``folder/manifest.json``; return ``{file: sha256}``.

    A missing manifest, a damaged one, a file missing, truncated or changed, or a
    ``required`` file that the manifest does not list raises :class:`IntegrityError`
    naming the file and, for a change, the expected and actual SHA-256.
    """
    folder = Path(folder)
    manifest = folder / MANIFEST
    try:
        raw = manifest.read_bytes()
    except FileNotFoundError:
        raise IntegrityError(f"{manifest}: missing; the folder cannot be checked, so it is not trusted") from None
    try:
        doc = json.loads(raw)
        files, recorded = doc["files"], doc["sha256"]
        if doc["format"] != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError
        expected_self = hashlib.sha256(_canonical(files)).hexdigest()
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise IntegrityError(f"{manifest}: damaged (not a torchwork manifest)") from None
    if recorded != expected_self:
        raise IntegrityError(f"{manifest}: damaged (expected sha256 {recorded}, actual {expected_self})")
    for name in required:
        if name not in files:
            raise IntegrityError(f"{folder / name}: not listed in {manifest}")
    hashes = {}
    for rel, entry in files.items():
        path = folder / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            raise IntegrityError(f"{manifest}: lists a path outside the folder: {rel!r}")
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise IntegrityError(f"{path}: missing (listed in {manifest})") from None
        actual = sha256_file(path)
        if size != entry["bytes"]:
            raise IntegrityError(
                f"{path}: truncated or extended: expected {entry['bytes']} bytes (sha256 {entry['sha256']}), "
                f"found {size} (sha256 {actual})"
            )
        if actual != entry["sha256"]:
            raise IntegrityError(
                f"{path}: changed since it was written: expected sha256 {entry['sha256']}, actual {actual}"
            )
        hashes[rel] = actual
    return hashes
