"""Parquet files read into a :class:`~torchwork.data.tables.Table`, the memory they need checked
from the footer first."""

from __future__ import annotations

from pathlib import Path

from torchwork.core.errors import InputError
from torchwork.data.filechecks import check_memory, clean_message
from torchwork.data.frames import to_pandas
from torchwork.data.tables import Table


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
        message = clean_message(str(exc)) or type(exc).__name__
        raise InputError(f"{source}: not a readable Parquet file ({message})") from None
    names = table.schema.names
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise InputError(f"{source}: duplicated column {', '.join(map(repr, dups))}")
    return Table(to_pandas(table), source)
