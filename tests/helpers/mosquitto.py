"""A real Mosquitto broker on a free loopback port, for integration tests.

    from helpers.mosquitto import running_mosquitto

    def test_something(tmp_path):
        with running_mosquitto(tmp_path) as broker:
            client.connect(broker.host, broker.port)
            broker.stop()    # the broker goes away (SIGTERM), e.g. to test reconnects
            broker.start()   # and comes back on the same port, with an empty state
            broker.kill()    # or dies hard (SIGKILL)

Readiness is "the port accepts a TCP connection", checked by connecting: Mosquitto has no
readiness notification, and its log format is not an interface. The broker logs to
``broker.log_path`` (not a pipe: 1,000 clients would fill a pipe and stall the broker).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
START_TIMEOUT_S = 10.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Broker:
    """One Mosquitto process; ``start``/``stop``/``kill`` keep the same host, port and config."""

    host: str
    port: int
    conf_path: Path
    log_path: Path
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Launch the broker and return once it accepts connections."""
        if self.running:
            return
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_accepting()

    def _wait_accepting(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        delay = 0.005
        while True:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"mosquitto exited with {self._proc.returncode}: {self.log_tail()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log_tail()}")
            time.sleep(delay)  # polling the port: no event exists for "now listening"
            delay = min(delay * 2, 0.1)

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM), waiting for the process to exit."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Hard stop (SIGKILL), like a crash or power loss of the broker host."""
        self._end(signal.SIGKILL, 10.0)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def log_tail(self, chars: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""


def broker_config(port: int, log_path: Path, extra_conf: str = "", host: str = "127.0.0.1") -> str:
    """The config used by ``running_mosquitto``: anonymous, no persistence, loopback only."""
    lines = [
        f"listener {port} {host}",
        "allow_anonymous true",
        "persistence false",
        f"log_dest file {log_path}",
        "log_type error",
        "log_type warning",
        "log_type notice",
    ]
    if os.geteuid() == 0:
        lines.append("user root")  # else it drops to 'mosquitto' and cannot write the log
    return "\n".join(lines) + "\n" + extra_conf + ("\n" if extra_conf else "")


@contextlib.contextmanager
def running_mosquitto(
    tmp_path: Path, *, extra_conf: str = "", port: int | None = None, name: str = "mosquitto"
) -> Iterator[Broker]:
    """A started broker; stopped (and its files left in ``tmp_path`` for post-mortems) on exit.

    ``extra_conf`` is appended to the config, e.g. ``"max_queued_messages 100000"``.
    """
    if not os.path.exists(MOSQUITTO):
        raise RuntimeError(f"mosquitto not found at {MOSQUITTO} (apt-get install mosquitto)")
    port = port or free_port()
    conf = tmp_path / f"{name}.conf"
    log = tmp_path / f"{name}.log"
    conf.write_text(broker_config(port, log, extra_conf))
    broker = Broker("127.0.0.1", port, conf, log)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
