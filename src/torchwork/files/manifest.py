"""A run folder's manifest: the SHA-256 and size of every file, checked before anything is parsed."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from torchwork.core.errors import IntegrityError
from torchwork.files.atomic import TMP_SUFFIX, atomic_write, sha256_file

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "torchwork-manifest/1"


def _canonical(files: dict[str, dict[str, object]]) -> bytes:
    body = {"format": MANIFEST_FORMAT, "files": files}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _listed_files(folder: Path) -> list[str]:
    names = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel != MANIFEST and not path.name.endswith(TMP_SUFFIX):
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
