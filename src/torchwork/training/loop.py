"""One fit in progress: its objects, where it stands, what callbacks see of it, and its history.

Epochs are counted from 1 wherever a person reads them (history, logs, errors,
checkpoints); :attr:`FitState.epoch` counts the epochs completed, so the running epoch is
``state.epoch + 1``. A checkpoint is :meth:`Fit.state_dict`: tensors and plain values only.
:class:`History` is the record: one row per recorded epoch.
"""

from __future__ import annotations

import csv
import io
import math
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from torchwork.core.errors import InputError, TorchworkError, TrainingDiverged, TrainingInterrupted, one_line
from torchwork.core.runtime import rng_state, set_rng_state

# ---------------------------------------------------------------------------------- the history
COLUMNS = ("epoch", "train_loss", "val_loss", "lr", "seconds")


class History:
    """Rows of ``epoch, train_loss, val_loss, lr, seconds``, queryable by column.

    ``history["train_loss"]`` is that column as a list; ``history[-1]`` the last row.
    Epochs are counted from 1 (an ``int``); losses are floats. ``best_epoch`` is the epoch whose
    weights a callback kept as the best (``EarlyStopping``): 0 for the weights the fit started
    from, None when no callback chose.
    """

    def __init__(self, rows: list[dict[str, Any]] | None = None, best_epoch: int | None = None) -> None:
        self.rows: list[dict[str, Any]] = list(rows or [])
        self.best_epoch = best_epoch

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, str):
            return [row.get(key) for row in self.rows]
        return self.rows[key]

    @property
    def columns(self) -> list[str]:
        present = {key for row in self.rows for key in row}
        return [c for c in COLUMNS if c in present]

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: (int(v) if k == "epoch" else repr(v)) for k, v in row.items()})
        return out.getvalue()

    @classmethod
    def from_csv(cls, text: str) -> History:
        rows = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(io.StringIO(text))]
        for row in rows:
            row["epoch"] = int(row["epoch"])
        return cls(rows)

    def __repr__(self) -> str:
        return f"History({len(self.rows)} rows, columns={self.columns}, best_epoch={self.best_epoch})"


# ---------------------------------------------------------------------------- a fit in progress
@dataclass
class FitState:
    """Where a fit stands: enough, with the weights and RNG states, to continue it exactly."""

    epoch: int = 0  # epochs completed; the running epoch is epoch + 1
    batch: int = 0  # batches completed in the running epoch
    step: int = 0  # optimizer steps taken in all
    seed: int = 0  # the shuffling seed
    stop: bool = False  # a callback asked to stop after the last completed epoch
    epoch_lr: float | None = None  # the learning rate when the running epoch began (for its history row)


class EpochLosses:
    """The batch losses of the running epoch, kept on the device in one buffer.

    Written in place (one buffer for the whole fit): keeping a small tensor alive per step
    fragments the C heap between the large per-step activations. A fit with one batch per
    epoch (the tutorial) keeps that batch's loss tensor as it is, with no copy.
    """

    def __init__(self, batch_sizes: list[int], dtype: torch.dtype, device: torch.device) -> None:
        self.n = len(batch_sizes)
        self.one = self.n == 1  # the single batch's loss is kept as it is
        self.buffer = torch.zeros(self.n, dtype=dtype, device=device)
        self.single: torch.Tensor | None = None
        n_rows = sum(batch_sizes)
        if len(set(batch_sizes)) > 1:  # a short last batch weighs less in the epoch's mean
            self.weights: torch.Tensor | None = torch.tensor(batch_sizes, dtype=dtype, device=device) / n_rows
        else:
            self.weights = None

    def record(self, batch: int, loss: torch.Tensor) -> None:
        if self.one:
            self.single = loss
        else:
            self.buffer.select(0, batch).copy_(loss)

    def upto(self, batch: int) -> torch.Tensor:
        """The losses of batches ``0 .. batch-1`` of the running epoch (a 1-D tensor)."""
        if self.one:
            return self.single.reshape(1) if (self.single is not None and batch) else self.buffer[:0]
        return self.buffer[:batch]

    def mean(self) -> torch.Tensor:
        """The epoch's training loss: the mean over rows of the batch losses."""
        if self.one:
            assert self.single is not None
            return self.single
        if self.weights is None:
            return self.buffer.mean()
        return (self.buffer * self.weights).sum()

    def restore(self, values: torch.Tensor) -> None:
        """Put back the losses of a resumed epoch's completed batches."""
        if len(values):
            if self.one:
                self.single = values.to(self.buffer)[0]
            else:
                self.buffer[: len(values)].copy_(values)


class EpochLogs:
    """What one epoch produced. The losses stay on the device until someone reads them."""

    def __init__(
        self, epoch: int, train_loss: torch.Tensor, val_loss: torch.Tensor | None, lr: float, seconds: float
    ) -> None:
        self.epoch, self.train_loss, self.val_loss, self.lr, self.seconds = epoch, train_loss, val_loss, lr, seconds
        self._values: dict[str, Any] | None = None

    def values(self) -> dict[str, Any]:
        """The epoch's numbers as Python values (reads the device: a synchronisation on a GPU)."""
        if self._values is None:
            out: dict[str, Any] = {"epoch": self.epoch, "train_loss": self.train_loss.item()}
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
        return math.isfinite(values["train_loss"]) and math.isfinite(values.get("val_loss", 0.0))

    def monitored(self) -> float:
        """The loss that early stopping and plateau schedulers watch: validation, else training."""
        values = self.values()
        return float(values.get("val_loss", values["train_loss"]))


def first_non_finite(epochs: list[tuple[int, torch.Tensor, torch.Tensor | None]]) -> TrainingDiverged | None:
    """The first NaN or infinite loss among ``(epoch, batch_losses, val_loss)``, as an error; or None.

    One synchronisation when everything is finite (the common case).
    """
    if not epochs:
        return None
    values = [t for _, t, _ in epochs] + [v for _, _, v in epochs if v is not None]
    scalars = all(v.dim() == 0 for v in values)  # one batch per epoch (the tutorial): one stack, no reshapes
    joined = torch.stack(values) if scalars else torch.cat([v.reshape(-1) for v in values])
    if bool(torch.isfinite(joined).all()):
        return None
    for epoch, batch_losses, val_loss in epochs:
        losses = batch_losses.reshape(-1)
        bad = torch.nonzero(~torch.isfinite(losses))
        if len(bad):
            batch = int(bad[0])
            return TrainingDiverged("training loss", float(losses[batch]), epoch, batch + 1)
        if val_loss is not None and not math.isfinite(float(val_loss)):
            return TrainingDiverged("validation loss", float(val_loss), epoch)
    return None


SIGNAL_EVERY = 16  # in a process group, a signal is looked for in every process every this many steps


class Fit:
    """A fit in progress: the one object the loop, the engines and the callbacks share.

    It holds the model, the optimizer and its schedule, the batches and the validation data,
    the counters (:class:`FitState`), the batch losses on the device, the history and the
    callbacks. The Trainer builds it and the training step it runs (``step``: the five steps on
    one batch, built around :meth:`Trainer.training_step`); an engine runs the steps of an epoch
    with :meth:`after_steps` between them and never sees the Trainer. Callbacks read ``model``,
    ``optimizer``, ``scheduler``, ``device``, ``engine``, ``epochs``, ``state``, ``history`` and
    ``notes``, call :meth:`validate`, and set ``stop_training`` to end the fit after this epoch.
    """

    def __init__(
        self, *, model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any, device: torch.device,
        dtype: torch.dtype, epochs: int, log_every: int, batches: Any, val: Any, callbacks: list[Any],
        seed: int, engine: str, note: Callable[[str], None], signals: Any, step_callbacks: list[Any],
        step_interval: int | None, group: Any = None,
    ) -> None:  # fmt: skip
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.device, self.dtype, self.epochs, self.log_every = device, dtype, epochs, log_every
        self.batches, self.val = batches, val
        self.callbacks = callbacks
        self.engine = engine  # the name of the engine that runs the steps
        self.losses = EpochLosses(batches.batch_sizes(), dtype, device)
        self.state = FitState(seed=seed)
        self.history = History()
        self.notes: list[str] = []
        self.stop_training = False
        self._note = note
        # The process group (:class:`~torchwork.training.distributed.Group`) of a fit in several
        # processes, else None: checkpoints then hold every rank's generator state.
        self.group = group
        self.signals = signals  # training.callbacks.Signals: the signal that arrived, if any
        self.threads: int | None = None  # torch's intra-op CPU threads during the fit (None: an accelerator)
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        # What the Trainer wires in (dropped by :meth:`release` when the fit ends): the training
        # step, the testing loop, and the testing loop on a one-batch validation set as a
        # function an engine can run or capture with the step (None otherwise).
        self.step: Callable[[Any], torch.Tensor] = _unset
        self.testing_loop: Callable[[Any], torch.Tensor] = _unset
        self.testing_step: Callable[[], torch.Tensor] | None = None
        # The callbacks that override on_step_end, and how many steps may run between two calls
        # (training.callbacks.step_interval: the callbacks know, this module does not import them).
        self.step_callbacks, self.step_interval = step_callbacks, step_interval
        # Losses of completed epochs not yet checked for NaN/inf: (epoch, batch losses, val loss).
        self.pending: list[tuple[int, torch.Tensor, torch.Tensor | None]] = []

    @property
    def scheduler(self) -> Any:
        return self.schedule.scheduler if self.schedule is not None else None

    def note(self, text: str) -> None:
        """A one-line remark about how the fit runs (e.g. why CUDA graphs are off)."""
        self.notes.append(text)
        self._note(text)

    def validate(self) -> torch.Tensor | None:
        """The testing loop on the validation data: its mean loss, on the device (None without one)."""
        return None if self.val is None else self.testing_loop(self.val)

    def release(self) -> None:
        """Drop what the Trainer wired in: the fit's objects stay, the steps (and what they hold, a
        DistributedDataParallel wrapper say) go with the fit's end, and no reference cycle is left."""
        self.step, self.testing_loop, self.testing_step = _unset, _unset, None

    # ----------------------------------------------------------------- between steps
    def after_steps(self, k: int) -> None:
        """``k`` more steps are done: the counters, the step callbacks, and any signal."""
        state = self.state
        state.batch += k
        state.step += k
        for cb in self.step_callbacks:
            if cb.every_n_steps is None or state.step % cb.every_n_steps == 0:
                cb.on_step_end(self)
        if self.signals.arrived(self.group, state.step % SIGNAL_EVERY == 0):
            self.interrupt()

    def until_boundary(self) -> int | None:
        """Steps left before the next step callback must run (None: there is none); an engine may run
        several steps between boundaries, never across one."""
        interval = self.step_interval
        return None if interval is None else interval - self.state.step % interval

    def interrupt(self) -> None:
        signum = self.signals.received or signal.SIGTERM  # another process of the group was signalled
        for cb in self.callbacks:
            cb.on_interrupt(self)
        raise TrainingInterrupted(signum, self.state.epoch + 1, self.state.batch)

    # ------------------------------------------------------------------- divergence
    def check_finite(self, *, running: bool = False) -> None:
        """Raise :class:`TrainingDiverged` if a loss since the last check is NaN or infinite.

        Losses stay on the device until this runs: at each history record, when a callback
        reads an epoch's values, and when fitting ends. ``running=True`` (before a
        checkpoint) also checks the running epoch's losses so far and every weight.
        """
        pending, self.pending = self.pending, []
        problem = first_non_finite(pending)
        if problem is None and running:
            problem = first_non_finite([(self.state.epoch + 1, self.losses.upto(self.state.batch), None)])
            if problem is None:
                problem = self._non_finite_weight()
        if running and self.group is not None:  # each rank holds its own running losses: agree on one answer
            problem = next((p for p in self.group.gather(problem) if p is not None), None)
        if problem is not None:
            raise problem

    def _non_finite_weight(self) -> TrainingDiverged | None:
        for name, p in self.model.state_dict().items():
            if p.is_floating_point() and not bool(torch.isfinite(p).all()):
                bad = p.detach().reshape(-1)
                value = float(bad[~torch.isfinite(bad)][0])
                return TrainingDiverged(f"weight {name}", value, self.state.epoch + 1, self.state.batch or None)
        return None

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this fit exactly: tensors and plain values only.

        The callbacks' states are keyed by each callback's ``key``. In a process group every
        rank must call this at the same step (it gathers every rank's generator state and
        running-epoch losses into ``ranks``; the weights, optimizer and counters are the same
        on every rank).
        """
        state: dict[str, Any] = {f.name: getattr(self.state, f.name) for f in fields(FitState)}
        state["stop"] = self.state.stop or self.stop_training  # early stopping's decision at this epoch's end
        state["best_epoch"] = self.history.best_epoch
        state["epoch_losses"] = self.losses.upto(self.state.batch).detach().cpu().clone()
        rng = rng_state(self.device)
        ranks = None
        if self.group is not None:
            ranks = self.group.gather({"rng": rng, "epoch_losses": state["epoch_losses"]})
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "callbacks": {cb.key: cb.state_dict() for cb in self.callbacks if cb.stateful},
            "fit": state,
            "history": list(self.history.rows),
            "rng": rng,
            **({"ranks": ranks} if ranks is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`; a fit in N processes continues only in N processes."""
        try:
            self._load_state_dict(state)
        except TorchworkError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
            raise InputError(f"the state to resume from does not fit this fit ({type(exc).__name__}: "
                             f"{one_line(exc)})") from None  # fmt: skip

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        ranks = state.get("ranks")
        saved, world = len(ranks) if ranks else 1, self.group.world_size if self.group is not None else 1
        if saved != world:
            raise InputError(
                f"the fit was checkpointed in {saved} process{'es' if saved > 1 else ''} and continues exactly "
                f"only in {saved} (this is {world}): start it with {saved} processes in all"
            )
        kept = state.get("callbacks", {})
        missing = [cb.key for cb in self.callbacks if cb.stateful and cb.key not in kept]
        if missing:
            raise InputError(
                f"the checkpoint holds no state for the callback {missing[0]!r} (the fit that wrote it had none): "
                "resume with the callbacks it was trained with, or start again"
            )
        mine = ranks[self.group.rank] if ranks else {"rng": state["rng"], "epoch_losses": state["fit"]["epoch_losses"]}
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        # How to compute (not what): a checkpoint written on a GPU resumes on a CPU and back.
        for group in self.optimizer.param_groups:
            for key in ("capturable", "foreach", "fused", "differentiable"):
                if key in self.optimizer.defaults:
                    group[key] = self.optimizer.defaults[key]
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        for cb in self.callbacks:
            if cb.stateful:
                cb.load_state_dict(kept[cb.key])
        fit = dict(state["fit"])
        fit.pop("epoch_losses")
        best_epoch = fit.pop("best_epoch", None)
        self.losses.restore(mine["epoch_losses"])
        self.state = FitState(**fit)
        self.history = History(state.get("history", []), best_epoch)
        self.stop_training = self.state.stop
        set_rng_state(mine["rng"], self.device)


def _unset(*args: Any) -> Any:
    raise RuntimeError("the fit has ended: its steps were released")
