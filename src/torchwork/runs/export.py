"""``torchwork export``: a run's model, with its preprocessing, as a file that runs without torchwork.

The exported model takes raw feature rows (float32, in the order of ``model.json``'s
features) and returns predictions in the target's units: the scalers are part of it.
Before success is reported the file is loaded back the way a user would load it and its
predictions are compared with torchwork's (see :mod:`torchwork.files.export`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from torchwork.core.errors import InputError
from torchwork.files.atomic import sha256_file
from torchwork.files.export import FORMATS, export_module
from torchwork.runs.run import Run

__all__ = ["FORMATS", "StandardizedModel", "check_rows", "export_run"]


class StandardizedModel(nn.Module):
    """Raw features in, target units out: ``model((x - x_mean) / x_scale) * y_scale + y_mean``."""

    x_mean: torch.Tensor
    x_scale: torch.Tensor
    y_mean: torch.Tensor
    y_scale: torch.Tensor

    def __init__(self, model: nn.Module, x_mean: Any, x_scale: Any, y_mean: Any, y_scale: Any) -> None:
        super().__init__()
        self.model = model
        for name, value in (("x_mean", x_mean), ("x_scale", x_scale), ("y_mean", y_mean), ("y_scale", y_scale)):
            self.register_buffer(name, torch.as_tensor(np.asarray(value), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.x_mean) / self.x_scale) * self.y_scale + self.y_mean


def standalone(run: Run) -> StandardizedModel:
    x, y = run.pre.x_scaler, run.pre.y_scaler
    return StandardizedModel(run.model, x.mean, x.scale, y.mean, y.scale).cpu().eval()


def check_rows(run: Run, data: Any = None) -> np.ndarray:
    """Feature rows to check an export on: ``data``'s, or the run's validation rows."""
    if data is not None:
        from torchwork.data.readers import read_table
        from torchwork.data.tables import select

        return select(read_table(data), None, run.features).X
    from torchwork.runs.config import TrainConfig
    from torchwork.runs.recipe import prepare

    source = run.info["data"]["source"]
    if source.startswith("<") or not Path(source).is_file():
        raise InputError(f"the run's data file {source} is gone: give rows to check the export with --data FILE")
    if sha256_file(source) != run.info["data"]["sha256"]:
        raise InputError(f"{source}: changed since training; give rows to check the export with --data FILE")
    config = TrainConfig().updated(run.config, source="config.json")
    prepared = prepare(config, source)  # the recorded file, whatever the current folder
    part = "val" if len(prepared.parts["val"]) else "test" if len(prepared.parts["test"]) else "train"
    return prepared.raw(part)[0]


def export_run(run: Run, fmt: str, out: str | os.PathLike[str], rows: np.ndarray) -> dict[str, Any]:
    """Write ``run``'s model as ``fmt`` to ``out``, checked on ``rows`` against :meth:`Run.predict`."""
    import pandas as pd

    expected = run.predict(pd.DataFrame(rows, columns=run.features)).reshape(len(rows), -1)
    return export_module(standalone(run), fmt, out, torch.from_numpy(rows.astype(np.float32)), expected)
