"""Callbacks: code that runs at fixed points of :meth:`Trainer.fit`.

A callback subclasses :class:`Callback` and overrides the hooks it needs; the others are
no-ops and cost nothing (the trainer calls ``on_step_end`` only on callbacks that
override it). Callbacks that keep state implement ``state_dict``/``load_state_dict`` so
that a checkpoint holds it and a resumed run continues exactly.
"""

from __future__ import annotations

import math
import sys
import time
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

    def values(self) -> dict[str, float]:
        """The epoch's numbers as Python floats (reads the device once: a synchronisation)."""
        if self._values is None:
            out = {"epoch": float(self.epoch), "train_loss": self.train_loss.item()}
            if self.val_loss is not None:
                out["val_loss"] = self.val_loss.item()
            out["lr"], out["seconds"] = self.lr, self.seconds
            self._values = out
        return dict(self._values)

    @property
    def read(self) -> bool:
        return self._values is not None

    def finite(self) -> bool:
        values = self.values()
        return all(math.isfinite(values[k]) for k in ("train_loss", "val_loss") if k in values)

    def monitored(self) -> float:
        """The loss that early stopping and plateau schedulers watch: validation, else training."""
        values = self.values()
        return values.get("val_loss", values["train_loss"])


class Callback:
    """Base class with no-op hooks. ``order`` sorts callbacks; checkpointing runs last."""

    order = 0

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
    """A progress bar on a terminal; one plain line per epoch otherwise (CI logs, pipes)."""

    def __init__(self, total_epochs: int, file: Any = None, interactive: bool | None = None) -> None:
        self.file = file or sys.stderr
        self.total = total_epochs
        is_tty = getattr(self.file, "isatty", lambda: False)()
        self.interactive = is_tty if interactive is None else interactive
        self.bar: Any = None
        self._last_refresh = 0.0

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.interactive:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=trainer.state.epoch, unit="epoch", file=self.file)

    def on_epoch_end(self, trainer: Trainer, logs: EpochLogs) -> None:
        if self.bar is None:
            v = logs.values()
            val = f" | val_loss {v['val_loss']:.6g}" if "val_loss" in v else ""
            print(
                f"epoch {logs.epoch + 1}/{self.total} | train_loss {v['train_loss']:.6g}{val}"
                f" | lr {v['lr']:.3g} | {v['seconds']:.2f}s",
                file=self.file,
                flush=True,
            )
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
        if self.bar is not None:
            self.bar.close()
            self.bar = None

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

    on_interrupt = on_fit_end
