"""The journal file's format version and the steps from each older format to this one.

The format itself (tables, version, meta keys, how an unversioned file is recognised) is
defined in ``ledger_client/journal_format.py``, because customs and the read-only tools read
journal files too; this module is what only the writer needs: the migrations.

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

from ledger_client.journal_format import (
    FORMAT_VERSION,
    KEYED,
    TABLES,
    JournalError,
    NotAJournal,
    detect,
)

__all__ = ["FORMAT_VERSION", "MIGRATIONS", "TABLES", "JournalError", "NotAJournal", "detect",
           "migrate"]


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
