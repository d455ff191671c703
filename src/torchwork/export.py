"""``torchwork export``: a run's model as a file that runs without torchwork.

The exported model takes raw feature rows (float32, in the order of ``model.json``'s
``features``) and returns predictions in the target's units: the scalers are part of it.
Formats:

- ``onnx``: ``torch.onnx.export`` (dynamo), checked with onnxruntime;
- ``exported``: ``torch.export`` (a ``.pt2`` program; ``torch.export.load(...).module()``);
- ``torchscript``: ``torch.jit.trace`` (deprecated by PyTorch 2.13 in favour of ``torch.export``).

Before success is reported the file is loaded back the way a user would load it and its
predictions on the validation rows are compared with torchwork's.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from torchwork.errors import InputError, TorchworkError
from torchwork.files import atomic_write
from torchwork.runs import Run

FORMATS = {"onnx": ".onnx", "exported": ".pt2", "torchscript": ".pt"}


class ExportError(TorchworkError):
    """The exported model could not be written, or does not predict what torchwork predicts."""


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
    s = StandardizedModel(run.model, run.x_scaler.mean, run.x_scaler.scale, run.y_scaler.mean, run.y_scaler.scale)
    return s.cpu().eval()


def check_rows(run: Run, data: Any = None) -> np.ndarray:
    """Feature rows to check an export on: ``data``'s, or the run's validation rows."""
    if data is not None:
        from torchwork.tables import read_table, select

        table = read_table(data)
        return select(table, None, run.features).X
    from torchwork.config import TrainConfig
    from torchwork.files import sha256_file
    from torchwork.workflow import prepare

    source = run.info["data"]["source"]
    if source.startswith("<") or not Path(source).is_file():
        raise InputError(f"the run's data file {source} is gone: give rows to check the export with --data FILE")
    if sha256_file(source) != run.info["data"]["sha256"]:
        raise InputError(f"{source}: changed since training; give rows to check the export with --data FILE")
    config = TrainConfig().updated(run.config, source="config.json")
    prepared = prepare(config, source)  # the recorded file, whatever the current folder
    part = "val" if len(prepared.parts["val"]) else "test" if len(prepared.parts["test"]) else "train"
    return prepared.raw(part)[0]


def export(run: Run, fmt: str, out: str | os.PathLike[str], rows: np.ndarray) -> dict[str, Any]:
    """Write ``run``'s model as ``fmt`` to ``out`` and check it; return what was checked."""
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    module = standalone(run)
    x = torch.from_numpy(rows.astype(np.float32))
    example = x[:8] if len(x) > 1 else x.repeat(2, 1)  # one row would fix the batch size at 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch's deprecation and exporter chatter
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            data = _serialize(module, fmt, example)
        except Exception as exc:  # an exporter failing on a model: say which and why
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"cannot export this model as {fmt}: {first}") from None
        got = _run_exported(data, fmt, x)
    expected = run.predict(_frame(rows, run.features))
    scale = 1.0 + float(np.abs(expected).max())
    worst = float(np.abs(got.reshape(expected.shape) - expected).max())
    if not worst <= 1e-4 * scale:
        raise ExportError(
            f"the {fmt} model's predictions differ from torchwork's by up to {worst:.3g} on {len(rows)} rows; "
            "nothing was written"
        )
    atomic_write(out, data)
    return {"format": fmt, "path": str(out), "rows_checked": len(rows), "max_abs_difference": worst}


def _frame(rows: np.ndarray, features: list[str]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows, columns=features)


def _serialize(module: nn.Module, fmt: str, example: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    batch = torch.export.Dim("batch")
    if fmt == "onnx":
        program = torch.onnx.export(
            module, (example,), dynamo=True, input_names=["features"], output_names=["prediction"],
            dynamic_shapes=({0: batch},), verbose=False,
        )  # fmt: skip
        if program is None:
            raise ExportError("torch.onnx.export returned nothing")
        program.save(buf)  # type: ignore[arg-type]  # a file object works, as the tests show
    elif fmt == "exported":
        torch.export.save(torch.export.export(module, (example,), dynamic_shapes=({0: batch},)), buf)
    else:
        torch.jit.save(torch.jit.trace(module, example), buf)
    return buf.getvalue()


def _run_exported(data: bytes, fmt: str, x: torch.Tensor) -> np.ndarray:
    """Load the bytes as a user would, without torchwork, and predict ``x``."""
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise ExportError("checking an ONNX export needs onnxruntime: pip install 'torchwork[onnx]'") from None
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    if fmt == "exported":
        program = torch.export.load(io.BytesIO(data))
        with torch.inference_mode():
            return program.module()(x).numpy()
    loaded = torch.jit.load(io.BytesIO(data))
    with torch.inference_mode():
        return loaded(x).numpy()
