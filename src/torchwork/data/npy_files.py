"""``.npy`` and ``.npz`` files read into a :class:`~torchwork.data.tables.Table` (never with pickles),
each header checked against the file's size before anything is allocated."""

from __future__ import annotations

import ast
import math
import os
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from torchwork.core.errors import InputError
from torchwork.data.filechecks import check_memory, clean_message, human_size
from torchwork.data.frames import frame_from_array
from torchwork.data.tables import Table


# ------------------------------------------------------------------- NumPy
def _npy_header(fp: IO[bytes], where: str, data_size: int) -> tuple[int, int]:
    """Check a ``.npy`` header without reading the data: (bytes of data, memory to read it).

    ``data_size`` is the size of the stream holding it; the data must fill it exactly, so a
    header declaring a 2 TiB shape in a 368-byte file is refused here.
    """
    fmt = np.lib.format
    start = fp.tell()
    try:
        version = fmt.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fp)
        elif version == (3, 0):  # version 2.0 with a UTF-8 header (field names); NumPy has no public reader
            shape, dtype = _npy_header_3_0(fp)
        else:
            raise ValueError(f"format version {version[0]}.{version[1]} is not one NumPy writes")
    except (ValueError, TypeError, SyntaxError, EOFError, KeyError, RecursionError, tokenize.TokenError) as exc:
        detail = "" if "magic string" in str(exc) else f": {clean_message(str(exc), 100)}"
        raise InputError(f"{where}: not a NumPy array (it has no valid .npy header{detail})") from None
    if dtype.hasobject:
        raise InputError(f"{where}: refused: it holds Python objects, which load only as pickles "
                         "(torchwork never loads pickles)")  # fmt: skip
    count = math.prod(int(n) for n in shape)
    declared = count * dtype.itemsize
    held = data_size - (fp.tell() - start)
    if declared != held:
        what = "the file is truncated or damaged" if declared > held else "it has bytes after its data"
        raise InputError(
            f"{where}: its header declares shape {tuple(shape)} of {dtype} ({human_size(declared)}) "
            f"but it holds {human_size(max(held, 0))} of data; {what}"
        )
    return declared, 2 * count * max(dtype.itemsize, 8)  # the array and its DataFrame


def npy_memory(path: Path) -> int:
    """What reading the ``.npy`` at ``path`` into memory takes, from its header alone (checked as for reading)."""
    with open(path, "rb") as f:
        return _npy_header(f, str(path), os.fstat(f.fileno()).st_size)[1]


def _npy_header_3_0(fp: IO[bytes]) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype from a version 3.0 header, checked as NumPy checks 1.0 and 2.0 (literals only)."""
    (length,) = struct.unpack("<I", fp.read(4).ljust(4, b"\0"))
    if length > 10000:  # NumPy's own limit (max_header_size) for headers it reads without being told
        raise ValueError(f"its header is {length} bytes, more than NumPy reads")
    raw = fp.read(length)
    if len(raw) != length:
        raise EOFError("the header is cut short")
    header = ast.literal_eval(raw.decode("utf-8"))
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise ValueError("its header is not a table of descr, fortran_order and shape")
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError(f"shape is not a tuple of sizes: {shape!r:.60}")
    if not isinstance(header["fortran_order"], bool):
        raise ValueError("fortran_order is not true or false")
    return shape, np.lib.format.descr_to_dtype(header["descr"])


def _read_array(fp: IO[bytes], where: str) -> np.ndarray:
    fp.seek(0)
    try:
        return np.lib.format.read_array(fp, allow_pickle=False)
    except MemoryError:
        raise
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(f"{where}: not a readable NumPy array ({clean_message(str(exc), 100)})") from None


def read_npy(f: IO[bytes], source: str, size: int) -> Table:
    _, need = _npy_header(f, source, size)
    check_memory(source, need, "npy")
    return Table(frame_from_array(_read_array(f, source), source), source)


def read_npz(f: IO[bytes], source: str) -> Table:
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise InputError(f"{source}: not a readable npz file ({clean_message(str(exc), 100)})") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        need = 0
        try:
            for m in members:
                with archive.open(m) as fp:
                    need += _npy_header(fp, f"{source}: member {m.filename!r}", m.file_size)[1]
            check_memory(source, need, "npz")
            arrays: dict[str, np.ndarray] = {}
            for m in members:
                with archive.open(m) as fp:
                    arrays[m.filename.removesuffix(".npy")] = _read_array(fp, f"{source}: member {m.filename!r}")
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
            raise InputError(f"{source}: not a readable npz file ({clean_message(str(exc), 100)})") from None
    names = list(arrays)
    if not names:
        raise InputError(f"{source}: holds no arrays")
    scalars = [k for k, a in arrays.items() if a.ndim == 0]
    if scalars:
        raise InputError(f"{source}: expected arrays of rows; {', '.join(map(repr, scalars))} is a single value")
    x_key = next((k for k in ("X", "x") if k in arrays), None)
    if x_key is not None and "y" in arrays:
        X, y = arrays[x_key], arrays["y"]
        X = X.reshape(len(X), -1) if X.ndim != 2 else X
        y = y.reshape(len(y), -1)
        if len(X) != len(y):
            raise InputError(f"{source}: {x_key} has {len(X)} rows but y has {len(y)}")
        frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
        for j in range(y.shape[1]):
            frame["y" if y.shape[1] == 1 else f"y{j}"] = y[:, j]
        return Table(frame, source)
    if len(names) == 1:
        return Table(frame_from_array(arrays[names[0]], source), source)
    # Several 1-D arrays of one length: one column each.
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) != 1 or any(a.ndim != 1 for a in arrays.values()):
        raise InputError(
            f"{source}: expected arrays 'X' and 'y', one 2-D array, or 1-D columns of one length; got {names}"
        )
    return Table(pd.DataFrame(arrays), source)
