"""The journal file's format: its tables, its version and the steps from each older format.

A gateway is updated in the field with weeks of unsent readings in its journal, so new code must
open every journal an older version wrote, and an older version must not write into a journal
it does not understand. The format version lives in the file (``PRAGMA user_version``, a field
of the database header, changed atomically with the schema); opening a journal brings it up to
``FORMAT_VERSION`` in one transaction (a power cut leaves the old format or the new, never a
mixture), and a journal newer than this code is refused with one clear error.

The formats, as earlier code wrote them (none of them set user_version, which is 0 for all):

1. Walking skeleton to the first gateway release (a1f38ec .. 38c403a): six tables; the keyed
   ones (meta, cursors, state) ordinary rowid tables. Retention, where configured, added
   ``kept_proofs`` and ``cited`` on its first start.
2. From c8fd95a: meta, cursors and state ``WITHOUT ROWID`` (a seal's counter is upserted with
   every reading, and one B-tree per upsert instead of a table plus its key index takes a third
   off the journal's cost per e-seal reading). Older journals kept their rowid tables.
3. This code: user_version says 3, the keyed tables are WITHOUT ROWID (format 1 tables are
   rebuilt: small tables, milliseconds), and ``kept_proofs`` and ``cited`` belong to the schema.

An unversioned file is told apart by what is in it: nothing (a new file), the journal's own
tables (format 1 or 2, by how ``cursors`` was created), or anything else (not a journal).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from sealtrail.errors import SealTrailError

FORMAT_VERSION = 3

TABLES = {
    "meta": "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) "
            "WITHOUT ROWID",
    "records": "CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, t_ms INTEGER NOT "
               "NULL, kind TEXT NOT NULL, src TEXT NOT NULL, hash BLOB NOT NULL, signed BLOB "
               "NOT NULL)",
    "alerts": "CREATE TABLE IF NOT EXISTS alerts (seq INTEGER PRIMARY KEY, alert_id TEXT NOT "
              "NULL UNIQUE)",
    "cursors": "CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL) "
               "WITHOUT ROWID",
    "state": "CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL) "
             "WITHOUT ROWID",
    "batches": "CREATE TABLE IF NOT EXISTS batches (batch_seq INTEGER PRIMARY KEY, first_seq "
               "INTEGER NOT NULL, tree_size INTEGER NOT NULL, root BLOB NOT NULL, status TEXT "
               "NOT NULL, closed_ms INTEGER NOT NULL, reason TEXT NOT NULL, nonce INTEGER, "
               "raw_tx BLOB, tx_hash BLOB, chain_id INTEGER, contract TEXT, block_number "
               "INTEGER, block_hash BLOB, log_index INTEGER)",
    # audit paths of records kept from pruned batches (retention.py)
    "kept_proofs": "CREATE TABLE IF NOT EXISTS kept_proofs (seq INTEGER PRIMARY KEY, batch_seq "
                   "INTEGER NOT NULL, audit_path BLOB NOT NULL)",
    # seqs that alerts cite as evidence, collected incrementally (retention.py)
    "cited": "CREATE TABLE IF NOT EXISTS cited (seq INTEGER PRIMARY KEY)",
}
KEYED = ("meta", "cursors", "state")  # WITHOUT ROWID since format 2


class JournalError(SealTrailError):
    """The file is not a journal this agent may write: another gateway's or key's, not a
    SealTrail journal at all, or written by a newer version (exit code 1, one line)."""


def _rebuild_without_rowid(db: sqlite3.Connection) -> None:
    """Format 1 -> 2: meta, cursors and state as WITHOUT ROWID tables, rows copied."""
    for table in KEYED:
        sql = db.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                         (table,)).fetchone()
        if sql is not None and "WITHOUT ROWID" in sql[0].upper():
            continue
        db.execute(TABLES[table].replace(f"EXISTS {table} ", f"EXISTS {table}_v2 "))
        if sql is not None:
            db.execute(f"INSERT INTO {table}_v2 SELECT * FROM {table}")
            db.execute(f"DROP TABLE {table}")
        db.execute(f"ALTER TABLE {table}_v2 RENAME TO {table}")


def _create_missing(db: sqlite3.Connection) -> None:
    """Format 2 -> 3: every table of the schema exists (retention's two included)."""
    for ddl in TABLES.values():
        db.execute(ddl)


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _rebuild_without_rowid,  # from format 1 to 2
    2: _create_missing,  # from format 2 to 3
}
"""The step from format N to N+1; a new format adds one entry and bumps FORMAT_VERSION."""


def detect(db: sqlite3.Connection, path: Path) -> int:
    """The file's format: user_version if set; else 0 for an empty file, 1 or 2 for a journal
    that earlier code wrote. Raises JournalError for anything else, named by its path."""
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {name: sql for name, sql in db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
            "'sqlite_%'")}
    except sqlite3.DatabaseError as exc:
        raise JournalError(f"{path}: not a SealTrail journal ({exc})") from None
    if version > FORMAT_VERSION:
        raise JournalError(f"{path}: journal format {version} is newer than this agent's "
                           f"({FORMAT_VERSION}); upgrade sealtrail to open it")
    if version:
        return version
    if not tables:
        return 0
    if "meta" not in tables or not set(tables) <= set(TABLES):
        foreign = sorted(set(tables) - set(TABLES)) or ["no meta table"]
        raise JournalError(f"{path}: not a SealTrail journal (holds {', '.join(foreign[:3])})")
    cursors = tables.get("cursors") or ""
    return 2 if "WITHOUT ROWID" in cursors.upper() else 1


def migrate(db: sqlite3.Connection, path: Path) -> int:
    """Bring the file to FORMAT_VERSION in one transaction; returns the format it had.
    `db` must be in autocommit mode (isolation_level None)."""
    found = detect(db, path)
    if found == FORMAT_VERSION:
        return found
    db.execute("BEGIN IMMEDIATE")
    try:
        found = detect(db, path)  # another process may have migrated it meanwhile
        if found == 0:
            _create_missing(db)
        else:
            for version in range(found, FORMAT_VERSION):
                MIGRATIONS[version](db)
        db.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return found
