"""SIGINT and SIGTERM in the ``torchwork`` command: an exception where the process is, once.

:func:`as_exceptions` (``cli.main`` runs every command inside it) makes both signals raise
:class:`~torchwork.core.errors.Interrupted`, so SIGTERM cleans up as Ctrl-C does (temporary
files go, locks are released) and the command says what it kept. Three rules make that hold at
any moment:

- **Never inside an import.** An exception raised while a module is being imported can be
  swallowed or turned into an abort: torch's C++ start-up catches the failed import of numpy,
  warns and goes on without it (the command then trained on, or failed later in numpy), and a
  pybind11 module hit by it calls ``std::terminate``. A signal that arrives while an import is
  on the stack is held and raised as soon as no import is (a timer looks every 20 ms).
- **Never between making a folder and arming its clean-up**: :func:`deferred` holds a signal the
  same way while a run folder is claimed, so that it is raised where the clean-up is in place.
- **Once.** The first signal raises; those that follow while the command winds down are
  ignored, so that a second Ctrl-C never interrupts the clean-up, the message or the
  interpreter's shutdown (``Exception ignored in <module 'threading'>``).
- **A fit's own handling comes first.** While a fit runs, ``training.callbacks.catch_signals``
  notes the first signal and stops at the next step with a checkpoint; a second one reaches
  this handler and stops the fit at once.

Only the main thread can install handlers: elsewhere :func:`as_exceptions` changes nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from torchwork.core.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
RECHECK = 0.02  # seconds between looks at whether a held signal may be raised yet


class _State:
    def __init__(self) -> None:
        self.held: int | None = None  # a signal that arrived during an import
        self.raised: int | None = None  # the signal raised: the command is stopping
        self.deferred = 0  # inside this many deferred() blocks: signals are held


_state = _State()


def _importing(frame: FrameType | None) -> bool:
    """Whether an import is under way on this stack (importlib's frames are on it)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _raise(signum: int) -> None:
    _state.raised = signum
    raise Interrupted(signum)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _state.raised is not None or _state.held is not None:
        return  # one signal is enough: the command is already stopping
    if _state.deferred or _importing(frame):
        _state.held = signum
        signal.setitimer(signal.ITIMER_REAL, RECHECK)
        return
    _raise(signum)


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    held = _state.held
    if held is None or _state.raised is not None:
        return
    if _state.deferred or _importing(frame):
        signal.setitimer(signal.ITIMER_REAL, RECHECK)
        return
    _state.held = None
    _raise(held)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the block runs (a run folder being made and claimed); one that came
    is raised by the timer after it, at most 20 ms later, where the code that cleans up is."""
    _state.deferred += 1
    try:
        yield
    finally:
        _state.deferred -= 1


def stopping() -> None:
    """The command is ending because of a signal: further SIGINT/SIGTERM are ignored."""
    if _state.raised is None:
        _state.raised = int(signal.SIGINT)


@contextmanager
def as_exceptions() -> Iterator[None]:
    """While active, SIGINT/SIGTERM raise :class:`Interrupted` (held during imports, raised once).

    On the way out the previous handlers come back, unless a signal stopped the command: then
    the process is ending, and both signals stay ignored until it has (a signal still held
    is raised there).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.held = _state.raised = None
    previous: dict[int, Any] = {s: signal.getsignal(s) for s in (*SIGNALS, signal.SIGALRM)}
    signal.signal(signal.SIGALRM, _on_alarm)
    for s in SIGNALS:
        signal.signal(s, _on_signal)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        held, ending = _state.held, _state.raised is not None or _state.held is not None
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_IGN if ending and signum in SIGNALS else handler)
        if held is not None and _state.raised is None:  # it came during the last import: it still counts
            _state.held, _state.raised = None, held
            raise Interrupted(held)
