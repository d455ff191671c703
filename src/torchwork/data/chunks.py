"""A CSV or Parquet file read a chunk of rows at a time (for predictions on files of any size).

CSV goes through pyarrow's streaming reader with the options a run was trained with (the
delimiter detected as :mod:`torchwork.data.readers` detects it, the decimal mark, the
encoding). Columns the model reads as numbers are typed ``float64`` from the first chunk on
(pyarrow would otherwise guess each column's type from the first block and fail on a later
one); every other column stays text, so it is written back as it was.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

from torchwork.core.errors import InputError
from torchwork.data.csv_text import sniff_delimiter
from torchwork.data.filechecks import clean_message

BLOCK_BYTES = 4 << 20


def chunked_tables(
    path: str | os.PathLike[str], numbers: list[str], *, rows: int, encoding: str | None = None,
    delimiter: str | None = None, decimal: str | None = None,
) -> Generator[tuple[Any, int], None, None]:  # fmt: skip
    """The file's rows as Arrow record batches of about ``rows`` rows, each with its offset in the file."""
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
        message = clean_message(str(exc)).replace("CSV conversion error to double", "not a number")
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
    # the reader is closed however the iteration ends (an open one can abort the interpreter's exit).
    with open(path, "rb") as f:
        reader = pacsv.open_csv(
            f,
            read_options=pacsv.ReadOptions(encoding=encoding or "utf8", block_size=BLOCK_BYTES),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(column_types=types, decimal_point=decimal, strings_can_be_null=True),
        )
        try:
            pending: list[Any] = []
            held = 0
            for batch in reader:
                pending.append(batch)
                held += batch.num_rows
                while held >= rows:
                    table = pa.Table.from_batches(pending).combine_chunks()
                    yield from table.slice(0, rows).to_batches()
                    rest = table.slice(rows)
                    pending, held = rest.to_batches(), rest.num_rows
            if held:
                yield from pa.Table.from_batches(pending).combine_chunks().to_batches()
        finally:
            reader.close()


def csv_batches(
    path: str | os.PathLike[str], *, encoding: str | None = None, delimiter: str | None = None,
    decimal: str | None = None,
) -> Generator[Any, None, None]:  # fmt: skip
    """A CSV file's record batches (for ``torchwork convert``), typed from the first block: integers
    as float64 (a later block may hold a decimal or a gap) and empty columns as text."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = Path(path)
    decimal = decimal or "."
    with open(path, "rb") as f:
        head = bytearray(f.read(BLOCK_BYTES))
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() == ".tsv" else sniff_delimiter(head, decimal)
    cut = head.rfind(b"\n") + 1 or len(head)
    parse = pacsv.ParseOptions(delimiter=delimiter)
    read = pacsv.ReadOptions(encoding=encoding or "utf8")
    first = pacsv.read_csv(pa.py_buffer(bytes(head[:cut])), read_options=read, parse_options=parse,
                           convert_options=pacsv.ConvertOptions(decimal_point=decimal))  # fmt: skip
    types = {}
    for field in first.schema:
        if pa.types.is_integer(field.type):
            types[field.name] = pa.float64()
        elif pa.types.is_null(field.type):
            types[field.name] = pa.string()
        else:
            types[field.name] = field.type
    with open(path, "rb") as f:
        reader = pacsv.open_csv(
            f,
            read_options=pacsv.ReadOptions(encoding=encoding or "utf8", block_size=BLOCK_BYTES),
            parse_options=parse,
            convert_options=pacsv.ConvertOptions(column_types=types, decimal_point=decimal, strings_can_be_null=True),
        )
        rows = 0
        try:
            for batch in reader:
                yield batch
                rows += batch.num_rows
        except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError) as exc:
            raise InputError(
                f"{path}: after row {rows}: {clean_message(str(exc))} (the column's type was taken from the first "
                f"{first.num_rows} rows)"
            ) from None
        finally:
            reader.close()
