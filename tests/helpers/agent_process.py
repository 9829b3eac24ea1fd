"""`sealtrail agent run` as a real process for tests: start it, read its metrics, end it.

Another process's state has no event to wait on, so tests poll its /metrics (``wait_for``
below, bounded); what the process wrote is read from its journal file, read-only, afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class AgentProcess:
    def __init__(self, config: Path, log: Path, metrics_port: int):
        self.config, self.log, self.port = config, log, metrics_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sealtrail.cli", "agent", "run", "-c", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, env={**os.environ})
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self) -> dict[str, float]:
        """`name{labels}` -> value; {} while the port does not answer yet."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics",
                                        timeout=10) as reply:
                text = reply.read().decode()
        except (OSError, urllib.error.URLError):
            return {}
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def health(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz",
                                        timeout=10) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def metric(self, prefix: str) -> float:
        """The sum of every sample whose `name{labels}` starts with `prefix`."""
        return sum(v for k, v in self.metrics().items() if k.startswith(prefix))

    def wait_for(self, condition: Callable[[], T], timeout: float, what: str) -> T:
        deadline = time.monotonic() + timeout
        while True:
            assert self.alive, f"the agent exited while waiting for {what}:\n{self.tail()}"
            value = condition()
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.tail()}"
            time.sleep(0.1)  # another process: nothing to wait on but its answers

    def last_log_line(self) -> str:
        lines = [line for line in self.log.read_text(errors="replace").splitlines() if line]
        return lines[-1] if lines else ""

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(60)


def journal_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a journal file, read-only."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [json.loads(row[0]) for row in
                db.execute("SELECT signed FROM records ORDER BY seq")]
    finally:
        db.close()
