"""Cursors and state: where each consumer is in the log, and what it must remember.

A consumer (rules, a sink, the batcher) stores its cursor in the same transaction as what it
produced from the records it read (the rules' alerts and per-asset state; a sink's progress),
so after a power cut it resumes exactly where its output stopped: never a repeat it cannot
recognise, never a gap. State is plain text under string keys with prefixes per owner
(``rules/``, ``seal/``): one range scan finds everything an owner kept.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from edge_agent.journal.core import JournalCore


def put(db: sqlite3.Connection, cursors: Mapping[str, int], state: Mapping[str, str]) -> None:
    """Upsert cursors and state in the caller's write transaction."""
    if cursors:
        db.executemany("INSERT INTO cursors VALUES (?, ?) "
                       "ON CONFLICT(name) DO UPDATE SET seq = excluded.seq",
                       list(cursors.items()))
    if state:
        db.executemany("INSERT INTO state VALUES (?, ?) "
                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                       list(state.items()))


class CursorStore(JournalCore):
    """Consumer cursors and keyed state, each moved atomically with what it belongs to."""

    def commit(self, *, cursors: Mapping[str, int] | None = None,
               state: Mapping[str, str] | None = None) -> None:
        """Move cursors / save state with no new record (a consumer that produced nothing).
        One transaction and fsync: from the event loop, run it in a worker thread."""
        with self._write() as db:
            put(db, cursors or {}, state or {})

    def cursor(self, name: str) -> int:
        """The stored cursor of consumer `name` (0: it has read nothing)."""
        row = self._one("SELECT seq FROM cursors WHERE name = ?", (name,))
        return row[0] if row else 0

    def state(self, key: str) -> str | None:
        row = self._one("SELECT value FROM state WHERE key = ?", (key,))
        return row[0] if row else None

    def states(self, prefix: str) -> dict[str, str]:
        """Every state key starting with `prefix` (one range scan of the key index)."""
        return dict(self._all("SELECT key, value FROM state WHERE key >= ? AND key < ?",
                              (prefix, prefix + "\U0010ffff")))  # type: ignore[arg-type]
