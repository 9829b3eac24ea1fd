"""Gateways and a customs receiver for the customs tests: real journals, real signatures.

Alerts on the wire are real: each gateway is an edge_agent Journal with a key made at run time,
alerts are appended as Drafts and their stored signed bytes are published with paho, exactly as
the gateway's customs sink publishes them. Forgeries are made the way an attacker would: by
editing those bytes, by signing with another key, by publishing on another gateway's topic.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from helpers.mosquitto import Broker

from edge_agent.journal import Draft, Journal
from ledger_client.keys import create_key, public_hex
from ledger_client.records import canonical

T0 = 1_790_000_000_000
PLAN = "PLAN-7"


class Gateway:
    """A gateway's journal in tmp_path; its records are what the real agent would publish."""

    def __init__(self, tmp: Path, gw: str, *, key_name: str | None = None):
        self.gw = gw
        self.key = create_key(tmp / f"{key_name or gw}.key")
        self.journal = Journal(tmp / f"{key_name or gw}.db", gateway_id=gw, key=self.key)
        self.n = 0

    @property
    def pub(self) -> str:
        return public_hex(self.key)

    def alert(self, kind: str = "routeDeviation", severity: str = "critical",
              lat_e7: int = 455_000_000, lon_e7: int = -735_000_000, *,
              alert_id: str | None = None, **extra: Any) -> bytes:
        self.n += 1
        body = {"alert_id": alert_id or f"{self.gw}-alert-{self.n}", "type": kind,
                "severity": severity,
                "asset": {"vehicle": "TRUCK-1", "gps": "gps0"}, "plan_id": PLAN,
                "position": {"lat_e7": lat_e7, "lon_e7": lon_e7, "fix_quality": 1},
                "evidence": [1], "details": {"distance_m": 812}, **extra}
        [stored] = self.journal.append([Draft(T0 + self.n * 1000, "alert", "rules", body)])
        return stored.signed

    def fixes(self, count: int) -> list[bytes]:
        drafts = [Draft(T0 + i * 1000, "gps", "gps0",
                        {"lat_e7": 455_000_000 + i * 100, "lon_e7": -735_000_000,
                         "fix_quality": 1, "sats": 9, "hdop_x10": 8})
                  for i in range(count)]
        return [s.signed for s in self.journal.append(drafts)]


def alerts_topic(gw: str) -> str:
    return f"sealtrail/v1/{gw}/alerts"


def tamper(signed: bytes, **changes: Any) -> bytes:
    """Change body fields and re-encode canonically, keeping the old signature: what a
    man-in-the-middle who knows the format (but not the key) produces."""
    record = json.loads(signed)
    record["body"].update(changes)
    return canonical(record)


def publish(broker: Broker, messages: list[tuple[str, bytes]], *, retain: bool = False,
            user: str | None = None) -> None:
    """Publish at QoS 1, in order, and return once the broker acknowledged each (as ``user``
    over TLS when the broker is the deployed secure one)."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="test-publisher")
    if user is not None:
        secure: Any = broker
        client.tls_set_context(secure.tls())
        client.username_pw_set(user, secure.passwords[user])
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def trust_file(path: Path, gateways: dict[str, str]) -> Path:
    path.write_text(json.dumps({"gateways": gateways}))
    return path


# --- a subprocess and its output ------------------------------------------------------------

class Lines:
    """Lines of a subprocess stream, read on a thread, waited for with a deadline."""

    def __init__(self, stream: Any):
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait(self, predicate: Callable[[list[str]], bool], timeout: float = 30.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while not predicate(self.lines):
            left = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise AssertionError(f"timed out; got: {self.lines[-30:]}") from None
            if line is None:
                raise AssertionError(f"stream ended; got: {self.lines[-30:]}")
            self.lines.append(line)
        return self.lines


