"""What the monitoring centre adds to the customs store: officers, sessions, the audit chain and
the console's overview queries (both engines).

Kept apart from the receiver's ``base``/``queries`` so that the receiver's code and the
console's can change without touching each other; ``SqlStore`` mixes this class in.

The audit chain is appended under a lock that serialises appenders across processes (SQLite's
write lock, a PostgreSQL advisory lock), inside the transaction that also changes the alert's
state columns: an officer's action and its signed record commit together or not at all, and two
console instances can never both claim the same seq.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from customs.store.rows import now_ms

if TYPE_CHECKING:
    from customs.store.base import Tx
    from customs.store.schema import Dialect

AUDIT_LOCK = 0x5EA1A0D1  # pg_advisory_xact_lock key: one audit appender at a time
GENESIS_PREV = "0" * 64
ROLES = ("auditor", "officer", "supervisor")


class ConflictError(Exception):
    """The action does not apply to the current state (already resolved, unknown alert, ...);
    the message says why, for the officer."""


@dataclass(frozen=True, slots=True)
class OfficerRow:
    name: str
    role: str
    password_hash: str
    created_ms: int
    disabled_ms: int | None


@dataclass(frozen=True, slots=True)
class SessionRow:
    officer: str
    role: str
    csrf: str
    expires_ms: int


@dataclass(frozen=True, slots=True)
class AuditRow:
    seq: int
    t_ms: int
    officer: str
    action: str
    gw: str | None
    alert_id: str | None
    plan_id: str | None
    signed: bytes


@dataclass(frozen=True, slots=True)
class AuditBatchRow:
    batch_seq: int
    first_seq: int
    tree_size: int
    root: bytes
    status: str  # built -> sent -> anchored
    chain_id: int | None
    contract: str | None
    tx_hash: bytes | None
    block_number: int | None
    block_hash: bytes | None
    log_index: int | None
    updated_ms: int

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.tree_size - 1


@dataclass(frozen=True, slots=True)
class AlertChange:
    """How an audit entry changes an alert's state columns; ``states`` are the states it may
    be applied from (anything else is a ConflictError)."""

    gw: str
    alert_id: str
    states: tuple[str, ...]
    state: str | None = None
    assignee: str | None = None
    resolution: str | None = None


Signer = Callable[[int, str], bytes]
"""(seq, prev hash hex) -> the signed bytes of the audit record at that seq."""

AUDIT_COLUMNS = "seq, t_ms, officer, action, gw, alert_id, plan_id, signed"
BATCH_COLUMNS = ("batch_seq, first_seq, tree_size, root, status, chain_id, contract, tx_hash, "
                 "block_number, block_hash, log_index, updated_ms")


def _audit(row: Sequence[Any]) -> AuditRow:
    return AuditRow(int(row[0]), int(row[1]), *row[2:7], bytes(row[7]))


def _batch(row: Sequence[Any]) -> AuditBatchRow:
    v = list(row)
    for i in (3, 7, 9):
        v[i] = bytes(v[i]) if v[i] is not None else None
    return AuditBatchRow(*v)


class ConsoleStore:
    """The console's half of a store; ``_tx``/``_read``/``_all``/``dialect`` come from SqlStore."""

    dialect: Dialect

    if TYPE_CHECKING:  # supplied by SqlStore and Queries; declared here for the type checker
        def _tx(self) -> contextlib.AbstractContextManager[Tx]: ...

        def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...

        def _change(self, tx: Tx, kind: str, gw: str | None, ref: str | None) -> None: ...

    # -- officers and sessions ---------------------------------------------------------------

    def add_officer(self, name: str, role: str, password_hash: str, *,
                    replace: bool = False) -> None:
        """A new officer account (``replace``: set the role and password of an existing one,
        and enable it again). ConflictError if the name is taken and not ``replace``."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        with self._tx() as tx:
            if tx.one("SELECT 1 FROM officers WHERE name = ?", (name,)) is not None:
                if not replace:
                    raise ConflictError(f"officer {name!r} already exists")
                tx.run("UPDATE officers SET role = ?, password_hash = ?, disabled_ms = NULL "
                       "WHERE name = ?", (role, password_hash, name))
                tx.run("DELETE FROM sessions WHERE officer = ?", (name,))
                return
            tx.run("INSERT INTO officers VALUES (?, ?, ?, ?, NULL)",
                   (name, role, password_hash, now_ms()))

    def disable_officer(self, name: str) -> bool:
        with self._tx() as tx:
            tx.run("DELETE FROM sessions WHERE officer = ?", (name,))
            return tx.run("UPDATE officers SET disabled_ms = ? WHERE name = ? AND disabled_ms "
                          "IS NULL", (now_ms(), name)) == 1

    def officer(self, name: str) -> OfficerRow | None:
        rows = self._all("SELECT name, role, password_hash, created_ms, disabled_ms FROM "
                         "officers WHERE name = ?", (name,))
        return OfficerRow(*rows[0]) if rows else None

    def officers(self) -> list[OfficerRow]:
        return [OfficerRow(*r) for r in self._all(
            "SELECT name, role, password_hash, created_ms, disabled_ms FROM officers "
            "ORDER BY name")]

    def add_session(self, token_sha256: str, officer: str, csrf: str, expires_ms: int) -> None:
        with self._tx() as tx:
            tx.run("DELETE FROM sessions WHERE expires_ms < ?", (now_ms(),))
            tx.run("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                   (token_sha256, officer, csrf, now_ms(), expires_ms))

    def session(self, token_sha256: str, at_ms: int | None = None) -> SessionRow | None:
        """The live session behind a token hash: unexpired, of an enabled officer."""
        rows = self._all(
            "SELECT s.officer, o.role, s.csrf, s.expires_ms FROM sessions s JOIN officers o ON "
            "o.name = s.officer WHERE s.token_sha256 = ? AND s.expires_ms > ? AND "
            "o.disabled_ms IS NULL", (token_sha256, now_ms() if at_ms is None else at_ms))
        return SessionRow(*rows[0]) if rows else None

    def end_session(self, token_sha256: str) -> None:
        with self._tx() as tx:
            tx.run("DELETE FROM sessions WHERE token_sha256 = ?", (token_sha256,))

    # -- the audit chain -----------------------------------------------------------------------

    def append_audit(self, sign: Signer, *, officer: str, action: str, t_ms: int,
                     gw: str | None = None, alert_id: str | None = None,
                     plan_id: str | None = None, change: AlertChange | None = None) -> AuditRow:
        """Sign and store the next audit entry; with ``change``, update that alert's state
        columns in the same transaction (ConflictError, nothing written, if it cannot)."""
        with self._tx() as tx:
            if self.dialect.name == "postgres":
                tx.run("SELECT pg_advisory_xact_lock(?)", (AUDIT_LOCK,))
            if change is not None:
                self._apply_change(tx, change)
            head = tx.one("SELECT seq, signed FROM audit ORDER BY seq DESC LIMIT 1")
            seq = int(head[0]) + 1 if head else 1
            prev = hashlib.sha256(bytes(head[1])).hexdigest() if head else GENESIS_PREV
            signed = sign(seq, prev)
            tx.run(f"INSERT INTO audit ({AUDIT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                   (seq, t_ms, officer, action, gw, alert_id, plan_id, signed))
            self._change(tx, "audit", gw, str(seq))
            if change is not None:
                self._change(tx, "handled", change.gw, change.alert_id)
            return AuditRow(seq, t_ms, officer, action, gw, alert_id, plan_id, signed)

    def _apply_change(self, tx: Tx, change: AlertChange) -> None:
        row = tx.one("SELECT state FROM alerts WHERE gw = ? AND alert_id = ?",
                     (change.gw, change.alert_id))
        if row is None:
            raise ConflictError(f"no alert {change.alert_id!r} from {change.gw!r}")
        if row[0] not in change.states:
            raise ConflictError(f"the alert is {row[0]}; this applies only to "
                                f"{' or '.join(change.states)} alerts")
        sets, params = [], []
        for column in ("state", "assignee", "resolution"):
            value = getattr(change, column)
            if value is not None:
                sets.append(f"{column} = ?")
                params.append(value if value != "" else None)
        if sets:
            tx.run(f"UPDATE alerts SET {', '.join(sets)} WHERE gw = ? AND alert_id = ?",
                   (*params, change.gw, change.alert_id))

    def audit_entries(self, *, first_seq: int = 1, last_seq: int = 2**62,
                      gw: str | None = None, alert_id: str | None = None,
                      plan_id: str | None = None, limit: int | None = None,
                      newest_first: bool = False) -> list[AuditRow]:
        sql = f"SELECT {AUDIT_COLUMNS} FROM audit WHERE seq >= ? AND seq <= ?"
        params: list[Any] = [first_seq, last_seq]
        for column, value in (("gw", gw), ("alert_id", alert_id), ("plan_id", plan_id)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        sql += " ORDER BY seq" + (" DESC" if newest_first else "")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_audit(r) for r in self._all(sql, params)]

    def iter_audit(self, chunk: int = 5000) -> Iterator[AuditRow]:
        """The whole chain in seq order, read in chunks (it only grows)."""
        after = 0
        while True:
            rows = self.audit_entries(first_seq=after + 1, limit=chunk)
            yield from rows
            if len(rows) < chunk:
                return
            after = rows[-1].seq

    def audit_head(self) -> int:
        return int(self._all("SELECT COALESCE(MAX(seq), 0) FROM audit")[0][0])

    def trip_steps(self, plan_ids: Iterable[str] | None = None) -> dict[str, dict[str, AuditRow]]:
        """plan id -> lifecycle action -> its latest audit entry (released, inspected, ...)."""
        sql = f"SELECT {AUDIT_COLUMNS} FROM audit WHERE plan_id IS NOT NULL AND action LIKE ?"
        params: list[Any] = ["trip.%"]
        if plan_ids is not None:
            wanted = list(plan_ids)
            sql += f" AND plan_id IN ({', '.join('?' * len(wanted)) or 'NULL'})"
            params += wanted
        out: dict[str, dict[str, AuditRow]] = {}
        for row in map(_audit, self._all(sql + " ORDER BY seq", params)):
            out.setdefault(str(row.plan_id), {})[row.action] = row
        return out

    # -- audit batches -------------------------------------------------------------------------

    def audit_batches(self) -> list[AuditBatchRow]:
        return [_batch(r) for r in self._all(f"SELECT {BATCH_COLUMNS} FROM audit_batches "
                                             "ORDER BY batch_seq")]

    def add_audit_batch(self, batch_seq: int, first_seq: int, tree_size: int,
                        root: bytes) -> bool:
        """Record a closed batch before anything is broadcast (crash safety); False if another
        instance recorded this batch_seq first."""
        with self._tx() as tx:
            return tx.inserted(
                "INSERT INTO audit_batches (batch_seq, first_seq, tree_size, root, status, "
                "updated_ms) VALUES (?,?,?,?,'built',?) ON CONFLICT (batch_seq) DO NOTHING",
                [(batch_seq, first_seq, tree_size, root, now_ms())])[0]

    def update_audit_batch(self, batch_seq: int, **fields: Any) -> None:
        allowed = {"status", "chain_id", "contract", "tx_hash", "block_number", "block_hash",
                   "log_index"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"not audit batch columns: {sorted(unknown)}")
        names = sorted(fields)
        with self._tx() as tx:
            tx.run(f"UPDATE audit_batches SET {', '.join(f'{n} = ?' for n in names)}, "
                   "updated_ms = ? WHERE batch_seq = ?",
                   (*(fields[n] for n in names), now_ms(), batch_seq))

    # -- the console's overview ----------------------------------------------------------------

    def plans_with_source(self) -> list[tuple[str, bytes, str, int]]:
        """(plan_id, envelope, source, received_ms) of every plan held."""
        return [(str(p), bytes(e), str(s), int(r)) for p, e, s, r in self._all(
            "SELECT plan_id, envelope, source, received_ms FROM plans ORDER BY plan_id")]

    def plan_gateways(self) -> dict[str, list[str]]:
        """plan id -> the gateways whose alerts named it (for plans not received on a
        gateway's plans topic)."""
        out: dict[str, list[str]] = {}
        for plan_id, gw in self._all("SELECT DISTINCT plan_id, gw FROM alerts WHERE plan_id "
                                     "IS NOT NULL ORDER BY plan_id, gw"):
            out.setdefault(str(plan_id), []).append(str(gw))
        return out

    def open_alert_counts(self, ignore_types: Iterable[str] = ()) -> dict[str, dict[str, int]]:
        """gw -> severity -> alerts not resolved (status-like types left out)."""
        ignored = list(ignore_types)
        sql = "SELECT gw, severity, COUNT(*) FROM alerts WHERE state <> 'resolved'"
        if ignored:
            sql += f" AND type NOT IN ({', '.join('?' * len(ignored))})"
        out: dict[str, dict[str, int]] = {}
        for gw, severity, n in self._all(sql + " GROUP BY gw, severity", ignored):
            out.setdefault(str(gw), {})[str(severity)] = int(n)
        return out

    def latest_of_types(self, types: Iterable[str]) -> dict[str, dict[str, int]]:
        """gw -> type -> seq of that gateway's latest alert of each of ``types``."""
        wanted = list(types)
        out: dict[str, dict[str, int]] = {}
        for gw, kind, seq in self._all(
                f"SELECT gw, type, MAX(seq) FROM alerts WHERE type IN "
                f"({', '.join('?' * len(wanted)) or 'NULL'}) GROUP BY gw, type", wanted):
            out.setdefault(str(gw), {})[str(kind)] = int(seq)
        return out

    def record_kinds(self, gw: str, kinds: Sequence[str], *, from_ms: int, to_ms: int,
                     limit: int = 20_000) -> list[tuple[int, int, str, str, bytes]]:
        """(seq, t_ms, kind, src, signed) of a gateway's records of ``kinds`` in a window."""
        rows = self._all(
            f"SELECT seq, t_ms, kind, src, signed FROM records WHERE gw = ? AND kind IN "
            f"({', '.join('?' * len(kinds))}) AND t_ms >= ? AND t_ms <= ? ORDER BY t_ms, seq "
            f"LIMIT {int(limit)}", (gw, *kinds, from_ms, to_ms))
        return [(int(s), int(t), str(k), str(c), bytes(b)) for s, t, k, c, b in rows]

    def record_window(self, gw: str) -> tuple[int, int, int] | None:
        """(count, first t_ms, last t_ms) of a gateway's records, None if it has none."""
        row = self._all("SELECT COUNT(*), MIN(t_ms), MAX(t_ms) FROM records WHERE gw = ?",
                        (gw,))[0]
        return (int(row[0]), int(row[1]), int(row[2])) if row[0] else None

    def held_seqs(self, gw: str, first_seq: int, last_seq: int) -> int:
        """How many of a gateway's records in [first_seq, last_seq] the store holds."""
        return int(self._all("SELECT COUNT(*) FROM records WHERE gw = ? AND seq >= ? AND "
                             "seq <= ?", (gw, first_seq, last_seq))[0][0])

    def anchor_claims(self, gw: str) -> list[tuple[Any, ...]]:
        return self._all(
            "SELECT gw, batch_seq, first_seq, tree_size, root, chain_id, contract, tx_hash, "
            "block_number, block_hash, log_index FROM anchors WHERE gw = ? ORDER BY batch_seq",
            (gw,))

    def alert_counts_by(self, column: str) -> Mapping[str, int]:
        if column not in ("gw", "plan_id", "type", "severity", "state"):
            raise ValueError(column)
        return {str(k): int(n) for k, n in self._all(
            f"SELECT {column}, COUNT(*) FROM alerts WHERE {column} IS NOT NULL GROUP BY "
            f"{column} ORDER BY {column}")}
