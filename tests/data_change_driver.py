"""``torchwork train``/``resume`` whose data file changes under it at a chosen point.

For the tests of data that changes while a run streams it: the file is changed on disk by the
training process itself, right after its N-th checkpoint is written, so the moment is exact.

    python -m tests.data_change_driver MODE N DATA torchwork-arguments...

MODE ``truncate``: DATA is cut to half its size in place (``OSError: File too short`` from
pyarrow, unchecked); ``rewrite``: DATA is rewritten in place with other values and the same
schema (not noticed, unchecked); ``none``: never.
"""

from __future__ import annotations

import os
import sys


def change(mode: str, path: str) -> None:
    if mode == "truncate":
        os.truncate(path, os.path.getsize(path) // 2)
    elif mode == "rewrite":
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        table, rows = pq.read_table(path), pq.ParquetFile(path).metadata.row_group(0).num_rows
        table = table.set_column(0, table.schema.field(0), pc.multiply(table.column(0), 2.0))
        pq.write_table(table, path, row_group_size=rows)  # in place: the same file, truncated and written


def main() -> int:
    mode, n, data, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    from torchwork.files.checkpoint import Checkpointer

    count = [0]
    written = Checkpointer.written

    def written_then_change(self, where):
        written(self, where)
        count[0] += 1
        if count[0] == n:
            change(mode, data)

    Checkpointer.written = written_then_change
    from torchwork.cli import main as cli

    return cli(args)


if __name__ == "__main__":
    sys.exit(main())
