"""Pure pieces of at-least-once delivery: acknowledged progress and pacing.

A sink publishes many messages at once (a window) and acknowledgements can come back in any
order, but its journal cursor may only move past a record once it and everything before it is
acknowledged; `Progress` keeps that contiguous position. `TokenBucket` lets live traffic out at
once and paces a backlog (after an outage, weeks of readings must not flood customs' broker
or the cellular link). The delay between retries is the project's one, `sealtrail.backoff`.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Progress:
    """Issued and acknowledged positions of one ordered stream (seqs or batch numbers).

    Items are issued in increasing order, each named by the last position it covers; `done`
    is the highest position below which every issued item has been acknowledged.
    """

    def __init__(self, done: int = 0):
        self.done = done
        self.issued = done
        self._outstanding: dict[int, bool] = {}  # upto -> acked; insertion order = issue order

    def issue(self, upto: int) -> None:
        if upto <= self.issued:
            raise ValueError(f"issued {upto} after {self.issued}: items must be issued in order")
        self._outstanding[upto] = False
        self.issued = upto

    def ack(self, upto: int) -> bool:
        """Mark one issued item acknowledged; True if `done` moved."""
        if upto not in self._outstanding:
            return False  # from before a reset: the item is issued again anyway
        self._outstanding[upto] = True
        moved = False
        for first, acked in list(self._outstanding.items()):
            if not acked:
                break
            del self._outstanding[first]
            self.done, moved = first, True
        return moved

    @property
    def in_flight(self) -> int:
        return sum(1 for acked in self._outstanding.values() if not acked)

    def first_open(self) -> int | None:
        """The position of the oldest item still waiting for its acknowledgement, if any."""
        return next(iter(self._outstanding), None)

    def reset(self) -> None:
        """The connection is gone: everything not acknowledged will be issued again."""
        self._outstanding.clear()
        self.issued = self.done


class TokenBucket:
    """At most `rate` messages per second on average, with bursts of up to `burst`."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got {rate} and {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def delay(self) -> float:
        """Take one token: 0.0 if one was there, else how long to wait before sending."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= 1.0  # may go negative: the debt is what the caller waits out
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate
