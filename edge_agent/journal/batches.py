"""The batch store: Merkle batches of the log and where each stands on its way to the ledger.

A batch is a contiguous seq range of the log with its RFC 9162 root. It is written before
anything is broadcast (nonce, raw transaction), so after a crash the anchor sink asks the
contract before sending again (sinks/anchor.py); its status moves built -> signed -> sent ->
mined -> anchored, and back to built on a reorg. Batches are never deleted: retention keeps
the roots that prove the records it keeps.
"""

from __future__ import annotations

from typing import Any

from edge_agent.journal.core import JournalCore
from edge_agent.journal.cursors import put
from ledger_client.journal_format import BATCH_FIELDS, Batch

__all__ = ["BATCH_FIELDS", "Batch", "BatchStore"]
_SELECT = f"SELECT {', '.join(BATCH_FIELDS)} FROM batches"


class BatchStore(JournalCore):
    """Closed batches and their anchoring state."""

    def add_batch(self, first_seq: int, tree_size: int, root: bytes, *, closed_ms: int,
                  reason: str, cursor: str) -> Batch:
        """Record a closed batch and move the batcher's cursor past it, in one transaction."""
        with self._write() as db:
            row = db.execute("SELECT MAX(batch_seq) FROM batches").fetchone()
            batch = Batch((row[0] or 0) + 1, first_seq, tree_size, root, "built",
                          closed_ms, reason)
            db.execute(
                "INSERT INTO batches (batch_seq, first_seq, tree_size, root, status, "
                "closed_ms, reason) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (batch.batch_seq, first_seq, tree_size, root, "built", closed_ms, reason))
            put(db, {cursor: first_seq + tree_size - 1}, {})
        return batch

    def update_batch(self, batch_seq: int, **fields: Any) -> None:
        """Change a batch's anchoring fields (status, nonce, raw_tx, tx_hash, block ...)."""
        unknown = set(fields) - set(BATCH_FIELDS[4:])
        if unknown:
            raise ValueError(f"not batch fields: {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self._write() as db:
            db.execute(f"UPDATE batches SET {assignments} WHERE batch_seq = ?",
                       (*fields.values(), batch_seq))

    def batches(self, *, unanchored_only: bool = False) -> list[Batch]:
        where = " WHERE status != 'anchored'" if unanchored_only else ""
        return [Batch(*row) for row in self._all(f"{_SELECT}{where} ORDER BY batch_seq")]

    def batch(self, batch_seq: int) -> Batch | None:
        return self._batch_where("batch_seq = ?", (batch_seq,))

    def batch_for(self, seq: int) -> Batch | None:
        """The batch whose seq range holds record `seq`, if it has been closed."""
        return self._batch_where("first_seq <= ? AND first_seq + tree_size > ?", (seq, seq))

    def anchored_through(self) -> int:
        """Last seq of the anchored prefix: everything up to it has its root on the ledger.
        Batches anchor in order, so the newest anchored batch is near the end: look at the
        last 64 first, scan the table only after a long outage."""
        with self._read() as db:
            recent = db.execute("SELECT first_seq, tree_size, status FROM batches "
                                "ORDER BY batch_seq DESC LIMIT 64").fetchall()
            for first, size, status in recent:
                if status == "anchored":
                    return int(first + size - 1)
            if not recent:
                return 0
            row = db.execute("SELECT MAX(first_seq + tree_size - 1) FROM batches "
                             "WHERE status = 'anchored'").fetchone()
            return int(row[0] or 0)

    def _batch_where(self, where: str, args: tuple[Any, ...]) -> Batch | None:
        row = self._one(f"{_SELECT} WHERE {where}", args)
        return Batch(*row) if row else None
