"""Folders that are claimed, locked and moved without ever replacing what someone else put there.

- :func:`claim` makes a new folder under a temporary name, locks it (``flock`` on the folder
  itself, held while the process lives; the kernel drops it when the process dies, however it
  dies), records who holds it, and only then renames it to its name without replacing
  anything (``renameat2(RENAME_NOREPLACE)``). Two processes claiming one name: one wins, the
  other is told who holds it.
- :func:`lock` takes the lock of an existing folder (``torchwork resume``), or says who holds it.
- :func:`move_noreplace` renames a folder only if the destination does not exist, atomically;
  :func:`exchange` swaps two folders atomically (``RENAME_EXCHANGE``), so a replaced run is
  never missing, not even for an instant.

On systems without ``renameat2`` the renames fall back to a check and ``os.rename``, which
does not replace a non-empty folder.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import errno
import fcntl
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from torchwork.core.errors import BusyError, OutputError
from torchwork.files.atomic import fsync_dir

OWNER = ".torchwork-owner.json"  # who holds a folder; never listed in a manifest, removed when it is finished
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_AT_FDCWD = -100


def _renameat2() -> object | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_RENAMEAT2 = _renameat2()


def _rename2(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2`` with ``flags``; False if the system or filesystem does not support it."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:  # type: ignore[operator]
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def move_noreplace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst`` only if ``dst`` does not exist (``FileExistsError`` if it does)."""
    if _rename2(src, dst, _RENAME_NOREPLACE):
        return
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, "File exists", str(dst))
    os.rename(src, dst)  # a non-empty dst appearing now makes this fail, never replace it


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing folders atomically; False (nothing done) where the system cannot."""
    return _rename2(a, b, _RENAME_EXCHANGE)


@dataclass
class Lock:
    """A held lock on a folder: keep it (and the process) alive as long as the folder is in use."""

    path: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = -1

    def moved(self, to: Path) -> None:
        """The folder was renamed (the lock follows the folder, not the name)."""
        self.path = to


def _owner() -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}  # fmt: skip


def holder(folder: Path) -> str:
    """Who holds ``folder``, in words, from its owner record."""
    try:
        doc = json.loads((folder / OWNER).read_text())
        return f"process {doc['pid']} on {doc['host']} (since {doc['started']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def lock(folder: Path) -> Lock:
    """Take the lock of an existing folder, or raise :class:`BusyError` naming who holds it."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    if not _flock(fd):
        os.close(fd)
        raise BusyError(f"{folder}: in use by {holder(folder)}; wait for it to finish, or stop it first")
    try:
        (folder / OWNER).write_text(json.dumps(_owner()))
    except OSError as exc:
        os.close(fd)
        raise OutputError(f"cannot write to {folder}: {exc.strerror or exc}") from None
    return Lock(folder, fd)


def is_locked(folder: Path) -> bool:
    """True if a living process holds ``folder``'s lock."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        return not _flock(fd)
    finally:
        os.close(fd)


def claim(folder: Path) -> Lock:
    """Create ``folder``, locked by this process, atomically; ``FileExistsError`` if it exists."""
    parent = folder.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {parent}: {exc.strerror or exc}") from None
    temp = parent / f".{folder.name}.claim-{os.getpid()}"
    try:
        temp.mkdir()
    except OSError as exc:
        raise OutputError(f"cannot create folder {temp}: {exc.strerror or exc}") from None
    held = lock(temp)
    try:
        move_noreplace(temp, folder)
    except FileExistsError:
        held.release()
        (temp / OWNER).unlink(missing_ok=True)
        temp.rmdir()
        raise
    except OSError as exc:
        held.release()
        raise OutputError(f"cannot create folder {folder}: {exc.strerror or exc}") from None
    held.moved(folder)
    fsync_dir(parent)
    return held
