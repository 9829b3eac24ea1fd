"""A line-oriented serial device (GPS receiver, e-seal reader) that never takes the agent down.

The port is read through the event loop (add_reader on its file descriptor) rather than a
thread: when the ingest queue is full the source simply stops reading, the kernel's tty buffer
fills, and the device is held back, which is real backpressure with no unbounded queue.

A vanished device (EOF, EIO, path gone) is reopened by path with capped, jittered exponential
backoff, so a USB adapter unplugged and plugged back needs no restart; give a
/dev/serial/by-id/... path and it is found again even if it comes back as another ttyUSB.
Disconnects and silences are recorded as signed status records (someone unplugging a GPS is
itself evidence). Framing is bounded (a 10 MB line costs no memory), and the line handler is a
decoder that never raises, so nothing a device sends can raise out of this source.

``read_interval_s`` (0: read as bytes arrive) lets bytes gather in the kernel's tty buffer
between reads: every wake-up of the event loop costs CPU (on a VM measured ~250 µs, more than
decoding an epoch), and a GPS at 10 Hz need not wake the agent ten times a second; its fixes
carry their own time. The wait ends on edge_agent/ticks.py's grid, with the other timed ones.
An e-seal reader keeps 0: a forged message is an alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import serial

from edge_agent.agent import Emit, Item
from edge_agent.journal import Draft
from edge_agent.sources.framing import LineFramer
from edge_agent.stats import ComponentStats
from edge_agent.ticks import sleep_aligned
from sealtrail.backoff import Backoff
from sealtrail.ratelog import RateLimitedLog

log = logging.getLogger(__name__)
STABLE_S = 5.0
"""A connection that lasted this long resets the reconnect backoff."""


class LineHandler(Protocol):
    """Turns one complete line into drafts. Must never raise; counts its own rejects."""

    rejected: int
    """Lines dropped so far (the source logs new ones at a bounded rate)."""

    def handle(self, line: bytes) -> list[Item]: ...

    def reset(self) -> list[Item]:
        """The link dropped: give up partial state (e.g. an epoch missing its other half)."""
        ...

    def stats(self) -> ComponentStats:
        """What the decoder counted; the port adds framing and connection counts."""
        ...


def _set_once(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class SerialLineSource:
    def __init__(self, port: str, handler: LineHandler, *, sensor_id: str, kind: str,
                 baudrate: int = 9600, max_line: int = 512,
                 backoff_s: tuple[float, float] = (0.2, 30.0), silence_s: float | None = 10.0,
                 clock: Callable[[], int] = wall_ms):
        self.port = port
        self.handler = handler
        self.sensor_id = sensor_id
        self.kind = kind
        self.baudrate = baudrate
        self.counts: Counter[str] = Counter()
        self.framer = LineFramer(max_line, self.counts)
        self.connected = asyncio.Event()
        self.silence_s = silence_s
        self.clock = clock
        self._backoff = Backoff(*backoff_s)
        self._ratelog = RateLimitedLog(log)
        self._was_connected = False
        self.read_interval_s = 0.0

    @property
    def name(self) -> str:
        return f"serial-{self.kind}:{self.sensor_id}"

    async def run(self, emit: Emit) -> None:
        """Read forever, reconnecting as needed; returns only when cancelled."""
        while True:
            try:
                port = serial.Serial(self.port, self.baudrate, timeout=0, exclusive=True)
            except (serial.SerialException, OSError, ValueError) as exc:
                self.counts["open_failed"] += 1
                delay = self._backoff.next()
                self._ratelog.warning(f"{self.name} open", "%s: cannot open %s (%s); retrying "
                                      "in %.1fs", self.name, self.port, exc, delay)
                await asyncio.sleep(delay)
                continue
            opened = time.monotonic()
            if self._was_connected:
                await emit(self._status("sensorConnected", port=self.port))
            self._was_connected = True
            self.connected.set()
            log.info("%s: reading %s", self.name, self.port)
            try:
                await self._read(port, emit)
            finally:
                self.connected.clear()
                self.framer.reset()
                with contextlib.suppress(Exception):
                    port.close()
            for item in self.handler.reset():
                await emit(item)
            self.counts["disconnects"] += 1
            await emit(self._status("sensorDisconnected", port=self.port))
            self._ratelog.warning(f"{self.name} gone", "%s: %s went away; reopening",
                                  self.name, self.port)
            if time.monotonic() - opened < STABLE_S:
                # a flapping adapter (opens, dies at once) backs off like one that cannot open,
                # or it would fill the journal with connect/disconnect records
                await asyncio.sleep(self._backoff.next())
            else:
                self._backoff.reset()

    async def _read(self, port: serial.Serial, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        fd = port.fileno()
        silent_since: int | None = None
        garbled_since: int | None = None
        last_good, bytes_since_good = loop.time(), 0
        rejected = self.handler.rejected
        while True:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _set_once, ready)
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancellation
                # that stops the agent when it races with the device becoming readable
                async with asyncio.timeout(self.silence_s):
                    await ready
            except TimeoutError:
                if silent_since is None:
                    silent_since = self.clock() - int((self.silence_s or 0) * 1000)
                    self.counts["silences"] += 1
                    await emit(self._status("sensorSilent", since_ms=silent_since))
                continue
            finally:
                loop.remove_reader(fd)
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EIO, errno.ENXIO, errno.EBADF, errno.ENODEV):
                    self._ratelog.warning(f"{self.name} read", "%s: read error %s",
                                          self.name, exc)
                return
            if not data:
                return
            if silent_since is not None:
                await emit(self._status("sensorBack", since_ms=silent_since,
                                        silent_ms=self.clock() - silent_since))
                silent_since = None
            self.counts["bytes"] += len(data)
            bytes_since_good += len(data)
            for line in self.framer.feed(data):
                items = self.handler.handle(line)
                if self.handler.rejected != rejected:
                    rejected = self.handler.rejected
                    self._ratelog.warning(f"{self.name} bad line", "%s: dropped a line (%d so "
                                          "far; reasons in /metrics): %r", self.name, rejected,
                                          line[:80])
                else:
                    last_good, bytes_since_good = loop.time(), 0
                    if garbled_since is not None:
                        items = [self._status("sensorReadable", since_ms=garbled_since),
                                 *items]
                        garbled_since = None
                for item in items:
                    await emit(item)
            if (garbled_since is None and self.silence_s is not None
                    and loop.time() - last_good > self.silence_s
                    and bytes_since_good > 2 * self.framer.max_line):
                # bytes, but not one usable line for a while and more than a few lines' worth:
                # wrong baud rate, wrong device, or noise. Not silent, so without this it
                # would show only in the counters and the log.
                garbled_since = self.clock() - int(self.silence_s * 1000)
                self.counts["garbled"] += 1
                await emit(self._status("sensorGarbled", since_ms=garbled_since))
            if self.read_interval_s > 0 and len(data) < 2048:  # a trickle, not a backlog:
                await sleep_aligned(self.read_interval_s)  # let more gather before reading

    def _status(self, event: str, **details: object) -> Draft:
        return Draft(self.clock(), "status", self.sensor_id, {"event": event, **details})

    def stats(self) -> ComponentStats:
        """The decoder's figures, plus the port's: overlong lines dropped by the framer;
        bytes, open failures, disconnects, silences and garbled spells as events."""
        part = self.handler.stats()
        port = dict(self.counts)
        dropped = {**part.dropped, "line_too_long": port.pop("line_too_long", 0)}
        return replace(part, dropped=dropped, events={**part.events, **port},
                       connected=self.connected.is_set())
