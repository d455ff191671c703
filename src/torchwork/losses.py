"""Loss functions by name: ``l1``/``mae``, ``mse``/``l2``, ``huber``, ``smooth_l1``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from torchwork.errors import InputError
from torchwork.registry import Registry

LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss")
LOSSES.add("l1", nn.L1Loss, aliases=("mae", "l1loss"))
LOSSES.add("mse", nn.MSELoss, aliases=("l2", "mseloss"))
LOSSES.add("huber", nn.HuberLoss, aliases=("huberloss",))
LOSSES.add("smooth_l1", nn.SmoothL1Loss, aliases=("smoothl1loss",))

# Keyword arguments each loss accepts beyond the reduction (which stays "mean").
_LOSS_OPTIONS = {"l1": (), "mse": (), "huber": ("delta",), "smooth_l1": ("beta",)}


def get_loss(spec: str | nn.Module | Callable[..., Any], **options: Any) -> nn.Module | Callable[..., Any]:
    """Return a loss module for a name, or ``spec`` itself if it is already a loss."""
    if not isinstance(spec, str):
        if options:
            raise InputError("loss options apply only to a loss given by name")
        return spec
    name = LOSSES.canonical(spec)
    for key in options:
        if key not in _LOSS_OPTIONS[name]:
            valid = ", ".join(_LOSS_OPTIONS[name]) or "none"
            raise InputError(f"loss {name!r} takes no option {key!r}; valid options: {valid}")
    return LOSSES.get(name)(**options)
