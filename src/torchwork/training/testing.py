"""The testing loop: the mean loss over a data set under ``eval()`` and ``inference_mode()``.

In one batch when it fits ``eval_batch_size`` (the tutorial's testing loop), else in batches
(tensors, a streamed source's chunks, a ``Dataset``); in a process group, every row of every
rank's share counted once (:func:`~torchwork.training.distributed.shared_testing_loss`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from torchwork.training.batching import eval_batches
from torchwork.training.distributed import Group, shared_testing_loss
from torchwork.training.steps import check_shapes


@dataclass
class TestingLoop:
    """What the testing loop needs of a fit: the model, how to run it and how to score it."""

    model: nn.Module
    forward: Callable[[torch.Tensor], torch.Tensor]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    autocast: Callable[[], Any]
    targets: str  # "values" or "classes"
    device: torch.device
    dtype: torch.dtype
    eval_batch_size: int | None
    group: Group | None = None

    def one_batch(self, data: Any) -> bool:
        """``data`` is a tensor pair small enough for a single forward pass."""
        return isinstance(data, tuple) and (self.eval_batch_size is None or len(data[0]) <= self.eval_batch_size)

    def single_step(self, data: tuple[torch.Tensor, torch.Tensor]) -> Callable[[], torch.Tensor]:
        """The testing loop on one batch, as a function an engine can run (or capture) after its steps."""

        def testing_step() -> torch.Tensor:
            self.model.eval()
            with torch.no_grad(), self.autocast():
                return self.loss_fn(self.forward(data[0]), data[1])

        return testing_step

    def __call__(self, data: Any) -> torch.Tensor:
        """The mean loss over ``data``, on the device (read only when something needs it)."""
        if self.group is not None:
            if callable(getattr(data, "epoch", None)):  # this rank's share of streamed rows, chunk by chunk
                long = self.targets == "classes"
                data = ((X.to(self.device, self.dtype), y.to(self.device, torch.long if long else self.dtype))
                        for X, y in data.epoch(0))  # fmt: skip
            return shared_testing_loss(self.model, self.loss_fn, data, self.group, self.autocast, self.eval_batch_size,
                                       lambda y_pred, y: check_shapes(y_pred, y, self.targets))  # fmt: skip
        self.model.eval()
        forward, loss_fn, device = self.forward, self.loss_fn, self.device
        with torch.inference_mode(), self.autocast():
            if self.one_batch(data):
                X, y = data
                y_pred = forward(X)
                check_shapes(y_pred, y, self.targets)
                return loss_fn(y_pred, y)
            if isinstance(data, tuple):
                batches: Any = eval_batches(data[0], data[1], self.eval_batch_size)
            elif callable(getattr(data, "epoch", None)):  # streamed: chunks, each cut into batches
                batches = (b for X, y in data.epoch(0) for b in eval_batches(X, y, self.eval_batch_size))
            else:
                batches = torch.utils.data.DataLoader(data, batch_size=self.eval_batch_size or 4096)
            total, rows = torch.zeros((), device=device), 0
            for xb, yb in batches:
                xb = xb.to(device, self.dtype)
                yb = yb.to(device, torch.long if self.targets == "classes" else self.dtype)
                y_pred = forward(xb)
                check_shapes(y_pred, yb, self.targets)
                total = total + loss_fn(y_pred, yb).float() * len(xb)
                rows += len(xb)
            return total / rows
