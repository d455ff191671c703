"""The training step and the testing loop's loss, built once per fit with the fewest dispatches.

The arithmetic is exactly PyTorch's (the tests compare bit for bit with a plain loop); what
is removed is Python overhead that does no arithmetic:

- L1/MSE losses with ``reduction="mean"`` call the ATen function directly, skipping
  ``torch.nn.functional``'s broadcast and warning checks (the trainer checks shapes itself);
- ``optimizer.step()`` skips its profiler record and hook loop when no hook is registered and
  no profiler runs (the update itself is the optimizer's own ``step``);
- gradients are reset by setting them to ``None`` (``zero_grad(set_to_none=True)``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from torchwork.core.errors import InputError

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def fast_loss(loss_fn: Any) -> Loss:
    """The ATen function behind an ``L1Loss``/``MSELoss`` module, else the loss itself."""
    aten = getattr(torch._C, "_nn", None)
    if aten is None or type(loss_fn) not in (nn.L1Loss, nn.MSELoss):  # exact types: not a subclass's forward
        return loss_fn  # type: ignore[no-any-return]
    try:
        reduction = torch.nn._reduction.get_enum(loss_fn.reduction)
    except (AttributeError, ValueError):
        return loss_fn  # type: ignore[no-any-return]
    kernel = aten.l1_loss if type(loss_fn) is nn.L1Loss else aten.mse_loss
    return lambda y_pred, y: kernel(y_pred, y, reduction)


def raw_optimizer_step(optimizer: torch.optim.Optimizer) -> Callable[[], Any]:
    """``optimizer.step`` without the per-call profiler record and hook loop, when none is in use."""
    from torch.optim import optimizer as optim_module

    unwrapped = getattr(type(optimizer).step, "__wrapped__", None)
    hooks = (
        getattr(optim_module, "_global_optimizer_pre_hooks", None),
        getattr(optim_module, "_global_optimizer_post_hooks", None),
        getattr(optimizer, "_optimizer_step_pre_hooks", None),
        getattr(optimizer, "_optimizer_step_post_hooks", None),
    )
    patched = "step" in vars(optimizer)  # e.g. an LR scheduler counting calls
    if unwrapped is None or patched or any(h is None or len(h) for h in hooks):
        return optimizer.step
    if torch.autograd.profiler._is_profiler_enabled:
        return optimizer.step
    return lambda: unwrapped(optimizer)


def check_shapes(y_pred: torch.Tensor, y: torch.Tensor, targets: str = "values") -> None:
    """The output fits the targets: the same shape, or ``(n, classes)`` for ``n`` class indices."""
    if targets == "classes":
        if y_pred.dim() == 2 and y.dim() == 1 and y_pred.shape[0] == y.shape[0]:
            return
        raise InputError(
            f"the model's output has shape {tuple(y_pred.shape)} but the targets have {tuple(y.shape)}: "
            "a loss over class indices needs outputs (n, classes) and targets (n,)"
        )
    if y_pred.shape != y.shape:
        raise InputError(
            f"the model's output has shape {tuple(y_pred.shape)} but the targets have "
            f"{tuple(y.shape)}: they must match (no silent broadcasting)"
        )


def autocast_for(precision: str, device: torch.device, *, cache: bool = True) -> Callable[[], Any]:
    """A context factory for the precision: nothing for ``32``, bf16 autocast for ``bf16-mixed``."""
    if precision == "bf16-mixed":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return nullcontext


def make_train_step(
    forward: Callable[[torch.Tensor], torch.Tensor],
    loss_fn: Loss,
    optimizer: torch.optim.Optimizer,
    *,
    clip_grad: float | None = None,
    after_step: Callable[[], Any] | None = None,
    autocast: Callable[[], Any] = nullcontext,
    targets: str = "values",
    closure: bool = False,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The tutorial's five steps on one batch; returns the batch's loss (detached).

    ``closure=True`` (L-BFGS) hands the optimizer a closure that runs steps 1 to 4 again for
    each evaluation its line search needs; the loss returned is the first evaluation's.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    step_fn = raw_optimizer_step(optimizer)
    mixed = autocast is not nullcontext

    if closure:

        def closure_step(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            def evaluate() -> torch.Tensor:
                with autocast():
                    y_pred = forward(xb)
                    check_shapes(y_pred, yb, targets)
                    loss = loss_fn(y_pred, yb)
                for p in params:
                    p.grad = None
                loss.backward()
                if clip_grad is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip_grad)
                return loss

            loss: Any = optimizer.step(evaluate)  # type: ignore[arg-type]  # the closure returns the loss tensor
            if after_step is not None:
                after_step()
            return loss.detach()  # type: ignore[no-any-return]

        return closure_step

    def step(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        if mixed:
            with autocast():
                y_pred = forward(xb)
                check_shapes(y_pred, yb, targets)
                loss = loss_fn(y_pred, yb)
        else:
            y_pred = forward(xb)  # 1. forward pass
            check_shapes(y_pred, yb, targets)
            loss = loss_fn(y_pred, yb)  # 2. the loss
        for p in params:  # 3. zero the gradients
            p.grad = None
        loss.backward()  # 4. backpropagation
        if clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(params, clip_grad)
        step_fn()  # 5. gradient descent
        if after_step is not None:
            after_step()
        return loss.detach()

    return step
