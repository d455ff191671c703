"""Reading a user's data into a :class:`~torchwork.data.tables.Table`.

Inputs: CSV (read with pyarrow, which refuses ragged rows), Parquet, ``.npy``/``.npz``
(never with pickles), and in Python pandas DataFrames, NumPy arrays and tensors. Every
input becomes a pandas DataFrame with string column names. A problem is an
:class:`InputError`: one line that names the file (and the line, where it can) and the rule.

What is auto-detected in a CSV file, and what is not:

- the **delimiter**, when not given: among ``,`` ``;`` tab ``|`` (but the decimal mark), the
  one that the header has and every one of the first 50 records has as often (outside
  quotes), the most frequent if several do; ``.tsv`` files are tab-separated without looking.
  A file where none is consistent gets the header's most frequent one, so a ragged row is
  reported (naming its line and the detected delimiter); a header with none is one column.
- the **encoding** is *not* detected: UTF-8 unless given (a UTF-8 byte-order mark is fine).
  A byte that is not valid in the encoding is an error naming its line, never a guess.
- the **decimal** mark is *not* detected: ``.`` unless given (``,`` for spreadsheets written
  in much of Europe). Numbers like ``1,5`` in a ``;`` file stay text, so the column check
  refuses them, and can hint ``--decimal ,`` from ``table.options``.
- the column **types** are pyarrow's inference over the whole file (numbers, booleans,
  dates, text); nothing is coerced by guessing at the decimal mark or the encoding.

A CSV table records what was used on the instance: ``table.options`` (``encoding``,
``delimiter``, ``decimal``) and ``table.lines_match_rows`` (every data row is one file line,
so ``first_line + row`` is its line). Hostile files are refused before anything is read:
anything but a regular file, a ``.npy``/``.npz`` header that disagrees with the file's size,
and a file that would need more memory than the machine has available.
"""

from __future__ import annotations

import ast
import codecs
import contextlib
import io
import math
import os
import re
import stat
import struct
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any, NoReturn

import numpy as np
import pandas as pd

from torchwork.core.errors import InputError
from torchwork.data.tables import Table

SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet",
            ".npy": "npy", ".npz": "npz"}  # fmt: skip
DELIMITERS = (",", ";", "\t", "|")  # the ones detected, in order of preference on a tie
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
DECIMALS = (".", ",")
CSV_MEMORY_FACTOR = 3  # the text, the Arrow table and the DataFrame (about 2x), and room for a float64 copy
SNIFF_BYTES, SNIFF_RECORDS = 64 << 10, 50
_CHUNK = 8 << 20  # bytes read, decoded and counted at a time
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
    options = _csv_options(encoding, delimiter, decimal)
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
    return Table(_frame_from_array(np.asarray(data), name), name)


# ----------------------------------------------------------------- options
def _csv_options(encoding: str | None, delimiter: str | None, decimal: str | None) -> dict[str, str | None]:
    """The CSV options checked, in the CLI's words; None stays None (the default, or detected)."""
    if encoding is not None:
        try:
            info = codecs.lookup(encoding)
        except (LookupError, TypeError):
            raise InputError(f"--encoding {encoding!r}: unknown encoding (e.g. utf-8, latin-1, cp1252)") from None
        if not getattr(info, "_is_text_encoding", True):  # base64, zlib, rot13, ...
            raise InputError(f"--encoding {encoding!r}: not a text encoding (e.g. utf-8, latin-1, cp1252)")
    if delimiter is not None:
        delimiter = DELIMITER_NAMES.get(str(delimiter).lower(), delimiter)
        if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
            raise InputError(f"--delimiter {delimiter!r}: expected one character other than a quote or a line break")
    if decimal is not None and decimal not in DECIMALS:
        raise InputError(f"--decimal {decimal!r}: expected '.' or ','")
    if decimal is not None and decimal == delimiter:
        raise InputError(f"--decimal {decimal!r} and --delimiter {delimiter!r} cannot be the same character")
    return {"encoding": encoding, "delimiter": delimiter, "decimal": decimal}


# ------------------------------------------------------------------ memory
def _available_memory() -> int | None:
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


def _size(n: float) -> str:
    """``"2.0 TiB"``, ``"1.5 GiB"``, ``"300 MiB"``: a number of bytes for a person."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.{0 if unit == 'KiB' else 1}f} {unit}"
    return f"{int(n)} bytes"


def _memory_hint(kind: str) -> str:
    if kind == "csv":
        return "convert it to Parquet (read without the text, in about the size of its numbers) or use fewer rows"
    return "use fewer rows or a machine with more memory"


def _check_memory(source: str, need: int, kind: str) -> None:
    """Refuse, before reading, a file that would need more memory than is available."""
    available = _available_memory()
    if available is not None and need > available:
        raise InputError(
            f"{source}: reading it needs about {_size(need)} and this machine has {_size(available)} available; "
            + _memory_hint(kind)
        )


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
            return _read_parquet(path)
        with _open_regular(path) as f:
            if kind == "csv":
                return _read_csv(f, source, st.st_size, path.suffix.lower(), options)
            if kind == "npy":
                return _read_npy(f, source, st.st_size)
            return _read_npz(f, source)
    except MemoryError:
        raise InputError(
            f"{source}: ran out of memory reading it (it needs about {_size(need)} or more); " + _memory_hint(kind)
        ) from None
    except OSError as exc:
        raise InputError(f"{source}: cannot read ({exc.strerror or exc})") from None


def _open_regular(path: Path) -> io.BufferedReader:
    """Open without blocking (a FIFO swapped in after the check would block) and check again what was opened."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InputError(f"{path}: is not a regular file; torchwork reads regular files only")
    return os.fdopen(fd, "rb")


def _clean(message: str, limit: int = 200) -> str:
    """The first line of a library's message, printable and short: it may quote the file's bytes."""
    first = message.splitlines()[0] if message.strip() else ""
    text = "".join(c if c.isprintable() else " " for c in first).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------- CSV
class _Text:
    """A CSV file's bytes as UTF-8, and its line breaks, counted as it is read.

    Blank lines (which the parser skips) and quoted line breaks each add a line feed that no
    row has, so ``lines == rows + 1`` exactly when there are none, and the lines map to rows;
    a bare carriage return (an old Mac line end, which the parser also takes as one) makes
    :attr:`lines_match_rows` False, as the count of line feeds would not see it.
    """

    def __init__(self, data: bytearray) -> None:
        self.data: bytearray | None = data
        self.newlines = 0  # line feeds
        self.returns = 0  # carriage returns
        self.crlf = 0  # carriage returns followed by a line feed
        self.ends_with_newline = False

    def scan(self, data: bytearray, start: int, end: int, source: str) -> None:
        """Count the line breaks in ``data[start:end]`` (no copy); a NUL byte means a binary file."""
        nul = data.find(b"\0", start, end)
        if nul >= 0:
            line = self.newlines + data.count(b"\n", start, nul) + 1
            raise InputError(
                f"{source}: line {line}: holds a NUL byte, so it is binary, not CSV text "
                "(text in UTF-16 needs --encoding utf-16)"
            )
        self.newlines += data.count(b"\n", start, end)
        behind = max(start - 1, 0)  # a CR LF may straddle the chunks
        if data.find(b"\r", behind, end) >= 0:
            self.returns += data.count(b"\r", start, end)
            self.crlf += data.count(b"\r\n", behind, end)

    def lines_match_rows(self, rows: int) -> bool:
        """Whether data row ``i`` (from 0) is on line ``i + 2``: one line per row after the header."""
        return self.returns == self.crlf and self.lines == rows + 1

    @property
    def lines(self) -> int:
        return self.newlines + (0 if self.ends_with_newline else 1)


def _load_text(f: io.BufferedReader, source: str, encoding: str | None, size: int) -> _Text:
    """Read the file once, as UTF-8: checked (UTF-8) or transcoded chunk by chunk, its lines counted.

    Every byte that reaches the parser is valid UTF-8, so pyarrow never meets a byte it cannot
    decode (it reported those on stderr from inside a callback, before its own error). A UTF-8
    file is read into one buffer of its size, so the text costs the file's size and no more.
    """
    info = codecs.lookup(encoding or "utf-8")
    decoder = info.incrementaldecoder("strict")
    if info.name == "utf-8":
        data = bytearray(size)
        got = f.readinto(data)
        del data[got:]
        data += f.read()  # a file that grew since it was measured
        if encoding is None:
            _refuse_other_boms(bytes(data[:4]), source)
        text = _Text(data)
        with memoryview(data) as view:
            for start in range(0, len(data) + 1, _CHUNK):
                end = min(start + _CHUNK, len(data))
                try:
                    decoder.decode(view[start:end], end == len(data))
                except UnicodeDecodeError as exc:
                    _raise_bad_byte(exc, text.newlines, info.name, encoding, source)
                text.scan(data, start, end, source)
    else:
        text = _Text(data := bytearray())
        while True:
            chunk = f.read(_CHUNK)
            try:
                piece = decoder.decode(chunk, not chunk).encode("utf-8")
            except UnicodeDecodeError as exc:
                _raise_bad_byte(exc, text.newlines, info.name, encoding, source)
            except UnicodeError:  # a codec that yields lone surrogates, or raises the base class (utf-16, punycode)
                raise InputError(f"{source}: line {text.newlines + 1}: not valid {encoding} text") from None
            start = len(data)
            data += piece
            del piece
            text.scan(data, start, len(data), source)
            if not chunk:
                break
    text.ends_with_newline = data.endswith(b"\n")
    return text


def _raise_bad_byte(exc: UnicodeDecodeError, newlines: int, codec: str, encoding: str | None, source: str) -> NoReturn:
    """The line of the first byte that is not valid in the encoding, and what to do about it."""
    prefix = exc.object[: exc.start]  # the chunk up to the bad byte (and a partial character before it)
    before = codecs.decode(prefix, codec, "replace").count("\n")
    byte = exc.object[exc.start : exc.start + 1].hex().upper() or "?"
    name = "UTF-8 (the default encoding)" if encoding is None else f"{encoding} text"
    raise InputError(
        f"{source}: line {newlines + before + 1}: byte 0x{byte} is not valid {name}; "
        "pass --encoding with the file's encoding (e.g. --encoding latin-1, or cp1252)"
    ) from None


def _refuse_other_boms(head: bytes, source: str) -> None:
    """A UTF-16/32 byte-order mark in a file read as UTF-8: say which encoding it is."""
    for bom, name in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                      (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):  # fmt: skip
        if head.startswith(bom):
            raise InputError(f"{source}: starts with a {name.upper()} byte-order mark; pass --encoding {name}")


def _records(sample: str, limit: int) -> list[str]:
    """The first ``limit`` non-empty records of ``sample``, with quoted text (and quoted line breaks) removed."""
    if '"' not in sample:
        lines = sample.split("\n")
    else:
        lines, quoted = [], False
        current: list[str] = []
        for c in sample:
            if c == '"':
                quoted = not quoted
            elif c == "\n" and not quoted:
                lines.append("".join(current))
                current = []
            elif not quoted:
                current.append(c)
            if len(lines) > limit:
                break
        lines.append("".join(current))
    return [r for r in (line.rstrip("\r") for line in lines) if r][:limit]


def _sniff_delimiter(data: bytearray, decimal: str) -> str:
    """The delimiter among :data:`DELIMITERS` (but the decimal mark) that the header and the first records agree on."""
    sample = bytes(data[:SNIFF_BYTES]).decode("utf-8", "ignore")
    if len(data) > SNIFF_BYTES and "\n" in sample:  # drop the record cut off at the end
        sample = sample[: sample.rindex("\n")]
    records = _records(sample, SNIFF_RECORDS)
    if not records:
        return ","
    counts = [{d: r.count(d) for d in DELIMITERS} for r in records]
    header = counts[0]
    present = [d for d in DELIMITERS if header[d] > 0 and d != decimal]
    consistent = [d for d in present if all(c[d] == header[d] for c in counts[1:])]
    candidates = consistent or present
    if not candidates:
        return "," if decimal != "," else ";"  # one column
    return max(candidates, key=lambda d: (header[d], -DELIMITERS.index(d)))


def _read_csv(f: io.BufferedReader, source: str, size: int, suffix: str, options: dict[str, str | None]) -> Table:
    _check_memory(source, size * CSV_MEMORY_FACTOR, "csv")
    text = _load_text(f, source, options["encoding"], size)
    data, text.data = text.data, None
    assert data is not None
    detected = options["delimiter"] is None
    decimal = options["decimal"] or "."
    delimiter = options["delimiter"] or ("\t" if suffix == ".tsv" else _sniff_delimiter(data, decimal))
    if decimal == delimiter:
        raise InputError(
            f"{source}: the delimiter {delimiter!r} is also the decimal mark; pass --delimiter to name the other one"
        )
    table = _parse_csv(data, source, delimiter, decimal, detected and delimiter != ",")
    del data  # the text is not needed once parsed: free it before the DataFrame is built
    rows = table.num_rows
    frame = _to_pandas(table)
    result = Table(frame, source, first_line=2)
    used = {"encoding": options["encoding"] or "utf-8", "delimiter": delimiter, "decimal": decimal}
    _annotate(result, options=used, lines_match_rows=text.lines_match_rows(rows))
    return result


def _annotate(table: Table, **attributes: Any) -> None:
    """Set what the reader learned on the table (attributes that :class:`Table` may not declare yet)."""
    for key, value in attributes.items():
        setattr(table, key, value)


_CONVERSION_ERROR = re.compile(r"In CSV column #(\d+): .*CSV conversion error to .*?: invalid value '(.*)'$", re.M)
_MAX_RESTARTS = 16
_FIRST_BLOCK, _LAST_BLOCK = 1 << 20, 1 << 30  # pyarrow's block size; a record must fit in one


def _parse_csv(data: bytearray, source: str, delimiter: str, decimal: str, detected: bool) -> Any:
    """The Arrow table of ``data`` (valid UTF-8); a ragged row names its line.

    Block by block (pyarrow's streaming reader), so that only the Arrow table outlives each
    block: reading the whole table at once keeps every parsed block until the end (about
    1.5x the file more). The streaming reader infers the types from the first block; a column
    that a later block does not fit is widened as pyarrow's own inference does (:func:`_wider`)
    and the parse restarted, from memory; so is a record longer than a block, with larger blocks.
    """
    import pyarrow as pa
    import pyarrow.csv as pacsv

    parse = pacsv.ParseOptions(delimiter=delimiter)
    types: dict[str, Any] = {}
    block = _FIRST_BLOCK
    for _ in range(_MAX_RESTARTS):
        read = pacsv.ReadOptions(block_size=block)
        convert = pacsv.ConvertOptions(strings_can_be_null=True, decimal_point=decimal, column_types=types)
        schema = None
        try:
            reader = pacsv.open_csv(pa.BufferReader(pa.py_buffer(data)), read, parse, convert)
            schema = reader.schema
            _check_header(schema.names, source)
            return reader.read_all()
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            message = str(exc)
            found = _CONVERSION_ERROR.search(message)
            if "straddl" in message and block < _LAST_BLOCK:
                block = min(block * 16, _LAST_BLOCK)
            elif found is not None and schema is not None and int(found[1]) < len(schema):
                column = int(found[1])
                types[schema.names[column]] = _wider(schema.types[column], found[2], decimal)
            else:
                _raise_unreadable(exc, data, source, delimiter, detected, block)
        finally:
            reader = None
    try:  # many restarts: let pyarrow infer over the whole file instead (which costs more memory)
        return pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(data)),
            pacsv.ReadOptions(block_size=block),
            parse,
            pacsv.ConvertOptions(strings_can_be_null=True, decimal_point=decimal),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        _raise_unreadable(exc, data, source, delimiter, detected, block)


def _wider(current: Any, value: str, decimal: str) -> Any:
    """The next type in pyarrow's order of inference after ``current`` that ``value`` converts to (string last)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    order = [pa.null(), pa.int64(), pa.bool_(), pa.float64(), pa.date32(), pa.time32("s"), pa.timestamp("s"),
             pa.timestamp("ns"), pa.timestamp("s", tz="UTC"), pa.timestamp("ns", tz="UTC"), pa.string()]  # fmt: skip
    field = ('v\n"' + value.replace('"', '""') + '"\n').encode()
    for candidate in order[order.index(current) + 1 : -1] if current in order else []:
        convert = pacsv.ConvertOptions(column_types={"v": candidate}, decimal_point=decimal)
        try:  # the same converter on the one value: a type it cannot take would fail the whole parse again
            pacsv.read_csv(pa.BufferReader(field), convert_options=convert)
        except pa.ArrowException:
            continue
        return candidate
    return pa.string()


def _check_header(names: list[str], source: str) -> None:
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise InputError(f"{source}: duplicated column {', '.join(map(repr, dups))} in the header")
    if any(n.strip() == "" for n in names):
        raise InputError(f"{source}: a column in the header has no name")


def _raise_unreadable(
    exc: Exception, data: bytearray, source: str, delimiter: str, detected: bool, block: int
) -> NoReturn:
    message = _clean(str(exc)) or type(exc).__name__
    if "Empty CSV" in message:
        raise InputError(f"{source}: empty file (no header)")
    if "Expected" in message and "columns, got" in message:
        _raise_ragged(data, source, delimiter, detected, block)
    raise InputError(f"{source}: not a readable CSV file ({message})")


def _raise_ragged(data: bytearray, source: str, delimiter: str, detected: bool, block: int) -> NoReturn:
    """Parse again (from memory) single-threaded, which numbers the lines, to name the first ragged one."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    found: list[Any] = []

    def on_bad_row(row: Any) -> str:
        found.append(row)
        return "error"

    with contextlib.suppress(pa.ArrowException, ValueError):  # it fails, as the first parse did; we want `found`
        pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(data)),
            read_options=pacsv.ReadOptions(use_threads=False, block_size=block),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_bad_row),
        )
    note = f" (the delimiter {delimiter!r} was detected; pass --delimiter to choose another)" if detected else ""
    row = found[0] if found else None
    if row is None:
        raise InputError(f"{source}: ragged rows (not every row has as many fields as the header){note}")
    line = f"line {row.number}" if row.number is not None else "a row"
    raise InputError(
        f"{source}: {line} has {row.actual_columns} fields but the header has {row.expected_columns}{note}"
    )


def _to_pandas(table: Any) -> pd.DataFrame:
    """The DataFrame of an Arrow table, freeing each Arrow column as it is converted; every column writable."""
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    for i in range(frame.shape[1]):  # a column Arrow handed over without a copy is read-only
        column = frame.iloc[:, i]
        if isinstance(column.dtype, np.dtype):
            array = np.asarray(column.array)
            if not array.flags.writeable:
                frame.isetitem(i, array.copy())
            del array
        del column
    return frame


# ----------------------------------------------------------------- Parquet
def _read_parquet(path: Path) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = str(path)
    try:
        with pq.ParquetFile(path) as parquet:  # the footer: the rows, the columns, their encoded sizes
            meta = parquet.metadata
            encoded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            need = 2 * max(encoded, 8 * meta.num_rows * meta.num_columns)  # the Arrow table, then the DataFrame
            _check_memory(source, need, "parquet")
            table = parquet.read()
    except MemoryError:
        raise
    except (pa.ArrowException, OSError) as exc:
        message = _clean(str(exc)) or type(exc).__name__
        raise InputError(f"{source}: not a readable Parquet file ({message})") from None
    names = table.schema.names
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise InputError(f"{source}: duplicated column {', '.join(map(repr, dups))}")
    return Table(_to_pandas(table), source)


# ------------------------------------------------------------------- NumPy
def _frame_from_array(a: np.ndarray, source: str) -> pd.DataFrame:
    if a.dtype == object:
        raise InputError(f"{source}: holds Python objects, not numbers")
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    if a.ndim != 2:
        raise InputError(f"{source}: expected a 2-D array (rows x columns), got shape {a.shape}")
    return pd.DataFrame(a, columns=[str(i) for i in range(a.shape[1])])


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
        detail = "" if "magic string" in str(exc) else f": {_clean(str(exc), 100)}"
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
            f"{where}: its header declares shape {tuple(shape)} of {dtype} ({_size(declared)}) "
            f"but it holds {_size(max(held, 0))} of data; {what}"
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
        raise InputError(f"{where}: not a readable NumPy array ({_clean(str(exc), 100)})") from None


def _read_npy(f: IO[bytes], source: str, size: int) -> Table:
    _, need = _npy_header(f, source, size)
    _check_memory(source, need, "npy")
    return Table(_frame_from_array(_read_array(f, source), source), source)


def _read_npz(f: IO[bytes], source: str) -> Table:
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError) as exc:
        raise InputError(f"{source}: not a readable npz file ({_clean(str(exc), 100)})") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        need = 0
        try:
            for m in members:
                with archive.open(m) as fp:
                    need += _npy_header(fp, f"{source}: member {m.filename!r}", m.file_size)[1]
            _check_memory(source, need, "npz")
            arrays: dict[str, np.ndarray] = {}
            for m in members:
                with archive.open(m) as fp:
                    arrays[m.filename.removesuffix(".npy")] = _read_array(fp, f"{source}: member {m.filename!r}")
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as exc:
            raise InputError(f"{source}: not a readable npz file ({_clean(str(exc), 100)})") from None
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
        return Table(_frame_from_array(arrays[names[0]], source), source)
    # Several 1-D arrays of one length: one column each.
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) != 1 or any(a.ndim != 1 for a in arrays.values()):
        raise InputError(
            f"{source}: expected arrays 'X' and 'y', one 2-D array, or 1-D columns of one length; got {names}"
        )
    return Table(pd.DataFrame(arrays), source)
