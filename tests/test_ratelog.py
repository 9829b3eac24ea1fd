"""The rate-limited log says how big a flood was when the flood stops, not at the next message.

A device that sent thousands of bad lines and then went quiet must not leave a log that shows
only the first five. The clock and the timer are injected, so no test waits on wall time; the
one that uses the real event loop awaits the report itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sealtrail.ratelog import RateLimitedLog


class Recorder(logging.Handler):
    """Collects formatted messages; sets `reported` when a suppression summary arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[int, str]] = []
        self.reported: asyncio.Event | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))
        if self.reported is not None and "suppressed" in record.getMessage():
            self.reported.set()


def _logger(name: str) -> tuple[logging.Logger, Recorder]:
    logger = logging.getLogger(f"test.ratelog.{name}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    recorder = Recorder()
    logger.handlers[:] = [recorder]
    return logger, recorder


class Timers:
    """A stand-in for loop.call_later that the test fires by hand."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay: float, callback: Callable[[], None]) -> object:
        self.pending.append((delay, callback))
        return object()

    def fire(self) -> None:
        due, self.pending = self.pending, []
        for _, callback in due:
            callback()


class Rig:
    """A rate-limited log on its own logger, with a clock and timers the test moves."""

    def __init__(self, name: str, burst: int, start: float = 0.0) -> None:
        logger, self.rec = _logger(name)
        self.now = start
        self.timers = Timers()
        self.log = RateLimitedLog(logger, burst=burst, period_s=10.0, clock=lambda: self.now,
                                  schedule=self.timers)


def test_a_flood_that_stops_is_reported_when_its_window_ends() -> None:
    rig = Rig("stops", burst=2, start=100.0)
    rl, rec, timers = rig.log, rig.rec, rig.timers
    for i in range(7):
        rig.now += 0.5
        rl.warning("bad line", "bad line %d", i)
    assert [m for _, m in rec.lines] == ["bad line 0", "bad line 1"]
    assert [round(d, 6) for d, _ in timers.pending] == [9.0]  # armed once, for the window's end
    rig.now = 110.5  # the window (opened at 100.5) is over; no further message ever comes
    timers.fire()
    assert rec.lines[2:] == [(logging.WARNING, "bad line: 5 more like this suppressed in 10s")]
    rig.now += 100.0
    rl.warning("bad line", "bad line %d", 99)  # a new window: logged, no second summary
    timers.fire()
    assert [m for _, m in rec.lines[3:]] == ["bad line 99"]


def test_a_timer_that_fires_early_by_the_clock_waits_out_the_rest() -> None:
    rig = Rig("early", burst=1)
    rl, rec, timers = rig.log, rig.rec, rig.timers
    rl.log(logging.INFO, "k", "one")
    rl.log(logging.ERROR, "k", "two")  # suppressed; the summary takes the highest level
    rig.now = 4.0
    timers.fire()
    assert [m for _, m in rec.lines] == ["one"]
    assert [round(d, 6) for d, _ in timers.pending] == [6.0]
    rig.now = 10.0
    timers.fire()
    assert rec.lines[1:] == [(logging.ERROR, "k: 1 more like this suppressed in 10s")]


def test_a_quiet_window_reports_nothing_and_arms_no_timer() -> None:
    rig = Rig("quiet", burst=3)
    for i in range(3):
        rig.log.warning("k", "message %d", i)
    rig.now = 50.0
    rig.log.flush()
    assert len(rig.rec.lines) == 3 and rig.timers.pending == []


def test_without_an_event_loop_the_next_message_or_flush_reports() -> None:
    logger, rec = _logger("noloop")
    now = [0.0]
    rl = RateLimitedLog(logger, burst=1, period_s=10.0, clock=lambda: now[0])
    for key in ("a", "b"):
        rl.warning(key, "%s first", key)
        rl.warning(key, "%s again", key)
    now[0] = 12.0
    rl.warning("a", "a later")  # closes a's window first
    assert [m for _, m in rec.lines] == ["a first", "b first",
                                          "a: 1 more like this suppressed in 12s", "a later"]
    rl.flush()
    assert [m for _, m in rec.lines[4:]] == ["b: 1 more like this suppressed in 12s"]
    rl.flush()
    assert len(rec.lines) == 5


def test_on_the_running_loop_the_report_comes_by_itself() -> None:
    logger, rec = _logger("loop")

    async def scenario() -> None:
        rec.reported = asyncio.Event()
        rl = RateLimitedLog(logger, burst=1, period_s=0.05)
        for i in range(4):
            rl.warning("flood", "flood %d", i)
        async with asyncio.timeout(10):
            await rec.reported.wait()  # nothing else is logged: only the timer can say it

    asyncio.run(scenario())
    assert rec.lines[0][1] == "flood 0"
    assert rec.lines[1][1].startswith("flood: 3 more like this suppressed in ")
    assert len(rec.lines) == 2
