"""Time for the local server: the wall clock by default, a hand-driven one in tests.

A clock is any zero-argument callable returning epoch seconds as a float. Every
status change of a batch is computed from the clock and the pace, so a test that
drives a :class:`ManualClock` sees exactly the same history on every run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]
"""A zero-argument callable returning the current time in epoch seconds."""

DEFAULT_MANUAL_START = 1_700_000_000.0
"""Where a :class:`ManualClock` starts unless told otherwise (2023-11-14T22:13:20Z)."""


def system_clock() -> float:
    """Return the wall-clock time in epoch seconds."""
    return time.time()


class ManualClock:
    """A clock that only moves when told to.

    Call it to read the time; :meth:`advance` moves it forward. Safe to read and
    advance from several threads (the server reads it from request threads).
    """

    def __init__(self, start: float = DEFAULT_MANUAL_START) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (>= 0) and return the new time."""
        if seconds < 0:
            raise ValueError(f"ManualClock.advance: seconds must be >= 0, got {seconds!r}")
        with self._lock:
            self._now += seconds
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self():.3f})"
