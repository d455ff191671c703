"""SIGINT and SIGTERM during a fit: noted, acted on between steps, never mid-step."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


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
