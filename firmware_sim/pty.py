"""Pseudo-terminal pairs that stand in for a GPS receiver's serial port.

The agent opens the slave side exactly like ``/dev/ttyUSB0`` (pyserial, termios, baud rate
ignored), so the whole serial source is exercised, not a mock. Notes on Linux pty behaviour
that the design relies on:

* The slave is put in raw mode before anyone opens it, so CR/LF pass through untouched
  (cooked mode would turn ``\\r\\n`` into ``\\n\\n``). The setting persists while the master
  is open, even after our own slave descriptor is closed.
* We close our slave descriptor: while no reader has the slave open, ``poll`` on the master
  reports ``POLLHUP``, which lets the receiver behave like a UART talking to nobody (bytes go
  to the void) instead of piling up a backlog of stale fixes for the agent to read later.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import struct
import termios
import tty
from pathlib import Path
from types import TracebackType


def reader_attached(fd: int) -> bool:
    """True unless ``fd`` is a pty master whose slave nobody has open (``POLLHUP``).

    For other descriptors (real serial ports, pipes, files) this is always True: they have no
    way to say "nobody listening", and writes there are the caller's business.
    """
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return not any(events & select.POLLHUP for _fd, events in poller.poll(0))


class PtyPair:
    """An open pty: ``master_fd`` for the simulator, ``slave_path`` for the agent.

    Use as a context manager; on exit the master is closed (the reader sees a hang-up, like an
    unplugged USB receiver) and the symlink, if we made one, is removed.
    """

    def __init__(self, link: str | Path | None = None) -> None:
        master_fd, slave_fd = os.openpty()
        try:
            tty.setraw(slave_fd)
            self.slave_path: str = os.ttyname(slave_fd)
        except BaseException:
            os.close(master_fd)
            raise
        finally:
            os.close(slave_fd)
        self.master_fd: int = master_fd
        self.link_path: Path | None = None
        if link is not None:
            try:
                self.link_path = _make_link(Path(link), self.slave_path)
            except BaseException:
                os.close(master_fd)
                raise
        self._closed = False

    def link_to(self, link: str | Path) -> None:
        """Point ``link`` at this pty now (used to "plug in" a pty opened earlier)."""
        self.link_path = _make_link(Path(link), self.slave_path)

    def unlink(self) -> None:
        """Remove our symlink if it still points at our slave: the device "vanishes"."""
        if self.link_path is not None:
            with contextlib.suppress(OSError):
                if os.readlink(self.link_path) == self.slave_path:
                    self.link_path.unlink()

    @property
    def path(self) -> str:
        """The path to hand to the agent: the symlink if there is one, else the slave device."""
        return str(self.link_path) if self.link_path is not None else self.slave_path

    def close(self) -> None:
        """Close the master and remove our symlink (only if it still points at our slave)."""
        if self._closed:
            return
        self._closed = True
        self.unlink()
        os.close(self.master_fd)

    def __enter__(self) -> PtyPair:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _make_link(link: Path, target: str) -> Path:
    """Atomically point ``link`` at ``target``; replace a stale symlink, never a real file.

    Installers configure a stable path like ``/tmp/sealtrail-gps0`` while the pts number
    changes on every run, so overwriting an old symlink is expected; clobbering a regular file
    or device would be a nasty surprise, so that is an error.
    """
    if link.exists() and not link.is_symlink():
        raise FileExistsError(f"{link} exists and is not a symlink; refusing to replace it")
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
    return link


def pending_input(slave_path: str) -> int:
    """Bytes written to the master that the reader has not read yet (FIONREAD on the slave).

    Opening the slave briefly is harmless: it does not count as a reader once closed again.
    Returns 0 if the slave is gone.
    """
    try:
        fd = os.open(slave_path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError:
        return 0
    try:
        raw = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
        return int(struct.unpack("i", raw)[0])
    finally:
        os.close(fd)


def open_pty(link: str | Path | None = None) -> PtyPair:
    """Open a raw pty pair, optionally symlinked at ``link``; see ``PtyPair``."""
    return PtyPair(link)
