"""The customs store on PostgreSQL (psycopg 3 with a connection pool): for a national
administration, several receivers and consoles on several machines, one database with a standby.

Every receiver writes through the same keys as the SQLite store, so two receivers racing over a
redelivered message both run ``INSERT ... ON CONFLICT DO NOTHING`` and exactly one row results.
Deadlocks and serialisation failures between concurrent writers are retried here; a server that
goes away (restart, failover) surfaces as StoreUnavailable and the receiver retries with backoff,
holding its unacknowledged messages. Pool connections are checked on checkout, so the first
write after a restart does not fail on a dead socket.

Schema migrations run under a transaction-level advisory lock: receivers starting together
migrate once, the others wait and then find the version current.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool, PoolTimeout

from customs.store import schema
from customs.store.base import SqlStore, StoreDataError, StoreError, StoreUnavailable, Tx
from customs.store.rows import Quota

MIGRATION_LOCK = 0x5EA17A11  # pg_advisory_xact_lock key: one migrator at a time
RETRIES = 5
_PLACEHOLDER = re.compile(r"\?")


def _pg(sql: str) -> str:
    return _PLACEHOLDER.sub("%s", sql)


_INSERT = re.compile(r"INSERT INTO (\w+) \(([^)]*)\) VALUES \(\?(?:\s*,\s*\?)*\)(.*)", re.S)
_CONFLICT_KEY = re.compile(r"ON CONFLICT \(([^)]*)\)")


class _PgTx:
    """Group writes as set operations: an ``INSERT ... VALUES (?, ...)`` for N rows becomes
    one ``INSERT ... SELECT * FROM unnest(<one array per column>)``: one statement, its
    arrays sent in PostgreSQL's binary format (no text quoting per element), instead of N
    statements each costing psycopg tens of microseconds."""

    def __init__(self, cur: psycopg.Cursor[Any], types: dict[tuple[str, str], str]):
        self.cur = cur
        self.types = types

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.cur.execute(_pg(sql), params)
        return self.cur.rowcount

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self.cur.execute(_pg(sql), params)
        row: tuple[Any, ...] | None = self.cur.fetchone()
        return row

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self.cur.execute(_pg(sql), params)
        return self.cur.fetchall()

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        bulk = self._unnest(sql, rows)
        if bulk is None:
            self.cur.executemany(_pg(sql), rows)
        else:
            self.cur.execute(bulk[0], bulk[1], binary=True)

    def inserted(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[bool]:
        """Which rows went in: the keys the statement returns (a key twice in one group goes
        in once, the first time)."""
        if not rows:
            return []
        bulk = self._unnest(sql, rows)
        key = _CONFLICT_KEY.search(sql)
        if bulk is None or key is None:  # another shape: one pipelined statement per row
            self.cur.executemany(_pg(sql) + " RETURNING 1", rows, returning=True)
            flags = []
            while True:
                flags.append(self.cur.fetchone() is not None)
                if not self.cur.nextset():
                    break
            return flags
        names = [c.strip() for c in key.group(1).split(",")]
        columns = [c.strip() for c in _INSERT.fullmatch(sql).group(2).split(",")]  # type: ignore[union-attr]
        at = [columns.index(n) for n in names]
        self.cur.execute(bulk[0] + f" RETURNING {', '.join(names)}", bulk[1], binary=True)
        new = {tuple(r) for r in self.cur.fetchall()}
        flags = []
        for row in rows:
            k = tuple(row[i] for i in at)
            flags.append(k in new)
            new.discard(k)
        return flags

    def _unnest(self, sql: str, rows: Sequence[Sequence[Any]]) -> tuple[str, list[Any]] | None:
        match = _INSERT.fullmatch(sql)
        if match is None:
            return None
        table, cols, rest = match.group(1), match.group(2), match.group(3)
        columns = [c.strip() for c in cols.split(",")]
        arrays = ", ".join(f"%b::{self.types[(table, c)]}[]" for c in columns)
        return (f"INSERT INTO {table} ({cols}) SELECT * FROM unnest({arrays}){rest}",
                [list(values) for values in zip(*rows, strict=True)])


class PostgresStore(SqlStore):
    dialect = schema.POSTGRES

    def __init__(self, url: str, *, quota: Quota | None = None, pool_size: int = 4,
                 connect_timeout_s: float = 10.0):
        self.url = url
        self.where = _redacted(url)
        self.quota = quota or Quota()
        self.pool = ConnectionPool(url, min_size=1, max_size=pool_size, open=False,
                                   check=ConnectionPool.check_connection,
                                   kwargs={"connect_timeout": max(1, int(connect_timeout_s))},
                                   timeout=connect_timeout_s, name="sealtrail-customs")
        try:
            self.pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout:
            self.pool.close()
            raise StoreUnavailable(f"{self.where}: cannot connect to PostgreSQL") from None
        try:
            self._migrate()
            self._types = self._column_types()
        except BaseException:
            self.pool.close()
            raise

    def _migrate(self) -> None:
        with self._tx() as tx:
            tx.run("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            tx.run("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = tx.one("SELECT value FROM meta WHERE key = 'schema'")
            if row is None and tx.one("SELECT COUNT(*) FROM information_schema.tables WHERE "
                                      "table_schema = current_schema() AND table_name <> "
                                      "'meta'")[0]:  # type: ignore[index]
                raise StoreError(f"{self.where}: the database holds tables but is not a "
                                 "customs store")
            found = int(row[0]) if row is not None else None
            if found is not None and found > schema.VERSION:
                raise StoreError(f"{self.where}: store schema version {found} is newer than "
                                 f"this code ({schema.VERSION}); upgrade SealTrail")
            for version, migration in schema.plan(found):
                migration(tx.run, self.dialect)
                tx.run("INSERT INTO meta VALUES ('schema', ?) ON CONFLICT (key) DO UPDATE SET "
                       "value = excluded.value", (str(version),))

    def _column_types(self) -> dict[tuple[str, str], str]:
        """Each column's SQL type, for the arrays of bulk inserts (read once, at open)."""
        self._types: dict[tuple[str, str], str] = {}
        rows = self._all("SELECT table_name, column_name, data_type FROM "
                         "information_schema.columns WHERE table_schema = current_schema()")
        return {(str(t), str(c)): str(d) for t, c, d in rows}

    @property
    def version(self) -> int:
        return int(self._all("SELECT value FROM meta WHERE key = 'schema'")[0][0])

    def close(self) -> None:
        self.pool.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Tx]:
        try:
            with self.pool.connection() as conn, conn.cursor() as cur:
                yield _PgTx(cur, getattr(self, "_types", {}))
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
            raise
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"{self.where}: {_first_line(exc)}") from exc
        except PoolTimeout as exc:
            raise StoreUnavailable(f"{self.where}: no connection to PostgreSQL") from exc
        except psycopg.Error as exc:
            raise StoreDataError(f"{self.where}: {_first_line(exc)}") from exc

    @contextlib.contextmanager
    def _read(self) -> Iterator[Tx]:
        with self._tx() as tx:
            yield tx

    def write(self, parts: Sequence[Any], *, forward: bool = False) -> Any:
        """As SqlStore.write, retried when PostgreSQL chose this transaction as a deadlock or
        serialisation victim (another receiver held the same gateway's rows)."""
        for attempt in range(RETRIES):
            try:
                return super().write(parts, forward=forward)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                if attempt == RETRIES - 1:
                    raise StoreUnavailable(f"{self.where}: lost {RETRIES} races in a row with "
                                           "other writers") from None
        raise AssertionError("unreachable")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
