"""The record log: the signed, hash-chained records, appended in groups and read in seq order.

Everything that must survive a power cut together is written in one transaction: a record's
seq, its prev link and its row (a gap or a fork is then impossible), and a consumer's cursor
and state with what it produced from the records it read (cursors.py). Consumers re-reading
from their cursor after a crash is what makes delivery at-least-once without bookkeeping
elsewhere.

The newest records are also kept in memory (``RECENT`` of them, as committed): every consumer
reads each record just after its commit (the rules, the uplink, the anchor batcher), and
answering those reads from the list ingest built costs nothing, where a query each costs the
main loop a little per record (the loop that reads the sensors). Older reads, and anything
after a restart, go to the file. The list follows the file because this object is its only
writer: ``append`` extends it after each COMMIT, retention trims it when it prunes.

Two guarantees customs relies on are kept here, where every record is signed: each alert's body
names the seq of the gateway's previous alert (``prev_alert``, 0 for the first), so customs can
tell which alerts it holds without gaps (ledger_client/acks.py); and an alert id is never
committed twice: a draft repeating one (from the journal or earlier in its own group) is
dropped and counted, never allowed to fail the group.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from edge_agent.journal.core import JournalCore
from edge_agent.journal.cursors import put
from ledger_client.records import GENESIS_PREV, record_hash

_parse_at = json.JSONDecoder().raw_decode
log = logging.getLogger(__name__)
_COLUMNS = "seq, t_ms, kind, src, hash, signed"
RECENT = 2048
"""Committed records kept in memory for the consumers: ten seconds of a port's readings,
about 1 MB, so a consumer a commit or two behind never reads the file."""


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
        return json.loads(self.signed)  # type: ignore[no-any-return]

    def body(self) -> dict[str, Any]:
        """The record's body alone. In canonical form it opens the record, so it is parsed
        without the rest (signature, links: most of the bytes); the rules read the body of
        every record, and this halves what that costs them."""
        text = self.signed.decode()
        if text.startswith('{"body":'):
            return _parse_at(text, 8)[0]  # type: ignore[no-any-return]
        return json.loads(text)["body"]  # type: ignore[no-any-return]


class RecordLog(JournalCore):
    """Append (with the cursors and state that go with it), read after a seq, the head."""

    duplicate_alerts: int = 0  # alert drafts dropped because their id was committed
    _last_alert: int = 0
    _recent: tuple[int, list[Stored]] = (1, [])
    """The seq of the first record in memory, and the newest records (contiguous, up to the
    head). Replaced whole, never changed in place: a reader in another thread takes the pair
    once and sees one consistent list."""

    def _load_log(self) -> None:
        row = self._one("SELECT MAX(seq) FROM alerts")
        self._last_alert = (row[0] if row else None) or 0
        self.duplicate_alerts = 0
        self._recent = (self.head()[0] + 1, [])

    # -- writing ---------------------------------------------------------------------------

    def append(self, drafts: Sequence[Draft], *, cursors: Mapping[str, int] | None = None,
               state: Mapping[str, str] | None = None) -> list[Stored]:
        """Sign and commit drafts as the next records, with cursor/state changes, atomically:
        one transaction, one fsync. Blocks until durable; the agent calls it from a worker
        thread. Raises JournalUnwritable when the disk refuses the write (nothing is kept; try
        again later), RecordError for a draft that cannot be signed."""
        with self._wlock:  # re-entered by _write: _last_alert is restored under the same hold
            last_alert = self._last_alert
            try:
                with self._write() as db:
                    stored = self._insert(db, drafts)
                    merged = {k: v for d in drafts if d.state for k, v in d.state.items()}
                    put(db, cursors or {}, {**merged, **(state or {})})
            except BaseException:
                self._last_alert = last_alert
                raise
            if stored:
                first, recent = self._recent
                if first + len(recent) != stored[0].seq:  # cannot happen with one writer
                    recent = []
                kept = (recent + stored)[-RECENT:]
                self._recent = (kept[0].seq, kept)
        return stored

    def _forget_recent_through(self, seq: int) -> None:
        """Retention pruned the records up to `seq`: reads of them go to the file again
        (which holds the ones it keeps, alerts and their evidence)."""
        with self._wlock:
            first, recent = self._recent
            if seq >= first:
                cut = min(len(recent), seq + 1 - first)
                self._recent = (first + cut, recent[cut:])

    def _insert(self, db: sqlite3.Connection, drafts: Sequence[Draft]) -> list[Stored]:
        row = db.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (row[0], row[1].hex()) if row else (0, GENESIS_PREV)
        stored = []
        alerts: list[tuple[int, str]] = []
        sign = self._signer.sign
        for draft in drafts:
            body = draft.body
            if draft.kind == "alert":
                if not self._new_alert(db, body["alert_id"], alerts):
                    continue
                body = {**body, "prev_alert": self._last_alert}
                self._last_alert = seq + 1
                alerts.append((seq + 1, body["alert_id"]))
            seq += 1
            signed = sign(seq, draft.t_ms, draft.kind, draft.src, body, prev)
            digest = record_hash(signed)
            stored.append(Stored(seq, draft.t_ms, draft.kind, draft.src, digest, signed))
            prev = digest.hex()
        db.executemany(f"INSERT INTO records ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", stored)
        if alerts:
            db.executemany("INSERT INTO alerts (seq, alert_id) VALUES (?, ?)", alerts)
        return stored

    def _new_alert(self, db: sqlite3.Connection, alert_id: str,
                   in_group: list[tuple[int, str]]) -> bool:
        """False (and counted) for an id committed before or earlier in this group."""
        if any(aid == alert_id for _, aid in in_group) or db.execute(
                "SELECT 1 FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone():
            self.duplicate_alerts += 1
            log.warning("journal: alert %s is already journaled; the repeat is dropped",
                        alert_id)
            return False
        return True

    # -- reading ---------------------------------------------------------------------------

    def head(self) -> tuple[int, bytes | None]:
        """The newest record's seq and hash ((0, None) for an empty journal)."""
        row = self._one("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1")
        return (row[0], row[1]) if row else (0, None)

    def read_after(self, seq: int, limit: int = 1000) -> list[Stored]:
        first, recent = self._recent
        if seq + 1 >= first:
            start = seq + 1 - first
            return recent[start:start + limit]
        return self._stored(f"SELECT {_COLUMNS} FROM records WHERE seq > ? ORDER BY seq LIMIT ?",
                            (seq, limit))

    def alerts_after(self, seq: int, limit: int = 1000) -> list[Stored]:
        return self._stored("SELECT r.seq, r.t_ms, r.kind, r.src, r.hash, r.signed FROM alerts a "
                            "JOIN records r ON r.seq = a.seq WHERE a.seq > ? ORDER BY a.seq "
                            "LIMIT ?", (seq, limit))

    def last_of_kind(self, kind: str, limit: int, before: int | None = None) -> list[Stored]:
        """The newest `limit` records of one kind (below seq `before`), newest first: read
        back from the head."""
        return self._stored(f"SELECT {_COLUMNS} FROM records WHERE kind = ? AND seq < ? "
                            "ORDER BY seq DESC LIMIT ?",
                            (kind, (1 << 62) if before is None else before, limit))

    def range(self, first: int, last: int) -> list[Stored]:
        start, recent = self._recent
        if start <= first and last < start + len(recent):
            return recent[first - start:last - start + 1]
        return self._stored(f"SELECT {_COLUMNS} FROM records WHERE seq BETWEEN ? AND ? "
                            "ORDER BY seq", (first, last))

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

    @property
    def last_alert(self) -> int:
        """Seq of the newest alert (0: none): the next alert's ``prev_alert``."""
        return self._last_alert

    def iter_signed(self, first: int = 1, chunk: int = 5000) -> Iterable[bytes]:
        """Every record's signed bytes from `first` on, in chunks so memory stays flat."""
        seq = first - 1
        while batch := self.read_after(seq, chunk):
            for stored in batch:
                yield stored.signed
            seq = batch[-1].seq

    def _stored(self, sql: str, args: tuple[Any, ...]) -> list[Stored]:
        return [Stored(*row) for row in self._all(sql, args)]
