"""Callbacks: code that runs at fixed points of :meth:`Trainer.fit`; and signals during a fit.

A callback subclasses :class:`Callback` and overrides the hooks it needs; the others are
no-ops and cost nothing (the trainer calls ``on_step_end`` only on callbacks that
override it, and only every ``every_n_steps`` steps when a callback sets it). Every hook
receives the :class:`~torchwork.training.loop.Fit`: the model, optimizer, state, history.
Callbacks that keep state implement ``state_dict``/``load_state_dict`` so that a
checkpoint holds it and a resumed fit continues exactly. SIGINT and SIGTERM during a fit are
noted and acted on between steps, never mid-step (:func:`catch_signals`).
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from torchwork.core.checks import check

# ------------------------------------------------------------------------------------ callbacks
if TYPE_CHECKING:
    from torchwork.training.loop import EpochLogs, Fit


class Callback:
    """Base class with no-op hooks. ``order`` sorts callbacks (checkpointing runs last).

    ``every_n_steps = N`` makes ``on_step_end`` run only after every N-th optimizer step
    (``None``: after every step; ``0``: never); between those steps an engine may run
    several steps at once.
    """

    order = 0
    every_n_steps: int | None = None

    @property
    def key(self) -> str:
        """The name a checkpoint keeps this callback's state under: its class's, unless you give one."""
        return getattr(self, "_key", None) or type(self).__name__

    @key.setter
    def key(self, value: str) -> None:
        self._key = value

    @property
    def stateful(self) -> bool:
        """Whether a checkpoint holds this callback's state (it overrides ``state_dict``)."""
        return type(self).state_dict is not Callback.state_dict

    def on_fit_start(self, fit: Fit) -> None:
        pass

    def on_step_end(self, fit: Fit) -> None:
        pass

    def on_epoch_end(self, fit: Fit, logs: EpochLogs) -> None:
        pass

    def on_interrupt(self, fit: Fit) -> None:
        """SIGINT/SIGTERM arrived: the fit stops after this (a checkpointer saves here)."""

    def on_fit_end(self, fit: Fit) -> None:
        pass

    def on_exception(self, fit: Fit, exc: BaseException) -> None:
        """Fitting stopped with an exception: release what the callback holds (files, bars)."""

    def reset(self) -> None:
        """Forget what an earlier fit left (called before each fit, before a resume loads state)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def step_interval(callbacks: list[Callback]) -> tuple[list[Callback], int | None]:
    """The callbacks that override ``on_step_end``, and how many steps may run between two calls
    of it (the gcd of their ``every_n_steps``; ``None`` when there are none)."""
    step_callbacks = [
        cb for cb in callbacks if type(cb).on_step_end is not Callback.on_step_end and cb.every_n_steps != 0
    ]
    interval = None
    if step_callbacks:
        interval = 1 if any(cb.every_n_steps is None for cb in step_callbacks) else 0
        for cb in step_callbacks:
            interval = math.gcd(interval, cb.every_n_steps or 1)
    return step_callbacks, interval


class EarlyStopping(Callback):
    """Stop when the monitored loss has not improved for ``patience`` epochs.

    An improvement is a loss below ``best * (1 - min_delta_rel) - min_delta`` (relative to the
    best's size, so a best below 0 tightens it too; NaN never improves). The best weights are kept
    (on the device) and restored when fitting ends, whether it stopped early or ran all its epochs;
    the weights the fit started from are a candidate too (epoch 0, when the fit has validation
    data), so a model started from a good solution never ends worse on the validation set. The
    epoch it kept is ``fit.history.best_epoch``. Stopping sets a flag; nothing is raised. Epochs
    are counted from 1.
    """

    def __init__(
        self, patience: int = 10, min_delta: float = 0.0, restore_best: bool = True, min_delta_rel: float = 0.0
    ) -> None:
        self.patience = check(patience, "count", "EarlyStopping(patience=...)")
        self.min_delta = check(min_delta, "nonnegative", "EarlyStopping(min_delta=...)")
        self.min_delta_rel = check(min_delta_rel, "fraction", "EarlyStopping(min_delta_rel=...)")
        self.restore_best = restore_best
        self.reset()

    def reset(self) -> None:
        self.best = math.inf
        self.best_epoch: int | None = None
        self.wait = 0
        self.best_weights: dict[str, torch.Tensor] | None = None

    def _improves(self, loss: float) -> bool:
        if math.isinf(self.best):  # nothing yet (inf - inf would be NaN)
            return loss < self.best
        return loss < self.best - self.min_delta_rel * abs(self.best) - self.min_delta

    def _keep(self, fit: Fit, loss: float, epoch: int) -> None:
        self.best, self.best_epoch, self.wait = loss, epoch, 0
        fit.history.best_epoch = epoch
        if self.restore_best:
            self.best_weights = {k: v.detach().clone() for k, v in fit.model.state_dict().items()}

    def on_fit_start(self, fit: Fit) -> None:
        if fit.state.step == 0:  # a fresh fit (a resumed one has its state back): the start is epoch 0's candidate
            loss = fit.validate()
            if loss is not None and math.isfinite(float(loss)):
                self._keep(fit, float(loss), 0)

    def on_epoch_end(self, fit: Fit, logs: EpochLogs) -> None:
        current = logs.monitored()
        if self._improves(current):
            self._keep(fit, current, logs.epoch)
        else:
            self.wait += 1
            if self.wait >= self.patience:
                fit.stop_training = True

    def on_fit_end(self, fit: Fit) -> None:
        if self.restore_best and self.best_weights is not None:
            fit.model.load_state_dict(self.best_weights)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait}
        if self.best_weights is not None:
            state["best_weights"] = self.best_weights
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.best_weights = state.get("best_weights")


class EpochPrinter(Callback):
    """Print one formatted line every ``every`` epochs, from the first (the tutorial's log).

    ``fmt`` receives ``epoch`` (from 1), ``index`` (from 0: the tutorial's loop variable),
    ``train_loss``, ``val_loss``, ``lr`` and ``seconds``; ``echo`` prints a line.
    """

    def __init__(self, fmt: str, every: int = 1, echo: Callable[[str], Any] = print) -> None:
        self.fmt, self.every, self.echo = fmt, every, echo

    def on_epoch_end(self, fit: Fit, logs: EpochLogs) -> None:
        if (logs.epoch - 1) % self.every == 0:
            values = logs.values()
            self.echo(self.fmt.format(index=logs.epoch - 1, **values))


class Progress(Callback):
    """A progress bar on a terminal; one line per epoch otherwise (CI logs, pipes), every epoch's.

    The bar refreshes at most ``1 / interval`` times a second, whatever the epoch rate, and reads
    the losses (a synchronisation on a GPU) only when it refreshes. Off a terminal no epoch is
    left out: the lines of the epochs since the last write are read and written together, at
    most ``1 / interval`` times a second (one synchronisation and one write for all of them), and
    whatever is pending is written when the fit ends, stops or is interrupted.
    """

    def __init__(
        self, total_epochs: int, file: Any = None, interactive: bool | None = None, interval: float = 0.1
    ) -> None:
        self.file = file or sys.stderr
        self.total = total_epochs
        is_tty = getattr(self.file, "isatty", lambda: False)()
        self.interactive = is_tty if interactive is None else interactive
        self.interval = interval
        self.bar: Any = None
        self._last = -math.inf
        self._pending: list[EpochLogs] = []

    def reset(self) -> None:
        self._last, self._pending = -math.inf, []

    def on_fit_start(self, fit: Fit) -> None:
        if self.interactive:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total, initial=fit.state.epoch, unit="epoch", file=self.file, mininterval=self.interval
            )

    def _line(self, logs: EpochLogs) -> str:
        v = logs.values()
        val = f" | val_loss {v['val_loss']:.6g}" if "val_loss" in v else ""
        return (
            f"epoch {logs.epoch}/{self.total} | train_loss {v['train_loss']:.6g}{val}"
            f" | lr {v['lr']:.3g} | {v['seconds']:.3f}s"
        )

    def _write_pending(self) -> None:
        if self._pending:
            lines = [self._line(logs) for logs in self._pending]
            self._pending = []
            print("\n".join(lines), file=self.file, flush=True)

    def on_epoch_end(self, fit: Fit, logs: EpochLogs) -> None:
        now = time.monotonic()
        due = now - self._last >= self.interval
        if self.bar is not None:
            self.bar.update(1)
            if due:  # read the device only when the bar may redraw
                self._last = now
                v = logs.values()
                postfix = {"train_loss": f"{v['train_loss']:.4g}"}
                if "val_loss" in v:
                    postfix["val_loss"] = f"{v['val_loss']:.4g}"
                self.bar.set_postfix(postfix, refresh=False)
            return
        self._pending.append(logs)
        if due:
            self._last = now
            self._write_pending()

    def on_fit_end(self, fit: Fit) -> None:
        self._write_pending()
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def on_exception(self, fit: Fit, exc: BaseException) -> None:
        with contextlib.suppress(Exception):  # never hide the exception that ended the fit
            self.on_fit_end(fit)

    on_interrupt = on_fit_end


class TensorBoard(Callback):
    """Write train/validation loss and learning rate to TensorBoard event files in ``log_dir``."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.writer: Any = None

    def on_fit_start(self, fit: Fit) -> None:
        from torch.utils.tensorboard import SummaryWriter  # needs the 'tensorboard' package

        self.writer = SummaryWriter(log_dir=self.log_dir)

    def on_epoch_end(self, fit: Fit, logs: EpochLogs) -> None:
        v = logs.values()
        self.writer.add_scalar("loss/train", v["train_loss"], logs.epoch)
        if "val_loss" in v:
            self.writer.add_scalar("loss/val", v["val_loss"], logs.epoch)
        self.writer.add_scalar("lr", v["lr"], logs.epoch)

    def on_fit_end(self, fit: Fit) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def on_exception(self, fit: Fit, exc: BaseException) -> None:
        with contextlib.suppress(Exception):  # never hide the exception that ended the fit
            self.on_fit_end(fit)

    on_interrupt = on_fit_end


# -------------------------------------------------------------------------------------- signals
class Signals:
    """The signal that arrived during a fit (``received``), if any."""

    def __init__(self) -> None:
        self.received: int | None = None

    def arrived(self, group: Any, sync: bool) -> bool:
        """A signal arrived: here, or in a process group (``group.any``) in any of its processes.

        In a group, processes look only when ``sync`` (every few steps and at each epoch's end),
        all at the same step, so that they stop together.
        """
        received = self.received is not None
        if group is None or not sync:
            return received and group is None
        return bool(group.any(received))


@contextmanager
def catch_signals(enabled: bool, repeat_acts: bool = True, caught: Signals | None = None) -> Iterator[Signals]:
    """While active, SIGINT/SIGTERM set ``received`` instead of acting; a second one acts as usual,
    unless ``repeat_acts=False`` (a process of a group: a terminal's Ctrl-C and torchrun's
    agent both send one, and the checkpoint needs every process; the agent kills what does
    not stop in time).

    Only in the main thread (Python delivers signals there); elsewhere, or when not
    ``enabled``, signals keep their usual handlers. ``caught``: the object to note the signal
    in (a new one by default).
    """
    caught = caught if caught is not None else Signals()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: Any) -> None:
        if caught.received is None:
            caught.received = signum
        if repeat_acts:
            signal.signal(signum, previous[signal.Signals(signum)])  # a second signal acts as it always does

    for s in previous:
        signal.signal(s, handler)
    try:
        yield caught
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
