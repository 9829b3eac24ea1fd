"""A gateway journal file, read-only: what tools that are not the agent read from it.

Auditors verify a journal (``sealtrail journal verify``), export evidence from it (``evidence
export``, ``verify --journal``), the installer's check compares it with the config (``agent
check``), and customs imports one that came on a USB stick (``customs import``). None of them
holds the gateway key, most work on a copy, and customs must treat the file as hostile. They
read through this class, so the file's tables are queried in two places only, the agent's
writer (edge_agent/journal) and here, both from the one definition of the format
(``journal_format``).

The file is opened read-only (``mode=ro``: nothing is created, migrated or checkpointed) and its
format is checked as the writer checks it: a newer format is refused (``JournalError``), a file
that is not a journal is refused with what it is instead (``NotAJournal``). Formats 1 to 3 are
read alike. Values come back as the file holds them: a tool that reads a file it does not
trust checks their types (the importer does); the agent's own files hold what the schema says.
A damaged page surfaces as ``sqlite3.DatabaseError`` from the read that meets it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from ledger_client.journal_format import (
    BASE_TABLES,
    BATCH_FIELDS,
    GATEWAY_ID,
    PRUNED_THROUGH,
    PUBLIC_KEY,
    Batch,
    JournalError,
    NotAJournal,
    check_file,
    detect,
)

MAX_META_ROWS = 100  # a journal has a handful; a hostile file is not read without bound
_SIGNED_OF_ALERTS = "SELECT r.seq, r.signed FROM alerts a JOIN records r ON r.seq = a.seq"


class JournalReader:
    """A journal file opened read-only; ``gateway_id`` and ``public_key`` from its meta (None
    when absent or not text). Raises ``JournalError`` (``NotAJournal``) naming the file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        check_file(self.path)
        try:
            self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as exc:  # unreadable: permissions, a lock file it cannot make
            raise JournalError(f"{self.path}: cannot open the journal ({exc})") from None
        try:
            self.format = detect(self._db, self.path)
            tables = {row[0] for row in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = [name for name in BASE_TABLES if name not in tables]
            if missing:
                raise NotAJournal(self.path, f"no {missing[0]} table")
            self._has_kept = "kept_proofs" in tables
            self.meta: dict[Any, Any] = dict(self._db.execute(
                "SELECT key, value FROM meta LIMIT ?", (MAX_META_ROWS,)))
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise NotAJournal(self.path, str(exc)) from None
        except BaseException:
            self._db.close()
            raise
        gw, key = self.meta.get(GATEWAY_ID), self.meta.get(PUBLIC_KEY)
        self.gateway_id: str | None = gw if isinstance(gw, str) else None
        self.public_key: str | None = key if isinstance(key, str) else None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> JournalReader:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- records ------------------------------------------------------------------------------

    def head(self) -> int:
        """The newest record's seq (0: none)."""
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM records").fetchone()[0])

    def signed(self, first: int, last: int) -> list[tuple[int, bytes]]:
        """(seq, signed bytes) of the records in [first, last] that the file holds."""
        return list(self._db.execute("SELECT seq, signed FROM records WHERE seq BETWEEN ? AND ? "
                                     "ORDER BY seq", (first, last)))

    def rows_after(self, seq: int, limit: int) -> list[tuple[Any, Any, Any]]:
        """(seq, kind, signed) of the next `limit` records after `seq`, unchecked: what an
        import of an untrusted file reads in bounded chunks."""
        return list(self._db.execute("SELECT seq, kind, signed FROM records WHERE seq > ? "
                                     "ORDER BY seq LIMIT ?", (seq, limit)))

    def iter_signed(self, first: int = 1, chunk: int = 5000) -> Iterator[bytes]:
        """Every record's signed bytes from `first` on, a chunk at a time: memory stays flat."""
        seq = first - 1
        while rows := self._db.execute("SELECT seq, signed FROM records WHERE seq > ? "
                                       "ORDER BY seq LIMIT ?", (seq, chunk)).fetchall():
            for _, signed in rows:
                yield signed
            seq = rows[-1][0]

    def readings(self, sources: Iterable[str], from_ms: int | None,
                 to_ms: int | None) -> list[tuple[int, bytes]]:
        """Records other than alerts from these sensors, in [from_ms, to_ms] (None: open)."""
        srcs = sorted(set(sources))
        if not srcs:
            return []
        marks = ",".join("?" * len(srcs))
        return list(self._db.execute(
            f"SELECT seq, signed FROM records WHERE kind != 'alert' AND src IN ({marks}) "
            "AND t_ms >= ? AND t_ms <= ? ORDER BY seq",
            (*srcs, -(2**63) if from_ms is None else from_ms,
             2**63 - 1 if to_ms is None else to_ms)))

    # -- alerts -------------------------------------------------------------------------------

    def alert(self, alert_id: str) -> tuple[int, bytes] | None:
        """(seq, signed) of the alert with this id."""
        return self._db.execute(f"{_SIGNED_OF_ALERTS} WHERE a.alert_id = ?",  # type: ignore[no-any-return]
                                (alert_id,)).fetchone()

    def alerts(self) -> list[tuple[int, bytes]]:
        return list(self._db.execute(f"{_SIGNED_OF_ALERTS} ORDER BY r.seq"))

    def orphan_alert(self) -> int | None:
        """The first alert the index names whose record is gone (retention must never)."""
        row = self._db.execute("SELECT a.seq FROM alerts a LEFT JOIN records r ON r.seq = a.seq "
                               "WHERE r.seq IS NULL ORDER BY a.seq LIMIT 1").fetchone()
        return row[0] if row else None

    # -- batches, retention, state --------------------------------------------------------

    def batches(self) -> list[Batch]:
        """Every closed batch, in batch order."""
        return [Batch(*row) for row in self._db.execute(
            f"SELECT {', '.join(BATCH_FIELDS)} FROM batches ORDER BY batch_seq")]

    def pruned_through(self) -> int:
        """Last seq of the prefix retention pruned (0: never pruned)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?",
                               (PRUNED_THROUGH,)).fetchone()
        return int(row[0]) if row else 0

    def kept_path(self, seq: int) -> list[bytes] | None:
        """The audit path kept for record `seq` of a pruned batch (None: none kept)."""
        if not self._has_kept:
            return None
        row = self._db.execute("SELECT audit_path FROM kept_proofs WHERE seq = ?",
                               (seq,)).fetchone()
        if row is None:
            return None
        blob = bytes(row[0])
        return [blob[i:i + 32] for i in range(0, len(blob), 32)]

    def states(self, prefix: str, limit: int = 1000) -> list[tuple[Any, Any]]:
        """(key, value) of the state keys starting with `prefix`, at most `limit`."""
        return list(self._db.execute("SELECT key, value FROM state WHERE key >= ? AND key < ? "
                                     "ORDER BY key LIMIT ?",
                                     (prefix, prefix + "\U0010ffff", limit)))
