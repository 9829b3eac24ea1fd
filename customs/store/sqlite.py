"""The customs store in one SQLite file: the embedded default for one office and the demo.

WAL with ``synchronous=FULL``: a committed write is on disk before the receiver acknowledges the
MQTT messages it holds, and the console reads beside the writer without blocking it (one
connection writes, another reads; each behind its own lock, so the store is thread-safe). A
second process on the same file (a console beside a receiver) waits up to ``busy_timeout`` for
the write lock instead of failing.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from customs.store import schema
from customs.store.base import SqlStore, StoreDataError, StoreError, StoreUnavailable, Tx
from customs.store.rows import Quota

BUSY_TIMEOUT_MS = 10_000


class _SqliteTx:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.db.execute(sql, params).rowcount

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.db.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.db.execute(sql, params).fetchall()

    def inserted(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[bool]:
        """Optimistic: one executemany, and if every row went in (the usual case) that is
        the answer; else undo it and insert row by row to learn which were already held."""
        if len(rows) > 1:
            before = self.db.total_changes
            self.db.execute("SAVEPOINT inserted")
            self.db.executemany(sql, rows)
            all_new = self.db.total_changes - before == len(rows)
            if not all_new:
                self.db.execute("ROLLBACK TO inserted")
            self.db.execute("RELEASE inserted")
            if all_new:
                return [True] * len(rows)
        execute = self.db.execute
        return [execute(sql, row).rowcount == 1 for row in rows]

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.db.executemany(sql, rows)


def _translate(exc: sqlite3.Error, where: str) -> Exception:
    """Transient trouble (locked, disk full, I/O) is 'unavailable, retry'; a value the engine
    refused is poison for that write."""
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailable(f"{where}: {exc}")
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError | sqlite3.InterfaceError |
                  sqlite3.ProgrammingError):
        return StoreDataError(f"{where}: {exc}")
    return StoreUnavailable(f"{where}: {exc}")


class SqliteStore(SqlStore):
    dialect = schema.SQLITE

    def __init__(self, path: str | Path, *, quota: Quota | None = None):
        self.path = Path(path)
        self.where = str(self.path)
        self.quota = quota or Quota()
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        try:
            self._db = self._connect()
            self._reader = self._connect()
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a customs store ({exc})") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def _migrate(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone()
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() \
                if has_meta else None
            if row is None and db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
                raise StoreError(f"{self.path}: an SQLite file, but not a customs store")
            found = int(row[0]) if row is not None else None
            if found is not None and found > schema.VERSION:
                raise StoreError(f"{self.path}: store schema version {found} is newer than this "
                                 f"code ({schema.VERSION}); upgrade SealTrail")
            for version, migration in schema.plan(found):
                migration(db.execute, self.dialect)
                db.execute("INSERT INTO meta VALUES ('schema', ?) ON CONFLICT (key) DO UPDATE "
                           "SET value = excluded.value", (str(version),))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @property
    def version(self) -> int:
        return int(self._all("SELECT value FROM meta WHERE key = 'schema'")[0][0])

    def close(self) -> None:
        with self._write_lock, self._read_lock:
            self._db.close()
            self._reader.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Tx]:
        with self._write_lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _translate(exc, self.where) from None
            try:
                yield _SqliteTx(self._db)
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _translate(exc, self.where) from exc
                raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[Tx]:
        with self._read_lock:
            try:
                yield _SqliteTx(self._reader)
            except sqlite3.Error as exc:
                raise _translate(exc, self.where) from exc
