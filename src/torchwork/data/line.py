"""The tutorial's data: a straight line with known parameters."""

from __future__ import annotations

import torch

from torchwork.core.errors import InputError


def make_line(
    weight: float = 0.7, bias: float = 0.3, start: float = 0, end: float = 1, step: float = 0.02
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tutorial's data: ``X = arange(start, end, step)`` as a column, ``y = weight * X + bias``."""
    if step <= 0 or end <= start:
        raise InputError(f"make_line needs start < end and step > 0, got {start}, {end}, {step}")
    X = torch.arange(start, end, step).unsqueeze(dim=1)
    y = weight * X + bias
    return X, y
