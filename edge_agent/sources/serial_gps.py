"""NMEA GPS receiver on a serial port (USB dongle, UART, or a pseudo-terminal in tests).

The port is read through the event loop (add_reader on its file descriptor) rather than a
thread: when the ingest queue is full the source simply stops reading, the kernel's tty buffer
fills, and the receiver is held back, which is real backpressure with no unbounded queue.
A vanished device (EOF, EIO, path gone) is reopened with capped exponential backoff, so a USB
receiver unplugged and plugged back needs no restart. Nothing a receiver sends can raise out of
this source: bad lines are counted by reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
from collections import Counter
from collections.abc import Awaitable, Callable

import serial

from edge_agent.journal import Draft
from edge_agent.sources.framing import LineFramer
from edge_agent.sources.nmea import NmeaDecoder

log = logging.getLogger(__name__)

Emit = Callable[[Draft], Awaitable[None]]


class SerialGpsSource:
    def __init__(self, port: str, *, sensor_id: str = "gps0", baudrate: int = 9600,
                 max_line: int = 512, backoff_s: tuple[float, float] = (0.2, 30.0)):
        self.port = port
        self.sensor_id = sensor_id
        self.baudrate = baudrate
        self.counts: Counter[str] = Counter()
        self.decoder = NmeaDecoder()
        self.framer = LineFramer(max_line, self.counts)
        self.connected = asyncio.Event()
        self._backoff = backoff_s

    @property
    def name(self) -> str:
        return f"serial-gps:{self.sensor_id}"

    async def run(self, emit: Emit) -> None:
        """Read fixes forever, reconnecting as needed; returns only when cancelled."""
        delay = self._backoff[0]
        while True:
            try:
                port = serial.Serial(self.port, self.baudrate, timeout=0, exclusive=True)
            except (serial.SerialException, OSError) as exc:
                self.counts["open_failed"] += 1
                log.warning("%s: cannot open %s (%s); retrying in %.1fs",
                            self.name, self.port, exc, delay)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, self._backoff[1])
                continue
            delay = self._backoff[0]
            self.connected.set()
            log.info("%s: reading %s", self.name, self.port)
            try:
                await self._read(port, emit)
            finally:
                self.connected.clear()
                self.framer.reset()
                with contextlib.suppress(Exception):
                    port.close()
            self.counts["disconnects"] += 1
            log.warning("%s: %s went away; reopening", self.name, self.port)

    async def _read(self, port: serial.Serial, emit: Emit) -> None:
        loop = asyncio.get_running_loop()
        fd = port.fileno()
        while True:
            ready = loop.create_future()
            loop.add_reader(fd, ready.set_result, None)
            try:
                await ready
            finally:
                loop.remove_reader(fd)
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EIO, errno.ENXIO, errno.EBADF, errno.ENODEV):
                    log.warning("%s: read error %s", self.name, exc)
                return
            if not data:
                return
            self.counts["bytes"] += len(data)
            for line in self.framer.feed(data):
                fix = self.decoder.feed(line)
                if fix is not None:
                    self.counts["fixes"] += 1
                    await emit(Draft(fix.t_ms, "gps", self.sensor_id, fix.body()))

    def stats(self) -> dict[str, int]:
        """Framing, connection and decoder counters in one flat view (for status/metrics)."""
        merged = Counter(self.counts)
        merged.update({f"nmea_{k}": v for k, v in self.decoder.counts.items()})
        return dict(merged)
