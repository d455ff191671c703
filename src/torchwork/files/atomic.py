"""Writing that never loses or half-writes a file: atomic files, claimed folders, prediction tables.

Every file torchwork writes goes through :func:`atomic_write`: the bytes go to a temporary
file in the same folder, are flushed and fsynced, the file is renamed over its final name with
``os.replace``, and the folder is fsynced. A crash leaves the old file or the new one.

Folders are claimed, locked and moved without ever replacing what someone else put there:

- :func:`claim` makes a new folder under a temporary name, locks it (``flock`` on the folder
  itself, held while the process lives; the kernel drops it when the process dies, however it
  dies), records who holds it, and only then renames it to its name without replacing
  anything (``renameat2(RENAME_NOREPLACE)``). Two processes claiming one name: one wins, the
  other is told who holds it.
- :func:`lock` takes the lock of an existing folder (``torchwork resume``), or says who holds it.
- :func:`move_noreplace` renames a folder only if the destination does not exist, atomically;
  :func:`exchange` swaps two folders atomically (``RENAME_EXCHANGE``), so a replaced run is
  never missing, not even for an instant. Without ``renameat2`` the renames fall back to a
  check and ``os.rename``, which does not replace a non-empty folder.

Predictions are written to CSV or Parquet (:func:`write_table`, :class:`TableWriter`, a chunk at
a time), never over a user's file by accident (:func:`check_output`).
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import ctypes.util
import datetime as dt
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import socket
import stat
import tempfile
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from torchwork.core.errors import BusyError, InputError, OutputError

# ---------------------------------------------------------------------------------------- files
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


# -------------------------------------------------------------------------------------- folders
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


# ---------------------------------------------------------------------------- prediction tables
SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")


def check_output(out: str | os.PathLike[str], *, overwrite: bool, inputs: Sequence[str | os.PathLike[str]]) -> None:
    """Refuse to write ``out`` over an existing file without ``overwrite``, and over an input ever.

    Checked before any work is done, so a refused run costs nothing.
    """
    out = Path(out)
    if out.is_dir():
        raise InputError(f"--out {out}: is a folder; give a file name")
    if out.exists() or out.is_symlink():
        for source in inputs:
            if Path(source).exists() and os.path.samefile(out, source):
                raise InputError(f"--out {out}: is the input {source}; predictions never write over their input")
        if not overwrite:
            raise InputError(f"--out {out}: exists; pass --overwrite to replace it")
        if not out.is_file():
            raise InputError(f"--out {out}: exists and is not a regular file")


def write_table(frame: Any, out: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Write a DataFrame to ``.csv``/``.tsv`` or ``.parquet``, atomically; a replaced file keeps its mode.

    Written by pyarrow (streamed to the temporary file, several times faster than pandas'
    ``to_csv``); a column pyarrow cannot type (mixed Python objects) is written as text.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"--out {out}: write .csv, .tsv or .parquet")
    check_output(out, overwrite=overwrite, inputs=[])
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        mixed = [c for c in frame.columns if frame[c].dtype == object]
        table = pa.Table.from_pandas(frame.astype({c: "string" for c in mixed}), preserve_index=False)
    table = table.replace_schema_metadata(None)  # no pandas metadata in the file: data only

    def write(f: IO[bytes]) -> None:
        if suffix in (".parquet", ".pq"):
            pq.write_table(table, f)
        else:
            delimiter = "\t" if suffix == ".tsv" else ","
            header = io.StringIO()  # pyarrow quotes every name of the header; the csv module only where needed
            csv.writer(header, delimiter=delimiter, lineterminator="\n").writerow(table.column_names)
            f.write(header.getvalue().encode())
            options = pacsv.WriteOptions(delimiter=delimiter, quoting_style="needed", include_header=False)
            pacsv.write_csv(table, f, options)

    return atomic_write(out, write, keep_mode=True)


class TableWriter:
    """Arrow tables appended to one CSV or Parquet file (the first table's columns and types for all)."""

    def __init__(self, f: IO[bytes], suffix: str) -> None:
        self.f, self.suffix = f, suffix
        self.writer: Any = None
        self.schema: Any = None

    @classmethod
    def atomic(cls, out: str | os.PathLike[str], fill: Callable[[TableWriter], None], *, overwrite: bool) -> Path:
        """``fill(writer)`` writes the tables; ``out`` appears, whole, only when it returns."""
        out = Path(out)
        suffix = out.suffix.lower()
        if suffix not in SUFFIXES:
            raise InputError(f"--out {out}: write .csv, .tsv or .parquet")
        check_output(out, overwrite=overwrite, inputs=[])

        def write(f: IO[bytes]) -> None:
            writer = cls(f, suffix)
            try:
                fill(writer)
            except BaseException:
                # The Parquet writer is closed before the error goes on (left to the garbage
                # collector, it would write its footer to a closed file); the temporary file goes.
                with contextlib.suppress(Exception):
                    writer.close()
                raise
            writer.close()

        return atomic_write(out, write, keep_mode=True)

    def write(self, table: Any) -> None:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        first = self.schema is None
        if first:
            self.schema = table.schema.remove_metadata()
        table = table.replace_schema_metadata(None).cast(self.schema)
        if self.suffix in (".parquet", ".pq"):
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.f, self.schema)
            self.writer.write_table(table)
            return
        delimiter = "\t" if self.suffix == ".tsv" else ","
        if first:
            header = io.StringIO()
            csv.writer(header, delimiter=delimiter, lineterminator="\n").writerow(self.schema.names)
            self.f.write(header.getvalue().encode())
        # pyarrow's "needed" quotes every text value; quote a chunk only if one of its texts needs it
        quoting = "needed" if _needs_quotes(table, delimiter) else "none"
        options = pacsv.WriteOptions(delimiter=delimiter, quoting_style=quoting, include_header=False)
        pacsv.write_csv(table, self.f, options)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _needs_quotes(table: Any, delimiter: str) -> bool:
    import pyarrow as pa
    import pyarrow.compute as pc

    pattern = "[" + re.escape(delimiter) + '"\r\n]'
    for column in table.columns:
        text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        if text and pc.any(pc.match_substring_regex(column, pattern)).as_py():
            return True
    return False
