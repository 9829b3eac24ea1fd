"""A STAND-IN for the customs store, until the lead's receiver publishes acks itself.

The contract (ledger_client/acks.py, DESIGN.md "MQTT"): customs stores each alert, then
publishes on ``sealtrail/v1/<gw>/acks`` (retained, QoS 1) the signed ``make_ack`` of the highest
alert seq S such that every alert of that gateway up to S is stored, found by following the
alerts' ``prev_alert`` links. ``sealtrail customs watch --service-key FILE`` will do exactly
this; until it lands on main, the gateway's end-to-end tests and bench/agent_soak.py use this
small subscriber instead. It is deliberately plain: a real broker, a real SQLite file
(synchronous=FULL), manual MQTT acknowledgement after the store commit, real signed acks. It
checks no gateway signatures (the real receiver does); it records arrival times (latency).

    standin = CustomsStandIn(host, port, db_path=tmp / "customs.db", service_key=key,
                             username="customs", password=..., tls=ctx)
    standin.start()
    standin.wait(lambda s: s.acked("gw-1") >= 10, timeout=30)
    standin.stop()
"""

from __future__ import annotations

import json
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger_client.acks import make_ack

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (gw TEXT NOT NULL, seq INTEGER NOT NULL,
    alert_id TEXT NOT NULL, prev_alert INTEGER, signed BLOB NOT NULL,
    PRIMARY KEY (gw, seq));
CREATE INDEX IF NOT EXISTS alerts_by_prev ON alerts (gw, prev_alert);
CREATE TABLE IF NOT EXISTS acked (gw TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"""


class CustomsStandIn:
    """Stores alerts and acknowledges them like customs; see the module docstring."""

    def __init__(self, host: str, port: int, *, db_path: Path, service_key: Ed25519PrivateKey,
                 username: str | None = None, password: str | None = None,
                 tls: ssl.SSLContext | None = None, client_id: str = "customs-standin",
                 ack: bool = True):
        self.host, self.port = host, port
        self.service_key = service_key
        self.ack = ack  # False: store only (a receiver that never acknowledges)
        self.db = sqlite3.connect(db_path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)
        self.arrivals: list[tuple[str, int, float, bytes]] = []  # gw, seq, monotonic, signed
        self.acks_published: list[tuple[str, int]] = []
        self.changed = threading.Condition()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=False)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            self.client.tls_set_context(tls)
        self.client.manual_ack_set(True)
        self.client.on_connect = self._connected
        self.client.on_message = self._message
        self.connected = threading.Event()

    # -- running --------------------------------------------------------------------------

    def start(self) -> CustomsStandIn:
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.connect_async(self.host, self.port)
        self.client.loop_start()
        if not self.connected.wait(20):
            raise RuntimeError("the customs stand-in could not connect")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()

    def close(self) -> None:
        self.db.close()

    def _connected(self, client: paho.Client, userdata: object, flags: object, reason: object,
                   properties: object) -> None:
        client.subscribe("sealtrail/v1/+/alerts", qos=1)
        self.connected.set()

    def _message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        gw = msg.topic.split("/")[2]
        record = json.loads(msg.payload)
        body = record["body"]
        with self.changed:
            self.arrivals.append((gw, record["seq"], time.monotonic(), bytes(msg.payload)))
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("INSERT OR IGNORE INTO alerts VALUES (?, ?, ?, ?, ?)",
                        (gw, record["seq"], body["alert_id"], body.get("prev_alert"),
                         bytes(msg.payload)))
        acked = self._advance(gw)
        self.db.execute("COMMIT")
        client.ack(msg.mid, msg.qos)
        if self.ack:
            client.publish(f"sealtrail/v1/{gw}/acks", make_ack(
                self.service_key, gw, acked, time.time_ns() // 1_000_000), qos=1, retain=True)
            self.acks_published.append((gw, acked))
        with self.changed:
            self.changed.notify_all()

    def _advance(self, gw: str) -> int:
        row = self.db.execute("SELECT seq FROM acked WHERE gw = ?", (gw,)).fetchone()
        acked = row[0] if row else 0
        while True:
            nxt = self.db.execute("SELECT seq FROM alerts WHERE gw = ? AND prev_alert = ?",
                                  (gw, acked)).fetchone()
            if nxt is None:
                break
            acked = nxt[0]
        self.db.execute("INSERT INTO acked VALUES (?, ?) ON CONFLICT(gw) DO UPDATE SET "
                        "seq = excluded.seq", (gw, acked))
        return int(acked)

    # -- looking ----------------------------------------------------------------------------

    def acked(self, gw: str) -> int:
        row = self.db.execute("SELECT seq FROM acked WHERE gw = ?", (gw,)).fetchone()
        return int(row[0]) if row else 0

    def stored(self, gw: str) -> dict[int, bytes]:
        return {seq: bytes(signed) for seq, signed in self.db.execute(
            "SELECT seq, signed FROM alerts WHERE gw = ?", (gw,))}

    def forget(self, gw: str, after: int) -> None:
        """What a store restored from an old backup looks like: alerts after `after` gone."""
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("DELETE FROM alerts WHERE gw = ? AND seq > ?", (gw, after))
        self.db.execute("INSERT INTO acked VALUES (?, ?) ON CONFLICT(gw) DO UPDATE SET "
                        "seq = excluded.seq", (gw, after))
        self.db.execute("COMMIT")

    def publish_ack(self, gw: str, acked: int) -> None:
        self.client.publish(f"sealtrail/v1/{gw}/acks", make_ack(
            self.service_key, gw, acked, time.time_ns() // 1_000_000), qos=1,
            retain=True).wait_for_publish(10)

    def wait(self, done: Callable[[CustomsStandIn], bool], timeout: float = 30.0) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: done(self), timeout):
                raise TimeoutError(f"customs stand-in: condition not met in {timeout}s; "
                                   f"{len(self.arrivals)} alerts arrived")
