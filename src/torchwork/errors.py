"""The errors torchwork raises on purpose.

Every one of them carries a message meant for a person: one line that names the
file, column, key or flag at fault and the rule it broke. The CLI prints that line
and exits with the error's ``exit_code``; it never shows a traceback for these.
"""

from __future__ import annotations


class TorchworkError(Exception):
    """Base class: a problem torchwork understood and can explain in one line."""

    exit_code = 1


class InputError(TorchworkError, ValueError):
    """Bad input: a file, column, option or value that breaks a rule. Exit code 2."""

    exit_code = 2


class UnknownNameError(InputError, KeyError):
    """A name (loss, optimizer, model, ...) that no registry knows."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class IntegrityError(TorchworkError):
    """A file does not match its recorded SHA-256, or is truncated. Exit code 2."""

    exit_code = 2


class UnsafeFileError(TorchworkError):
    """A file would run code when loaded; it was refused and nothing ran. Exit code 2."""

    exit_code = 2


class TrainingDiverged(TorchworkError):
    """The loss or the weights became NaN or infinite. Exit code 1."""

    exit_code = 1


class TrainingInterrupted(TorchworkError):
    """SIGINT/SIGTERM arrived; a checkpoint was written. Exit code 130."""

    exit_code = 130
