"""CSV files read into a :class:`~torchwork.data.tables.Table`: parsed block by block with pyarrow,
types widened as pyarrow infers them, a ragged row named by its line."""

from __future__ import annotations

import contextlib
import io
import re
from typing import Any, NoReturn

from torchwork.core.errors import InputError
from torchwork.data.csv_text import load_text, sniff_delimiter
from torchwork.data.filechecks import check_memory, clean_message
from torchwork.data.frames import to_pandas
from torchwork.data.tables import Table

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
    table = _parse_csv(data, source, delimiter, decimal, detected and delimiter != ",")
    del data  # the text is not needed once parsed: free it before the DataFrame is built
    rows = table.num_rows
    frame = to_pandas(table)
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
    message = clean_message(str(exc)) or type(exc).__name__
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
