"""Loss functions by name, with the options each takes and the targets each expects.

Regression: ``l1``/``mae``, ``mse``/``l2``, ``huber``, ``smooth_l1`` (targets shaped like
the model's output). Classification: ``cross_entropy``/``ce`` (integer class indices,
output ``(n, classes)``) and ``bce`` (0/1 targets shaped like the output, logits in).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from torchwork.core.registry import Registry


@dataclass(frozen=True)
class LossEntry:
    factory: Callable[..., nn.Module]
    options: dict[str, str] = field(default_factory=dict)  # option -> kind (see core.checks)
    targets: str = "values"  # "values": shaped like the output; "classes": class indices


LOSSES: Registry[LossEntry] = Registry("loss")
LOSSES.add("l1", LossEntry(nn.L1Loss), aliases=("mae", "l1loss"))
LOSSES.add("mse", LossEntry(nn.MSELoss), aliases=("l2", "mseloss"))
LOSSES.add("huber", LossEntry(nn.HuberLoss, {"delta": "positive"}), aliases=("huberloss",))
LOSSES.add("smooth_l1", LossEntry(nn.SmoothL1Loss, {"beta": "nonnegative"}), aliases=("smoothl1loss",))
LOSSES.add(
    "cross_entropy",
    LossEntry(nn.CrossEntropyLoss, {"weight": "floats", "label_smoothing": "fraction"}, targets="classes"),
    aliases=("ce", "crossentropyloss"),
)
LOSSES.add("bce", LossEntry(nn.BCEWithLogitsLoss, {"pos_weight": "floats"}), aliases=("bcewithlogitsloss",))


def get_loss(spec: str | nn.Module | Callable[..., Any], **options: Any) -> nn.Module | Callable[..., Any]:
    """A loss module for a name (options already checked), or ``spec`` itself if it is a loss."""
    if not isinstance(spec, str):
        return spec
    import torch

    entry = LOSSES.get(spec)
    built = {k: torch.tensor(v) if isinstance(v, list) else v for k, v in options.items()}
    return entry.factory(**built)


def target_kind(spec: Any) -> str:
    """``"classes"`` for a loss that takes class indices, else ``"values"``."""
    if isinstance(spec, str):
        return LOSSES.get(spec).targets
    return "classes" if isinstance(spec, nn.CrossEntropyLoss | nn.NLLLoss) else "values"
