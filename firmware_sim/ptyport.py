"""A simulated serial device on a pty, written from asyncio, that can be unplugged and replugged.

One event loop drives every port of a fleet, so writes never block the thread: the master is
non-blocking and a full buffer suspends only the coroutine writing to that port.

Two delivery policies, matching ``GpsReceiver``:

* real time: bytes written while nobody has the port open are dropped (a UART talking to an
  unconnected cable), and counted as lost;
* fast: the writer waits for a reader and for buffer space, so every byte is delivered and the
  stream is a pure function of the scenario and seed.

Unplug mimics a USB adapter being pulled: the master closes (the reader gets a hang-up), the
symlink vanishes, and on replug a *different* ``/dev/pts/N`` appears behind the same link, as a
``/dev/serial/by-id`` link would point at a new ``ttyUSBn``. The replacement pty is opened at
unplug time so the kernel cannot hand back the old number.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware_sim.pty import PtyPair, pending_input, reader_attached

READER_SETTLE_S = 0.2
"""Grace after a reader appears: pyserial flushes its input right after opening the port."""

_POLL_S = 0.05
"""Nothing signals "someone opened the slave" or "the reader drained it": these are polled."""


class PtyPort:
    """One pty device (a GPS receiver or an e-seal reader) with write accounting.

    ``sha256`` covers exactly the bytes delivered, in order, so two runs can be compared
    without capturing their output.
    """

    def __init__(self, device_id: str, link: str | Path | None, *, fast: bool) -> None:
        self.device_id = device_id
        self.fast = fast
        self._link = Path(link) if link is not None else None
        self._pair: PtyPair | None = _nonblocking(PtyPair(self._link))
        self._spare: PtyPair | None = None
        self.paths: list[str] = [self._pair.slave_path]
        self.bytes_sent = 0
        self.writes_lost = 0
        self._digest = hashlib.sha256()
        self._attached = False
        self.log: Callable[[str], None] = lambda _msg: None

    @property
    def path(self) -> str:
        """What to give the agent: the link if there is one, else the current slave."""
        return str(self._link) if self._link is not None else self.paths[-1]

    @property
    def plugged(self) -> bool:
        return self._pair is not None

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    async def wait_reader(self, stop: Callable[[], bool]) -> bool:
        """Wait until someone opens the port (then let pyserial finish its flush)."""
        pair = self._pair
        if pair is None:
            return False
        if self._attached and reader_attached(pair.master_fd):
            return True
        next_note = time.monotonic() + 5.0
        while not reader_attached(pair.master_fd):
            if stop():
                return False
            if time.monotonic() >= next_note:
                self.log(f"waiting for a reader on {self.path}")
                next_note += 5.0
            await asyncio.sleep(_POLL_S)
        await asyncio.sleep(READER_SETTLE_S)
        self._attached = True
        return True

    async def write(self, data: bytes, stop: Callable[[], bool]) -> bool:
        """Deliver ``data`` whole, or not at all (False = lost: unplugged, no reader, stopped)."""
        pair = self._pair
        if pair is None:
            self.writes_lost += 1
            return False
        if self.fast:
            ok = await self._write_all(pair, data, stop)
        elif not reader_attached(pair.master_fd):
            ok = False
        else:
            ok = await self._write_all(pair, data, stop)
        if ok:
            self.bytes_sent += len(data)
            self._digest.update(data)
        else:
            self.writes_lost += 1
        return ok

    async def _write_all(self, pair: PtyPair, data: bytes, stop: Callable[[], bool]) -> bool:
        view = memoryview(data)
        while view:
            if stop():
                return False
            if not reader_attached(pair.master_fd):
                self._attached = False
                if not self.fast or not await self.wait_reader(stop):
                    return False
                continue
            try:
                n = os.write(pair.master_fd, view)
            except BlockingIOError:
                if not self.fast and len(view) == len(data):
                    return False  # real time: a receiver never waits for a slow listener
                await _writable(pair.master_fd)  # never leave half a sentence behind
                continue
            view = view[n:]
        return True

    async def drain(self, timeout_s: float) -> bool:
        """Wait until the reader has read everything (or ``timeout_s``): closing a pty master
        throws away what the slave has not read, so fast mode drains before unplug and exit."""
        pair = self._pair
        if pair is None:
            return True
        deadline = time.monotonic() + timeout_s
        quiet = 0
        while time.monotonic() < deadline:
            if not reader_attached(pair.master_fd):
                return False
            # Bytes spend a moment in the tty flip buffer before FIONREAD counts them, so
            # require two empty looks in a row.
            quiet = quiet + 1 if pending_input(pair.slave_path) == 0 else 0
            if quiet >= 2:
                return True
            await asyncio.sleep(_POLL_S / 5)
        return False

    def unplug(self) -> dict[str, Any]:
        """Pull the plug: the link vanishes and the reader sees a hang-up."""
        pair = self._pair
        if pair is None:
            return {"already_unplugged": True}
        self._spare = PtyPair(None)  # reserve the next pts number before freeing this one
        pair.close()
        self._pair = None
        self._attached = False
        return {"old": pair.slave_path, "link": str(self._link) if self._link else None}

    def replug(self) -> dict[str, Any]:
        """Plug back in as a new pty; the link (if any) now points at it."""
        if self._pair is not None:
            return {"already_plugged": True}
        pair = _nonblocking(self._spare if self._spare is not None else PtyPair(None))
        self._spare = None
        if self._link is not None:
            pair.link_to(self._link)
        self._pair = pair
        self.paths.append(pair.slave_path)
        self.log(f"replugged as {pair.slave_path}" + (f" at {self._link}" if self._link else ""))
        return {"new": pair.slave_path}

    def close(self) -> None:
        for pair in (self._pair, self._spare):
            if pair is not None:
                pair.close()
        self._pair = self._spare = None


def _nonblocking(pair: PtyPair) -> PtyPair:
    """A pty holds ~20 KiB: a blocking write to a slow reader would stall the whole loop,
    i.e. every simulated device, where only this port's coroutine should wait."""
    os.set_blocking(pair.master_fd, False)
    return pair


async def _writable(fd: int) -> None:
    """Suspend until ``fd`` is writable (or hung up, which the caller re-checks)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def on_ready() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, on_ready)
    try:
        await asyncio.wait_for(ready, _POLL_S * 4)
    except TimeoutError:
        pass
    finally:
        loop.remove_writer(fd)
