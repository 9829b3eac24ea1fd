"""Journal size bound: drop old readings the ledger already vouches for, never anything else.

A gateway has an SD card and runs for years, so the journal cannot keep every reading. What it
may forget is what customs can no longer need from it: a record is pruned only when
- its batch is anchored (the root is on the ledger, confirmed), with every earlier batch;
- every consumer that reads all records (rules, customs delivery) has its stored cursor past it;
- it is not an alert, nor a reading an alert cites as evidence.
Unanchored records and alerts are never pruned, whatever the size; when nothing more may go
and the file is still over the limit, the agent says so (log and metrics) and keeps growing.

Batches are pruned whole, oldest first, one transaction per chunk of batches (a crash leaves
either the chunk or nothing). Before a batch's leaves go, the inclusion proof (audit path) of
every record kept from it is stored in `kept_proofs`, checked against the batch root, so
`sealtrail evidence export` and `sealtrail verify` still prove those records against the
anchored root; batch roots are never deleted. The pruned prefix is `meta.pruned_through` = P,
always the last seq of a batch, and record P itself is kept with its proof: it is the verified
start of the retained chain (its inclusion proof ties it to the anchored root, and record P+1's
`prev` must be its hash), so `sealtrail journal verify` still checks every retained link and
nobody has to trust a stored hash. It also keeps the journal's head row, from which the next seq
is taken. At the next pruning, P is deleted unless it is an alert or evidence.

Making the file shrink: deleted rows only put pages on SQLite's freelist. VACUUM would rewrite
the whole file (minutes for a 1 GB journal on an SD card, ingest blocked, twice the space). We
use auto_vacuum=INCREMENTAL instead: `PRAGMA incremental_vacuum(N)` returns N free pages to the
file system in small steps between ingest commits, and a WAL checkpoint makes the shorter file
real. auto_vacuum can only be switched on by one VACUUM; `prepare()` does it at start (instant
for a new journal, once for an old one, before the sources run).

The WAL counts: the bound is on the database *and* its WAL, and the WAL grows between
checkpoints up to the journal's ``wal_limit_bytes`` (autocheckpoint there, truncated back to it
after). So the size this module compares with the bound is the database plus the larger of the
WAL as it is and ``wal_reserve`` (the limit the WAL may grow to): a bound of a few MB then holds
at every moment, not only just after a checkpoint. `wal_limit_for` picks the limit for a bound.

A full disk is not an error of this module: at start, and at each pass, what cannot be written
is logged and tried again at the next pass; the agent runs on meanwhile.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge_agent.journal import Journal, JournalUnwritable, unwritable
from ledger_client.journal_format import CITED_THROUGH, PRUNED_RECORDS, PRUNED_THROUGH
from ledger_client.merkle import MerkleTree, ProofError
from ledger_client.proof import BatchRoot, verify_kept
from sealtrail.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from ledger_client.journal_reader import JournalReader

log = logging.getLogger(__name__)

# Tables (schema.py): kept_proofs, audit paths of records kept from pruned batches; cited, seqs
# that alerts cite as evidence, collected incrementally (meta cited_through = last alert seq
# looked at), so a pruning pass reads only the alerts raised since the previous one.
VACUUM_STEP_PAGES = 1024  # per hold of the journal lock: a few ms of ingest waiting


class RetentionError(RuntimeError):
    """A batch's records no longer produce its root: pruning stops, a human must look."""


@dataclass(frozen=True, slots=True)
class PruneReport:
    size_before: int
    size_after: int
    records_deleted: int
    pruned_through: int
    over_limit: bool  # still above the limit with nothing more allowed to go


def pruned_through(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (PRUNED_THROUGH,)).fetchone()
    return int(row[0]) if row else 0


def wal_limit_for(max_bytes: int) -> int:
    """The WAL size limit for a journal bound: an eighth of it, between 128 KiB and 4 MiB.
    Bigger saves little (a checkpoint writes each changed page once whatever the interval;
    only the few hot pages are saved rewrites), smaller checkpoints more often."""
    return max(128 * 1024, min(4 * 1024 * 1024, max_bytes // 8))


def file_bytes(journal: Journal) -> int:
    """What the journal takes on disk: the database and its WAL."""
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(FileNotFoundError):
            total += journal.path.with_name(journal.path.name + suffix).stat().st_size
    return total


class Retention:
    """Keeps `journal` under `max_bytes` (down to `low_water` of it once over)."""

    def __init__(self, journal: Journal, max_bytes: int, *,
                 guards: Callable[[], Iterable[str]], low_water: float = 0.8,
                 chunk_records: int = 4096, wal_reserve: int = 0):
        """`guards()` names the cursors of the consumers that read every record;
        `wal_reserve` is what the WAL may grow to (see the module docstring)."""
        if max_bytes < 1 or not 0 < low_water <= 1:
            raise ValueError("max_bytes must be positive and 0 < low_water <= 1")
        self.journal = journal
        self.max_bytes = max_bytes
        self.wal_reserve = wal_reserve
        self.low_water = low_water
        self.guards = guards
        self.chunk_records = chunk_records
        self.deleted_total = 0
        self.runs = 0
        self.over_limit = False
        self._ratelog = RateLimitedLog(log, burst=1, period_s=600.0)

    def prepare(self) -> None:
        """Once at start, before sources run: incremental auto-vacuum. On
        a disk that cannot take it (full), logged and left for later: the agent must start."""
        try:
            with self.journal._writer() as db:
                if db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
                    size = file_bytes(self.journal)
                    log.info("journal %s: switching on incremental auto-vacuum (one VACUUM of "
                             "%.1f MB)", self.journal.path, size / 1e6)
                    db.execute("PRAGMA auto_vacuum = INCREMENTAL")
                    db.execute("VACUUM")
            self._checkpoint()
        except sqlite3.Error as exc:
            if not unwritable(exc):
                raise
            self._ratelog.warning("sqlite", "journal %s: %s; retention starts once the disk "
                                  "takes writes again", self.journal.path, exc)

    def size(self) -> int:
        """What counts against the bound: the database and its WAL, the WAL at least at the
        size it may grow to (`wal_reserve`)."""
        wal = 0
        with contextlib.suppress(FileNotFoundError):
            wal = self.journal.path.with_name(self.journal.path.name + "-wal").stat().st_size
        db = 0
        with contextlib.suppress(FileNotFoundError):
            db = self.journal.path.stat().st_size
        return db + max(wal, self.wal_reserve)

    # -- what may go --------------------------------------------------------------------------

    def limit(self) -> int:
        """Highest seq that may be pruned: anchored (with all before it) and behind every
        guard cursor. Pruning stops at a batch boundary at or below it."""
        guards = list(self.guards())
        with self.journal._read() as db:
            row = db.execute("SELECT MIN(first_seq) FROM batches WHERE status != 'anchored'")
            first_unanchored = row.fetchone()[0]
            if first_unanchored is not None:
                anchored = first_unanchored - 1
            else:
                row = db.execute("SELECT MAX(first_seq + tree_size - 1) FROM batches")
                anchored = row.fetchone()[0] or 0
        return min([anchored, *[self.journal.cursor(name) for name in guards]])

    def pruned_through(self) -> int:
        with self.journal._read() as db:
            return pruned_through(db)

    # -- pruning ------------------------------------------------------------------------------

    def run_once(self) -> PruneReport:
        """Prune while over the limit and allowed to; blocking (run it in a worker thread)."""
        self.runs += 1
        before = size = self.size()
        deleted = 0
        if size > self.max_bytes:
            target = int(self.max_bytes * self.low_water)
            limit = self.limit()
            while size > target:
                moved, n = self._prune_chunk(limit, self._records_to_free(size - target))
                if not moved:
                    break
                deleted += n
                self._vacuum()
                size = self.size()
        self.deleted_total += deleted
        self.over_limit = size > self.max_bytes
        through = self.pruned_through()
        if deleted:
            log.info("journal pruned: %d records deleted, now pruned through seq %d; %.1f MB "
                     "-> %.1f MB", deleted, through, before / 1e6, size / 1e6)
        if self.over_limit:
            self._ratelog.warning("over", "journal %s is %.1f MB, over its %.1f MB limit, and "
                                  "nothing more may be pruned (unanchored records, alerts, or "
                                  "a consumer behind); it keeps growing", self.journal.path,
                                  size / 1e6, self.max_bytes / 1e6)
        return PruneReport(before, size, deleted, through, self.over_limit)

    def _records_to_free(self, excess: int) -> int:
        with self.journal._read() as db:
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            free = db.execute("PRAGMA freelist_count").fetchone()[0]
            page = db.execute("PRAGMA page_size").fetchone()[0]
            head = db.execute("SELECT COALESCE(MAX(seq), 0) FROM records").fetchone()[0]
            live = max(1, head - pruned_through(db))
        per_record = max(64, (pages - free) * page // live)
        return max(1, -(-excess // per_record))

    def _prune_chunk(self, limit: int, wanted: int) -> tuple[bool, int]:
        """Prune whole batches after the pruned prefix, up to `limit` and about `wanted`
        records (at most chunk_records, at least one batch), in one transaction. Returns
        whether the prefix moved and how many records went."""
        with self.journal._write() as db:
            start = pruned_through(db)
            batches = db.execute(
                "SELECT batch_seq, first_seq, tree_size, root FROM batches WHERE first_seq > ? "
                "AND first_seq + tree_size - 1 <= ? ORDER BY batch_seq", (start, limit)).fetchall()
            chosen, count = [], 0
            for batch in batches:
                if chosen and count + batch[2] > min(wanted, self.chunk_records):
                    break
                chosen.append(batch)
                count += batch[2]
            if not chosen:
                return False, 0
            last = chosen[-1][1] + chosen[-1][2] - 1
            keep = self._kept(db, start, last)
            for batch_seq, first, size, root in chosen:
                wanted_here = sorted(s for s in keep if first <= s < first + size)
                if wanted_here:
                    self._store_proofs(db, batch_seq, first, size, bytes(root), wanted_here)
            deleted = 0
            low = start if start > 0 else 1
            if start > 0 and start not in keep:
                db.execute("DELETE FROM kept_proofs WHERE seq = ?", (start,))
            for a, b in _gaps(low, last, keep):
                deleted += db.execute("DELETE FROM records WHERE seq BETWEEN ? AND ?",
                                      (a, b)).rowcount
            db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                       "value = excluded.value", (PRUNED_THROUGH, str(last)))
            row = db.execute("SELECT value FROM meta WHERE key = ?", (PRUNED_RECORDS,)).fetchone()
            db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                       "value = excluded.value",
                       (PRUNED_RECORDS, str(int(row[0] if row else 0) + deleted)))
        self.journal._forget_recent_through(last)
        return True, deleted

    @staticmethod
    def _kept(db: sqlite3.Connection, start: int, last: int) -> set[int]:
        """Seqs in [start, last] that stay: alerts, what alerts cite, and `last` itself."""
        _collect_cited(db)
        keep = {last}
        low = max(start, 1)
        keep.update(row[0] for row in db.execute(
            "SELECT seq FROM alerts WHERE seq BETWEEN ? AND ?", (low, last)))
        keep.update(row[0] for row in db.execute(
            "SELECT seq FROM cited WHERE seq BETWEEN ? AND ?", (low, last)))
        return keep

    @staticmethod
    def _store_proofs(db: sqlite3.Connection, batch_seq: int, first: int, size: int,
                      root: bytes, seqs: list[int]) -> None:
        leaves = [row[0] for row in db.execute(
            "SELECT signed FROM records WHERE seq BETWEEN ? AND ? ORDER BY seq",
            (first, first + size - 1))]
        if len(leaves) != size:
            raise RetentionError(f"batch {batch_seq}: {len(leaves)} of its {size} records are "
                                 "in the journal; refusing to prune it")
        tree = MerkleTree.from_leaves(leaves)
        if tree.root != root:
            raise RetentionError(f"batch {batch_seq}: its records no longer produce its root "
                                 "(journal damaged?); refusing to prune it")
        db.executemany("INSERT OR REPLACE INTO kept_proofs VALUES (?, ?, ?)",
                       [(seq, batch_seq, b"".join(tree.inclusion_proof(seq - first)))
                        for seq in seqs])

    def _vacuum(self) -> None:
        """Give freed pages back in steps, releasing the lock between them for ingest."""
        last_free = None
        while True:
            with self.journal._writer() as db:
                free = db.execute("PRAGMA freelist_count").fetchone()[0]
                if free == 0 or free == last_free:  # nothing (more) to give back
                    break
                last_free = free
                # executescript runs the pragma to completion; execute() frees one page
                db.executescript(f"PRAGMA incremental_vacuum({VACUUM_STEP_PAGES});")
        self._checkpoint()

    def _checkpoint(self) -> None:
        """Copy the WAL into the database and cut the WAL file to zero: the shrink becomes
        real on disk. A reader elsewhere (an evidence export) can make it busy: then it waits
        at most 100 ms, not the connection's 5 s, and the next pass tries again."""
        with self.journal._writer() as db:
            patience = db.execute("PRAGMA busy_timeout").fetchone()[0]
            db.execute("PRAGMA busy_timeout = 100")
            try:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                db.execute(f"PRAGMA busy_timeout = {int(patience)}")

    async def run(self, interval_s: float) -> None:
        """Check every `interval_s`; pruning runs in a worker thread."""
        while True:
            try:
                await asyncio.to_thread(self.run_once)
            except RetentionError as exc:
                self._ratelog.log(logging.ERROR, "damaged", "retention: %s", exc)
            except (sqlite3.Error, JournalUnwritable) as exc:
                self._ratelog.warning("sqlite", "retention: %s; trying again later", exc)
            await asyncio.sleep(interval_s)


def _collect_cited(db: sqlite3.Connection) -> None:
    """Add the evidence seqs of alerts raised since the last call to `cited` (in the caller's
    transaction). Only seqs not yet pruned matter."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (CITED_THROUGH,)).fetchone()
    through = int(row[0]) if row else 0
    floor = pruned_through(db)
    newest = through
    cited: set[int] = set()
    for seq, signed in db.execute("SELECT r.seq, r.signed FROM alerts a JOIN records r ON "
                                  "r.seq = a.seq WHERE a.seq > ? ORDER BY a.seq", (through,)):
        newest = seq
        body = json.loads(signed).get("body")
        evidence = body.get("evidence") if isinstance(body, dict) else None
        for ref in evidence if isinstance(evidence, list) else ():
            if isinstance(ref, int) and not isinstance(ref, bool) and ref >= floor:
                cited.add(ref)
    db.executemany("INSERT OR IGNORE INTO cited VALUES (?)", [(c,) for c in cited])
    if newest != through:
        db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET "
                   "value = excluded.value", (CITED_THROUGH, str(newest)))


def _gaps(low: int, high: int, keep: set[int]) -> list[tuple[int, int]]:
    """[low, high] minus `keep`, as inclusive ranges."""
    out, a = [], low
    for seq in sorted(s for s in keep if low <= s <= high):
        if seq > a:
            out.append((a, seq - 1))
        a = seq + 1
    if a <= high:
        out.append((a, high))
    return out


def verify_pruned_prefix(journal: JournalReader, public_key: Ed25519PublicKey,
                         gateway_id: str) -> tuple[int, int]:
    """For `sealtrail journal verify`: (pruned_through, records kept there), after checking
    that every record kept at or below the boundary proves into its batch root, that the
    boundary record is there, and that every alert the journal indexes still has its record.
    Raises ProofError / RecordError. (0, 0) for a journal never pruned. Reads through the
    read-only reader: an auditor checks a copy, without the gateway key."""
    start = journal.pruned_through()
    if start == 0:
        return 0, 0
    batches = sorted((BatchRoot(b.first_seq, b.tree_size, bytes(b.root))
                      for b in journal.batches()), key=lambda b: b.first_seq)
    firsts = [b.first_seq for b in batches]
    count, boundary = 0, False
    for seq, signed in journal.signed(1, start):
        i = bisect.bisect_right(firsts, seq) - 1
        path = journal.kept_path(seq)
        if i < 0 or path is None:
            raise ProofError(f"seq {seq} is kept in the pruned range without a stored proof")
        verify_kept(signed, path, batches[i], public_key, gateway_id=gateway_id)
        count += 1
        boundary = seq == start
    if not boundary:
        raise ProofError(f"the boundary record (seq {start}) of the pruned prefix is missing")
    missing = journal.orphan_alert()
    if missing is not None:
        raise ProofError(f"alert seq {missing} is indexed but its record is gone")
    return start, count
