"""Writing files so that they are either whole or absent.

Every file torchwork writes goes through :func:`atomic_write`: the bytes go to a
temporary file in the same folder, are flushed and fsynced, the file is renamed over its
final name with ``os.replace``, and the folder is fsynced. A crash leaves the old file or
the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import IO

from torchwork.core.errors import OutputError

TMP_SUFFIX = ".tmp"


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


def atomic_write(
    path: str | os.PathLike[str], data: bytes | str | Callable[[IO[bytes]], None], *, keep_mode: bool = False
) -> Path:
    """Write ``data`` (bytes, text, or a function that writes to a binary file) to ``path`` atomically.

    ``keep_mode``: a file that is replaced keeps its permission bits (a user's 600 stays 600).
    """
    path = Path(path)
    directory = path.parent
    mode = _MODE
    if keep_mode:
        with suppress(OSError):
            mode = stat.S_IMODE(os.stat(path).st_mode)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=directory)
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
        os.chmod(tmp, mode)
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
