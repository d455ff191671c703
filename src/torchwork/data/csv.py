"""CSV files: their options checked, their text decoded and counted, the delimiter detected, and the
rows parsed with pyarrow block by block, a ragged row named by its line.

What is auto-detected, and what is not:

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

A CSV table records what was used: ``table.options`` (``encoding``, ``delimiter``,
``decimal``) and ``table.lines_match_rows`` (every data row is one file line, so
``first_line + row`` is its line).
"""

from __future__ import annotations

import codecs
import contextlib
import io
import re
from collections.abc import Callable
from typing import Any, NoReturn

from torchwork.core.errors import InputError, one_line
from torchwork.core.runtime import check_memory
from torchwork.data.tables import Table, to_pandas

# ----------------------------------------------------------------------------- options and text
DELIMITERS = (",", ";", "\t", "|")  # the ones detected, in order of preference on a tie
DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
DECIMALS = (".", ",")
SNIFF_BYTES, SNIFF_RECORDS = 64 << 10, 50
_CHUNK = 8 << 20  # bytes read, decoded and counted at a time


# ----------------------------------------------------------------- options
def csv_options(
    encoding: str | None, delimiter: str | None, decimal: str | None, where: Callable[[str], str] | None = None
) -> dict[str, str | None]:
    """The CSV options checked, in the caller's words (``where("delimiter")``: ``--delimiter`` by
    default, ``run.toml: key 'delimiter'`` for a config file); None stays None (the default, or detected).

    The one rule for these options: ``train``'s configuration, ``predict``, ``convert`` and
    ``read_table`` all check them here.
    """
    name = where or (lambda key: f"--{key}")
    if encoding is not None:
        try:
            info = codecs.lookup(encoding)
        except (LookupError, TypeError):
            raise InputError(
                f"{name('encoding')} {encoding!r}: unknown encoding (e.g. utf-8, latin-1, cp1252)"
            ) from None
        if not getattr(info, "_is_text_encoding", True):  # base64, zlib, rot13, ...
            raise InputError(f"{name('encoding')} {encoding!r}: not a text encoding (e.g. utf-8, latin-1, cp1252)")
    if delimiter is not None:
        delimiter = DELIMITER_NAMES.get(str(delimiter).lower(), delimiter)
        if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n':
            raise InputError(
                f"{name('delimiter')} {delimiter!r}: expected one character other than a quote or a line break, "
                f"or one of {', '.join(DELIMITER_NAMES)}"
            )
    if decimal is not None and decimal not in DECIMALS:
        raise InputError(f"{name('decimal')} {decimal!r}: expected '.' or ','")
    if decimal is not None and decimal == delimiter:
        raise InputError(
            f"{name('decimal')} {decimal!r} and {name('delimiter')} {delimiter!r} cannot be the same character"
        )
    return {"encoding": encoding, "delimiter": delimiter, "decimal": decimal}


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


def load_text(f: io.BufferedReader, source: str, encoding: str | None, size: int) -> _Text:
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


def sniff_delimiter(data: bytearray, decimal: str) -> str:
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


# -------------------------------------------------------------------------------------- parsing
CSV_MEMORY_FACTOR = 3  # the text, the Arrow table and the DataFrame (about 2x), and room for a float64 copy


# --------------------------------------------------------------------- CSV
def read_csv(f: io.BufferedReader, source: str, size: int, suffix: str, options: dict[str, str | None]) -> Table:
    check_memory(source, size * CSV_MEMORY_FACTOR, "csv")
    text = load_text(f, source, options["encoding"], size)
    data, text.data = text.data, None
    assert data is not None
    detected = options["delimiter"] is None
    decimal = options["decimal"] or "."
    delimiter = options["delimiter"] or ("\t" if suffix == ".tsv" else sniff_delimiter(data, decimal))
    if decimal == delimiter:
        raise InputError(
            f"{source}: the delimiter {delimiter!r} is also the decimal mark; pass --delimiter to name the other one"
        )
    try:
        table = _parse_csv(data, source, delimiter, decimal, detected and delimiter != ",")
    except BaseException:
        released(data)
        raise
    del data  # the text is not needed once parsed: free it before the DataFrame is built
    rows = table.num_rows
    frame = to_pandas(table)
    result = Table(frame, source, first_line=2)
    used = {"encoding": options["encoding"] or "utf-8", "delimiter": delimiter, "decimal": decimal}
    _annotate(result, options=used, lines_match_rows=text.lines_match_rows(rows))
    return result


def released(data: bytearray, timeout: float = 2.0) -> bool:
    """Wait (at most ``timeout`` seconds) until pyarrow has let go of ``data``; whether it has.

    A streaming reader left before its end (an error) still reads ahead on pyarrow's threads,
    holding ``data``'s buffer; the thread that drops it last takes the GIL. If that happens while
    the interpreter exits (the one-line error printed, exit 2), the thread is killed inside C++
    and the process aborts: "terminate called without an active exception", SIGABRT. An exported
    bytearray cannot be resized, which tells when the last export is gone; the sleep lets that
    thread take the GIL.
    """
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            data.append(0)
        except BufferError:  # still exported to pyarrow
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
            continue
        del data[-1]
        return True


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
    message = one_line(str(exc)) or type(exc).__name__
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
