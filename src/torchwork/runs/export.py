"""``torchwork export``: a run's model, with its preprocessing, as a file that runs without torchwork.

The exported model takes one float32 row per example: the numeric columns (and the parts of
date columns) as they are, NaN where a value is missing, then each categorical column's
code; ``RUN_DIR.<format>.vocabulary.json``, written beside it, lists the inputs in order and
each category's code. Inside, missing values are filled and flagged and numbers standardized
as in training; out come predictions in the target's units, or a classifier's class
probabilities. For a table of numbers only, the inputs are simply its feature columns.
Before success is reported the file is loaded back the way a user would load it and its
outputs are compared with torchwork's (see :mod:`torchwork.files.export`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from torchwork.core.errors import InputError
from torchwork.data.encoders import NumericEncoder
from torchwork.data.preprocess import Preprocessor
from torchwork.files.atomic import atomic_write, sha256_file
from torchwork.files.export import FORMATS, export_module
from torchwork.runs.evaluating import model_predictions
from torchwork.runs.run import Run

__all__ = ["FORMATS", "Deployable", "check_rows", "export_run"]


def _tensor(values: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64), dtype=torch.float32)


class Deployable(nn.Module):
    """Raw rows in (see the module's docstring), predictions out; the preprocessing as buffers."""

    fill: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor
    indicator_index: torch.Tensor
    y_mean: torch.Tensor
    y_scale: torch.Tensor

    def __init__(self, model: nn.Module, pre: Preprocessor) -> None:
        super().__init__()
        self.model = model
        parts: list[NumericEncoder] = []
        indicators: list[int] = []
        for enc in pre.numeric.values():
            first = len(parts)
            parts += [enc] if isinstance(enc, NumericEncoder) else enc.numeric
            if enc.indicator:
                indicators.append(first)  # a date column is missing when its year is
        self.n_numeric = len(parts)
        self.n_codes = len(pre.categorical)
        self.register_buffer("fill", _tensor([e.fill for e in parts]))
        self.register_buffer("mean", _tensor([e.mean for e in parts]))
        self.register_buffer("scale", _tensor([e.scale for e in parts]))
        self.register_buffer("indicator_index", torch.as_tensor(indicators, dtype=torch.long))
        self.onehot = pre.encoding == "onehot"
        self.cardinalities = list(pre.cardinalities)
        t = pre.target
        self.task, self.outputs = t.task, t.outputs
        self.register_buffer("y_mean", _tensor(t.mean or [0.0]))
        self.register_buffer("y_scale", _tensor(t.scale or [1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = x[:, : self.n_numeric]
        missing = torch.isnan(values)
        filled = torch.where(missing, self.fill, values)
        blocks = [(filled - self.mean) / self.scale, missing[:, self.indicator_index].to(x.dtype)]
        codes = x[:, self.n_numeric :]
        if self.onehot:
            for j, n in enumerate(self.cardinalities):
                c = codes[:, j].long()
                blocks.append(nn.functional.one_hot(c, n)[:, 1:].to(x.dtype))
        else:
            blocks.append(codes)
        out = self.model(torch.cat(blocks, dim=1))
        if self.task == "regression":
            return out * self.y_scale + self.y_mean
        if self.outputs == 1:
            p = torch.sigmoid(out)
            return torch.cat([1 - p, p], dim=1)
        return torch.softmax(out, dim=1)


def check_rows(run: Run, data: Any = None) -> Any:
    """Rows (a table) to check an export on: ``data``'s, or the run's validation rows."""
    from torchwork.data.readers import read_table

    if data is not None:
        return read_table(data).frame
    from torchwork.runs.config import TrainConfig
    from torchwork.runs.preparing import prepare

    source = run.info["data"]["source"]
    if source.startswith("<") or not Path(source).is_file():
        raise InputError(f"the run's data file {source} is gone: give rows to check the export with --data FILE")
    if sha256_file(source) != run.info["data"]["sha256"]:
        raise InputError(f"{source}: changed since training; give rows to check the export with --data FILE")
    prepared = prepare(TrainConfig().updated(run.config, source="config.json"), source, encoding=run.pre.encoding)
    part = next(p for p in ("val", "test", "train") if prepared.size(p))
    return prepared.table.frame.iloc[prepared.rows[prepared.parts[part]]]


def export_run(run: Run, fmt: str, out: str | os.PathLike[str], frame: Any) -> dict[str, Any]:
    """Write ``run``'s model as ``fmt`` to ``out`` (and its vocabulary beside it), checked on ``frame``'s rows."""
    pre = run.pre
    missing = [f for f in pre.features if f not in frame.columns]
    if missing:
        raise InputError(f"the rows to check the export on lack columns {', '.join(map(repr, missing))}")
    raw = pre.raw_inputs(frame)
    expected = model_predictions(run.model, pre, pre.inputs(frame).X)
    module = Deployable(run.model, pre).eval()
    result = export_module(module, fmt, out, torch.from_numpy(raw), expected)
    vocabulary = Path(f"{out}.vocabulary.json")
    atomic_write(vocabulary, json.dumps(pre.vocabulary(), indent=2) + "\n")
    return {**result, "vocabulary": str(vocabulary)}
