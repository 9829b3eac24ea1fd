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
from collections.abc import Iterable, Iterator, Sequence
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
        result = WriteResult()
        moved: dict[str, RecordRow] = {}
        alert_gateways: set[str] = set()
        for part in parts:
            for rej in part.rejections:
                self._quarantine(tx, rej, result)
            self._records(tx, part.records, result, moved)
            fresh, conflicts = self._alert_records(tx, part.alerts, result)
            for alert in part.alerts:
                if (alert.gw, alert.seq) in conflicts:
                    continue
                alert_gateways.add(alert.gw)
                self._alert(tx, alert, (alert.gw, alert.seq) in fresh, forward, result)
            for status in part.statuses:
                self._status(tx, status, result)
            for plan in part.plans:
                tx.run("INSERT INTO plans VALUES (?,?,?,?) ON CONFLICT (plan_id) DO UPDATE SET "
                       "envelope = excluded.envelope, source = excluded.source, "
                       "received_ms = excluded.received_ms",
                       (plan.plan_id, plan.envelope, plan.source, now_ms()))
                result.plans += 1
            for a in part.anchors:
                tx.run("INSERT INTO anchors VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (gw, "
                       "batch_seq) DO UPDATE SET tx_hash = excluded.tx_hash, block_number = "
                       "excluded.block_number, block_hash = excluded.block_hash, log_index = "
                       "excluded.log_index, received_ms = excluded.received_ms",
                       (a.gw, a.batch_seq, a.first_seq, a.tree_size, a.root, a.chain_id,
                        a.contract, a.tx_hash, a.block_number, a.block_hash, a.log_index,
                        now_ms()))
                result.anchors += 1
            for qid in part.released:
                self._release(tx, qid)
        for gw in sorted(moved):  # sorted: concurrent writers lock gateway rows in one order
            fix = moved[gw]
            self._ensure_gateway(tx, gw)
            tx.run("UPDATE gateways SET last_fix_seq = ?, last_fix_ms = ?, last_lat_e7 = ?, "
                   "last_lon_e7 = ? WHERE gw = ? AND (last_fix_seq IS NULL OR last_fix_seq < ?)",
                   (fix.seq, fix.t_ms, fix.lat_e7, fix.lon_e7, gw, fix.seq))
            self._change(tx, "track", gw, str(fix.seq))
        for gw in sorted(alert_gateways):
            result.frontiers[gw] = self._advance_frontier(tx, gw)
        return result

    def _records(self, tx: Tx, records: Sequence[RecordRow], result: WriteResult,
                 moved: dict[str, RecordRow]) -> None:
        if not records:
            return
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

    def _alert(self, tx: Tx, alert: AlertRow, record_new: bool, forward: bool,
               result: WriteResult) -> None:
        if record_new and tx.inserted(INSERT_ALERT, [(
                alert.gw, alert.alert_id, alert.seq, alert.t_ms, alert.type, alert.severity,
                alert.plan_id, alert.lat_e7, alert.lon_e7, alert.prev_alert, alert.trust,
                alert.received_ms, alert.note)])[0]:
            result.new_alerts.append(alert)
            self._change(tx, "alert", alert.gw, alert.alert_id)
            if forward:
                tx.run("INSERT INTO webhook_outbox (gw, alert_id, state, updated_ms) VALUES "
                       "(?, ?, 'pending', ?) ON CONFLICT (gw, alert_id) DO NOTHING",
                       (alert.gw, alert.alert_id, alert.received_ms))
            return
        # a redelivery (same record), or the gateway raised this alert id again at another seq
        tx.run("UPDATE alerts SET duplicates = duplicates + 1 WHERE gw = ? AND alert_id = ?",
               (alert.gw, alert.alert_id))
        result.duplicate_alerts.append(alert)

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

    def _ensure_gateway(self, tx: Tx, gw: str) -> None:
        tx.run("INSERT INTO gateways (gw, state, received_ms) VALUES (?, 'unknown', ?) "
               "ON CONFLICT (gw) DO NOTHING", (gw, now_ms()))

    def _advance_frontier(self, tx: Tx, gw: str) -> int:
        """Follow the gateway's alert links (each alert names its predecessor's seq in
        ``prev_alert``) from the last acknowledged alert as far as they go unbroken."""
        self._ensure_gateway(tx, gw)
        row = tx.one("SELECT acked_seq FROM gateways WHERE gw = ?", (gw,))
        start = frontier = int(row[0]) if row else 0
        while True:
            step = tx.one("SELECT MIN(seq) FROM alerts WHERE gw = ? AND prev_alert = ? AND "
                          "seq > ?", (gw, frontier, frontier))
            if step is None or step[0] is None:
                break
            frontier = int(step[0])
        if frontier != start:
            tx.run(f"UPDATE gateways SET acked_seq = {self.dialect.greatest}(acked_seq, ?) "
                   "WHERE gw = ?", (frontier, gw))
        return frontier

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

    def recompute_frontiers(self, gateways: Iterable[str]) -> dict[str, int]:
        with self._tx() as tx:
            return {gw: self._advance_frontier(tx, gw) for gw in sorted(set(gateways))}


def _record_values(r: RecordRow) -> tuple[Any, ...]:
    return (r.gw, r.seq, r.t_ms, r.kind, r.src, r.lat_e7, r.lon_e7, r.received_ms, r.signed)
