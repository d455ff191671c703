"""Reading a regular file whole, exactly once, with anything else refused before a byte is read;
and telling formats apart by their first bytes, never by a file's extension."""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Callable

from torchwork.core.errors import InputError

_READ_CHUNK = 0x7FFF_F000  # the most one read(2) returns on Linux


# ------------------------------------------------------------------ reading
def _not_regular(source: str, mode: int, what: str) -> InputError:
    if stat.S_ISDIR(mode):
        return InputError(f"{source}: is a folder, not a {what}")
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))  # fmt: skip
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    return InputError(f"{source}: is {kind}, not a regular file; refused before reading")


def read_regular_file(
    path: str | os.PathLike[str], source: str | None = None, check: Callable[[bytes, int], None] | None = None,
    what: str = "weights file",
) -> bytes:  # fmt: skip
    """The whole of a regular file, read once; anything else (FIFO, device, folder) refused before reading.

    The mode is checked before opening (opening a device can have effects) and again on the open
    descriptor; the open is non-blocking (a FIFO cannot block it), and exactly ``st_size`` bytes are
    read, so a file that grows while being read cannot make this read forever. ``check(head, size)``
    sees the first 16 bytes and the size before the rest is read, and may refuse the file.
    """
    source = str(path) if source is None else source
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(source, mode, what)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError(f"{source}: no such file") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(source, info.st_mode, what)
        if check is not None:
            check(os.pread(fd, 16, 0), info.st_size)
        chunks, got = [], 0
        while got < info.st_size:
            chunk = os.read(fd, min(info.st_size - got, _READ_CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if got != info.st_size:
        raise InputError(f"{source}: changed while being read ({info.st_size} bytes expected, {got} read)")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def sniff(head: bytes) -> str:
    """``"zip"``, ``"zip-other"``, ``"safetensors"``, ``"pickle"``, ``"numpy"`` or ``"unknown"`` from the first bytes.

    A zip is told only by a local file header (``PK\\x03\\x04``), as ``torch.load`` tells it; a file
    that starts with another zip signature is ``"zip-other"`` (torch would read it as a legacy
    stream while zip readers see an archive).
    """
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"PK"):
        return "zip-other"
    if head.startswith(b"\x93NUMPY"):
        return "numpy"
    if len(head) >= 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n < 1 << 40:
            return "safetensors"
    if head[:1] == b"\x80" or head[:1] in (b"(", b"c", b"}", b"]", b"l", b"d"):
        return "pickle"
    return "unknown"
