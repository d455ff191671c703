"""Benchmark cases for data on disk: streaming against in-memory, streamed peak memory, predicting a file.

- streaming: the tabular MLP trained one epoch from a Parquet file (row groups of 65,536
  rows, streamed with the shuffle buffer) against the same rows in memory, in one process;
- peak memory of a streamed epoch at two sizes 8x apart (8 features), each in a fresh process
  (``python -m benchmarks.speed.bigdata memory ROWS``): the slope should be near zero;
- predict: ``torchwork predict`` on a CSV of ROWS x 8 (chunks of 65,536 rows, written by
  pyarrow) against pyarrow reading and writing the same file, in one process.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROW_GROUP = 65536


def write_parquet(path: Path, rows: int, features: int = 32, seed: int = 0) -> None:
    """``rows`` x ``features`` numbers and a target, written a row group at a time (bounded memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    w = rng.normal(size=features)
    names = [f"x{i}" for i in range(features)]
    writer = None
    for lo in range(0, rows, ROW_GROUP):
        X = rng.normal(size=(min(ROW_GROUP, rows - lo), features)).astype(np.float32)
        y = (X @ w + 0.1 * rng.normal(size=len(X))).astype(np.float32)
        table = pa.table({**{n: X[:, i] for i, n in enumerate(names)}, "y": y})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()


def _stream(path: Path, batch: int, buffer_rows: int = 1 << 16) -> Any:
    from torchwork.data.stream import Source, StreamBatches

    source = Source(path)
    x = [c for c in source.columns if c != "y"]

    def encode(frame: Any, unit: Any) -> tuple[np.ndarray, np.ndarray]:
        return frame[x].to_numpy(np.float32), frame[["y"]].to_numpy(np.float32)

    return StreamBatches(source, source.units, source.rows, encode, batch, True, 0, buffer_rows=buffer_rows)


def streaming_case(kind: str, rows: int, repeats: int, batch: int = 1024) -> dict[str, Any]:
    """Samples per second, streamed from Parquet and in memory, runs interleaved, best of ``repeats``."""
    import pandas as pd
    import torch

    from benchmarks.speed.cases import tabular_model
    from torchwork.training.trainer import Trainer

    with tempfile.TemporaryDirectory(prefix="torchwork-bench-") as tmp:
        path = Path(tmp) / "t.parquet"
        write_parquet(path, rows)
        frame = pd.read_parquet(path)
        X = torch.from_numpy(frame.drop(columns="y").to_numpy(np.float32, copy=True))
        y = torch.from_numpy(frame[["y"]].to_numpy(np.float32, copy=True))
        del frame

        def fit(data: Any) -> float:
            model = tabular_model(kind, X.shape[1])
            trainer = Trainer(loss="mse", optimizer="adam", lr=1e-3, epochs=1, batch_size=batch, seed=0, device="cpu")
            start = time.perf_counter()
            trainer.fit(model, data)
            return rows / (time.perf_counter() - start)

        best = {"in memory": 0.0, "streamed from Parquet": 0.0}
        for _ in range(repeats):
            best["in memory"] = max(best["in memory"], fit((X, y)))
            best["streamed from Parquet"] = max(best["streamed from Parquet"], fit(_stream(path, batch)))
    return {"unit": "samples/s", "lower_is_better": False, "rows": best, "reference": "in memory", "rows_n": rows}


def memory_case(rows: int) -> dict[str, Any]:
    """Peak memory of a streamed epoch at ``rows`` and ``8 * rows`` rows of 8 features, each in a fresh process.

    The allocators (the C heap, Arrow's pool) warm up over the first several row groups; the
    sizes are large enough for both to be past that (16 and 128 row groups at 1M rows).
    """
    from benchmarks.speed.children import child_result

    points = [child_result([sys.executable, "-m", "benchmarks.speed.bigdata", "memory", str(n)], timeout=1200)
              for n in (rows, 8 * rows)]  # fmt: skip
    (d1, p1), (d2, p2) = ((p["data_bytes"], p["peak_bytes"]) for p in points)
    return {"points": points, "slope": (p2 - p1) / (d2 - d1)}


def _measure_memory(rows: int, features: int = 8) -> dict[str, float]:
    import torch

    from benchmarks.speed.cases import tabular_model
    from benchmarks.speed.memory import proc_status
    from torchwork.training.trainer import Trainer

    with tempfile.TemporaryDirectory(prefix="torchwork-bench-") as tmp:
        path = Path(tmp) / "t.parquet"
        write_parquet(path, rows, features)
        batches = _stream(path, 1024)
        Trainer(loss="mse", optimizer="adam", epochs=1, batch_size=4, device="cpu").fit(
            tabular_model("mlp", features), (torch.randn(16, features), torch.randn(16, 1))
        )  # everything loaded once, before the baseline
        Path("/proc/self/clear_refs").write_text("5")
        base = proc_status("VmRSS")
        Trainer(loss="mse", optimizer="adam", epochs=1, batch_size=1024, seed=0, device="cpu").fit(
            tabular_model("mlp", features), batches
        )
        peak = proc_status("VmHWM")
    return {"data_bytes": rows * (features + 1) * 4, "peak_bytes": peak - base}


def predict_case(rows: int, repeats: int) -> dict[str, Any]:
    """``predict`` on a CSV of ``rows`` x 8 against pyarrow reading and writing it, best of ``repeats``."""
    import pandas as pd
    import pyarrow.csv as pacsv

    from torchwork.runs.config import PYTHON, load_config
    from torchwork.runs.lifecycle import train_run

    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, 8))
    with tempfile.TemporaryDirectory(prefix="torchwork-bench-") as tmp:
        csv = Path(tmp) / "rows.csv"
        frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(8)])
        frame["y"] = X @ np.arange(8) + rng.normal(size=rows)
        pacsv.write_csv(__import__("pyarrow").Table.from_pandas(frame, preserve_index=False), csv)
        cfg = load_config(None, {"target": "y", "model": "linear", "epochs": 5}, overrides_source=PYTHON)
        run = train_run(cfg, frame.iloc[:5000], None, verbose=False)
        del frame

        def arrow() -> float:
            start = time.perf_counter()
            pacsv.write_csv(pacsv.read_csv(csv), Path(tmp) / "a.csv")
            return time.perf_counter() - start

        def ours() -> float:
            start = time.perf_counter()
            run.predict_file(csv, Path(tmp) / "p.csv", allow_extra=True, overwrite=True)
            return time.perf_counter() - start

        best = {"pyarrow read + write": float("inf"), "torchwork predict": float("inf")}
        for _ in range(repeats):
            best["pyarrow read + write"] = min(best["pyarrow read + write"], arrow())
            best["torchwork predict"] = min(best["torchwork predict"], ours())
        size = os.path.getsize(csv)
    return {"unit": "seconds", "lower_is_better": True, "rows": best, "reference": "pyarrow read + write",
            "rows_n": rows, "bytes": size}  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1] == "memory":
        print(json.dumps(_measure_memory(int(sys.argv[2]))))
