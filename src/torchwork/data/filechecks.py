"""What every reader checks before reading: the memory a file needs against what is available,
regular files only; and a size, or a library's message, written for a person."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

from torchwork.core.errors import InputError


# ------------------------------------------------------------------ memory
def available_memory() -> int | None:
    """Bytes this process may still allocate: MemAvailable, capped by a container's limit; None if unknown."""
    found: list[int] = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            found += [int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:")]
    except (OSError, ValueError, IndexError):
        pass
    # cgroup v2, then v1: the limit less the memory in use that cannot be reclaimed (not the page cache)
    for limit_file, stat_file, key in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.stat", "anon"),
                                       ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                        "/sys/fs/cgroup/memory/memory.stat", "total_rss")):  # fmt: skip
        try:
            limit = int(Path(limit_file).read_text().strip())
            used = next(int(line.split()[1]) for line in Path(stat_file).read_text().splitlines()
                        if line.split()[:1] == [key])  # fmt: skip
        except (OSError, ValueError, IndexError, StopIteration):
            continue
        if limit < 1 << 60:  # "unlimited" is a huge number in v1
            found.append(max(limit - used, 0))
        break
    return min(found) if found else None


def human_size(n: float) -> str:
    """``"2.0 TiB"``, ``"1.5 GiB"``, ``"300 MiB"``: a number of bytes for a person."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.{0 if unit == 'KiB' else 1}f} {unit}"
    return f"{int(n)} bytes"


def memory_hint(kind: str) -> str:
    if kind == "csv":
        return "convert it to Parquet (read without the text, in about the size of its numbers) or use fewer rows"
    return "use fewer rows or a machine with more memory"


def check_memory(source: str, need: int, kind: str) -> None:
    """Refuse, before reading, a file that would need more memory than is available."""
    available = available_memory()
    if available is not None and need > available:
        raise InputError(
            f"{source}: reading it needs about {human_size(need)} and this machine has "
            f"{human_size(available)} available; " + memory_hint(kind)
        )


# ------------------------------------------------------------------- files
def open_regular(path: Path) -> io.BufferedReader:
    """Open without blocking (a FIFO swapped in after the check would block) and check again what was opened."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"{path}: is not a regular file; torchwork reads regular files only")
    return os.fdopen(fd, "rb")


def clean_message(message: str, limit: int = 200) -> str:
    """The first line of a library's message, printable and short: it may quote the file's bytes."""
    first = message.splitlines()[0] if message.strip() else ""
    text = "".join(c if c.isprintable() else " " for c in first).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."
