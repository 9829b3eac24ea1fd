"""The journal: one SQLite file holding the signed chain, sink cursors, rule state and batches.

It is the only durable point of the agent, so everything that must survive a power cut together
is written in one transaction: a record's seq, its prev link and its row (a gap or a fork is then
impossible), and a consumer's cursor together with what it produced from the records it read
(rule state with the alerts it raised; a batch with the anchor cursor). Consumers re-reading
from their cursor after a crash is what makes delivery at-least-once without bookkeeping
elsewhere.

WAL mode lets sinks read while ingest writes; synchronous=FULL by default because gateways lose
power without warning and an acknowledged reading must not vanish. The keyed tables are WITHOUT
ROWID: a seal's counter is upserted with every reading, and one B-tree per upsert instead of a
table plus its key index takes a third off the journal's cost per e-seal reading (journals made
before this keep their tables and work as before).

What an SD card pays (deploy/raspberry-pi.md has the figures): every commit rewrites whole 4 KiB
pages in the WAL (the last, partly filled leaf, its parent, the header page, the pointer map)
and a checkpoint copies each changed page into the database once more. So a record costs about
twice its size plus a share of four or five pages per commit: the agent commits in groups
(agent.py), and the WAL is bounded (``wal_limit_bytes``: autocheckpoint at that size, and
``journal_size_limit`` truncates the file back to it afterwards), so the size bound can count it.

Two guarantees customs relies on are kept here, where every record is signed: each alert's body
names the seq of the gateway's previous alert (``prev_alert``, 0 for the first), so customs can
tell which alerts it holds without gaps (ledger_client/acks.py); and an alert id is never
committed twice: a draft repeating one (from the journal or earlier in its own group) is
dropped and counted, never allowed to fail the group.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger_client.keys import public_hex
from ledger_client.records import GENESIS_PREV, RecordSigner, record_hash

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY, t_ms INTEGER NOT NULL, kind TEXT NOT NULL, src TEXT NOT NULL,
    hash BLOB NOT NULL, signed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS alerts (seq INTEGER PRIMARY KEY, alert_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batches (
    batch_seq INTEGER PRIMARY KEY, first_seq INTEGER NOT NULL, tree_size INTEGER NOT NULL,
    root BLOB NOT NULL, status TEXT NOT NULL, closed_ms INTEGER NOT NULL, reason TEXT NOT NULL,
    nonce INTEGER, raw_tx BLOB, tx_hash BLOB, chain_id INTEGER, contract TEXT,
    block_number INTEGER, block_hash BLOB, log_index INTEGER);
"""

_parse_at = json.JSONDecoder().raw_decode
log = logging.getLogger(__name__)
PAGE_SIZE = 4096
WAL_LIMIT_BYTES = 4 * 1024 * 1024
UNWRITABLE = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY,
                        sqlite3.SQLITE_CANTOPEN})
"""Primary result codes that say the file cannot be written now (disk full, I/O error, a
read-only remount), as opposed to a bug: the agent waits and retries on these."""

BATCH_FIELDS = ("batch_seq", "first_seq", "tree_size", "root", "status", "closed_ms", "reason",
                "nonce", "raw_tx", "tx_hash", "chain_id", "contract", "block_number",
                "block_hash", "log_index")


class JournalError(Exception):
    """The journal file belongs to another gateway or key, or is not a SealTrail journal."""


class JournalUnwritable(Exception):
    """A write failed because of the disk, not the data: full, I/O error, read-only. Nothing
    of the failed transaction is kept; the same write may be tried again later."""

    def __init__(self, path: Path, exc: sqlite3.Error):
        super().__init__(f"journal {path}: {exc}")
        self.cause = str(exc)


def unwritable(exc: BaseException) -> bool:
    """Whether an sqlite3 error is the disk's fault (see UNWRITABLE)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and (code & 0xFF) in UNWRITABLE


class Draft(NamedTuple):
    """A reading or alert before the journal gives it a seq, a link and a signature.

    ``state`` is committed in the same transaction as the record: a sensor's replay counter
    must move exactly when the reading that moved it becomes durable, never before or after.
    Draft and Stored are NamedTuples rather than frozen dataclasses: as immutable, and one is
    built per reading on the ingest path, where a frozen dataclass costs three times as much.
    """

    t_ms: int
    kind: str
    src: str
    body: dict[str, Any]
    state: Mapping[str, str] | None = None


class Stored(NamedTuple):
    """A committed record: its signed bytes are the truth; the other fields are indexes.
    Its fields are the ``records`` columns in order, so it is inserted as it is."""

    seq: int
    t_ms: int
    kind: str
    src: str
    hash: bytes
    signed: bytes

    def record(self) -> dict[str, Any]:
        return json.loads(self.signed)

    def body(self) -> dict[str, Any]:
        """The record's body alone. In canonical form it opens the record, so it is parsed
        without the rest (signature, links: most of the bytes); the rules read the body of
        every record, and this halves what that costs them."""
        text = self.signed.decode()
        if text.startswith('{"body":'):
            return _parse_at(text, 8)[0]  # type: ignore[no-any-return]
        return json.loads(text)["body"]  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Batch:
    batch_seq: int
    first_seq: int
    tree_size: int
    root: bytes
    status: str  # built -> signed -> sent -> mined -> anchored (see sinks/anchor.py)
    closed_ms: int
    reason: str
    nonce: int | None = None
    raw_tx: bytes | None = None
    tx_hash: bytes | None = None
    chain_id: int | None = None
    contract: str | None = None
    block_number: int | None = None
    block_hash: bytes | None = None
    log_index: int | None = None

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.tree_size - 1


class Journal:
    """Single-writer journal; safe to share between threads (one lock around the connection)."""

    def __init__(self, path: str | Path, *, gateway_id: str, key: Ed25519PrivateKey,
                 synchronous: str = "FULL", wal_limit_bytes: int = WAL_LIMIT_BYTES):
        if synchronous.upper() not in {"FULL", "NORMAL", "EXTRA"}:
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = Path(path)
        self.gateway_id = gateway_id
        self._key = key
        self._signer = RecordSigner(gateway_id, key)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # new files only (see retention)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self.wal_limit_bytes = max(64 * 1024, wal_limit_bytes)
        page = self._db.execute("PRAGMA page_size").fetchone()[0]
        self._db.execute(f"PRAGMA wal_autocheckpoint={max(16, self.wal_limit_bytes // page)}")
        self._db.execute(f"PRAGMA journal_size_limit={self.wal_limit_bytes}")
        self._db.executescript(SCHEMA)
        self._bind_identity()
        row = self._db.execute("SELECT MAX(seq) FROM alerts").fetchone()
        self._last_alert: int = row[0] or 0
        self.duplicate_alerts = 0  # alert drafts dropped because their id was committed

    def _bind_identity(self) -> None:
        """Tie the file to one gateway id and key: a chain signed by two keys verifies by none."""
        wanted = {"gateway_id": self.gateway_id, "public_key": public_hex(self._key)}
        with self._lock:
            have = dict(self._db.execute("SELECT key, value FROM meta"))
            for name, value in wanted.items():
                if name not in have:
                    self._db.execute("INSERT INTO meta VALUES (?, ?)", (name, value))
                elif have[name] != value:
                    raise JournalError(f"{self.path}: journal {name} is {have[name]!r}, "
                                       f"but this agent has {value!r}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- writing ---------------------------------------------------------------------------

    def append(self, drafts: Sequence[Draft], *, cursors: Mapping[str, int] | None = None,
               state: Mapping[str, str] | None = None) -> list[Stored]:
        """Sign and commit drafts as the next records, with cursor/state changes, atomically.

        Raises JournalUnwritable when the disk refuses the write (nothing is kept; try again
        later), RecordError for a draft that cannot be signed."""
        with self._lock:
            last_alert = self._last_alert
            try:
                with self._transaction():
                    stored = self._append_locked(drafts)
                    merged = {k: v for d in drafts if d.state for k, v in d.state.items()}
                    self._put_locked(cursors or {}, {**merged, **(state or {})})
            except BaseException:
                self._last_alert = last_alert
                raise
        return stored

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error. SQLite rolls back by itself
        after some errors (a full disk among them): then there is nothing to roll back, and
        the error that caused it, not "no transaction is active", is what surfaces."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield
            self._db.execute("COMMIT")
        except BaseException as exc:
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            if unwritable(exc):
                raise JournalUnwritable(self.path, exc) from exc  # type: ignore[arg-type]
            raise

    def _append_locked(self, drafts: Sequence[Draft]) -> list[Stored]:
        row = self._db.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (row[0], row[1].hex()) if row else (0, GENESIS_PREV)
        stored = []
        alerts = []
        sign = self._signer.sign
        for draft in drafts:
            body = draft.body
            if draft.kind == "alert":
                if not self._new_alert(body["alert_id"], alerts):
                    continue
                body = {**body, "prev_alert": self._last_alert}
                self._last_alert = seq + 1
                alerts.append((seq + 1, body["alert_id"]))
            seq += 1
            signed = sign(seq, draft.t_ms, draft.kind, draft.src, body, prev)
            digest = record_hash(signed)
            stored.append(Stored(seq, draft.t_ms, draft.kind, draft.src, digest, signed))
            prev = digest.hex()
        self._db.executemany(
            "INSERT INTO records (seq, t_ms, kind, src, hash, signed) VALUES (?, ?, ?, ?, ?, ?)",
            stored)
        if alerts:
            self._db.executemany("INSERT INTO alerts (seq, alert_id) VALUES (?, ?)", alerts)
        return stored

    def _new_alert(self, alert_id: str, in_group: list[tuple[int, str]]) -> bool:
        """False (and counted) for an id committed before or earlier in this group."""
        if any(aid == alert_id for _, aid in in_group) or self._db.execute(
                "SELECT 1 FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone():
            self.duplicate_alerts += 1
            log.warning("journal: alert %s is already journaled; the repeat is dropped",
                        alert_id)
            return False
        return True

    def _put_locked(self, cursors: Mapping[str, int], state: Mapping[str, str]) -> None:
        if cursors:
            self._db.executemany(
                "INSERT INTO cursors VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET seq = excluded.seq", list(cursors.items()))
        if state:
            self._db.executemany(
                "INSERT INTO state VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value", list(state.items()))

    def commit(self, *, cursors: Mapping[str, int] | None = None,
               state: Mapping[str, str] | None = None) -> None:
        """Move cursors / save state with no new record (a consumer that produced nothing)."""
        self.append((), cursors=cursors, state=state)

    # -- reading ---------------------------------------------------------------------------

    def head(self) -> tuple[int, bytes | None]:
        row = self._one("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1")
        return (row[0], row[1]) if row else (0, None)

    def read_after(self, seq: int, limit: int = 1000) -> list[Stored]:
        return self._stored("SELECT seq, t_ms, kind, src, hash, signed FROM records "
                            "WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))

    def alerts_after(self, seq: int, limit: int = 1000) -> list[Stored]:
        return self._stored("SELECT r.seq, r.t_ms, r.kind, r.src, r.hash, r.signed FROM alerts a "
                            "JOIN records r ON r.seq = a.seq WHERE a.seq > ? ORDER BY a.seq "
                            "LIMIT ?", (seq, limit))

    def last_of_kind(self, kind: str, limit: int, before: int | None = None) -> list[Stored]:
        """The newest `limit` records of one kind (below seq `before`), newest first: read
        back from the head."""
        return self._stored("SELECT seq, t_ms, kind, src, hash, signed FROM records "
                            "WHERE kind = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                            (kind, (1 << 62) if before is None else before, limit))

    def range(self, first: int, last: int) -> list[Stored]:
        return self._stored("SELECT seq, t_ms, kind, src, hash, signed FROM records "
                            "WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last))

    def get(self, seq: int) -> Stored | None:
        found = self.range(seq, seq)
        return found[0] if found else None

    def count_alerts_after(self, seq: int) -> int:
        """How many alerts lie beyond ``seq`` (a sink's backlog), from the alerts index."""
        row = self._one("SELECT COUNT(*) FROM alerts WHERE seq > ?", (seq,))
        return int(row[0]) if row else 0

    def alert_seq(self, alert_id: str) -> int | None:
        row = self._one("SELECT seq FROM alerts WHERE alert_id = ?", (alert_id,))
        return row[0] if row else None

    def cursor(self, name: str) -> int:
        row = self._one("SELECT seq FROM cursors WHERE name = ?", (name,))
        return row[0] if row else 0

    def state(self, key: str) -> str | None:
        row = self._one("SELECT value FROM state WHERE key = ?", (key,))
        return row[0] if row else None

    def states(self, prefix: str) -> dict[str, str]:
        """Every state key starting with `prefix` (one range scan of the key index)."""
        with self._lock:
            return dict(self._db.execute("SELECT key, value FROM state WHERE key >= ? AND "
                                         "key < ?", (prefix, prefix + "\U0010ffff")))

    @property
    def last_alert(self) -> int:
        """Seq of the newest alert (0: none): the next alert's ``prev_alert``."""
        return self._last_alert

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _stored(self, sql: str, args: tuple[Any, ...]) -> list[Stored]:
        with self._lock:
            return [Stored(*row) for row in self._db.execute(sql, args)]

    def iter_signed(self, first: int = 1, chunk: int = 5000) -> Iterable[bytes]:
        """Every record's signed bytes from `first` on, in chunks so memory stays flat."""
        seq = first - 1
        while batch := self.read_after(seq, chunk):
            for stored in batch:
                yield stored.signed
            seq = batch[-1].seq

    # -- anchoring batches -----------------------------------------------------------------

    def add_batch(self, first_seq: int, tree_size: int, root: bytes, *, closed_ms: int,
                  reason: str, cursor: str) -> Batch:
        """Record a closed batch and move the batcher's cursor past it, in one transaction."""
        with self._lock, self._transaction():
            row = self._db.execute("SELECT MAX(batch_seq) FROM batches").fetchone()
            batch = Batch((row[0] or 0) + 1, first_seq, tree_size, root, "built",
                          closed_ms, reason)
            self._db.execute(
                "INSERT INTO batches (batch_seq, first_seq, tree_size, root, status, "
                "closed_ms, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (batch.batch_seq, first_seq, tree_size, root, "built", closed_ms, reason))
            self._put_locked({cursor: first_seq + tree_size - 1}, {})
        return batch

    def update_batch(self, batch_seq: int, **fields: Any) -> None:
        unknown = set(fields) - set(BATCH_FIELDS[4:])
        if unknown:
            raise ValueError(f"not batch fields: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._lock, self._transaction():
            self._db.execute(f"UPDATE batches SET {assignments} WHERE batch_seq = ?",
                             (*fields.values(), batch_seq))

    def batches(self, *, unanchored_only: bool = False) -> list[Batch]:
        where = "WHERE status != 'anchored'" if unanchored_only else ""
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(BATCH_FIELDS)} FROM batches {where} "
                                    "ORDER BY batch_seq").fetchall()
        return [Batch(*row) for row in rows]

    def batch(self, batch_seq: int) -> Batch | None:
        return self._batch_where("batch_seq = ?", (batch_seq,))

    def batch_for(self, seq: int) -> Batch | None:
        """The batch whose seq range holds record `seq`, if it has been closed."""
        return self._batch_where("first_seq <= ? AND first_seq + tree_size > ?", (seq, seq))

    def _batch_where(self, where: str, args: tuple[Any, ...]) -> Batch | None:
        row = self._one(f"SELECT {', '.join(BATCH_FIELDS)} FROM batches WHERE {where}", args)
        return Batch(*row) if row else None

    # -- maintenance (retention.py, metrics.py) --------------------------------------------

    @contextlib.contextmanager
    def locked(self, *, transaction: bool = False) -> Iterator[sqlite3.Connection]:
        """The connection under the journal lock, for retention and metrics queries that
        need several statements to see (or change) one state; with `transaction`, inside
        BEGIN IMMEDIATE ... COMMIT (ROLLBACK if the block raises)."""
        with self._lock:
            if not transaction:
                yield self._db
                return
            with self._transaction():
                yield self._db
