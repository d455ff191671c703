"""What a run records about itself: the versions, its data (path or frame, SHA-256, rows), what the
data turned out to be, and the trained model as a :class:`~torchwork.runs.run.Run` with its info and metrics."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torchwork.core.version import __version__
from torchwork.files.atomic import sha256_file
from torchwork.models.registry import count_parameters
from torchwork.runs.config import TrainConfig
from torchwork.runs.evaluating import evaluate
from torchwork.runs.folder import MODEL_FORMAT, RUN_FORMAT
from torchwork.runs.preparing import PARTS, Prepared
from torchwork.runs.run import Run
from torchwork.training.distributed import Group, on_main


def versions() -> dict[str, str]:
    return {
        "torchwork": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def file_digest(path: Path) -> str:
    """The SHA-256 of a data file; of a folder (of Parquet files), over each file's name and SHA-256."""
    if path.is_file():
        return sha256_file(path)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (".parquet", ".pq"))
    return hashlib.sha256(json.dumps([[p.name, sha256_file(p)] for p in files]).encode()).hexdigest()


def describe_data(config: TrainConfig, data: Any, prepared: Prepared) -> dict[str, Any]:
    source = data if data is not None else config.data
    if prepared.stream is not None:  # a file or a folder of files, streamed
        path = Path(prepared.stream.source.name)
        return {"source": str(path.resolve()), "sha256": file_digest(path), "rows": prepared.stream.source.rows,
                "rows_used": sum(prepared.stream.sizes.values()), "dropped": prepared.dropped,
                "filled": prepared.filled, "streamed": True}  # fmt: skip
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        info: dict[str, Any] = {"source": str(path.resolve()), "sha256": sha256_file(path)}
    else:
        import pandas as pd

        frame = prepared.table.frame
        digest = hashlib.sha256(json.dumps([str(c) for c in frame.columns]).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        info = {"source": f"<{type(source).__name__}>", "sha256": digest.hexdigest()}
    info.update(rows=len(prepared.table.frame), rows_used=len(prepared.rows), dropped=prepared.dropped,
                filled=prepared.filled)  # fmt: skip
    return info


def describe(prepared: Prepared) -> list[str]:
    """What the data turned out to be, one line each: the task, each column's kind, what was dropped or filled."""
    pre = prepared.pre
    target = ", ".join(pre.target_names)
    if pre.task == "classification":
        lines = [f"task: classification of {target!r} ({len(pre.target.classes)} classes)"]
    else:
        lines = [f"task: regression of {target}"]
    kinds = ", ".join(f"{c.name} {c.kind}" + ("" if c.reason == "numbers" else f" ({c.reason})") for c in pre.columns)
    lines.append(f"columns: {kinds}")
    if prepared.dropped.get("missing_target"):
        lines.append(f"dropped {prepared.dropped['missing_target']} rows with a missing target")
    if prepared.dropped.get("missing_value"):
        lines.append(f"dropped {prepared.dropped['missing_value']} rows with missing values (--drop-missing)")
    if prepared.filled:
        lines.append("filled missing values: " + ", ".join(f"{c} {n}" for c, n in prepared.filled.items()))
    return lines + [f"note: {n}" for n in prepared.notes]


def as_run(
    config: TrainConfig, prepared: Prepared, data_info: dict[str, Any], fitted: Any, resumed: bool, processes: int,
    group: Group | None = None,
) -> Run:  # fmt: skip
    info = {
        "format": RUN_FORMAT,
        "data": data_info,
        "split": {p: prepared.rows_in(p) for p in PARTS},
        "device": fitted.device,
        "processes": processes,
        "epochs_run": fitted.epochs_run,
        "stopped_early": fitted.stopped_early,
        "best_epoch": fitted.best_epoch,
        "seconds": sum(fitted.history["seconds"]) if resumed else fitted.seconds,
        "finished": _now(),
        "notes": fitted.notes,
        "versions": versions(),
    }
    if prepared.stream is not None:  # a pass over the whole table: rank 0 makes it, every rank gets the metrics
        metrics = on_main(group, lambda: evaluate(fitted.model, fitted.baselines, prepared))
    else:
        metrics = evaluate(fitted.model, fitted.baselines, prepared)
    meta = {
        "format": MODEL_FORMAT,
        "task": prepared.pre.task,
        "architecture": fitted.spec,
        "parameters": count_parameters(fitted.model),
        "preprocessing": prepared.pre.to_json(),
        "baselines": fitted.baselines.to_json(),
        "dtype": "float32",
        "weights": "model.safetensors",
        "trained_on": fitted.device,
        "versions": versions(),
    }
    return Run(fitted.model, prepared.pre, fitted.baselines, config.to_dict(), fitted.history, metrics, info, meta)
