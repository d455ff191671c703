"""Optimizers and learning-rate schedulers by name.

Optimizers: ``sgd`` (momentum, nesterov, weight decay), ``adam``, ``adamw``, ``rmsprop``.
Schedulers: ``step``, ``multistep``, ``exponential``, ``cosine``, ``plateau``, ``onecycle``.
Every option is checked against what the chosen optimizer or scheduler takes, and an
unknown one is named in the error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from torchwork.errors import InputError
from torchwork.registry import Registry


@dataclass(frozen=True)
class OptimizerEntry:
    cls: type[torch.optim.Optimizer]
    options: tuple[str, ...]


OPTIMIZERS: Registry[OptimizerEntry] = Registry("optimizer")
OPTIMIZERS.add(
    "sgd",
    OptimizerEntry(torch.optim.SGD, ("momentum", "dampening", "weight_decay", "nesterov", "foreach", "fused")),
)
OPTIMIZERS.add(
    "adam",
    OptimizerEntry(
        torch.optim.Adam,
        ("betas", "eps", "weight_decay", "amsgrad", "foreach", "fused", "capturable"),
    ),
)
OPTIMIZERS.add(
    "adamw",
    OptimizerEntry(
        torch.optim.AdamW,
        ("betas", "eps", "weight_decay", "amsgrad", "foreach", "fused", "capturable"),
    ),
)
OPTIMIZERS.add(
    "rmsprop",
    OptimizerEntry(
        torch.optim.RMSprop, ("alpha", "eps", "weight_decay", "momentum", "centered", "foreach", "capturable")
    ),
)


def _check_options(kind: str, name: str, options: dict[str, Any], valid: Iterable[str]) -> None:
    valid = tuple(valid)
    for key in options:
        if key not in valid:
            raise InputError(f"{kind} {name!r} takes no option {key!r}; valid options: {', '.join(valid)}")


def build_optimizer(
    spec: str | Callable[..., torch.optim.Optimizer],
    params: Iterable[torch.nn.Parameter],
    lr: float,
    **options: Any,
) -> torch.optim.Optimizer:
    """An optimizer over ``params``: from a registered name, or a factory ``spec(params, lr=...)``."""
    if not isinstance(spec, str):
        return spec(params, lr=lr, **options)
    name = OPTIMIZERS.canonical(spec)
    entry = OPTIMIZERS.get(name)
    _check_options("optimizer", name, options, entry.options)
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    if not lr > 0:
        raise InputError(f"--lr must be > 0, got {lr}")
    cls: Any = entry.cls
    try:
        return cls(params, lr=lr, **options)
    except (TypeError, ValueError) as exc:
        raise InputError(f"optimizer {name!r}: {' '.join(str(exc).split())}") from None


@dataclass(frozen=True)
class SchedulerEntry:
    """``build(optimizer, epochs, steps_per_epoch, **options)``; ``interval`` says when it steps."""

    build: Callable[..., Any]
    options: tuple[str, ...]
    interval: str = "epoch"  # or "step"
    monitors_loss: bool = False  # ReduceLROnPlateau steps on the monitored loss


SCHEDULERS: Registry[SchedulerEntry] = Registry("scheduler")
SCHEDULERS.add(
    "step",
    SchedulerEntry(
        lambda opt, epochs, steps, step_size=None, gamma=0.1: torch.optim.lr_scheduler.StepLR(
            opt, step_size=step_size or max(1, epochs // 3), gamma=gamma
        ),
        ("step_size", "gamma"),
    ),
    aliases=("steplr",),
)
SCHEDULERS.add(
    "multistep",
    SchedulerEntry(
        lambda opt, epochs, steps, milestones=None, gamma=0.1: torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones=list(milestones or [epochs // 2, (3 * epochs) // 4]), gamma=gamma
        ),
        ("milestones", "gamma"),
    ),
    aliases=("multisteplr",),
)
SCHEDULERS.add(
    "exponential",
    SchedulerEntry(
        lambda opt, epochs, steps, gamma=0.95: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma),
        ("gamma",),
    ),
    aliases=("exponentiallr", "exp"),
)
SCHEDULERS.add(
    "cosine",
    SchedulerEntry(
        lambda opt, epochs, steps, t_max=None, eta_min=0.0: torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=t_max or epochs, eta_min=eta_min
        ),
        ("t_max", "eta_min"),
    ),
    aliases=("cosineannealinglr", "cosine_annealing"),
)
SCHEDULERS.add(
    "plateau",
    SchedulerEntry(
        lambda opt, epochs, steps, factor=0.1, patience=10, threshold=1e-4, min_lr=0.0: (
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, factor=factor, patience=patience, threshold=threshold, min_lr=min_lr
            )
        ),
        ("factor", "patience", "threshold", "min_lr"),
        monitors_loss=True,
    ),
    aliases=("reducelronplateau", "reduce_on_plateau"),
)
SCHEDULERS.add(
    "onecycle",
    SchedulerEntry(
        lambda opt, epochs, steps, max_lr=None, pct_start=0.3: torch.optim.lr_scheduler.OneCycleLR(
            opt,
            max_lr=max_lr or opt.param_groups[0]["lr"],
            total_steps=epochs * steps,
            pct_start=pct_start,
        ),
        ("max_lr", "pct_start"),
        interval="step",
    ),
    aliases=("onecyclelr", "one_cycle"),
)


@dataclass
class Schedule:
    """A built scheduler and how the trainer drives it."""

    scheduler: Any
    interval: str
    monitors_loss: bool


def build_scheduler(
    spec: str, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int, **options: Any
) -> Schedule:
    name = SCHEDULERS.canonical(spec)
    entry = SCHEDULERS.get(name)
    _check_options("scheduler", name, options, entry.options)
    try:
        scheduler = entry.build(optimizer, epochs, steps_per_epoch, **options)
    except (TypeError, ValueError) as exc:
        raise InputError(f"scheduler {name!r}: {' '.join(str(exc).split())}") from None
    return Schedule(scheduler, entry.interval, entry.monitors_loss)
