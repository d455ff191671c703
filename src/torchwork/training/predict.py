"""Inference, as the tutorial makes it: ``model.eval()`` and ``torch.inference_mode()``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn


def as_tensor(data: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A tensor from a tensor, NumPy array or nested list, converted to ``dtype`` if given."""
    t = data if isinstance(data, torch.Tensor) else torch.as_tensor(np.asarray(data))
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    return t


def model_dtype(model: nn.Module) -> torch.dtype:
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def predict(model: nn.Module, X: Any, batch_size: int | None = 65536) -> torch.Tensor:
    """The model's outputs for ``X`` (run on the model's device, returned on the CPU)."""
    device, dtype = model_device(model), model_dtype(model)
    X = as_tensor(X, dtype)
    model.eval()
    with torch.inference_mode():
        if batch_size is None or len(X) <= batch_size:
            return model(X.to(device)).cpu()
        parts = [model(X[i : i + batch_size].to(device)).cpu() for i in range(0, len(X), batch_size)]
        return torch.cat(parts)
