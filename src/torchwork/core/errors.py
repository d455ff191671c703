"""The errors torchwork raises on purpose.

Every one carries a message meant for a person: one line that names the file, column,
key or flag at fault and the rule it broke. The CLI prints that line and exits with the
error's ``exit_code`` (a property of the class, or of the error's own attributes, never
patched onto an instance); it never shows a traceback for these.
"""

from __future__ import annotations

import signal as _signal


class TorchworkError(Exception):
    """Base class: a problem torchwork understood and can explain in one line."""

    exit_code = 1


class InputError(TorchworkError, ValueError):
    """Bad input: a file, column, option or value that breaks a rule. Exit code 2."""

    exit_code = 2


class DataChanged(InputError):
    """A data file changed, or was truncated, while a run was reading it. Exit code 2.

    The run keeps its folder (and checkpoint) for a resume once the file is restored;
    ``kept`` says so, and how to continue, once someone knows.
    """

    def __init__(self, message: str, kept: str | None = None) -> None:
        super().__init__(message, kept)
        self.message, self.kept = message, kept

    def __str__(self) -> str:
        return f"{self.message}; {self.kept}" if self.kept else self.message


class UnknownNameError(InputError, KeyError):
    """A name (loss, optimizer, model, ...) that no registry knows."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class IntegrityError(TorchworkError):
    """A file does not match its recorded SHA-256, or is truncated. Exit code 2."""

    exit_code = 2


class UnsafeFileError(TorchworkError):
    """A file would run code when loaded, or needs consent to; refused, nothing ran. Exit code 2."""

    exit_code = 2


class OutputError(TorchworkError):
    """A file could not be written (read-only folder, full disk, ...). Exit code 1."""


class BusyError(TorchworkError):
    """Another process holds the folder (a run being written). Exit code 75 (EX_TEMPFAIL)."""

    exit_code = 75


class GroupFailed(TorchworkError):
    """Another process of a multi-process job failed or went away (killed, its machine down). Exit code 1."""


class TrainingDiverged(TorchworkError):
    """The loss or a weight became NaN or infinite. Exit code 1.

    ``quantity`` is what went bad ("training loss", "validation loss", "weight net.0.bias"),
    ``value`` its value, ``epoch`` (1-based) and ``batch`` (1-based, or None) where;
    ``checkpoint`` describes the last good checkpoint once someone knows it.
    """

    def __init__(
        self, quantity: str, value: float, epoch: int, batch: int | None = None, checkpoint: str | None = None
    ) -> None:
        super().__init__(quantity, value, epoch, batch, checkpoint)
        self.quantity, self.value, self.epoch, self.batch, self.checkpoint = quantity, value, epoch, batch, checkpoint

    def __str__(self) -> str:
        where = f"epoch {self.epoch}" + (f", batch {self.batch}" if self.batch is not None else "")
        text = f"training diverged: the {self.quantity} became {self.value} at {where}"
        return f"{text}; {self.checkpoint}" if self.checkpoint else text


class TrainingInterrupted(TorchworkError):
    """SIGINT/SIGTERM arrived and the fit stopped cleanly. Exit code 128 + the signal (130, 143).

    ``epoch`` is the running epoch (from 1; 0 when the fit had not begun, or a second signal cut
    it short) and ``batch`` the batches it had completed;
    ``checkpoint`` says what was saved and ``resume`` how to continue, once someone knows.
    """

    def __init__(
        self, signum: int, epoch: int, batch: int, checkpoint: str | None = None, resume: str | None = None
    ) -> None:
        super().__init__(signum, epoch, batch, checkpoint, resume)
        self.signum, self.epoch, self.batch, self.checkpoint, self.resume = signum, epoch, batch, checkpoint, resume

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        return 128 + self.signum  # the shell's convention

    def __str__(self) -> str:
        name = _signal.Signals(self.signum).name
        if not self.epoch:  # before the fit began (or a second signal cut it short)
            text = f"interrupted by {name}"
        elif self.batch:
            text = f"interrupted by {name} in epoch {self.epoch}, after batch {self.batch}"
        else:
            text = f"interrupted by {name} after epoch {self.epoch - 1}"
        if self.checkpoint:
            text += f"; {self.checkpoint}"
        if self.resume:
            text += f"; continue with: {self.resume}"
        return text


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised where the ``torchwork`` command was (:mod:`torchwork.core.interrupts`).

    A ``BaseException``, as ``KeyboardInterrupt`` is: ``except Exception`` never swallows it, and
    what cleans up on the way out (temporary files, locks) runs as it does for Ctrl-C.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"interrupted by {_signal.Signals(self.signum).name}"


def interrupt_signal(exc: BaseException) -> int | None:
    """The signal that ``exc`` stands for (SIGINT for a ``KeyboardInterrupt``), or None."""
    if isinstance(exc, Interrupted):
        return exc.signum
    return int(_signal.SIGINT) if isinstance(exc, KeyboardInterrupt) else None


def one_line(message: object, limit: int | None = 200, *, first_line: bool = True) -> str:
    """A message (an exception's, a library's) as one printable line of at most ``limit`` characters.

    ``first_line``: keep only the first line (a library's message may go on with a C++ backtrace
    or the bytes of a file); else every line is joined. An exception without a message gives its
    type's name.
    """
    text = str(message)
    if first_line:
        text = next((line for line in text.splitlines() if line.strip()), "")
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if not text and isinstance(message, BaseException):
        text = type(message).__name__
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def counted(n: int, noun: str) -> str:
    """``"1 row"``, ``"3 rows"``: a count and its noun, as a message says it."""
    return f"{n} {noun}" + ("" if n == 1 else "s")
