"""Logging at a bounded rate, for errors an attacker or a broken device can repeat at will.

A receiver at the wrong baud rate produces a bad line every few milliseconds; logging each would
fill the SD card and bury everything else. Per key, at most ``burst`` messages per ``period_s``
are logged, then one line says how many were suppressed. The counters, not the log, are the
complete record.

That line comes when the window ends, not when the next message happens to arrive: a flood
that stopped must still say how big it was, or the last thing in the log understates it (a
device that sent 10,000 bad lines and then went quiet would show 5). So the first message
suppressed in a window arms a timer on the running event loop for the window's end; when no
loop runs in the calling thread (a worker thread), the count is reported by the next message
or by ``flush``, which reports every window that has ended.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Schedule = Callable[[float, Callable[[], None]], Any]
"""Run a callback after so many seconds (``loop.call_later``); injectable for tests."""


def _call_later(delay: float, callback: Callable[[], None]) -> Any:
    """On the running loop if this thread has one; None (no timer) otherwise."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return loop.call_later(delay, callback)


@dataclass
class _Window:
    start: float
    level: int
    logged: int = 0
    suppressed: int = 0
    armed: bool = False  # a timer will report this window when it ends


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, *, burst: int = 5, period_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 schedule: Schedule = _call_later):
        self.logger = logger
        self.burst = burst
        self.period_s = period_s
        self.clock = clock
        self._schedule = schedule
        self._lock = threading.RLock()  # a timer on the loop and a worker thread may race
        self._windows: dict[str, _Window] = {}

    def warning(self, key: str, msg: str, *args: object) -> None:
        self.log(logging.WARNING, key, msg, *args)

    def log(self, level: int, key: str, msg: str, *args: object) -> None:
        with self._lock:
            now = self.clock()
            report = self._close_if_ended(key, now)
            window = self._windows.setdefault(key, _Window(now, level))
            emit = window.logged < self.burst
            if emit:
                window.logged += 1
            else:
                window.suppressed += 1
                window.level = max(window.level, level)
                self._arm(key, window, now)
        if report is not None:
            self.logger.log(*report)
        if emit:
            self.logger.log(level, msg, *args)

    def flush(self) -> None:
        """Report the suppressed count of every window that has ended."""
        with self._lock:
            now = self.clock()
            reports = [r for key in list(self._windows)
                       if (r := self._close_if_ended(key, now)) is not None]
        for report in reports:
            self.logger.log(*report)

    def _arm(self, key: str, window: _Window, now: float) -> None:
        if not window.armed:
            delay = max(0.0, window.start + self.period_s - now)
            window.armed = self._schedule(delay, lambda: self._expire(key)) is not None

    def _expire(self, key: str) -> None:
        """The timer of ``key``'s window: report it if it has ended by ``clock``, else wait
        out the rest (an injected clock need not run with the loop's)."""
        with self._lock:
            window = self._windows.get(key)
            if window is None or not window.armed:
                return
            window.armed = False
            now = self.clock()
            report = self._close_if_ended(key, now)
            if report is None:
                self._arm(key, window, now)
        if report is not None:
            self.logger.log(*report)

    def _close_if_ended(self, key: str, now: float) -> tuple[Any, ...] | None:
        """Forget ``key``'s window if it has ended; the log call reporting it, if it
        suppressed anything. Called with the lock held."""
        window = self._windows.get(key)
        if window is None or now - window.start < self.period_s:
            return None
        del self._windows[key]
        if not window.suppressed:
            return None
        return (window.level, "%s: %d more like this suppressed in %.0fs", key,
                window.suppressed, now - window.start)
