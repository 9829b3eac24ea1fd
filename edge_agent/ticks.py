"""One grid for the agent's timed wake-ups, so that several of them cost one.

Waking the process costs CPU whatever it then does (on the VM the benchmarks run on, ~250 µs:
more than signing a reading), so what waits on purpose (MQTT e-seals read every 100 ms, a
serial GPS every 200 ms, ingest's commit interval, the customs sink's housekeeping) does not
keep a timer of its own phase: a wait for `period` ends at the next multiple of `period` on the
event loop's clock. Periods that are multiples of one another (the defaults are multiples of
100 ms) then fall due at the same moments, and one wake-up runs them all.
"""

from __future__ import annotations

import asyncio
import math


def aligned(period: float, now: float) -> float:
    """The wait from `now` to the next multiple of `period` (0 < wait <= period)."""
    if period <= 0:
        return 0.0
    return (math.floor(now / period + 1e-9) + 1) * period - now


async def sleep_aligned(period: float) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(aligned(period, loop.time()))
