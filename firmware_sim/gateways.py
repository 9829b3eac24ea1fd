"""Simulated gateways talking to customs: signed alerts and readings, each on its own connection.

What a national customs side must take: thousands of gateways, each logged in to the broker with
its own account (so the deployed ACL applies to each), each publishing its own hash-chained,
signed records on its own topics, the way a real agent's customs sink does: an alert record on
``sealtrail/v1/<gw>/alerts``, a readings message (JSON Lines of records) on ``.../readings``.
Every record sent is also written to a log (SQLite: ``sent(gw, seq, kind, signed)``) so a test
can check that customs stored each one exactly once.

Keys are derived from a seed and the gateway id (``gateway_key``), so the side that configures
customs' trust computes the same public keys without any file passing between the two.

The records are encoded here from DESIGN.md's "Records" section (sorted-key compact JSON,
Ed25519 over the record without ``sig``, ``prev`` the SHA-256 of the previous signed bytes),
not with the product's signer: customs is then tested against an independent encoder, as it
is against every gateway it does not control.

One asyncio loop drives every connection (aiomqtt hooks each socket into the loop; no thread per
gateway). A gateway whose connection drops reconnects with backoff and sends again what the
broker had not acknowledged; the receiver's keys make that a counted duplicate, never a loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealtrail import boundedjson
from sealtrail.backoff import Backoff

CONNECT_CONCURRENCY = 32
GENESIS_PREV = "0" * 64
T0_MS = 1_790_000_000_000


def gateway_key(seed: bytes, gw: str) -> Ed25519PrivateKey:
    """The simulated gateway's signing key: the same for anyone who knows the seed."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed + gw.encode()).digest())


def gateway_ids(count: int, prefix: str = "gw-sim") -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(count)]


@dataclass
class GatewayOptions:
    host: str
    port: int
    count: int
    seed: bytes
    passwords: dict[str, str] = field(default_factory=dict)  # gw -> broker password
    tls: ssl.SSLContext | None = None
    rate_hz: float = 1.0  # alerts per second per gateway, and readings messages as many
    duration_s: float = 10.0
    prefix: str = "gw-sim"
    sent_log: Path | None = None
    backoff_s: tuple[float, float] = (0.2, 5.0)


class SimGateway:
    """One gateway's chain: the seq, the previous record's hash and alert, the signer."""

    def __init__(self, gw: str, key: Ed25519PrivateKey):
        self.gw = gw
        self.key = key
        self.seq = 0
        self.prev = GENESIS_PREV
        self.prev_alert = 0
        self.alerts = 0

    def _sign(self, t_ms: int, kind: str, src: str, body: dict[str, Any]) -> bytes:
        self.seq += 1
        unsigned = {"v": 1, "gw": self.gw, "seq": self.seq, "t_ms": t_ms, "kind": kind,
                    "src": src, "body": body, "prev": self.prev}
        sig = self.key.sign(_canonical(unsigned)).hex()
        signed = _canonical({**unsigned, "sig": sig})
        self.prev = hashlib.sha256(signed).hexdigest()
        return signed

    def reading(self, t_ms: int) -> bytes:
        lat = 455_000_000 + (self.seq * 37) % 100_000
        return self._sign(t_ms, "gps", "gps0", {"lat_e7": lat, "lon_e7": -735_000_000,
                                                 "fix_quality": 1, "sats": 9, "hdop_x10": 8})

    def alert(self, t_ms: int) -> bytes:
        self.alerts += 1
        body = {"alert_id": f"{self.gw}-a{self.alerts}", "type": "routeDeviation",
                "severity": "warning", "plan_id": f"PLAN-{self.gw}",
                "position": {"lat_e7": 455_000_000, "lon_e7": -735_000_000},
                "prev_alert": self.prev_alert, "evidence": [max(1, self.seq)]}
        signed = self._sign(t_ms, "alert", "rules", body)
        self.prev_alert = self.seq
        return signed


class GatewayFleet:
    """``count`` gateways publishing for ``duration_s``; ``run`` returns a summary."""

    def __init__(self, options: GatewayOptions,
                 progress: Callable[[dict[str, Any]], None] | None = None):
        self.o = options
        self.progress = progress
        self.gateways = [SimGateway(gw, gateway_key(options.seed, gw))
                         for gw in gateway_ids(options.count, options.prefix)]
        self.clients: dict[str, aiomqtt.Client] = {}
        self.published = 0
        self.acked = 0
        self.retries = 0
        self.reconnects = 0
        self._log: sqlite3.Connection | None = None
        self._pending: set[asyncio.Task[None]] = set()

    def _client(self, gw: str) -> aiomqtt.Client:
        client = aiomqtt.Client(self.o.host, self.o.port, identifier=gw, clean_session=True,
                                username=gw, password=self.o.passwords.get(gw),
                                tls_context=self.o.tls, keepalive=60, timeout=30,
                                max_inflight_messages=100)
        client.pending_calls_threshold = 10_000
        return client

    async def _connect(self, gw: str) -> aiomqtt.Client:
        backoff = Backoff(*self.o.backoff_s)
        while True:
            client = self._client(gw)
            try:
                await client.__aenter__()
                return client
            except aiomqtt.MqttError:
                await asyncio.sleep(backoff.next())

    async def connect_all(self) -> None:
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(gw: str) -> None:
            async with gate:
                self.clients[gw] = await self._connect(gw)

        await asyncio.gather(*(one(g.gw) for g in self.gateways))

    async def _publish(self, gw: str, topic: str, payload: bytes) -> None:
        """QoS 1 until the broker acknowledges it; a dropped connection is re-made."""
        while True:
            client = self.clients[gw]
            try:
                await client.publish(topic, payload, qos=1, timeout=60)
                self.acked += 1
                return
            except aiomqtt.MqttError:
                self.retries += 1
                if self.clients.get(gw) is client:
                    with contextlib.suppress(Exception):
                        await client.__aexit__(None, None, None)
                    self.reconnects += 1
                    self.clients[gw] = await self._connect(gw)

    def _send(self, gw: str, topic: str, payload: bytes) -> None:
        task = asyncio.create_task(self._publish(gw, topic, payload))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        self.published += 1

    def _open_log(self) -> None:
        if self.o.sent_log is None:
            return
        self._log = sqlite3.connect(self.o.sent_log)
        self._log.execute("CREATE TABLE IF NOT EXISTS sent (gw TEXT NOT NULL, seq INTEGER NOT "
                          "NULL, kind TEXT NOT NULL, signed BLOB NOT NULL, PRIMARY KEY (gw, "
                          "seq))")

    async def run(self) -> dict[str, Any]:
        self._open_log()
        started = time.monotonic()
        await self.connect_all()
        connected_s = time.monotonic() - started
        period = 1.0 / self.o.rate_hz
        ticks = max(1, round(self.o.duration_s * self.o.rate_hz))
        begin = time.monotonic()
        for tick in range(ticks):
            rows = []
            t_ms = T0_MS + int(tick * period * 1000)
            for g in self.gateways:
                reading = g.reading(t_ms)
                alert = g.alert(t_ms)
                self._send(g.gw, f"sealtrail/v1/{g.gw}/readings", reading)
                self._send(g.gw, f"sealtrail/v1/{g.gw}/alerts", alert)
                rows += [(g.gw, g.seq - 1, "gps", reading), (g.gw, g.seq, "alert", alert)]
            if self._log is not None:
                self._log.executemany("INSERT INTO sent VALUES (?,?,?,?)", rows)
                self._log.commit()
            if self.progress is not None:
                self.progress({"tick": tick + 1, "of": ticks, "published": self.published,
                               "acked": self.acked})
            await asyncio.sleep(max(0.0, begin + (tick + 1) * period - time.monotonic()))
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        wall = time.monotonic() - begin
        await asyncio.gather(*(_quiet_close(c) for c in self.clients.values()))
        if self._log is not None:
            self._log.close()
        return {"gateways": len(self.gateways), "published": self.published,
                "acked": self.acked, "retries": self.retries, "reconnects": self.reconnects,
                "connect_s": round(connected_s, 2), "publish_s": round(wall, 2),
                "messages_per_s": round(self.published / wall, 1)}


def _canonical(obj: dict[str, Any]) -> bytes:
    """RFC 8785 for integer-only JSON: sorted keys, no spaces, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


async def _quiet_close(client: aiomqtt.Client) -> None:
    with contextlib.suppress(Exception):
        await client.__aexit__(None, None, None)


def load_passwords(path: Path) -> dict[str, str]:
    """A JSON file {gateway id: broker password} (mode 0600, made by the test or operator)."""
    doc = boundedjson.loads(path.read_bytes(), max_bytes=16 * 1024 * 1024, max_depth=2)
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise ValueError(f"{path}: expected {{\"<gateway id>\": \"<password>\"}}")
    return {str(k): v for k, v in doc.items()}
