"""Anchoring sink: close Merkle batches over the journal and put their roots on the ledger.

Two steps, both driven by state in the journal so that a crash anywhere resumes correctly:
1. The batcher closes a batch (a contiguous seq range) on max leaves, on max age, or at once
   when a critical alert is pending, and commits the batch with its cursor in one transaction.
2. The submitter walks the oldest unanchored batch through built -> signed -> sent -> anchored.
   The nonce and raw transaction are written to the journal before broadcast; after a restart a
   signed batch is re-broadcast byte for byte (never re-signed with a new nonce), and the
   contract is asked first whether the root is already there. One transaction is in flight.
Ledger calls are blocking web3 calls, run in a worker thread; a node that is down is retried with
capped, jittered backoff while ingest and the other sinks carry on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from edge_agent.journal import Batch, Journal
from edge_agent.tail import JournalTail
from ledger_client.chain import AnchorEvent, AnchorRegistry
from ledger_client.merkle import MerkleTree

log = logging.getLogger(__name__)
CURSOR = "anchor"


class AnchorConflict(RuntimeError):
    """The ledger holds a different root for one of our batches: stop, a human must look."""


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    max_leaves: int = 1024
    max_age_s: float = 60.0
    close_on_critical: bool = True
    confirmations: int = 0
    gas_price_wei: int | None = None  # None: ask the node; 0 on free-gas consortium networks
    poll_s: float = 1.0  # how often an in-flight transaction is looked up on the ledger
    backoff_s: tuple[float, float] = (0.5, 60.0)


class AnchorSink:
    name = CURSOR
    settles = False  # its cursor moves per batch, not per record: shutdown does not wait on it

    def __init__(self, journal: Journal, registry: AnchorRegistry, account: LocalAccount,
                 policy: BatchPolicy | None = None):
        self.journal = journal
        self.registry = registry
        self.account = account
        self.policy = policy or BatchPolicy()
        self._pending_since: float | None = None
        self.position = journal.cursor(CURSOR)  # last seq inside a closed batch
        self.anchored = asyncio.Event()  # set each time a batch reaches "anchored"
        self.errors = 0

    # -- batching --------------------------------------------------------------------------

    def close_due_batches(self, head: int, *, force: bool = False) -> list[Batch]:
        """Close every batch that is due now; `force` closes whatever is pending (shutdown)."""
        closed = []
        cursor = self.journal.cursor(CURSOR)
        while head > cursor:
            pending = head - cursor
            now = time.monotonic()
            if self._pending_since is None:
                self._pending_since = now
            if pending >= self.policy.max_leaves:
                reason, size = "max_leaves", self.policy.max_leaves
            elif force:
                reason, size = "flush", pending
            elif self.policy.close_on_critical and self._critical_pending(cursor):
                reason, size = "critical_alert", pending
            elif now - self._pending_since >= self.policy.max_age_s:
                reason, size = "max_age", pending
            else:
                break
            closed.append(self._close(cursor + 1, size, reason))
            cursor += size
            self.position = cursor
            self._pending_since = None if cursor >= head else now
        return closed

    def _critical_pending(self, cursor: int) -> bool:
        return any(a.record()["body"].get("severity") == "critical"
                   for a in self.journal.alerts_after(cursor))

    def _close(self, first: int, size: int, reason: str) -> Batch:
        signed = [s.signed for s in self.journal.range(first, first + size - 1)]
        root = MerkleTree.from_leaves(signed).root
        batch = self.journal.add_batch(first, size, root, closed_ms=int(time.time() * 1000),
                                       reason=reason, cursor=CURSOR)
        log.info("batch %d closed (%s): seq %d..%d root %s", batch.batch_seq, reason, first,
                 batch.last_seq, root.hex()[:16])
        return batch

    # -- submitting ------------------------------------------------------------------------

    def step(self, batch: Batch) -> bool:
        """Move one batch forward by one blocking ledger interaction; True once anchored."""
        gw = self.journal.gateway_id
        if batch.status in ("built", "signed", "sent"):
            on_chain = self.registry.root(gw, batch.batch_seq)
            if on_chain is not None:
                if on_chain != batch.root:
                    raise AnchorConflict(f"batch {batch.batch_seq}: ledger holds root "
                                         f"{on_chain.hex()}, journal has {batch.root.hex()}")
                event = self.registry.anchor_event(gw, batch.batch_seq)
                if event is not None:
                    return self._confirm(batch, event)
                return False
        if batch.status == "built":
            nonce = self.registry.w3.eth.get_transaction_count(self.account.address, "pending")
            raw, tx_hash = self.registry.build_anchor_tx(
                self.account, batch.batch_seq, batch.root, batch.first_seq, batch.tree_size,
                nonce=nonce, gas_price=self.policy.gas_price_wei)
            # Durable before it exists anywhere else: a crash now re-sends these exact bytes.
            self.journal.update_batch(batch.batch_seq, status="signed", nonce=nonce,
                                      raw_tx=raw, tx_hash=tx_hash)
            batch = self._reload(batch)
        if batch.status == "signed":
            assert batch.raw_tx is not None
            self.registry.send_raw(batch.raw_tx)
            self.journal.update_batch(batch.batch_seq, status="sent")
            batch = self._reload(batch)
        if batch.status == "sent":
            assert batch.tx_hash is not None
            event = self.registry.receipt_event(batch.tx_hash)
            if event is not None:
                return self._confirm(batch, event)
        return False

    def _confirm(self, batch: Batch, event: AnchorEvent) -> bool:
        depth = self.registry.w3.eth.block_number - event.block_number
        if depth < self.policy.confirmations:
            return False
        self.journal.update_batch(
            batch.batch_seq, status="anchored", tx_hash=event.tx_hash,
            chain_id=self.registry.w3.eth.chain_id, contract=self.registry.address,
            block_number=event.block_number, block_hash=event.block_hash,
            log_index=event.log_index)
        log.info("batch %d anchored in block %d", batch.batch_seq, event.block_number)
        return True

    def _reload(self, batch: Batch) -> Batch:
        reloaded = self.journal.batch(batch.batch_seq)
        assert reloaded is not None
        return reloaded

    async def submit_pending(self) -> bool:
        """Advance unanchored batches in order; False when one is still waiting on the ledger."""
        for batch in self.journal.batches(unanchored_only=True):
            if not await asyncio.to_thread(self.step, batch):
                return False
            self.anchored.set()
        return True

    # -- loop ------------------------------------------------------------------------------

    async def run(self, tail: JournalTail) -> None:
        """New records only drive batch closing; the ledger is asked when a batch has just
        closed or an in-flight one is due for its next poll, never once per reading."""
        delay = self.policy.backoff_s[0]
        next_poll = 0.0  # at start, look at whatever a previous run left unanchored
        while True:
            closed = self.close_due_batches(tail.head)
            if closed or time.monotonic() >= next_poll:
                try:
                    idle = await self.submit_pending()
                    delay = self.policy.backoff_s[0]
                except AnchorConflict:
                    raise
                except Exception as exc:  # node down, timeout, rejected tx: retry, keep ingesting
                    self.errors += 1
                    log.warning("anchoring: %s: %s; retrying in %.1fs", type(exc).__name__,
                                exc, delay)
                    next_poll = time.monotonic() + delay * random.uniform(0.8, 1.2)
                    delay = min(delay * 2, self.policy.backoff_s[1])
                else:
                    next_poll = math.inf if idle else time.monotonic() + self.policy.poll_s
            now = time.monotonic()
            wait = next_poll - now
            if self._pending_since is not None:
                wait = min(wait, self._pending_since + self.policy.max_age_s - now)
            await tail.wait_beyond(tail.head, timeout=max(0.05, min(wait, 3600.0)))

    async def flush(self, head: int) -> None:
        """Close and anchor everything up to `head` (graceful shutdown, demo)."""
        self.close_due_batches(head, force=True)
        while not await self.submit_pending():
            await asyncio.sleep(0.2)
