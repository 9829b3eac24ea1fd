"""The journal: one SQLite file holding the signed chain, consumer cursors, rule state and
batches. It is the only durable point of the agent.

It is built from parts, each a module, each what one kind of user needs:

- ``records``: the record log. ``append`` signs and commits drafts (with the cursors and state
  that go with them, atomically), ``read_after``, ``alerts_after``, ``range``, ``get``, ``head``.
  Ingest, the rules and every sink use it.
- ``cursors``: ``cursor``, ``state``, ``states``, ``commit`` (move a cursor, save state with no
  new record). Every consumer uses it.
- ``batches``: the Merkle batches and their anchoring state. The anchor sink uses it.
- ``schema``: the file's format version and the migrations from every older format.
- ``retention``: the journal's own maintenance: the size bound (pruning, vacuum, kept proofs).
- ``core``: opening the file, its two connections, the write transaction.
- ``offloop``: ``off_loop(write, ...)``, how code on the event loop writes: in a worker thread.

No code outside this package writes SQL against the journal's tables, and the connection is
never handed out: a new need is a new named method here. The file's format is defined in
``ledger_client.journal_format``, and the tools that read a journal without being its agent
(journal verify, evidence export, customs import) use ``ledger_client.journal_reader``, the
one other place that queries these tables, read-only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.journal.batches import BATCH_FIELDS, Batch, BatchStore
from edge_agent.journal.core import (
    PAGE_SIZE,
    UNWRITABLE,
    WAL_LIMIT_BYTES,
    JournalUnwritable,
    unwritable,
)
from edge_agent.journal.cursors import CursorStore
from edge_agent.journal.offloop import off_loop
from edge_agent.journal.records import Draft, RecordLog, Stored
from edge_agent.journal.schema import FORMAT_VERSION, JournalError

__all__ = ["BATCH_FIELDS", "FORMAT_VERSION", "PAGE_SIZE", "UNWRITABLE", "WAL_LIMIT_BYTES",
           "Batch", "Draft", "Journal", "JournalError", "JournalFigures", "JournalUnwritable",
           "Stored", "off_loop", "unwritable"]


@dataclass(frozen=True, slots=True)
class JournalFigures:
    """What the metrics and the health check report about the journal itself."""

    anchored_through: int  # last seq of the anchored prefix
    first_unanchored_t_ms: int | None  # time of the oldest record not yet anchored
    alerts: int  # alerts in the journal
    pruned_through: int  # retention: records up to here are gone (alerts and evidence kept)
    pruned_records: int  # retention: records deleted, all told


class Journal(RecordLog, CursorStore, BatchStore):
    """A gateway's journal file, bound to one gateway id and key.

    Every method may be called from any thread. Writes (``append``, ``commit``, the batch
    store's) block until durable, one at a time; reads never wait for a write in progress.
    """

    def __init__(self, path: str | Path, *, gateway_id: str, key: Ed25519PrivateKey,
                 synchronous: str = "FULL", wal_limit_bytes: int = WAL_LIMIT_BYTES,
                 before_commit: Callable[[], None] | None = None):
        super().__init__(path, gateway_id=gateway_id, key=key, synchronous=synchronous,
                         wal_limit_bytes=wal_limit_bytes, before_commit=before_commit)
        self._load_log()

    def figures(self) -> JournalFigures:
        """Anchoring, alert and retention figures, for /metrics (indexed queries only)."""
        from edge_agent.journal.retention import PRUNED_RECORDS, pruned_through

        anchored = self.anchored_through()
        with self._read() as db:
            first = db.execute("SELECT t_ms FROM records WHERE seq > ? ORDER BY seq LIMIT 1",
                               (anchored,)).fetchone()
            alerts = db.execute("SELECT COUNT(*) FROM alerts").fetchone()[0]
            pruned = pruned_through(db)
            row = db.execute("SELECT value FROM meta WHERE key = ?", (PRUNED_RECORDS,)).fetchone()
        return JournalFigures(anchored, first[0] if first else None, int(alerts), pruned,
                              int(row[0]) if row else 0)
