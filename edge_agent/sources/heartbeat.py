"""The agent's own heartbeat: a signed status record every few seconds, from src "agent".

The rules judge silence on record time (a seal not heard for five minutes, a deadline passed,
a sensor gone quiet), so record time must move even when no sensor speaks: this source writes
``status`` ``{"event": "heartbeat"}`` every ``interval_s`` of the gateway clock. It also shows
in the signed chain that the agent was alive, and a gap in heartbeats is the agent's own
downtime, which the rules know not to blame on anyone (RuleParams.blackout_ms).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from edge_agent.agent import Emit
from edge_agent.journal import Draft
from edge_agent.stats import ComponentStats


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class HeartbeatSource:
    name = "heartbeat"

    def __init__(self, interval_s: float = 10.0, *, src: str = "agent",
                 clock: Callable[[], int] = wall_ms) -> None:
        if not interval_s > 0:
            raise ValueError(f"heartbeat interval_s must be > 0, got {interval_s!r}")
        self.interval_s = float(interval_s)
        self.src = src
        self.clock = clock
        self.sent = 0

    def stats(self) -> ComponentStats:
        """Heartbeats written; nothing comes in, so nothing is added or dropped."""
        return ComponentStats(written=self.sent)

    def draft(self) -> Draft:
        return Draft(self.clock(), "status", self.src, {"event": "heartbeat"})

    async def run(self, emit: Emit) -> None:
        """One heartbeat at start, then one per interval on the monotonic clock (a slow emit,
        when the ingest queue is full, delays the next beat instead of bunching them)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            await emit(self.draft())
            self.sent += 1
            next_at = max(next_at + self.interval_s, loop.time())
            await asyncio.sleep(next_at - loop.time())
