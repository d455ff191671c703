"""Step engines: how the training steps of an epoch are run.

The loop (:mod:`torchwork.training.trainer`) hands an engine an :class:`EpochJob` once per
fit and then asks it for one epoch at a time. An engine runs the step function over the
batches, writes each batch's loss into the job's :class:`~torchwork.training.fit.EpochLosses`
and calls ``job.after_steps(k)`` after every ``k`` steps (the loop then advances its
counters, runs step callbacks and reacts to signals). Engines know nothing else of the
loop. Engines:

- :class:`EagerEngine`: one step after the other (CPU, MPS, CUDA without graphs, and
  ``DistributedDataParallel``, whose all-reduce happens inside the step's backward pass);
- :class:`~torchwork.training.cuda_graphs.CudaGraphEngine`: steps captured in CUDA graphs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from torchwork.training.batching import Batches
from torchwork.training.fit import EpochLosses

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class EpochJob:
    """What an engine needs from the loop, built once per fit."""

    step: Step  # the five steps on one batch; returns its loss (detached)
    batches: Batches
    losses: EpochLosses
    after_steps: Callable[[int], None]  # ``k`` more steps are done
    # Step callbacks run every ``step_interval`` steps (None: there are none); an engine may
    # run several steps between those boundaries, never across one: ``until_boundary()`` says
    # how many steps remain until the next.
    step_interval: int | None
    until_boundary: Callable[[], int | None]
    # The testing loop on a validation set that is one batch (a full-batch CUDA graph
    # captures it with the step); None when there is none or it has several batches.
    testing_step: Callable[[], torch.Tensor] | None
    params: list[torch.nn.Parameter]
    device: torch.device
    dtype: torch.dtype
    epochs: int
    log_every: int
    note: Callable[[str], None]


class Engine(Protocol):
    name: str

    def start(self, job: EpochJob) -> None:
        """Get ready for a fit (called once, before the first epoch)."""

    def run_epoch(self, epoch: int, start: int) -> torch.Tensor | None:
        """Run the steps of ``epoch`` (0-based) from batch ``start`` on.

        Returns the validation loss if the engine ran the testing loop itself, else None.
        """


class EagerEngine:
    """Steps one after the other, in Python: the tutorial's loop."""

    name = "eager"

    def start(self, job: EpochJob) -> None:
        self.job = job

    def run_epoch(self, epoch: int, start: int) -> torch.Tensor | None:
        job = self.job
        step, record, after_steps = job.step, job.losses.record, job.after_steps
        b = start
        for xb, yb in job.batches.epoch(epoch, start):
            record(b, step(xb, yb))
            b += 1
            after_steps(1)
        return None
