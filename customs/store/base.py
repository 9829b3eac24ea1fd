"""The customs store's logic, written once for both engines (SQLite and PostgreSQL).

A backend supplies transactions (``_tx``/``_read``) whose cursor speaks the small ``Tx``
protocol below, with ``?`` placeholders; everything else (what a write means, quota, feeds,
acknowledgement frontiers) lives here, so both engines behave the same and run the same tests.

Writes come in groups (``write``): one transaction, one commit and one fsync for everything a
receiver took off the broker at once, which is what lets one receiver keep up with thousands of
gateways. Idempotence is the database's: an insert that meets an existing key does nothing, and
the store then compares bytes. The same bytes again is a redelivery (counted); other bytes under
a key the gateway already signed is a gateway contradicting itself (``conflicting_seq``,
quarantined, never stored over the first).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from customs.store.console_queries import ConsoleStore
from customs.store.queries import Queries
from customs.store.rows import (
    AlertRow,
    Part,
    Quota,
    RecordRow,
    Rejection,
    WriteResult,
    now_ms,
)
from customs.store.schema import Dialect
from sealtrail.errors import SealTrailError, Unreachable


class StoreError(SealTrailError):
    """Not a customs store, a store newer than this code, or a bad store address."""

    exit_code = 2


class StoreUnavailable(Unreachable):
    """The database cannot be reached or cannot write now (down, locked, disk full): retry."""


class StoreDataError(SealTrailError):
    """The database refused what was written (a value it cannot hold): the write is poison."""


class Tx(Protocol):
    def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

    def inserted(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[bool]:
        """Run an ``INSERT ... ON CONFLICT DO NOTHING`` per row; which rows went in."""
        ...

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each row (nothing for no rows)."""
        ...


INSERT_RECORD = ("INSERT INTO records (gw, seq, t_ms, kind, src, lat_e7, lon_e7, received_ms, "
                 "signed) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (gw, seq) DO NOTHING")
INSERT_ALERT = ("INSERT INTO alerts (gw, alert_id, seq, t_ms, type, severity, plan_id, lat_e7, "
                "lon_e7, prev_alert, trust, received_ms, note) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (gw, alert_id) DO NOTHING")
CONFLICT = "conflicting_seq"


def alert_record(a: AlertRow) -> RecordRow:
    return RecordRow(a.gw, a.seq, a.t_ms, "alert", str(a.record().get("src", "")), a.lat_e7,
                     a.lon_e7, a.received_ms, a.signed)


class SqlStore(ConsoleStore, Queries):
    """One customs store; thread-safe. Backends implement ``_tx``, ``_read`` and ``close``."""

    dialect: Dialect
    quota: Quota
    where: str  # the file or server, for messages

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Tx]:
        raise NotImplementedError
        yield

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the receiver's write ------------------------------------------------------------------

    def write(self, parts: Sequence[Part], *, forward: bool = False) -> WriteResult:
        """Store everything in ``parts`` in one transaction."""
        with self._tx() as tx:
            return self._write(tx, parts, forward)

    def _write(self, tx: Tx, parts: Sequence[Part], forward: bool) -> WriteResult:
        """Each kind of row of the whole group in one statement (pipelined on PostgreSQL), so
        a group costs a handful of round trips, not several per message."""
        result = WriteResult()
        for part in parts:
            for rej in part.rejections:
                self._quarantine(tx, rej, result)
        moved = self._records(tx, [r for p in parts for r in p.records], result)
        alerts = [a for p in parts for a in p.alerts]
        fresh, conflicts = self._alert_records(tx, alerts, result)
        alerts = [a for a in alerts if (a.gw, a.seq) not in conflicts]
        self._alerts(tx, alerts, fresh, forward, result)
        for part in parts:
            for status in part.statuses:
                self._status(tx, status, result)
            for qid in part.released:
                self._release(tx, qid)
        plans = [p for part in parts for p in part.plans]
        tx.many("INSERT INTO plans VALUES (?,?,?,?) ON CONFLICT (plan_id) DO UPDATE SET "
                "envelope = excluded.envelope, source = excluded.source, "
                "received_ms = excluded.received_ms",
                [(p.plan_id, p.envelope, p.source, now_ms()) for p in plans])
        result.plans += len(plans)
        anchors = [a for part in parts for a in part.anchors]
        tx.many("INSERT INTO anchors VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (gw, "
                "batch_seq) DO UPDATE SET tx_hash = excluded.tx_hash, block_number = "
                "excluded.block_number, block_hash = excluded.block_hash, log_index = "
                "excluded.log_index, received_ms = excluded.received_ms",
                [(a.gw, a.batch_seq, a.first_seq, a.tree_size, a.root, a.chain_id, a.contract,
                  a.tx_hash, a.block_number, a.block_hash, a.log_index, now_ms())
                 for a in anchors])
        result.anchors += len(anchors)
        self._tracks(tx, moved)
        result.frontiers = self._advance_frontiers(tx, alerts)
        return result

    def _records(self, tx: Tx, records: Sequence[RecordRow],
                 result: WriteResult) -> dict[str, RecordRow]:
        """Insert readings; returns each gateway's newest new fix (for the live map)."""
        moved: dict[str, RecordRow] = {}
        if not records:
            return moved
        flags = tx.inserted(INSERT_RECORD, [_record_values(r) for r in records])
        for record, new in zip(records, flags, strict=True):
            if new:
                result.new_records += 1
                if record.lat_e7 is not None:
                    best = moved.get(record.gw)
                    if best is None or best.seq < record.seq:
                        moved[record.gw] = record
            elif not self._conflicts(tx, record, result):
                result.duplicate_records += 1
        return moved

    def _alert_records(self, tx: Tx, alerts: Sequence[AlertRow], result: WriteResult,
                       ) -> tuple[set[tuple[str, int]], set[tuple[str, int]]]:
        """Insert the alerts' records: the keys of those that were new, and of those that
        contradict a record held under the same seq."""
        if not alerts:
            return set(), set()
        records = [alert_record(a) for a in alerts]
        flags = tx.inserted(INSERT_RECORD, [_record_values(r) for r in records])
        fresh, conflicts = set(), set()
        for alert, record, new in zip(alerts, records, flags, strict=True):
            if new:
                fresh.add((alert.gw, alert.seq))
            elif self._conflicts(tx, record, result):
                conflicts.add((alert.gw, alert.seq))
        return fresh, conflicts

    def _conflicts(self, tx: Tx, record: RecordRow, result: WriteResult) -> bool:
        """A key already held: True (and quarantined) if the held bytes differ."""
        held = tx.one("SELECT signed FROM records WHERE gw = ? AND seq = ?",
                      (record.gw, record.seq))
        if held is not None and bytes(held[0]) == record.signed:
            return False
        self._quarantine(tx, Rejection(
            f"sealtrail/v1/{record.gw}/{'alerts' if record.kind == 'alert' else 'readings'}",
            CONFLICT, f"{record.gw} seq {record.seq}: the gateway signed other content under "
            "a seq customs already holds (the first one is kept)", record.signed,
            account=record.gw, gw=record.gw, seq=record.seq), result)
        return True

    def _alerts(self, tx: Tx, alerts: Sequence[AlertRow], fresh: set[tuple[str, int]],
                forward: bool, result: WriteResult) -> None:
        """Index new alerts; count the rest as duplicates: a redelivery (the same record), or
        the gateway raising one alert id again at another seq (kept once, the first)."""
        candidates = [a for a in alerts if (a.gw, a.seq) in fresh]
        flags = tx.inserted(INSERT_ALERT, [
            (a.gw, a.alert_id, a.seq, a.t_ms, a.type, a.severity, a.plan_id, a.lat_e7, a.lon_e7,
             a.prev_alert, a.trust, a.received_ms, a.note) for a in candidates])
        new = [a for a, ok in zip(candidates, flags, strict=True) if ok]
        duplicates = [a for a in alerts if (a.gw, a.seq) not in fresh]
        duplicates += [a for a, ok in zip(candidates, flags, strict=True) if not ok]
        result.new_alerts += new
        result.duplicate_alerts += duplicates
        t = now_ms()
        tx.many("INSERT INTO changes (t_ms, kind, gw, ref) VALUES (?, ?, ?, ?)",
                [(t, "alert", a.gw, a.alert_id) for a in new])
        if forward:
            tx.many("INSERT INTO webhook_outbox (gw, alert_id, state, updated_ms) VALUES "
                    "(?, ?, ?, ?) ON CONFLICT (gw, alert_id) DO NOTHING",
                    [(a.gw, a.alert_id, "pending", a.received_ms) for a in new])
        tx.many("UPDATE alerts SET duplicates = duplicates + 1 WHERE gw = ? AND alert_id = ?",
                [(a.gw, a.alert_id) for a in duplicates])

    def _tracks(self, tx: Tx, moved: dict[str, RecordRow]) -> None:
        """Each gateway's last fix, for the map; sorted, so concurrent writers lock gateway
        rows in one order and never deadlock each other."""
        if not moved:
            return
        gws = sorted(moved)
        t = now_ms()
        tx.many("INSERT INTO gateways (gw, state, received_ms, last_fix_seq, last_fix_ms, "
                "last_lat_e7, last_lon_e7) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (gw) DO "
                "UPDATE SET last_fix_seq = excluded.last_fix_seq, last_fix_ms = "
                "excluded.last_fix_ms, last_lat_e7 = excluded.last_lat_e7, last_lon_e7 = "
                "excluded.last_lon_e7 WHERE gateways.last_fix_seq IS NULL OR "
                "gateways.last_fix_seq < excluded.last_fix_seq",
                [(g, "unknown", t, moved[g].seq, moved[g].t_ms, moved[g].lat_e7,
                  moved[g].lon_e7) for g in gws])
        tx.many("INSERT INTO changes (t_ms, kind, gw, ref) VALUES (?, ?, ?, ?)",
                [(t, "track", g, str(moved[g].seq)) for g in gws])

    def _quarantine(self, tx: Tx, rej: Rejection, result: WriteResult) -> None:
        """Keep the payload while the gateway is within its quota; past it, only count and
        summarise (hash, size, reason), so no gateway can fill the customs disk."""
        size = len(rej.payload)
        digest = hashlib.sha256(rej.payload).hexdigest()
        usage = tx.one("SELECT rows_kept, bytes_kept FROM quarantine_usage WHERE account = ?",
                       (rej.account,))
        rows, kept = (int(usage[0]), int(usage[1])) if usage else (0, 0)
        if rows + 1 <= self.quota.rows and kept + size <= self.quota.bytes:
            tx.run("INSERT INTO quarantine (received_ms, topic, reason, detail, account, gw, seq, "
                   "alert_id, plan_id, payload, size, sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                   (rej.received_ms, rej.topic, rej.reason, rej.detail, rej.account, rej.gw,
                    rej.seq, rej.alert_id, rej.plan_id, rej.payload, size, digest))
            tx.run("INSERT INTO quarantine_usage VALUES (?, 1, ?) ON CONFLICT (account) DO "
                   "UPDATE SET rows_kept = quarantine_usage.rows_kept + 1, "
                   "bytes_kept = quarantine_usage.bytes_kept + excluded.bytes_kept",
                   (rej.account, size))
            result.quarantined.append(rej)
            return
        tx.run("INSERT INTO quarantine_overflow VALUES (?,?,1,?,?,?,?,?,?) ON CONFLICT (account, "
               "reason) DO UPDATE SET count = quarantine_overflow.count + 1, "
               "bytes = quarantine_overflow.bytes + excluded.bytes, last_ms = excluded.last_ms, "
               "last_sha256 = excluded.last_sha256, last_size = excluded.last_size, "
               "last_topic = excluded.last_topic",
               (rej.account, rej.reason, size, rej.received_ms, rej.received_ms, digest, size,
                rej.topic))
        result.overflowed += 1

    def _release(self, tx: Tx, quarantine_id: int) -> None:
        row = tx.one("SELECT account, size FROM quarantine WHERE id = ? AND released_ms IS NULL",
                     (quarantine_id,))
        if row is None:
            return
        tx.run("UPDATE quarantine SET released_ms = ? WHERE id = ?", (now_ms(), quarantine_id))
        tx.run("UPDATE quarantine_usage SET rows_kept = rows_kept - 1, bytes_kept = bytes_kept - "
               "? WHERE account = ?", (row[1], row[0]))

    def _status(self, tx: Tx, st: Any, result: WriteResult) -> None:
        old = tx.one("SELECT state FROM gateways WHERE gw = ?", (st.gw,))
        tx.run("INSERT INTO gateways (gw, state, t_ms, head_seq, alerts_pending, received_ms) "
               "VALUES (?,?,?,?,?,?) ON CONFLICT (gw) DO UPDATE SET state = excluded.state, "
               "t_ms = excluded.t_ms, head_seq = excluded.head_seq, alerts_pending = "
               "excluded.alerts_pending, received_ms = excluded.received_ms",
               (st.gw, st.state, st.t_ms, st.head_seq, st.alerts_pending, now_ms()))
        previous = old[0] if old else None
        result.status_changes.append((st.gw, st.state, previous))
        if previous != st.state:
            self._change(tx, "status", st.gw, st.state)

    def _ensure_gateways(self, tx: Tx, gws: Sequence[str]) -> None:
        t = now_ms()
        tx.many("INSERT INTO gateways (gw, state, received_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (gw) DO NOTHING", [(gw, "unknown", t) for gw in gws])

    def _advance_frontiers(self, tx: Tx, alerts: Sequence[AlertRow]) -> dict[str, int]:
        """For each gateway with alerts in this write: follow its alert links (each alert names
        its predecessor's seq in ``prev_alert``) from the last acknowledged alert as far as
        they go unbroken. One query fetches every alert past the frontiers (when they arrive in
        order, just this write's); the walk is in memory."""
        gws = sorted({a.gw for a in alerts})
        if not gws:
            return {}
        self._ensure_gateways(tx, gws)
        frontiers: dict[str, int] = {}
        links: dict[tuple[str, int], int] = {}
        for chunk in range(0, len(gws), 500):
            part = gws[chunk:chunk + 500]
            marks = ", ".join("?" * len(part))
            frontiers.update((str(g), int(a)) for g, a in tx.all(
                f"SELECT gw, acked_seq FROM gateways WHERE gw IN ({marks})", part))
            for gw, prev, seq in tx.all(
                    "SELECT a.gw, a.prev_alert, a.seq FROM alerts a JOIN gateways g ON g.gw = "
                    f"a.gw WHERE a.gw IN ({marks}) AND a.seq > g.acked_seq AND a.prev_alert IS "
                    "NOT NULL ORDER BY a.gw, a.seq", part):
                links.setdefault((str(gw), int(prev)), int(seq))
        moved = []
        for gw in gws:
            start = frontier = frontiers.get(gw, 0)
            while (step := links.get((gw, frontier))) is not None and step > frontier:
                frontier = step
            frontiers[gw] = frontier
            if frontier != start:
                moved.append((frontier, gw))
        t = now_ms()
        tx.many("INSERT INTO gateways (gw, state, received_ms, acked_seq) VALUES (?, ?, ?, ?) "
                f"ON CONFLICT (gw) DO UPDATE SET acked_seq = {self.dialect.greatest}("
                "gateways.acked_seq, excluded.acked_seq)",
                [(gw, "unknown", t, frontier) for frontier, gw in moved])
        return {gw: frontiers[gw] for gw in gws}

    def _change(self, tx: Tx, kind: str, gw: str | None, ref: str | None) -> None:
        tx.run("INSERT INTO changes (t_ms, kind, gw, ref) VALUES (?,?,?,?)",
               (now_ms(), kind, gw, ref))

    # -- other writes ----------------------------------------------------------------------------

    def release(self, quarantine_id: int) -> None:
        """Mark a quarantined message as re-verified (it now lives in alerts/records)."""
        with self._tx() as tx:
            self._release(tx, quarantine_id)

    def webhook_result(self, gw: str, alert_id: str, state: str,
                       error: str | None = None) -> None:
        """``state``: 'pending' (failed attempt, will retry), 'sent' or 'rejected'."""
        with self._tx() as tx:
            tx.run("UPDATE webhook_outbox SET state = ?, attempts = attempts + 1, last_error = ?, "
                   "updated_ms = ? WHERE gw = ? AND alert_id = ?",
                   (state, error, now_ms(), gw, alert_id))

    def prune_changes(self, before_ms: int) -> int:
        """Forget feed entries older than ``before_ms`` (consoles only follow recent ones)."""
        with self._tx() as tx:
            return tx.run("DELETE FROM changes WHERE t_ms < ?", (before_ms,))

    def frontier(self, gw: str) -> int:
        """The highest alert seq below which the store holds every alert of ``gw``."""
        rows = self._all("SELECT acked_seq FROM gateways WHERE gw = ?", (gw,))
        return int(rows[0][0]) if rows else 0


def _record_values(r: RecordRow) -> tuple[Any, ...]:
    return (r.gw, r.seq, r.t_ms, r.kind, r.src, r.lat_e7, r.lon_e7, r.received_ms, r.signed)
