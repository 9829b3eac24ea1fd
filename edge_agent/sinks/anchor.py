"""Anchoring sink: close Merkle batches over the journal and put their roots on the ledger.

Two steps, both driven by state in the journal so that a crash anywhere resumes correctly:
1. The batcher closes a batch (a contiguous seq range) on max leaves, on max age, or at once
   when a critical alert is pending, and commits the batch with its cursor in one transaction.
2. The submitter walks batches, oldest first, through
       built -> signed -> sent -> mined -> anchored
   The nonce and raw transaction are written to the journal before broadcast, so after a restart
   a signed batch is re-broadcast byte for byte, and the contract is asked first whether the
   root is already there. One transaction is in flight (sent, not mined) at a time; a mined
   batch waits for `confirmations` blocks on top while the next one is sent, so a deep
   confirmation setting does not throttle a busy gateway to one batch per N blocks.

What goes wrong on a real ledger, and what the submitter does:
- the node is down or times out: retried with capped, jittered backoff; ingest carries on;
- a sent tx is not mined within `stuck_after_s`: if the node forgot it (dropped from the
  mempool) it is re-broadcast; if the node still holds it, or refuses it as underpriced, it is
  replaced at the same nonce with fees bumped past the replacement rule (never above
  `max_fee_wei`; never on zero-gas networks, where only re-broadcasting makes sense);
- a reorg moves the anchoring tx to another block: the new block is recorded and confirmations
  count from it; a reorg drops it: the batch goes back to "signed" and the same bytes are sent
  again (same nonce, if still free; otherwise the batch is rebuilt with a new nonce);
- the tx reverted, or its nonce went to another tx: the batch goes back to "built"; building
  starts with an eth_call of the anchor, so a permanent refusal (gateway revoked) costs no gas.
The contract accepts batch k only after batch k-1 and only for the next seq range, so whatever
happens no batch is anchored twice and none is skipped; the journal keeps the batches' ranges.
Ledger calls are blocking calls, run in a worker thread. Nothing of web3 is imported here: a
registry is handed in, either `rpc_registry.RpcRegistry` (raw JSON-RPC, what a gateway runs:
no web3 at all, sinks/ledger.py) or the web3 `chain.AnchorRegistry` (tests, demo).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_agent.journal import Batch, Journal, JournalUnwritable, off_loop
from edge_agent.stats import ComponentStats
from edge_agent.tail import JournalTail
from ledger_client.abi import AnchorEvent
from ledger_client.errors import ChainError, ContractRevert, NonceConsumed, Underpriced
from ledger_client.evmtx import Fees, TxState, decode_raw
from ledger_client.merkle import MerkleTree, leaf_hash
from sealtrail.backoff import Backoff

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from ledger_client.chain import AnchorRegistry
    from ledger_client.rpc_registry import RpcRegistry
    from ledger_client.signer import Signer

log = logging.getLogger(__name__)
CURSOR = "anchor"
_CLEARED_TX = {"nonce": None, "raw_tx": None, "tx_hash": None, "block_number": None,
               "block_hash": None, "log_index": None}


class AnchorConflict(RuntimeError):
    """The ledger holds a different root for one of our batches: stop, a human must look."""


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    max_leaves: int = 1024
    max_age_s: float = 60.0
    close_on_critical: bool = True
    confirmations: int = 0  # blocks on top of the anchoring block before "anchored"
    gas_price_wei: int | None = None  # None: ask the node; 0 on free-gas consortium networks
    max_fee_wei: int | None = None  # replacements never offer more than this per gas
    poll_s: float = 1.0  # how often batches in flight are looked up on the ledger
    stuck_after_s: float = 60.0  # a sent tx not mined by then is re-broadcast or replaced
    backoff_s: tuple[float, float] = (0.5, 60.0)

    def __post_init__(self) -> None:
        if self.max_leaves < 1:
            raise ValueError(f"max_leaves must be >= 1, got {self.max_leaves}")
        if self.confirmations < 0:
            raise ValueError(f"confirmations must be >= 0, got {self.confirmations}")
        if min(self.max_age_s, self.poll_s, self.stuck_after_s) < 0:
            raise ValueError("ages and intervals must not be negative")
        Backoff(*self.backoff_s)  # refuses nonsense now rather than when the node first fails
        for name in ("gas_price_wei", "max_fee_wei"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")


class AnchorSink:
    name = CURSOR
    settles = False  # its cursor moves per batch, not per record: shutdown does not wait on it

    def __init__(self, journal: Journal, registry: AnchorRegistry | RpcRegistry,
                 account: LocalAccount | Signer,
                 policy: BatchPolicy | None = None):
        self.journal = journal
        self.registry = registry
        self.account = account
        self.policy = policy or BatchPolicy()
        self._pending_since: float | None = None
        self.position = journal.cursor(CURSOR)  # last seq inside a closed batch
        self.anchored = asyncio.Event()  # set each time a batch reaches "anchored"
        self.errors = 0
        self.counts: Counter[str] = Counter()  # rebroadcast, replaced, reorged, rebuilt, ...
        self.batched = self.anchored_records = self.waiting = 0  # records, for stats()
        self._sent_at: dict[int, float] = {}  # batch_seq -> last broadcast (this process)

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
        # leaf hashes a chunk at a time: a 4096-record batch is 2 MB of records, 130 kB of hashes
        hashes: list[bytes] = []
        for start in range(first, first + size, 512):
            end = min(first + size - 1, start + 511)
            hashes += [leaf_hash(s.signed) for s in self.journal.range(start, end)]
        root = MerkleTree(hashes).root
        batch = self.journal.add_batch(first, size, root, closed_ms=int(time.time() * 1000),
                                       reason=reason, cursor=CURSOR)
        log.info("batch %d closed (%s): seq %d..%d root %s", batch.batch_seq, reason, first,
                 batch.last_seq, root.hex()[:16])
        self.batched += size
        return batch

    def stats(self) -> ComponentStats:
        """Records closed into batches and records anchored (this process), records in
        batches not anchored yet (at the last look); errors and ledger events as events."""
        return ComponentStats(added=self.batched, written=self.anchored_records,
                              queue_depth=self.waiting, events={**self.counts,
                                                                "errors": self.errors})

    # -- submitting (blocking; runs in a worker thread) ------------------------------------

    def poll(self) -> tuple[int, bool]:
        """One pass over unanchored batches, oldest first: (batches anchored now, all done)."""
        anchored, done = 0, True
        batches = self.journal.batches(unanchored_only=True)
        self.waiting = sum(b.tree_size for b in batches)
        for batch in batches:
            status = self._advance(batch)
            if status == "anchored":
                anchored += 1
                self.waiting -= batch.tree_size
                self.anchored_records += batch.tree_size
                continue
            done = False
            if status != "mined":  # one transaction in flight: later batches wait for it
                break
        return anchored, done

    def _advance(self, batch: Batch) -> str:
        if batch.status == "mined":
            return self._follow_mined(batch)
        if batch.status == "sent":
            mined = self._receipt(batch)
            if mined is not None:
                return self._mined(batch, mined)
            batch = self._reload(batch)
            if batch.status == "built":
                return batch.status
        event = self._on_chain(batch)  # after a crash or a replacement: ask the contract first
        if event is not None:
            return self._mined(batch, event)
        if batch.status == "built":
            batch = self._sign(batch)
        if batch.status == "signed" or batch.batch_seq not in self._sent_at:
            batch = self._broadcast(batch)
            mined = self._receipt(batch) if batch.status == "sent" else None
            if mined is not None:  # automining and instant-finality nodes: no extra round
                return self._mined(batch, mined)
        elif batch.status == "sent":
            batch = self._unstick(batch)
        return batch.status

    def _on_chain(self, batch: Batch) -> AnchorEvent | None:
        on_chain = self.registry.root(self.journal.gateway_id, batch.batch_seq)
        if on_chain is None:
            return None
        if on_chain != batch.root:
            raise AnchorConflict(f"batch {batch.batch_seq}: ledger holds root {on_chain.hex()}, "
                                 f"journal has {batch.root.hex()}")
        event = self.registry.anchor_event(self.journal.gateway_id, batch.batch_seq)
        if event is None:
            raise ChainError(f"batch {batch.batch_seq}: root on chain, Anchored log not yet "
                             "visible on this node")
        return event

    def _receipt(self, batch: Batch) -> AnchorEvent | None:
        """The event of our own tx when mined; a reverted tx sends the batch back to built."""
        assert batch.tx_hash is not None
        try:
            return self.registry.receipt_event(batch.tx_hash)
        except ContractRevert as exc:
            log.error("batch %d: anchor tx 0x%s reverted (%s); rebuilding", batch.batch_seq,
                      batch.tx_hash.hex(), exc)
            self.counts["reverted"] += 1
            self._rebuild(batch)
            return None

    def _sign(self, batch: Batch) -> Batch:
        args = (batch.batch_seq, batch.root, batch.first_seq, batch.tree_size)
        self.registry.preflight_anchor(self.account.address, *args)
        nonce = self.registry.nonce(self.account.address)
        raw, tx_hash = self.registry.build_anchor_tx(self.account, *args, nonce=nonce,
                                                     gas_price=self.policy.gas_price_wei)
        # Durable before it exists anywhere else: a crash now re-sends these exact bytes.
        self.journal.update_batch(batch.batch_seq, status="signed", nonce=nonce, raw_tx=raw,
                                  tx_hash=tx_hash)
        return self._reload(batch)

    def _broadcast(self, batch: Batch) -> Batch:
        assert batch.raw_tx is not None
        try:
            self.registry.send_raw(batch.raw_tx)
        except NonceConsumed as exc:
            # The contract was asked this pass: the batch is not on chain, so the nonce went to
            # some other tx. Sign anew next pass (which asks the contract first again).
            log.warning("batch %d: %s; rebuilding", batch.batch_seq, exc)
            self._rebuild(batch)
            return self._reload(batch)
        except Underpriced as exc:
            log.warning("batch %d: %s; replacing with higher fees", batch.batch_seq, exc)
            return self._replace(batch)
        if batch.status != "sent":
            self.journal.update_batch(batch.batch_seq, status="sent")
        self._sent_at[batch.batch_seq] = time.monotonic()
        return self._reload(batch)

    def _unstick(self, batch: Batch) -> Batch:
        """A sent tx that is not mined after `stuck_after_s`: re-broadcast or replace it."""
        if time.monotonic() - self._sent_at[batch.batch_seq] < self.policy.stuck_after_s:
            return batch
        assert batch.tx_hash is not None
        state = self.registry.tx_state(batch.tx_hash)
        if state is TxState.MINED:
            return batch  # mined just now: the next pass records it
        if state is TxState.UNKNOWN:
            log.warning("batch %d: tx 0x%s is not in the node's pool; re-broadcasting",
                        batch.batch_seq, batch.tx_hash.hex())
            self.counts["rebroadcast"] += 1
            return self._broadcast(batch)
        return self._replace(batch)

    def _replace(self, batch: Batch) -> Batch:
        """Same nonce, higher fees; journaled before broadcast like the first signature."""
        assert batch.raw_tx is not None
        old = decode_raw(batch.raw_tx)
        if self.policy.gas_price_wei == 0:
            self._sent_at[batch.batch_seq] = time.monotonic()
            return batch  # zero-gas network: nothing to outbid; re-broadcast when forgotten
        floor = self.registry.suggest_fees(self.policy.gas_price_wei)
        if floor.legacy != old.fees.legacy:
            cap = floor.cost_cap()
            floor = Fees(gas_price=cap) if old.fees.legacy else Fees(max_fee=cap, tip=cap)
        fees = old.fees.bumped(floor)
        if self.policy.max_fee_wei is not None and fees.cost_cap() > self.policy.max_fee_wei:
            log.warning("batch %d: a replacement would pay %d wei/gas, above max_fee_wei %d; "
                        "waiting", batch.batch_seq, fees.cost_cap(), self.policy.max_fee_wei)
            self._sent_at[batch.batch_seq] = time.monotonic()
            return batch
        raw, tx_hash = self.registry.build_anchor_tx(
            self.account, batch.batch_seq, batch.root, batch.first_seq, batch.tree_size,
            nonce=old.nonce, fees=fees)
        self.journal.update_batch(batch.batch_seq, status="signed", raw_tx=raw, tx_hash=tx_hash)
        self.counts["replaced"] += 1
        log.warning("batch %d: replacing tx 0x%s with 0x%s at nonce %d (%d wei/gas)",
                    batch.batch_seq, old.hash.hex(), tx_hash.hex(), old.nonce, fees.cost_cap())
        return self._broadcast(self._reload(batch))

    def _rebuild(self, batch: Batch) -> None:
        self.counts["rebuilt"] += 1
        self._sent_at.pop(batch.batch_seq, None)
        self.journal.update_batch(batch.batch_seq, status="built", **_CLEARED_TX)

    def _mined(self, batch: Batch, event: AnchorEvent) -> str:
        if event.root != batch.root:
            raise AnchorConflict(f"batch {batch.batch_seq}: anchored root {event.root.hex()} is "
                                 f"not the journal's {batch.root.hex()}")
        self._sent_at.pop(batch.batch_seq, None)
        # already deep enough (0 confirmations, or found late): one journal write, not two
        depth = (self.registry.head_block() - event.block_number
                 if self.policy.confirmations else 0)
        status = "anchored" if depth >= self.policy.confirmations else "mined"
        self.journal.update_batch(
            batch.batch_seq, status=status, tx_hash=event.tx_hash,
            chain_id=self.registry.chain_id, contract=self.registry.address,
            block_number=event.block_number, block_hash=event.block_hash,
            log_index=event.log_index)
        if status == "anchored":
            log.info("batch %d anchored in block %d (%d confirmations)", batch.batch_seq,
                     event.block_number, depth)
            return status
        return self._confirm(self._reload(batch))

    def _follow_mined(self, batch: Batch) -> str:
        """Confirmations for a mined batch, and what a reorg did to it since the last look."""
        assert batch.tx_hash is not None
        receipt = self.registry.receipt(batch.tx_hash)
        if receipt is not None and receipt["status"] == 1:
            if bytes(receipt["blockHash"]) == batch.block_hash:
                return self._confirm(batch)
            log.warning("batch %d: a reorg moved its anchor from block %s to block %d",
                        batch.batch_seq, batch.block_number, receipt["blockNumber"])
            self.counts["moved"] += 1
            return self._mined(batch, self.registry.event_from_receipt(receipt))
        event = self._on_chain(batch)  # perhaps an earlier twin of the tx made it instead
        if event is not None:
            return self._mined(batch, event)
        log.warning("batch %d: a reorg removed its anchor from block %s; sending it again",
                    batch.batch_seq, batch.block_number)
        self.counts["reorged"] += 1
        self.journal.update_batch(batch.batch_seq, status="signed", block_number=None,
                                  block_hash=None, log_index=None)
        return self._advance(self._reload(batch))

    def _confirm(self, batch: Batch) -> str:
        assert batch.block_number is not None
        depth = self.registry.head_block() - batch.block_number
        if depth < self.policy.confirmations:
            return "mined"
        self.journal.update_batch(batch.batch_seq, status="anchored")
        log.info("batch %d anchored in block %d (%d confirmations)", batch.batch_seq,
                 batch.block_number, depth)
        return "anchored"

    def _reload(self, batch: Batch) -> Batch:
        reloaded = self.journal.batch(batch.batch_seq)
        assert reloaded is not None
        return reloaded

    async def submit_pending(self) -> bool:
        """One pass in a worker thread; False while a batch still waits on the ledger."""
        anchored, done = await asyncio.to_thread(self.poll)
        if anchored:
            self.anchored.set()
        return done

    # -- loop ------------------------------------------------------------------------------

    async def run(self, tail: JournalTail) -> None:
        """New records only drive batch closing; the ledger is asked when a batch has just
        closed or an in-flight one is due for its next poll, never once per reading."""
        backoff = Backoff(*self.policy.backoff_s)
        next_poll = 0.0  # at start, look at whatever a previous run left unanchored
        while True:
            try:
                closed = await off_loop(self.close_due_batches, tail.head)
            except JournalUnwritable as exc:  # a full disk: ingest waits too; try later
                self.errors += 1
                delay = backoff.next()
                log.warning("anchoring: %s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                continue
            if closed or time.monotonic() >= next_poll:
                try:
                    idle = await self.submit_pending()
                    backoff.reset()
                except AnchorConflict:
                    raise
                except Exception as exc:  # node down, timeout, rejected tx: retry, keep ingesting
                    self.errors += 1
                    delay = backoff.next()
                    log.warning("anchoring: %s: %s; retrying in %.1fs", type(exc).__name__,
                                exc, delay)
                    next_poll = time.monotonic() + delay
                else:
                    next_poll = math.inf if idle else time.monotonic() + self.policy.poll_s
            now = time.monotonic()
            wait = next_poll - now
            if self._pending_since is not None:
                wait = min(wait, self._pending_since + self.policy.max_age_s - now)
            await tail.wait_beyond(tail.head, timeout=max(0.05, min(wait, 3600.0)))

    async def flush(self, head: int) -> None:
        """Close and anchor everything up to `head` (graceful shutdown, demo). With
        confirmations > 0 this returns only once the ledger has produced those blocks."""
        await off_loop(self.close_due_batches, head, force=True)
        while not await self.submit_pending():
            await asyncio.sleep(min(0.2, self.policy.poll_s))
