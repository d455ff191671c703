"""Callbacks: code that runs at fixed points of :meth:`Trainer.fit`.

A callback subclasses :class:`Callback` and overrides the hooks it needs; the others are
no-ops and cost nothing (the trainer calls ``on_step_end`` only on callbacks that
override it). Callbacks that keep state implement ``state_dict``/``load_state_dict`` so
that a checkpoint holds it and a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from torchwork.trainer import Trainer


@dataclass
class EpochLogs:
    """What one epoch produced. Losses stay on the device until someone reads them."""

    epoch: int
    train_loss: torch.Tensor
    val_loss: torch.Tensor | None
    lr: float
    seconds: float
    _values: dict[str, float] | None = field(default=None, repr=False)
    _host: torch.Tensor | None = field(default=None, repr=False)
    _event: Any = field(default=None, repr=False)

    def prefetch(self, host: torch.Tensor) -> None:
        """Start copying the losses from a GPU into ``host`` (pinned memory) without waiting."""
        if self._values is not None or self._host is not None or not self.train_loss.is_cuda:
            return
        parts = [self.train_loss] if self.val_loss is None else [self.train_loss, self.val_loss]
        self._host = host[: len(parts)]
        for i, part in enumerate(parts):
            self._host[i].copy_(part, non_blocking=True)
        self._event = torch.cuda.Event()
        self._event.record()

    def ready(self) -> bool:
        """True when :meth:`values` will not wait for the device."""
        return self._values is not None or self._event is None or bool(self._event.query())

    def values(self) -> dict[str, float]:
        """The epoch's numbers as Python floats (reads the device once: a synchronisation)."""
        if self._values is None:
            if self._host is not None:
                self._event.synchronize()  # only up to this epoch's work
                losses = self._host.tolist()
                train, val = losses[0], (losses[1] if len(losses) > 1 else None)
            else:
                train = self.train_loss.item()
                val = self.val_loss.item() if self.val_loss is not None else None
            out = {"epoch": float(self.epoch), "train_loss": train}
            if val is not None:
                out["val_loss"] = val
            out["lr"], out["seconds"] = self.lr, self.seconds
            self._values = out
        return dict(self._values)

    @property
    def read(self) -> bool:
        return self._values is not None

    def finite(self) -> bool:
        self.values()
        values = self._values or {}
        return math.isfinite(values["train_loss"]) and math.isfinite(values.get("val_loss", 0.0))

    def monitored(self) -> float:
        """The loss that early stopping and plateau schedulers watch: validation, else training."""
        values = self.values()
        return values.get("val_loss", values["train_loss"])


class Callback:
    """Base class with no-op hooks. ``order`` sorts callbacks; checkpointing runs last.

    A callback whose ``on_step_end`` acts only every N optimizer steps says so with
    ``step_interval = N``: the CUDA-graph engine then replays several steps at a time between
    those boundaries instead of one.
    """

    order = 0
    step_interval: int | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        pass

    def on_step_end(self, trainer: Trainer) -> None:
        pass

    def on_epoch_end(self, trainer: Trainer, logs: EpochLogs) -> None:
        pass

    def on_interrupt(self, trainer: Trainer) -> None:
        pass

    def on_fit_end(self, trainer: Trainer) -> None:
        pass

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        """Fitting stopped with an exception: release what the callback holds (files, bars)."""

    def reset(self) -> None:
        """Forget what an earlier fit left (called before each fit, before a resume loads state)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class EarlyStopping(Callback):
    """Stop when the monitored loss has not improved by ``min_delta`` for ``patience`` epochs.

    The best weights are kept (on the device) and always restored when fitting ends, whether
    it stopped early or ran all its epochs. Stopping sets a flag; nothing is raised.
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.0, restore_best: bool = True) -> None:
        if patience < 1:
            raise ValueError(f"early stopping patience must be >= 1, got {patience}")
        self.patience, self.min_delta, self.restore_best = patience, min_delta, restore_best
        self.reset()

    def reset(self) -> None:
        self.best = math.inf
        self.best_epoch = -1
        self.wait = 0
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, trainer: Trainer, logs: EpochLogs) -> None:
        current = logs.monitored()
        if current < self.best - self.min_delta:
            self.best, self.best_epoch, self.wait = current, logs.epoch, 0
            if self.restore_best:
                self.best_weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.stop_training = True

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.restore_best and self.best_weights is not None:
            trainer.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}
        if self.best_weights is not None:
            state["best_weights"] = self.best_weights
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.best_weights = state.get("best_weights")


class EpochPrinter(Callback):
    """Print one formatted line every ``every`` epochs (the tutorial's training log).

    ``fmt`` receives ``epoch``, ``train_loss``, ``val_loss``, ``lr`` and ``seconds``;
    ``echo`` prints a line (``print`` by default).
    """

    def __init__(self, fmt: str, every: int = 1, echo: Callable[[str], Any] = print) -> None:
        self.fmt, self.every, self.echo = fmt, every, echo

    def on_epoch_end(self, trainer: Trainer, logs: EpochLogs) -> None:
        if logs.epoch % self.every == 0:
            values: dict[str, Any] = logs.values()
            values["epoch"] = logs.epoch
            self.echo(self.fmt.format(**values))


class Progress(Callback):
    """A progress bar on a terminal; one plain line per epoch otherwise (CI logs, pipes).

    On a GPU the plain lines do not make the host wait for each epoch: the losses are copied
    to pinned memory asynchronously and each line is printed once its copy has arrived (a
    few epochs late at most, all of them by the end of the fit).
    """

    RING = 256  # epochs whose lines may be in flight at once

    def __init__(self, total_epochs: int, file: Any = None, interactive: bool | None = None) -> None:
        self.file = file or sys.stderr
        self.total = total_epochs
        is_tty = getattr(self.file, "isatty", lambda: False)()
        self.interactive = is_tty if interactive is None else interactive
        self.bar: Any = None
        self._last_refresh = 0.0
        self._queue: deque[EpochLogs] = deque()
        self._pinned: torch.Tensor | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.interactive:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=trainer.state.epoch, unit="epoch", file=self.file)
        elif trainer.device_.type == "cuda":
            self._pinned = torch.empty((self.RING, 2), pin_memory=True)

    def _line(self, logs: EpochLogs) -> str:
        v = logs.values()
        val = f" | val_loss {v['val_loss']:.6g}" if "val_loss" in v else ""
        return (
            f"epoch {logs.epoch + 1}/{self.total} | train_loss {v['train_loss']:.6g}{val}"
            f" | lr {v['lr']:.3g} | {v['seconds']:.2f}s"
        )

    def _print_ready(self, wait: bool = False) -> None:
        while self._queue and (wait or self._queue[0].ready() or len(self._queue) >= self.RING):
            print(self._line(self._queue.popleft()), file=self.file, flush=True)

    def on_epoch_end(self, trainer: Trainer, logs: EpochLogs) -> None:
        if self.bar is None:
            if self._pinned is not None:
                logs.prefetch(self._pinned[logs.epoch % self.RING])
            self._queue.append(logs)
            self._print_ready()
            return
        self.bar.update(1)
        now = time.monotonic()
        if now - self._last_refresh > 0.2:  # read the device only when the bar redraws
            self._last_refresh = now
            v = logs.values()
            postfix = {"train_loss": f"{v['train_loss']:.4g}"}
            if "val_loss" in v:
                postfix["val_loss"] = f"{v['val_loss']:.4g}"
            self.bar.set_postfix(postfix, refresh=False)

    def on_fit_end(self, trainer: Trainer) -> None:
        self._print_ready(wait=True)
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        with contextlib.suppress(Exception):  # never hide the exception that ended the fit
            self.on_fit_end(trainer)

    on_interrupt = on_fit_end


class TensorBoard(Callback):
    """Write train/validation loss and learning rate to TensorBoard event files in ``log_dir``."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.writer: Any = None

    def on_fit_start(self, trainer: Trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the 'tensorboard' package

        self.writer = SummaryWriter(log_dir=self.log_dir)

    def on_epoch_end(self, trainer: Trainer, logs: EpochLogs) -> None:
        v = logs.values()
        self.writer.add_scalar("loss/train", v["train_loss"], logs.epoch)
        if "val_loss" in v:
            self.writer.add_scalar("loss/val", v["val_loss"], logs.epoch)
        self.writer.add_scalar("lr", v["lr"], logs.epoch)

    def on_fit_end(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        with contextlib.suppress(Exception):  # never hide the exception that ended the fit
            self.on_fit_end(trainer)

    on_interrupt = on_fit_end
