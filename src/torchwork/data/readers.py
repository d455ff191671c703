"""Reading a user's data into a :class:`~torchwork.data.tables.Table`, whole or a chunk at a time.

Inputs: CSV (:mod:`~torchwork.data.csv`), Parquet, ``.npy``/``.npz`` (never with pickles),
and in Python pandas DataFrames, NumPy arrays and tensors. Every input becomes a pandas
DataFrame with string column names. A problem is an :class:`InputError`: one line that names
the file (and the line, where it can) and the rule. Hostile files are refused before anything
is read: anything but a regular file, a ``.npy``/``.npz`` header that disagrees with the file's
size, a file that would need more memory than the machine has available (Parquet's from its
footer).

:func:`chunked_tables` reads a CSV or Parquet file a chunk of rows at a time (predictions on
files of any size): CSV through pyarrow's streaming reader with the options a run was trained
with; columns the model reads as numbers are typed ``float64`` from the first chunk on (pyarrow
would otherwise guess each column's type from the first block and fail on a later one), every
other column stays text, so it is written back as it was. :func:`csv_batches` does the same for
``torchwork convert``.
"""

from __future__ import annotations

import ast
import csv as pycsv
import io
import math
import os
import re
import stat
import struct
import tokenize
import zipfile
import zlib
from collections.abc import Generator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from torchwork.core.errors import InputError, one_line
from torchwork.core.runtime import check_memory, human_size, memory_hint
from torchwork.data.csv import CSV_MEMORY_FACTOR, csv_options, read_csv, sniff_delimiter
from torchwork.data.tables import Table, frame_from_array, to_pandas

# ------------------------------------------------------------------------------------ any input


SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet",
            ".npy": "npy", ".npz": "npz"}  # fmt: skip
_NOT_REGULAR = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
                stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFSOCK: "a socket"}  # fmt: skip


def read_table(
    data: Any, *, name: str = "data", encoding: str | None = None, delimiter: str | None = None,
    decimal: str | None = None,
) -> Table:  # fmt: skip
    """Read a file path, DataFrame, array, tensor or ``{name: column}`` mapping into a :class:`Table`.

    ``encoding``, ``delimiter`` and ``decimal`` apply to CSV files (the CLI's ``--encoding``,
    ``--delimiter``, ``--decimal``); None means UTF-8, detected, and ``.``. They are checked
    whatever ``data`` is, and ignored for other inputs: a run replays its training options
    on whatever it predicts for.
    """
    options = csv_options(encoding, delimiter, decimal)
    if isinstance(data, str | os.PathLike):
        return _read_file(Path(data), options)
    if isinstance(data, pd.DataFrame):
        if data.columns.duplicated().any():
            dups = sorted({str(c) for c in data.columns[data.columns.duplicated()]})
            raise InputError(f"{name}: duplicated column {', '.join(map(repr, dups))}")
        frame = data.reset_index(drop=True)
        frame.columns = [str(c) for c in frame.columns]
        return Table(frame, name)
    if isinstance(data, dict):
        return read_table(pd.DataFrame(data), name=name)
    if hasattr(data, "detach"):  # a tensor
        data = data.detach().cpu().numpy()
    return Table(frame_from_array(np.asarray(data), name), name)


# ------------------------------------------------------------------- files
def _read_file(path: Path, options: dict[str, str | None]) -> Table:
    source = str(path)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(f"{source}: no such file") from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{source}: is a folder, not a data file")
    if not stat.S_ISREG(st.st_mode):
        what = _NOT_REGULAR.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise InputError(f"{source}: is {what}, not a data file; torchwork reads regular files only")
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise InputError(f"{source}: unknown file type {path.suffix!r}; expected one of {', '.join(SUFFIXES)}")
    if st.st_size == 0:
        raise InputError(f"{source}: empty file")
    need = st.st_size * CSV_MEMORY_FACTOR if kind == "csv" else st.st_size
    try:
        if kind == "parquet":
            return read_parquet(path)
        with open_regular(path) as f:
            if kind == "csv":
                return read_csv(f, source, st.st_size, path.suffix.lower(), options)
            if kind == "npy":
                return read_npy(f, source, st.st_size)
            return read_npz(f, source)
    except MemoryError:
        raise InputError(
            f"{source}: ran out of memory reading it (it needs about {human_size(need)} or more); " + memory_hint(kind)
        ) from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror or exc})") from None


# -------------------------------------------------------------------------------- regular files
# ------------------------------------------------------------------- files
def open_regular(path: Path) -> io.BufferedReader:
    """Open without blocking (a FIFO swapped in after the check would block) and check again what was opened."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"{path}: is not a regular file; torchwork reads regular files only")
    return os.fdopen(fd, "rb")


# -------------------------------------------------------------------------------- Parquet files
# ----------------------------------------------------------------- Parquet
def read_parquet(path: Path) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = str(path)
    try:
        with pq.ParquetFile(path) as parquet:  # the footer: the rows, the columns, their encoded sizes
            meta = parquet.metadata
            encoded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            need = 2 * max(encoded, 8 * meta.num_rows * meta.num_columns)  # the Arrow table, then the DataFrame
            check_memory(source, need, "parquet")
            table = parquet.read()
    except MemoryError:
        raise
    except (pa.ArrowException, OSError) as exc:
        message = one_line(str(exc)) or type(exc).__name__
        raise InputError(f"{source}: not a readable Parquet file ({message})") from None
    names = table.schema.names
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise InputError(f"{source}: duplicated column {', '.join(map(repr, dups))}")
    return Table(to_pandas(table), source)


# ---------------------------------------------------------------------------------- NumPy files
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
        detail = "" if "magic string" in str(exc) else f": {one_line(str(exc), 100)}"
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
        raise InputError(f"{where}: not a readable NumPy array ({one_line(str(exc), 100)})") from None


def read_npy(f: IO[bytes], source: str, size: int) -> Table:
    _, need = _npy_header(f, source, size)
    check_memory(source, need, "npy")
    return Table(frame_from_array(_read_array(f, source), source), source)


def read_npz(f: IO[bytes], source: str) -> Table:
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise InputError(f"{source}: not a readable npz file ({one_line(str(exc), 100)})") from None
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
            raise InputError(f"{source}: not a readable npz file ({one_line(str(exc), 100)})") from None
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


# --------------------------------------------------------------------- a file a chunk at a time
BLOCK_BYTES = 4 << 20
_CONVERSION = re.compile(r"In CSV column #(\d+): .*CSV conversion error to (\w+).*?: invalid value '(.*)'$", re.M)


def chunked_tables(
    path: str | os.PathLike[str], numbers: list[str], *, rows: int, encoding: str | None = None,
    delimiter: str | None = None, decimal: str | None = None,
) -> Generator[tuple[Any, int], None, None]:  # fmt: skip
    """The file's rows as Arrow record batches of about ``rows`` rows, each with its offset in the file.

    A CSV value that is not a number in a column the model reads as numbers is an
    :class:`InputError` naming its line, row and column.
    """
    import pyarrow as pa

    path = Path(path)
    source = str(path)
    offset = 0
    batches = _batches(path, numbers, rows, encoding, delimiter, decimal)
    try:
        for batch in batches:
            yield batch, offset
            offset += batch.num_rows
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as exc:
        message = one_line(str(exc)).replace("CSV conversion error to double", "not a number")
        raise InputError(f"{source}: after row {offset}: {message}") from None
    finally:
        batches.close()
    if offset == 0:
        raise InputError(f"{source}: no rows")


def _batches(
    path: Path, numbers: list[str], rows: int, encoding: str | None, delimiter: str | None, decimal: str | None
) -> Generator[Any, None, None]:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if path.suffix.lower() in (".parquet", ".pq"):
        with pq.ParquetFile(path) as f:
            yield from f.iter_batches(batch_size=rows)
        return
    with open(path, "rb") as f:
        head = bytearray(f.read(1 << 16))
    decimal = decimal or "."
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else sniff_delimiter(head, decimal)
    names = pacsv.read_csv(
        pa.py_buffer(bytes(head[: head.find(b"\n") + 1] or head)),
        read_options=pacsv.ReadOptions(encoding=encoding or "utf8"),
        parse_options=pacsv.ParseOptions(delimiter=delimiter),
    ).column_names
    types = {n: pa.string() for n in names}
    types.update({n: pa.float64() for n in numbers if n in types})
    # A Python file (pyarrow's own file reads ahead without bound when the consumer is slower);
    # the reader is closed however the iteration ends (an open one can abort the interpreter's exit),
    # and before an error about its rows is raised.
    failed: Exception | None = None
    read = 0  # rows the reader gave before the block that failed
    reader = None
    with open(path, "rb") as f:
        try:
            reader = pacsv.open_csv(  # reads (and converts) the first block
                f,
                read_options=pacsv.ReadOptions(encoding=encoding or "utf8", block_size=BLOCK_BYTES),
                parse_options=pacsv.ParseOptions(delimiter=delimiter),
                convert_options=pacsv.ConvertOptions(
                    column_types=types, decimal_point=decimal, strings_can_be_null=True
                ),
            )
            pending: list[Any] = []
            held = 0
            for batch in reader:
                read += batch.num_rows
                pending.append(batch)
                held += batch.num_rows
                while held >= rows:
                    table = pa.Table.from_batches(pending).combine_chunks()
                    yield from table.slice(0, rows).to_batches()
                    rest = table.slice(rows)
                    pending, held = rest.to_batches(), rest.num_rows
            if held:
                yield from pa.Table.from_batches(pending).combine_chunks().to_batches()
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            failed = exc
        finally:
            if reader is not None:
                reader.close()
    if failed is not None:
        raise bad_value(path, failed, read, encoding, delimiter, "the model reads it as numbers")


def bad_value(path: Path, exc: Exception, after: int, encoding: str | None, delimiter: str, why: str) -> Exception:
    """The error for a CSV value the streaming reader could not convert: an :class:`InputError` naming
    its line, row and column (found again with Python's csv module from row ``after`` on), or
    ``exc`` itself when it was about something else."""
    found = _CONVERSION.search(str(exc))
    if found is None:
        return exc
    column, kind, value = int(found[1]), found[2], found[3]
    where = _find_field(path, encoding, delimiter, column, value, after) or _find_field(
        path, encoding, delimiter, column, value, 0
    )
    what = "a number" if kind in ("double", "float") else f"a {kind}"
    if where is None:
        return InputError(f"{path}: after row {after}: in column {column + 1}, {value!r} is not {what} ({why})")
    name, row, line = where
    return InputError(f"{path}: line {line} (row {row}), column {name!r}: {value!r} is not {what} ({why})")


def _find_field(
    path: Path, encoding: str | None, delimiter: str, column: int, value: str, after: int
) -> tuple[str, int, int] | None:
    """(the column's name, the data row from 1, its first line) of the first row after ``after``
    whose field ``column`` is ``value``; blank lines are skipped, as pyarrow skips them."""
    codec = encoding or "utf-8-sig"
    with open(path, encoding=codec, errors="replace", newline="") as f:
        records = pycsv.reader(f, delimiter=delimiter)
        header = next(records, [])
        row = 0
        while True:
            start = records.line_num + 1
            record = next(records, None)
            if record is None:
                return None
            if not record:
                continue
            row += 1
            if row > after and column < len(record) and record[column] == value:
                return (header[column] if column < len(header) else str(column + 1)), row, start


def csv_batches(
    path: str | os.PathLike[str], *, encoding: str | None = None, delimiter: str | None = None,
    decimal: str | None = None,
) -> Generator[Any, None, None]:  # fmt: skip
    """A CSV file's record batches (for ``torchwork convert``), typed from the first block: integers
    as float64 (a later block may hold a decimal or a gap) and empty columns as text.

    A file that is not CSV text (Parquet, NumPy, binary) is refused in one line, and so is a later
    value that does not fit its column's type, naming its line.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is not None and kind != "csv":
        raise InputError(
            f"{path}: is a {'Parquet' if kind == 'parquet' else 'NumPy'} file; convert reads CSV text "
            "(.csv, .tsv, .txt) and writes Parquet"
        )
    decimal = decimal or "."
    with open(path, "rb") as f:
        head = bytearray(f.read(BLOCK_BYTES))
    if b"\0" in head:
        raise InputError(
            f"{path}: holds a NUL byte, so it is binary, not CSV text (text in UTF-16 needs --encoding utf-16)"
        )
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else sniff_delimiter(head, decimal)
    cut = head.rfind(b"\n") + 1 or len(head)
    parse = pacsv.ParseOptions(delimiter=delimiter)
    read = pacsv.ReadOptions(encoding=encoding or "utf8")
    try:
        first = pacsv.read_csv(pa.py_buffer(bytes(head[:cut])), read_options=read, parse_options=parse,
                               convert_options=pacsv.ConvertOptions(decimal_point=decimal))  # fmt: skip
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable CSV file ({one_line(str(exc)) or type(exc).__name__})") from None
    types = {}
    for field in first.schema:
        if pa.types.is_integer(field.type):
            types[field.name] = pa.float64()
        elif pa.types.is_null(field.type):
            types[field.name] = pa.string()
        else:
            types[field.name] = field.type
    failed: Exception | None = None
    rows = 0
    reader = None
    with open(path, "rb") as f:
        try:
            reader = pacsv.open_csv(  # reads (and converts) the first block
                f,
                read_options=pacsv.ReadOptions(encoding=encoding or "utf8", block_size=BLOCK_BYTES),
                parse_options=parse,
                convert_options=pacsv.ConvertOptions(
                    column_types=types, decimal_point=decimal, strings_can_be_null=True
                ),
            )
            for batch in reader:
                yield batch
                rows += batch.num_rows
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as exc:
            failed = exc
        finally:
            if reader is not None:
                reader.close()
    if failed is not None:
        why = f"the column's type was taken from the first {first.num_rows} rows"
        error = bad_value(path, failed, rows, encoding, delimiter, why)
        if error is failed:
            error = InputError(f"{path}: after row {rows}: {one_line(str(failed))} ({why})")
        raise error from None


def write_parquet(
    data: str | os.PathLike[str], writer: Any, *, encoding: str | None = None, delimiter: str | None = None,
    decimal: str | None = None,
) -> int:  # fmt: skip
    """Append a CSV file's rows to ``writer`` (anything with ``write(table)``, such as
    :class:`~torchwork.files.atomic.TableWriter`, which closes its file if this fails) block by
    block (``torchwork convert``); the rows written."""
    import pyarrow as pa

    rows = 0
    batches = csv_batches(data, encoding=encoding, delimiter=delimiter, decimal=decimal)
    try:
        for batch in batches:
            writer.write(pa.Table.from_batches([batch]))
            rows += batch.num_rows
    finally:
        batches.close()
    return rows
