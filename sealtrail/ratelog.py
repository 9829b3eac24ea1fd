"""Logging at a bounded rate, for errors an attacker or a broken device can repeat at will.

A receiver at the wrong baud rate produces a bad line every few milliseconds; logging each would
fill the SD card and bury everything else. Per key, at most ``burst`` messages per ``period_s``
are logged, then one line says how many were suppressed. The counters, not the log, are the
complete record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, *, burst: int = 5, period_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.burst = burst
        self.period_s = period_s
        self.clock = clock
        self._windows: dict[str, tuple[float, int, int]] = {}  # key -> (start, logged, dropped)

    def warning(self, key: str, msg: str, *args: object) -> None:
        self.log(logging.WARNING, key, msg, *args)

    def log(self, level: int, key: str, msg: str, *args: object) -> None:
        now = self.clock()
        start, logged, dropped = self._windows.get(key, (now, 0, 0))
        if now - start >= self.period_s:
            if dropped:
                self.logger.log(level, "%s: %d more like this suppressed in %.0fs",
                                key, dropped, now - start)
            start, logged, dropped = now, 0, 0
        if logged < self.burst:
            self.logger.log(level, msg, *args)
            logged += 1
        else:
            dropped += 1
        self._windows[key] = (start, logged, dropped)
