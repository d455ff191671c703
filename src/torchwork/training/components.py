"""What a Trainer is built from, by name: losses, optimizers and learning-rate schedulers.

Losses: ``l1``/``mae``, ``mse``/``l2``, ``huber``, ``smooth_l1`` (targets shaped like the
model's output); ``cross_entropy``/``ce`` (integer class indices, output ``(n, classes)``) and
``bce`` (0/1 targets shaped like the output, logits in). Optimizers: ``sgd`` (momentum,
nesterov, weight decay), ``adam``, ``adamw``, ``rmsprop``, and ``lbfgs`` (full-batch
quasi-Newton with a strong-Wolfe line search: a linear model trained with it lands on the
least-squares answer). Schedulers: ``step``, ``multistep``, ``exponential``, ``cosine``,
``plateau``, ``onecycle``. Each entry carries the one table of options it takes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from torchwork.core.checks import Registry
from torchwork.core.errors import InputError, one_line


# --------------------------------------------------------------------------------------- losses
@dataclass(frozen=True)
class LossEntry:
    factory: Callable[..., nn.Module]
    options: dict[str, str] = field(default_factory=dict)  # option -> kind (see core.checks)
    targets: str = "values"  # "values": shaped like the output; "classes": class indices


class L1Loss(nn.L1Loss):
    """``nn.L1Loss`` computed as ATen computes it, ``(input - target).abs().mean()``: the same bits
    and the same backward pass, without ``F.l1_loss``'s Python broadcasting check (the Trainer
    checks shapes itself). A third of the loss's cost on the tutorial's 40 rows. Anything else
    (another reduction, shapes that broadcast, half-precision outputs, which autocast would compute
    in float32) goes through ``nn.L1Loss`` itself."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        plain = input.dtype in (torch.float32, torch.float64) and target.dtype == input.dtype
        if self.reduction != "mean" or input.shape != target.shape or not plain:
            return super().forward(input, target)
        return (input - target).abs().mean()


LOSSES: Registry[LossEntry] = Registry("loss")
LOSSES.add("l1", LossEntry(L1Loss), aliases=("mae", "l1loss"))
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


# -------------------------------------------------------------------- optimizers and schedulers


@dataclass(frozen=True)
class OptimizerEntry:
    cls: type[torch.optim.Optimizer]
    options: dict[str, str]  # option -> kind (see core.checks)
    closure: bool = False  # steps with a closure that re-evaluates the loss (L-BFGS)


_ADAM = {"betas": "betas", "eps": "positive", "weight_decay": "nonnegative", "amsgrad": "bool", "foreach": "bool",
         "fused": "bool", "capturable": "bool"}  # fmt: skip
OPTIMIZERS: Registry[OptimizerEntry] = Registry("optimizer")
OPTIMIZERS.add(
    "sgd",
    OptimizerEntry(
        torch.optim.SGD,
        {
            "momentum": "nonnegative",
            "dampening": "nonnegative",
            "weight_decay": "nonnegative",
            "nesterov": "bool",
            "foreach": "bool",
            "fused": "bool",
        },
    ),
)
OPTIMIZERS.add("adam", OptimizerEntry(torch.optim.Adam, _ADAM))
OPTIMIZERS.add("adamw", OptimizerEntry(torch.optim.AdamW, _ADAM))
OPTIMIZERS.add(
    "rmsprop",
    OptimizerEntry(
        torch.optim.RMSprop,
        {
            "alpha": "nonnegative",
            "eps": "positive",
            "weight_decay": "nonnegative",
            "momentum": "nonnegative",
            "centered": "bool",
            "foreach": "bool",
            "capturable": "bool",
        },
    ),
)
OPTIMIZERS.add(
    "lbfgs",
    OptimizerEntry(
        torch.optim.LBFGS,
        {
            "max_iter": "count",
            "history_size": "count",
            "tolerance_grad": "nonnegative",
            "tolerance_change": "nonnegative",
        },
        closure=True,
    ),
    aliases=("l_bfgs",),
)


def build_optimizer(
    spec: str | Callable[..., torch.optim.Optimizer],
    params: Iterable[torch.nn.Parameter],
    lr: float,
    **options: Any,
) -> torch.optim.Optimizer:
    """An optimizer over ``params``: a registered name (options checked already), or a factory
    ``spec(params, lr=...)``."""
    if not isinstance(spec, str):
        return spec(params, lr=lr, **options)
    entry = OPTIMIZERS.get(spec)
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    if entry.closure:
        options.setdefault("line_search_fn", "strong_wolfe")
        options.pop("foreach", None)
    cls: Any = entry.cls
    try:
        return cls(params, lr=lr, **options)
    except (TypeError, ValueError) as exc:
        raise InputError(f"optimizer {OPTIMIZERS.canonical(spec)!r}: {one_line(exc, None, first_line=False)}") from None


FUSED_ON_CPU = ("adam", "adamw")


def device_options(spec: Any, options: dict[str, Any], device: torch.device, graphs: bool) -> dict[str, Any]:
    """``options`` with what a named optimizer needs on ``device``: ``capturable`` in a CUDA graph,
    and on the CPU torch's fused kernel for Adam and AdamW (one pass over each tensor instead of a
    dozen: 1.3 to 1.4 times the steps per second of the for-loop Adam on a 64-64 MLP, batch
    1024; benchmarks/speed). The fused kernel rounds differently in the last bit (it fuses
    multiply-adds); ``optimizer_options={"fused": False}`` gives the for-loop's numbers. SGD keeps
    torch's CPU default, the for-loop, asked for by name (torch otherwise works out that default
    again at every step): on the tutorial's two tensors it is the fastest, and ``foreach`` is
    slower on the CPU for every model measured."""
    options = dict(options)
    if not isinstance(spec, str):
        return options
    table = OPTIMIZERS.get(spec).options
    if graphs and device.type == "cuda" and "capturable" in table:
        options.setdefault("capturable", True)  # Adam's step count stays on the GPU
    if device.type == "cpu" and spec in FUSED_ON_CPU and not options.get("foreach"):
        options.setdefault("fused", True)
    elif device.type == "cpu" and spec == "sgd" and not options.get("fused"):
        options.setdefault("foreach", False)
    if options.get("capturable") and device.type != "cuda":  # torch fails at the first step otherwise
        raise InputError(f"optimizer {spec!r}: capturable needs a CUDA device, not {device.type}")
    return options


def uses_closure(spec: Any) -> bool:
    return isinstance(spec, str) and OPTIMIZERS.get(spec).closure


@dataclass(frozen=True)
class SchedulerEntry:
    """``build(optimizer, epochs, steps_per_epoch, **options)``; ``interval`` says when it steps."""

    build: Callable[..., Any]
    options: dict[str, str]
    interval: str = "epoch"  # or "step"
    monitors_loss: bool = False  # ReduceLROnPlateau steps on the monitored loss


SCHEDULERS: Registry[SchedulerEntry] = Registry("scheduler")
SCHEDULERS.add(
    "step",
    SchedulerEntry(
        lambda opt, epochs, steps, step_size=None, gamma=0.1: torch.optim.lr_scheduler.StepLR(
            opt, step_size=step_size or max(1, epochs // 3), gamma=gamma
        ),
        {"step_size": "count", "gamma": "positive"},
    ),
    aliases=("steplr",),
)
SCHEDULERS.add(
    "multistep",
    SchedulerEntry(
        lambda opt, epochs, steps, milestones=None, gamma=0.1: torch.optim.lr_scheduler.MultiStepLR(
            opt, milestones=list(milestones or [epochs // 2, (3 * epochs) // 4]), gamma=gamma
        ),
        {"milestones": "ints", "gamma": "positive"},
    ),
    aliases=("multisteplr",),
)
SCHEDULERS.add(
    "exponential",
    SchedulerEntry(
        lambda opt, epochs, steps, gamma=0.95: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=gamma),
        {"gamma": "positive"},
    ),
    aliases=("exponentiallr", "exp"),
)
SCHEDULERS.add(
    "cosine",
    SchedulerEntry(
        lambda opt, epochs, steps, t_max=None, eta_min=0.0: torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=t_max or epochs, eta_min=eta_min
        ),
        {"t_max": "count", "eta_min": "nonnegative"},
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
        {"factor": "positive", "patience": "count0", "threshold": "nonnegative", "min_lr": "nonnegative"},
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
        {"max_lr": "positive", "pct_start": "fraction"},
        interval="step",
    ),
    aliases=("onecyclelr", "one_cycle"),
)


@dataclass
class Schedule:
    """A built scheduler and how the loop drives it."""

    scheduler: Any
    interval: str
    monitors_loss: bool


def build_scheduler(
    spec: str, optimizer: torch.optim.Optimizer, epochs: int, steps_per_epoch: int, **options: Any
) -> Schedule:
    entry = SCHEDULERS.get(spec)
    try:
        scheduler = entry.build(optimizer, epochs, steps_per_epoch, **options)
    except (TypeError, ValueError) as exc:
        raise InputError(f"scheduler {SCHEDULERS.canonical(spec)!r}: {one_line(exc, None, first_line=False)}") from None
    return Schedule(scheduler, entry.interval, entry.monitors_loss)
