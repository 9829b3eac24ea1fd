"""A simulated GNSS receiver on its own thread: writes each epoch of a route to a descriptor.

This is the single-device runner behind ``sealtrail sim gps``; the fleet runner (``fleet.py``)
drives many receivers from one event loop with the same ``FixModel`` and encoder, so a fleet
truck and a lone receiver with the same settings put the same bytes on the wire.

Two clocks, on purpose:

* Real-time mode (default) behaves like hardware: epoch k is due at ``start + k / rate_hz`` on
  ``time.monotonic()`` (an absolute schedule, so per-epoch jitter never accumulates into drift)
  and is stamped with the real UTC wall clock at emission, so the agent's staleness and
  future-fix checks see current fixes. If nobody has the pty open the epoch is dropped, the
  way a UART talks to nobody, instead of building a backlog of stale fixes.
* Fast mode (``realtime=False``) writes as fast as the reader drains, with fix times
  ``t0_ms + k * 1000 / rate_hz``: deterministic output for tests and benchmarks. It waits for a
  reader (and blocks on back-pressure) rather than dropping, because every epoch counts there.
"""

from __future__ import annotations

import errno
import math
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Protocol

from firmware_sim.gnss import Conditions, FixModel
from firmware_sim.motion import Motion
from firmware_sim.nmea import SENTENCES, SimFix, epoch_bytes
from firmware_sim.pty import reader_attached
from firmware_sim.route import PositionNoise, Route

EpochCallback = Callable[[int, SimFix], None]
"""Called after each epoch is written, with the 0-based epoch index and the fix written."""

_POLL_S = 0.05
"""How often blocked waits re-check the stop event; bounds shutdown latency."""

READER_SETTLE_S = 0.2
"""``wait_reader`` waits this long after a reader attaches: pyserial flushes its input right after
opening the port, and anything written in that window would be silently lost."""


class _HasDuration(Protocol):
    @property
    def duration_s(self) -> float: ...


def epochs_per_pass(route: _HasDuration, rate_hz: float) -> int:
    """Epochs in one pass (of a ``Route`` or a ``Motion``): t = 0, 1/rate, ... <= duration."""
    return math.floor(route.duration_s * rate_hz + 1e-9) + 1


class GpsReceiver:
    """Drives one route onto one descriptor at ``rate_hz`` epochs per second.

    ``loop`` is the number of passes over the route (0 = until ``stop`` is set). Each pass
    restarts at the first vertex. ``wait_reader`` (always on in fast mode) holds the first
    epoch until someone opens the pty, so a demo truck does not leave before the agent looks.
    ``epochs_written`` counts epochs actually written; ``epochs_dropped`` counts real-time
    epochs discarded because no reader was attached or the port buffer was full.
    """

    def __init__(
        self,
        route: Route,
        fd: int,
        rate_hz: float = 10.0,
        *,
        realtime: bool = True,
        t0_ms: int | None = None,
        noise: PositionNoise | None = None,
        loop: int = 1,
        stop: threading.Event | None = None,
        on_epoch: EpochCallback | None = None,
        talker: str = "GN",
        sats: int = 12,
        hdop: float = 0.8,
        alt_m: float = 30.0,
        wait_reader: bool = False,
        motion: Motion | None = None,
        conditions: Conditions | None = None,
        sentences: tuple[str, ...] = SENTENCES,
        seed: int | str | None = None,
    ) -> None:
        if not (math.isfinite(rate_hz) and 0 < rate_hz <= 1000):
            raise ValueError(f"rate_hz must be in (0, 1000], got {rate_hz!r}")
        if loop < 0:
            raise ValueError("loop must be >= 0 (0 = forever)")
        if len(talker) != 2 or not talker.isalpha() or not talker.isupper():
            raise ValueError(f"talker must be two upper-case letters, got {talker!r}")
        self.route = route
        self.motion = motion if motion is not None else Motion(route)
        self.model = FixModel(
            self.motion,
            noise,
            conditions or Conditions(),
            sats=sats,
            hdop=hdop,
            alt_m=alt_m,
            seed=seed,
        )
        self.sentences = sentences
        self.fd = fd
        self.rate_hz = float(rate_hz)
        self.realtime = realtime
        self.t0_ms = t0_ms if t0_ms is not None else (time.time_ns() // 1_000_000_000) * 1000
        self.noise = noise
        self.loop = loop
        self.stop = stop if stop is not None else threading.Event()
        self.on_epoch = on_epoch
        self.talker = talker
        self.wait_reader = wait_reader or not realtime
        # hhmmss.ss cannot tell epochs < 10 ms apart; real receivers switch to 3 decimals too.
        self.time_decimals = 2 if self.rate_hz <= 100 else 3
        self._tick_ms = 10 if self.time_decimals == 2 else 1
        self.epochs_written = 0
        self.epochs_dropped = 0
        self._last_t_ms: int | None = None

    def _fix(self, k_in_pass: int, k_total: int) -> SimFix:
        if self.realtime:
            t_ms = time.time_ns() // 1_000_000
            # Catch-up epochs after a stall must still carry distinct, increasing times or the
            # agent would merge two epochs into one.
            if self._last_t_ms is not None:
                t_ms = max(t_ms, self._last_t_ms + self._tick_ms)
        else:
            t_ms = self.t0_ms + round(k_total * 1000 / self.rate_hz)
        self._last_t_ms = t_ms
        return self.model.fix(k_total / self.rate_hz, t_ms, route_t_s=k_in_pass / self.rate_hz)

    def _wait_until(self, deadline: float) -> bool:
        """Sleep until ``deadline`` (monotonic); False if ``stop`` was set meanwhile."""
        remaining = deadline - time.monotonic()
        if remaining > 0:
            return not self.stop.wait(remaining)
        return not self.stop.is_set()

    def _write_blocking(self, data: bytes) -> bool:
        """Write all of ``data`` despite O_NONBLOCK, polling ``stop``; False if stopped."""
        view = memoryview(data)
        while view:
            if self.stop.is_set():
                return False
            if not reader_attached(self.fd):
                self.stop.wait(_POLL_S)
                continue
            poller = select.poll()
            poller.register(self.fd, select.POLLOUT)
            if not poller.poll(_POLL_S * 1000):
                continue
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                continue
            view = view[n:]
        return True

    def _write_realtime(self, data: bytes) -> bool:
        """Write an epoch if it fits right now; a receiver never waits for its listener."""
        if not reader_attached(self.fd):
            return False
        try:
            n = os.write(self.fd, data)
        except BlockingIOError:
            return False
        if n < len(data):  # never leave half a sentence behind: finish it, briefly blocking
            return self._write_blocking(data[n:])
        return True

    def _wait_for_reader(self) -> bool:
        while not reader_attached(self.fd):
            if self.stop.wait(_POLL_S):
                return False
        return not self.stop.wait(READER_SETTLE_S)

    def run(self) -> int:
        """Emit epochs until the route (or the last loop) ends or ``stop`` is set.

        Returns the number of epochs written. OS errors other than a full buffer (for example
        EIO when a USB adapter is unplugged) propagate: the caller decides how to report them.
        """
        was_blocking = os.get_blocking(self.fd)
        os.set_blocking(self.fd, False)
        try:
            self._run()
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                raise
        finally:
            os.set_blocking(self.fd, was_blocking)
        return self.epochs_written

    def _run(self) -> None:
        if self.wait_reader and not self._wait_for_reader():
            return
        per_pass = epochs_per_pass(self.motion, self.rate_hz)
        start = time.monotonic()
        k_total = 0
        passes = 0
        while self.loop == 0 or passes < self.loop:
            for k in range(per_pass):
                if self.realtime:
                    if not self._wait_until(start + k_total / self.rate_hz):
                        return
                elif self.stop.is_set():
                    return
                fix = self._fix(k, k_total)
                data = epoch_bytes(fix, self.talker, self.time_decimals, self.sentences)
                ok = self._write_realtime(data) if self.realtime else self._write_blocking(data)
                k_total += 1
                if not ok:
                    if self.stop.is_set():
                        return
                    self.epochs_dropped += 1
                    continue
                self.epochs_written += 1
                if self.on_epoch is not None:
                    self.on_epoch(self.epochs_written - 1, fix)
            passes += 1
