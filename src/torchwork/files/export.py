"""Exporting a model as a file that runs without torchwork, checked before it is written.

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
from typing import Any

import numpy as np
import torch
from torch import nn

from torchwork.core.errors import InputError, TorchworkError
from torchwork.files.atomic import atomic_write

FORMATS = {"onnx": ".onnx", "exported": ".pt2", "torchscript": ".pt"}


class ExportError(TorchworkError):
    """The exported model could not be written, or does not predict what torchwork predicts."""


def export_module(
    module: nn.Module, fmt: str, out: str | os.PathLike[str], inputs: torch.Tensor, expected: np.ndarray
) -> dict[str, Any]:
    """Write ``module`` as ``fmt`` to ``out`` after checking that, loaded back the way a user
    would load it, it maps ``inputs`` to ``expected``; return what was checked.

    Nothing is written if the export fails or its outputs differ (relative 1e-4).
    """
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    module = module.cpu().eval()
    example = inputs[:8] if len(inputs) > 1 else inputs.repeat(2, 1)  # one row would fix the batch size at 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch's deprecation and exporter chatter
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            data = _serialize(module, fmt, example)
        except Exception as exc:  # an exporter failing on a model: say which and why
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"cannot export this model as {fmt}: {first}") from None
        got = _run_exported(data, fmt, inputs)
    scale = 1.0 + float(np.abs(expected).max())
    worst = float(np.abs(got.reshape(expected.shape) - expected).max())
    if not worst <= 1e-4 * scale:
        raise ExportError(
            f"the {fmt} model's outputs differ from torchwork's by up to {worst:.3g} on {len(inputs)} rows; "
            "nothing was written"
        )
    atomic_write(out, data)
    return {"format": fmt, "path": str(out), "rows_checked": len(inputs), "max_abs_difference": worst}


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
