"""The record of a fit: one row per recorded epoch."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

COLUMNS = ("epoch", "train_loss", "val_loss", "lr", "seconds")


class History:
    """Rows of ``epoch, train_loss, val_loss, lr, seconds``, queryable by column.

    ``history["train_loss"]`` is that column as a list; ``history[-1]`` the last row.
    Epochs are counted from 1 (an ``int``); losses are floats.
    """

    def __init__(self, rows: list[dict[str, Any]] | None = None) -> None:
        self.rows: list[dict[str, Any]] = list(rows or [])

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, str):
            return [row.get(key) for row in self.rows]
        return self.rows[key]

    @property
    def columns(self) -> list[str]:
        present = {key for row in self.rows for key in row}
        return [c for c in COLUMNS if c in present]

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: (int(v) if k == "epoch" else repr(v)) for k, v in row.items()})
        return out.getvalue()

    @classmethod
    def from_csv(cls, text: str) -> History:
        rows = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(io.StringIO(text))]
        for row in rows:
            row["epoch"] = int(row["epoch"])
        return cls(rows)

    def __repr__(self) -> str:
        return f"History({len(self.rows)} rows, columns={self.columns})"
