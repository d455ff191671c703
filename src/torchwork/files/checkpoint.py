"""Checkpoints: the whole state of a fit in one file that holds no code.

A checkpoint is a safetensors file. Its tensors are every tensor of
:meth:`Fit.state_dict` (model, optimizer, scheduler, early stopping's best weights, RNG
states, the running epoch's batch losses); everything else (epoch, step, position in the
epoch, history, configuration, ...) is JSON in the file's header, with the tensors'
places marked. A SHA-256 over the JSON and every tensor's bytes, also in the header, is
checked on load, so a flipped bit or a truncation is refused rather than resumed from. The format
is :mod:`~torchwork.files.checkpoint_format`; this module writes checkpoints during a fit.

Files are written atomically (:func:`~torchwork.files.atomic.atomic_write`): a kill during
a write leaves the previous checkpoint whole. :class:`Checkpointer` serialises the state
between two steps (the bytes are the copy: training goes on changing the tensors) and
leaves the write, with its two fsyncs, to a background thread; training waits for a write
only if the previous one has not finished. (Serialising in that thread too was measured
slower: its Python work competes with the training loop for the GIL.)
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torchwork.core.errors import TrainingDiverged
from torchwork.files.atomic import atomic_write, ensure_dir
from torchwork.files.checkpoint_format import HistoryTable, checkpoint_bytes, load_checkpoint, save_checkpoint
from torchwork.training.callbacks import Callback

if TYPE_CHECKING:
    from torchwork.training.fit import EpochLogs, Fit

__all__ = ["Checkpointer", "checkpoint_bytes", "load_checkpoint", "save_checkpoint"]  # the format's, from here too


def _writes(fit: Fit) -> bool:
    return fit.group is None or fit.group.main


class Checkpointer(Callback):
    """Write a checkpoint every ``every_epochs`` epochs and/or ``every_steps`` steps, and on SIGINT/SIGTERM.

    In a process group every rank runs it (each checkpoint gathers every rank's RNG state
    and running losses, which makes it a barrier) and rank 0 alone writes.

    A checkpoint is taken only if every loss since the last check and every weight is
    finite: a diverged fit never overwrites the last good checkpoint, and the error says
    which checkpoint is good. Writes run in a background thread (one at a time); a failed
    write is raised at the next checkpoint or when the fit ends, and ``saved`` changes only
    once a checkpoint is on disk.
    """

    order = 100  # after early stopping, so that its decision is in the checkpoint

    def __init__(
        self,
        path: str | os.PathLike[str],
        every_epochs: int | None = None,
        every_steps: int | None = None,
        extra: dict[str, Any] | None = None,
        final: bool = False,
    ) -> None:
        self.path = Path(path)
        self.final = final  # write a last checkpoint when fitting ends: the finished state, marked as such
        self.every_epochs = every_epochs
        self.every_n_steps = every_steps or 0  # 0: no step checkpoints, on_step_end is never called
        self.extra = extra or {}
        self.saved: tuple[int, int] | None = None  # (epochs completed, step) of the last good checkpoint
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self._history = HistoryTable()

    def on_step_end(self, fit: Fit) -> None:
        self.save(fit)

    def on_epoch_end(self, fit: Fit, logs: EpochLogs) -> None:
        if self.every_epochs and fit.state.epoch % self.every_epochs == 0:
            self.save(fit)

    def on_interrupt(self, fit: Fit) -> None:
        self.save(fit)
        self.close()

    def on_fit_end(self, fit: Fit) -> None:
        if self.final:  # after early stopping restored the best weights (it runs first)
            self.wait()
            fit.check_finite(running=True)
            finished = {"finished": True, "device": str(fit.device), "notes": list(fit.notes)}
            state = fit.state_dict()
            if _writes(fit):
                ensure_dir(self.path.parent)
                save_checkpoint(self.path, state, {**self.extra, **finished})
            self.written((fit.state.epoch, fit.state.step))
        self.close()

    def on_exception(self, fit: Fit, exc: BaseException) -> None:
        with contextlib.suppress(Exception):  # the exception that ended the fit is the one to report
            self.close()  # let a write in flight finish: it is a good checkpoint

    def good(self) -> str:
        """Which checkpoint is the last good one, in words."""
        if self.saved is None:
            return "no checkpoint was written"
        epochs, step = self.saved
        return f"the last good checkpoint is {self.path} (after {epochs} epochs and {step} steps)"

    def save(self, fit: Fit) -> None:
        """Take a copy of the fit's state now; write it in the background."""
        try:
            fit.check_finite(running=True)
        except TrainingDiverged as exc:
            self.wait()
            exc.checkpoint = self.good()
            raise
        state = fit.state_dict()  # in a process group, every rank's part gathered: the checkpoint's barrier
        where = (fit.state.epoch, fit.state.step)
        if not _writes(fit):  # only rank 0 writes
            self.written(where)
            return
        data = checkpoint_bytes({**state, "history": self._history(state["history"])}, self.extra)  # a copy
        self.wait()  # one write at a time; a failed one is raised here
        if self._pool is None:
            ensure_dir(self.path.parent)
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torchwork-checkpoint")
        self._pending = self._pool.submit(self._write, data, where)

    def _write(self, data: bytes, where: tuple[int, int]) -> None:
        atomic_write(self.path, data)  # the bytes to disk and fsyncs: no Python work to compete for the GIL
        self.written(where)

    def written(self, where: tuple[int, int]) -> None:
        """Called (in the writer thread) once a checkpoint is on disk."""
        self.saved = where

    def wait(self) -> None:
        """Wait for the write in flight, if any; raise its error if it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Wait for the last write and stop the writer thread."""
        try:
            self.wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
