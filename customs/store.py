"""The customs receiver's SQLite file: verified alerts, verified readings, quarantine, plans.

Only verified records enter ``alerts`` and ``records``; anything that failed verification goes to
``quarantine`` with its reason and its exact bytes (evidence of an attack or a misconfigured
gateway, and something ``recheck`` can re-verify once a transient reason such as an unreachable
ledger node is gone). ``alert_id`` is the primary key of ``alerts``, so a duplicate cannot be
stored twice even if two receivers shared the file; duplicates are counted on the first row.

The webhook outbox is a table written in the same transaction as the alert, so an alert is
forwarded at least once even if the receiver stops between storing and forwarding it.

The receiver acknowledges an MQTT message only after the transaction holding it has committed
(``synchronous=FULL``): an acknowledged alert is on disk.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "1"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY, gw TEXT NOT NULL, seq INTEGER NOT NULL, t_ms INTEGER NOT NULL,
    type TEXT NOT NULL, severity TEXT NOT NULL, plan_id TEXT, lat_e7 INTEGER, lon_e7 INTEGER,
    status TEXT NOT NULL, trust TEXT NOT NULL, received_ms INTEGER NOT NULL,
    signed BLOB NOT NULL, duplicates INTEGER NOT NULL DEFAULT 0, note TEXT);
CREATE INDEX IF NOT EXISTS alerts_by_plan ON alerts (plan_id, t_ms);
CREATE INDEX IF NOT EXISTS alerts_by_gw_seq ON alerts (gw, seq);
CREATE TABLE IF NOT EXISTS records (
    gw TEXT NOT NULL, seq INTEGER NOT NULL, t_ms INTEGER NOT NULL, kind TEXT NOT NULL,
    src TEXT NOT NULL, lat_e7 INTEGER, lon_e7 INTEGER, received_ms INTEGER NOT NULL,
    signed BLOB NOT NULL, PRIMARY KEY (gw, seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_time ON records (gw, kind, t_ms);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY, received_ms INTEGER NOT NULL, topic TEXT NOT NULL,
    reason TEXT NOT NULL, detail TEXT NOT NULL, gw TEXT, seq INTEGER, alert_id TEXT,
    plan_id TEXT, payload BLOB NOT NULL, released_ms INTEGER);
CREATE INDEX IF NOT EXISTS quarantine_by_reason ON quarantine (reason, released_ms);
CREATE TABLE IF NOT EXISTS gateways (
    gw TEXT PRIMARY KEY, state TEXT NOT NULL, t_ms INTEGER, head_seq INTEGER,
    alerts_pending INTEGER, received_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS plans (
    plan_id TEXT PRIMARY KEY, envelope BLOB NOT NULL, source TEXT NOT NULL,
    received_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS webhook_outbox (
    alert_id TEXT PRIMARY KEY REFERENCES alerts (alert_id), state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, updated_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS webhook_pending ON webhook_outbox (state);
"""
ALERT_FIELDS = ("alert_id", "gw", "seq", "t_ms", "type", "severity", "plan_id", "lat_e7",
                "lon_e7", "status", "trust", "received_ms", "signed", "duplicates", "note")
QUARANTINE_FIELDS = ("id", "received_ms", "topic", "reason", "detail", "gw", "seq", "alert_id",
                     "plan_id", "payload", "released_ms")


class StoreError(Exception):
    """The file is not a customs receiver database (or a newer one)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class AlertRow:
    """A verified alert; ``signed`` is the record exactly as the gateway signed it."""

    alert_id: str
    gw: str
    seq: int
    t_ms: int
    type: str
    severity: str
    plan_id: str | None
    lat_e7: int | None
    lon_e7: int | None
    status: str
    trust: str
    received_ms: int
    signed: bytes
    duplicates: int = 0
    note: str | None = None

    def record(self) -> dict[str, Any]:
        return json.loads(self.signed)

    @property
    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = self.record()["body"]
        return body


@dataclass(frozen=True, slots=True)
class RecordRow:
    """A verified non-alert record (gps, seal, status); lat/lon only for gps fixes."""

    gw: str
    seq: int
    t_ms: int
    kind: str
    src: str
    lat_e7: int | None
    lon_e7: int | None
    received_ms: int
    signed: bytes


@dataclass(frozen=True, slots=True)
class QuarantineRow:
    id: int
    received_ms: int
    topic: str
    reason: str
    detail: str
    gw: str | None
    seq: int | None
    alert_id: str | None
    plan_id: str | None
    payload: bytes
    released_ms: int | None


class Store:
    """One receiver database; thread-safe (one lock around one connection)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            version = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a customs receiver database ({exc})") from None
        if version is None:
            self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        elif version[0] != SCHEMA_VERSION:
            raise StoreError(f"{self.path}: schema {version[0]}, this receiver reads "
                             f"{SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(*args)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return result

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- writing -----------------------------------------------------------------------------

    def add_alert(self, row: AlertRow, *, forward: bool = False) -> bool:
        """Store a verified alert; False (and the duplicate counted) if alert_id is known."""
        def insert() -> bool:
            cur = self._db.execute(
                f"INSERT INTO alerts ({', '.join(ALERT_FIELDS)}) VALUES "
                f"({', '.join('?' * len(ALERT_FIELDS))}) ON CONFLICT (alert_id) DO NOTHING",
                tuple(getattr(row, f) for f in ALERT_FIELDS))
            if cur.rowcount == 0:
                self._db.execute("UPDATE alerts SET duplicates = duplicates + 1 "
                                 "WHERE alert_id = ?", (row.alert_id,))
                return False
            if forward:
                self._db.execute("INSERT INTO webhook_outbox (alert_id, state, updated_ms) "
                                 "VALUES (?, 'pending', ?)", (row.alert_id, row.received_ms))
            return True
        return bool(self._tx(insert))

    def add_records(self, rows: Iterable[RecordRow]) -> int:
        """Store verified readings; returns how many were new ((gw, seq) already held: skipped)."""
        values = [(r.gw, r.seq, r.t_ms, r.kind, r.src, r.lat_e7, r.lon_e7, r.received_ms,
                   r.signed) for r in rows]

        def insert() -> int:
            before = self._db.total_changes
            self._db.executemany("INSERT OR IGNORE INTO records VALUES (?,?,?,?,?,?,?,?,?)",
                                 values)
            return self._db.total_changes - before
        return int(self._tx(insert)) if values else 0

    def quarantine(self, *, topic: str, reason: str, detail: str, payload: bytes,
                   gw: str | None = None, seq: int | None = None, alert_id: str | None = None,
                   plan_id: str | None = None, received_ms: int | None = None) -> int:
        def insert() -> int:
            cur = self._db.execute(
                "INSERT INTO quarantine (received_ms, topic, reason, detail, gw, seq, alert_id, "
                "plan_id, payload) VALUES (?,?,?,?,?,?,?,?,?)",
                (received_ms or now_ms(), topic, reason, detail, gw, seq, alert_id, plan_id,
                 payload))
            return int(cur.lastrowid or 0)
        return int(self._tx(insert))

    def release(self, quarantine_id: int) -> None:
        """Mark a quarantined message as re-verified (it now lives in alerts/records)."""
        self._tx(lambda: self._db.execute("UPDATE quarantine SET released_ms = ? WHERE id = ?",
                                          (now_ms(), quarantine_id)))

    def set_gateway_status(self, gw: str, state: str, t_ms: int | None, head_seq: int | None,
                           alerts_pending: int | None) -> str | None:
        """Record a gateway's last status; returns its previous state (None if first seen)."""
        def upsert() -> str | None:
            old = self._db.execute("SELECT state FROM gateways WHERE gw = ?", (gw,)).fetchone()
            self._db.execute(
                "INSERT INTO gateways VALUES (?,?,?,?,?,?) ON CONFLICT (gw) DO UPDATE SET "
                "state = excluded.state, t_ms = excluded.t_ms, head_seq = excluded.head_seq, "
                "alerts_pending = excluded.alerts_pending, received_ms = excluded.received_ms",
                (gw, state, t_ms, head_seq, alerts_pending, now_ms()))
            return old[0] if old else None
        result: str | None = self._tx(upsert)
        return result

    def put_plan(self, plan_id: str, envelope: bytes, source: str) -> None:
        """Keep a plan's signed envelope (verified again whenever it is used)."""
        self._tx(lambda: self._db.execute(
            "INSERT INTO plans VALUES (?,?,?,?) ON CONFLICT (plan_id) DO UPDATE SET "
            "envelope = excluded.envelope, source = excluded.source, "
            "received_ms = excluded.received_ms", (plan_id, envelope, source, now_ms())))

    # -- webhook outbox ----------------------------------------------------------------------

    def webhook_pending(self, limit: int = 100) -> list[AlertRow]:
        rows = self._all(
            f"SELECT {', '.join('a.' + f for f in ALERT_FIELDS)} FROM webhook_outbox w "
            "JOIN alerts a USING (alert_id) WHERE w.state = 'pending' ORDER BY a.rowid LIMIT ?",
            (limit,))
        return [AlertRow(*r) for r in rows]

    def webhook_result(self, alert_id: str, state: str, error: str | None = None) -> None:
        """``state``: 'pending' (failed attempt, will retry), 'sent' or 'rejected'."""
        self._tx(lambda: self._db.execute(
            "UPDATE webhook_outbox SET state = ?, attempts = attempts + 1, last_error = ?, "
            "updated_ms = ? WHERE alert_id = ?", (state, error, now_ms(), alert_id)))

    def webhook_states(self) -> dict[str, str]:
        return {a: s for a, s in self._all("SELECT alert_id, state FROM webhook_outbox")}

    # -- reading -----------------------------------------------------------------------------

    def alert(self, alert_id: str) -> AlertRow | None:
        rows = self._all(f"SELECT {', '.join(ALERT_FIELDS)} FROM alerts WHERE alert_id = ?",
                         (alert_id,))
        return AlertRow(*rows[0]) if rows else None

    def alerts(self, *, plan_id: str | None = None, gw: str | None = None,
               since_ms: int | None = None, limit: int | None = None) -> list[AlertRow]:
        where, params = [], []
        for column, value in (("plan_id = ?", plan_id), ("gw = ?", gw),
                              ("t_ms >= ?", since_ms)):
            if value is not None:
                where.append(column)
                params.append(value)
        sql = f"SELECT {', '.join(ALERT_FIELDS)} FROM alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY t_ms, gw, seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [AlertRow(*r) for r in self._all(sql, params)]

    def signed_at(self, gw: str, seq: int) -> bytes | None:
        """The verified record (alert or reading) this gateway signed as ``seq``, if held."""
        for table in ("alerts", "records"):
            rows = self._all(f"SELECT signed FROM {table} WHERE gw = ? AND seq = ?", (gw, seq))
            if rows:
                return bytes(rows[0][0])
        return None

    def track(self, gw: str, from_ms: int | None = None,
              to_ms: int | None = None) -> list[tuple[str, int, int, int]]:
        """A gateway's verified GPS fixes as (src, t_ms, lat_e7, lon_e7), in time order."""
        rows = self._all(
            "SELECT src, t_ms, lat_e7, lon_e7 FROM records WHERE gw = ? AND kind = 'gps' AND "
            "lat_e7 IS NOT NULL AND t_ms >= ? AND t_ms <= ? ORDER BY t_ms, seq",
            (gw, -(2**62) if from_ms is None else from_ms, 2**62 if to_ms is None else to_ms))
        return [(str(s), int(t), int(a), int(o)) for s, t, a, o in rows]

    def records(self, gw: str, kind: str | None = None) -> list[RecordRow]:
        sql = "SELECT * FROM records WHERE gw = ?" + (" AND kind = ?" if kind else "")
        params: tuple[Any, ...] = (gw, kind) if kind else (gw,)
        return [RecordRow(*r) for r in self._all(sql + " ORDER BY seq", params)]

    def quarantined(self, *, reasons: Iterable[str] | None = None, plan_id: str | None = None,
                    released: bool = False) -> list[QuarantineRow]:
        sql = f"SELECT {', '.join(QUARANTINE_FIELDS)} FROM quarantine WHERE "
        sql += "released_ms IS NOT NULL" if released else "released_ms IS NULL"
        params: list[Any] = []
        if reasons is not None:
            wanted = list(reasons)
            sql += f" AND reason IN ({', '.join('?' * len(wanted))})"
            params += wanted
        if plan_id is not None:
            sql += " AND plan_id = ?"
            params.append(plan_id)
        return [QuarantineRow(*r) for r in self._all(sql + " ORDER BY id", params)]

    def gateways(self) -> dict[str, tuple[str, int | None, int | None, int | None]]:
        return {gw: (state, t, head, pending) for gw, state, t, head, pending, _ in
                self._all("SELECT * FROM gateways ORDER BY gw")}

    def plan_envelope(self, plan_id: str) -> bytes | None:
        rows = self._all("SELECT envelope FROM plans WHERE plan_id = ?", (plan_id,))
        return bytes(rows[0][0]) if rows else None

    def counts(self) -> dict[str, Any]:
        """What the database holds, for `customs alerts --summary` and tests."""
        one = {name: self._all(f"SELECT COUNT(*) FROM {name}")[0][0]
               for name in ("alerts", "records", "gateways", "plans")}
        one["duplicates"] = self._all("SELECT COALESCE(SUM(duplicates), 0) FROM alerts")[0][0]
        one["quarantine"] = dict(self._all(
            "SELECT reason, COUNT(*) FROM quarantine WHERE released_ms IS NULL GROUP BY reason"))
        return one
