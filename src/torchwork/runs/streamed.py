"""The recipe for data larger than memory: the same steps as :mod:`torchwork.runs.recipe`, in chunks.

Chosen with ``--stream``, or when a Parquet file or folder or a ``.npy`` would need more than
``--memory-budget`` in memory (default: half the memory available). Memory stays bounded by
a chunk (a Parquet row group, or 16 MiB of ``.npy`` rows), the shuffle buffer and the sample.

1. One pass over the data (:func:`scan`): the split of each row (a hash of its row number: see
   :mod:`torchwork.data.stream`), rows with a missing target dropped and counted, exact
   moments of the numeric columns and the target on the training rows, exact counts of every
   category and class, and a uniform sample of each part (50,000 training rows, 10,000 of
   validation and test).
2. Column kinds are inferred on the sample; the preprocessing is fitted on it, then its
   scalers and vocabularies are replaced by the exact ones from the pass. The medians that
   fill missing numbers, and the parts of date columns, come from the sample.
3. A second pass solves least squares from the normal equations (exact); logistic regression
   is fitted on the sample.
4. Training streams the training rows every epoch (:class:`~torchwork.data.stream.StreamBatches`)
   and the validation rows for the testing loop; evaluation streams each part and computes
   the metrics exactly, except ROC-AUC, which is computed on the sample (``roc_auc_rows`` says
   on how many rows). The report's plots show the sample.

What differs from the in-memory recipe: the split is by hash (the same every run, not
stratified by class), and L-BFGS is not available (it needs every row at once).

This module decides whether data is streamed; the steps are in :mod:`~torchwork.runs.stream_prepare`
(the pass, the preprocessing), :mod:`~torchwork.runs.stream_table` (the parts read in chunks, the
baselines) and :mod:`~torchwork.runs.stream_metrics` (the metrics).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torchwork.core.errors import InputError
from torchwork.data.readers import available_memory, npy_memory
from torchwork.runs.config import TrainConfig
from torchwork.runs.stream_metrics import roc_auc_on_sample
from torchwork.runs.stream_prepare import MAX_CATEGORIES, prepare_stream, scan
from torchwork.runs.stream_table import SAMPLE, Scan, Streamed, stream_baselines

__all__ = [  # the steps, importable from here as before
    "MAX_CATEGORIES",
    "SAMPLE",
    "Scan",
    "Streamed",
    "prepare_stream",
    "roc_auc_on_sample",
    "scan",
    "stream_baselines",
    "wants_stream",
]


def wants_stream(config: TrainConfig, data: Any) -> bool:
    """Whether ``data`` (a path) is streamed: asked for, a folder, or too big for the memory budget."""
    source = data if data is not None else config.data
    if not isinstance(source, str | os.PathLike):
        if config.stream:
            raise InputError(f"{config.where('stream')}: streams a file (Parquet or .npy), not data in memory")
        return False
    path = Path(source)
    if config.stream:
        return True
    if path.is_dir():  # a folder of Parquet files (any other folder is the reader's to refuse)
        return any(p.suffix.lower() in (".parquet", ".pq") for p in path.iterdir())
    if path.suffix.lower() not in (".parquet", ".pq", ".npy") or not path.is_file():
        return False
    budget = config.memory_budget or (available_memory() or 1 << 62) // 2
    return _in_memory_bytes(path) > budget


def _in_memory_bytes(path: Path) -> int:
    """About what the in-memory reader needs for a Parquet or .npy file (as it estimates it)."""
    try:
        if path.suffix.lower() == ".npy":
            return npy_memory(path)
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as f:
            meta = f.metadata
            encoded = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            return 2 * max(encoded, 8 * meta.num_rows * meta.num_columns)
    except Exception:  # the reader says what is wrong with the file
        return 0
