"""The journal file: opening it (format, identity, pragmas), its two connections, and the one
write transaction every part of the journal commits through.

Two connections, because a commit waits for the disk (an fsync; seconds on a tired SD card) and
the agent's readers must not wait with it. Writes go through ``_write`` on the writer
connection, one at a time under its lock, from whatever thread the caller is on (the agent
commits from a worker thread so its event loop keeps reading serial ports meanwhile). Reads go
through ``_read`` on the reader connection: in WAL mode a reader sees the last commit and is
never blocked by one in progress. Each connection is used by one thread at a time (its lock),
which is what sqlite3 requires of a connection shared between threads.

WAL mode, synchronous=FULL by default because gateways lose power without warning and an
acknowledged reading must not vanish. What an SD card pays (deploy/raspberry-pi.md has the
figures): every commit rewrites whole 4 KiB pages in the WAL (the last, partly filled leaf, its
parent, the header page, the pointer map) and a checkpoint copies each changed page into the
database once more. So the agent commits in groups (agent.py), and the WAL is bounded
(``wal_limit_bytes``: autocheckpoint at that size, and ``journal_size_limit`` truncates the
file back to it afterwards), so the size bound (retention.py) can count it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.journal.schema import JournalError, migrate
from ledger_client.journal_format import GATEWAY_ID, PUBLIC_KEY
from ledger_client.keys import public_hex
from ledger_client.records import RecordSigner

PAGE_SIZE = 4096
WAL_LIMIT_BYTES = 4 * 1024 * 1024
UNWRITABLE = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY,
                        sqlite3.SQLITE_CANTOPEN})
"""Primary result codes that say the file cannot be written now (disk full, I/O error, a
read-only remount), as opposed to a bug: the agent waits and retries on these."""


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


class JournalCore:
    """Opens the file and owns its connections; the record log, cursors and batch store are
    built on it (records.py, cursors.py, batches.py) and ``Journal`` joins them."""

    def __init__(self, path: str | Path, *, gateway_id: str, key: Ed25519PrivateKey,
                 synchronous: str = "FULL", wal_limit_bytes: int = WAL_LIMIT_BYTES,
                 before_commit: Callable[[], None] | None = None):
        """`before_commit` is a test hook: called in every write transaction just before its
        COMMIT, on the committing thread (a test stalls it to play a slow disk)."""
        if synchronous.upper() not in {"FULL", "NORMAL", "EXTRA"}:
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = Path(path)
        self.gateway_id = gateway_id
        self.before_commit = before_commit
        self._key = key
        self._signer = RecordSigner(gateway_id, key)
        self._wlock = threading.RLock()  # append holds it around _write
        self._rlock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # new files only (see retention)
            migrate(self._db, self.path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self.wal_limit_bytes = max(64 * 1024, wal_limit_bytes)
            page = self._db.execute("PRAGMA page_size").fetchone()[0]
            self._db.execute(f"PRAGMA wal_autocheckpoint={max(16, self.wal_limit_bytes // page)}")
            self._db.execute(f"PRAGMA journal_size_limit={self.wal_limit_bytes}")
            self._bind_identity()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            if unwritable(exc):
                raise JournalUnwritable(self.path, exc) from exc
            raise JournalError(f"{self.path}: cannot open the journal ({exc})") from None
        except BaseException:
            self._db.close()
            raise
        self._rdb = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)

    def _bind_identity(self) -> None:
        """Tie the file to one gateway id and key: a chain signed by two keys verifies by none."""
        wanted = {GATEWAY_ID: self.gateway_id, PUBLIC_KEY: public_hex(self._key)}
        have = dict(self._db.execute("SELECT key, value FROM meta"))
        for name, value in wanted.items():
            if name not in have:
                self._db.execute("INSERT INTO meta VALUES (?, ?)", (name, value))
            elif have[name] != value:
                raise JournalError(f"{self.path}: journal {name} is {have[name]!r}, "
                                   f"but this agent has {value!r}")

    def close(self) -> None:
        with self._wlock, self._rlock:
            self._db.close()
            self._rdb.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """The writer connection in BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error.
        SQLite rolls back by itself after some errors (a full disk among them): then there is
        nothing to roll back, and the error that caused it, not "no transaction is active",
        is what surfaces, as JournalUnwritable when it is the disk's fault."""
        with self._wlock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                yield db
                if self.before_commit is not None:
                    self.before_commit()
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                if unwritable(exc):
                    raise JournalUnwritable(self.path, exc) from exc  # type: ignore[arg-type]
                raise

    @contextlib.contextmanager
    def _writer(self) -> Iterator[sqlite3.Connection]:
        """The writer connection outside a transaction (for statements that cannot run in one:
        VACUUM, a checkpoint, incremental_vacuum); retention only."""
        with self._wlock:
            yield self._db

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """The reader connection in one read transaction: what the block reads is one state."""
        with self._rlock:
            db = self._rdb
            db.execute("BEGIN")
            try:
                yield db
            finally:
                db.execute("COMMIT")

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        with self._rlock:
            return self._rdb.execute(sql, args).fetchone()  # type: ignore[no-any-return]

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._rlock:
            return self._rdb.execute(sql, args).fetchall()
