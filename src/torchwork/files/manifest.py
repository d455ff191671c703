"""A run folder's manifest: the SHA-256 and size of every file, checked before anything is parsed."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from torchwork.core.errors import InputError, IntegrityError
from torchwork.files.atomic import TMP_SUFFIX, atomic_write, sha256_file
from torchwork.files.regular import read_regular_file

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
