"""The one retry delay of the project: capped exponential backoff with +/-20 % jitter.

Every loop that retries something that is down (a broker, a serial port, gpsd, a database, a
ledger node, a webhook) waits with this, so a fleet of gateways that lost the broker together
does not come back in lockstep, and a customs office's receivers do not hammer a database that
is restarting. ``reset`` after a success.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays initial, 2x, 4x ... up to ``cap`` seconds, each jittered by +/-20 %."""

    def __init__(self, initial: float, cap: float, rng: random.Random | None = None):
        if not 0 < initial <= cap:
            raise ValueError(f"backoff needs 0 < initial <= cap, got {initial} and {cap}")
        self.initial = initial
        self.cap = cap
        self._next = initial
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The delay to wait now; the next one is twice as long (up to the cap)."""
        delay = self._next * self._rng.uniform(0.8, 1.2)
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.initial
