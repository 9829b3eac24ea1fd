"""Anchoring the customs audit chain on the ledger, with the gateways' machinery.

The chain is registered on SealTrailAnchor like a gateway (its id = the office's audit-chain
id, its key = the service key's public half, its submitter = the customs EVM account), and its
entries are cut into RFC 9162 batches (contiguous seq ranges, ``ledger_client.merkle``) whose
roots go to ``AnchorRegistry.anchor`` in order, one transaction in flight.

Crash safety, as on a gateway: a batch is written to ``audit_batches`` (status ``built``)
before anything is broadcast, and its transaction hash (status ``sent``) before the raw
transaction leaves; after a restart, or whenever a transaction is not found, the contract is
asked first (``roots(id, batch)``): a root already there is that batch anchored, whoever sent
it; only a batch the contract does not hold is signed and sent again. Several service
instances on one PostgreSQL store may all run this: the batch row's key decides who cut it,
and the contract accepts each batch once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from customs.store import SqlStore, now_ms
from customs.store.console_queries import AuditBatchRow
from ledger_client.merkle import MerkleTree
from sealtrail.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from ledger_client.chain import AnchorRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnchorPolicy:
    max_leaves: int = 256
    max_age_s: float = 60.0
    poll_s: float = 2.0
    confirmations: int = 0
    gas_price: int | None = None


class AuditAnchorer:
    def __init__(self, store: SqlStore, registry: AnchorRegistry, account: LocalAccount,
                 audit_id: str, public_key: bytes, policy: AnchorPolicy | None = None):
        self.store = store
        self.registry = registry
        self.account = account
        self.audit_id = audit_id
        self.public_key = public_key
        self.policy = policy or AnchorPolicy()
        self.anchored = 0
        self._ratelog = RateLimitedLog(log)

    async def run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.step)
            except Exception as exc:  # node or store down: the next pass tries again
                self._ratelog.warning("audit anchoring", "audit chain anchoring: %s", exc)
            await asyncio.sleep(self.policy.poll_s)

    def registered(self) -> bool:
        info = self.registry.gateway(self.audit_id)
        if info is None:
            self._ratelog.warning("audit unregistered", "audit chain %r is not registered on "
                                  "the contract; anchoring waits (`sealtrail ledger "
                                  "register-gateway`)", self.audit_id)
            return False
        if info.pubkey != self.public_key:
            self._ratelog.warning("audit key", "audit chain %r is registered with another key "
                                  "than this service key; not anchoring", self.audit_id)
            return False
        return not info.revoked

    def step(self, *, now: float | None = None) -> AuditBatchRow | None:
        """One pass: finish the batch in flight, or cut the next one. The batch it worked on."""
        batches = self.store.audit_batches()
        last = batches[-1] if batches else None
        if last is not None and last.status != "anchored":
            if not self.registered():
                return last
            return self._advance(last)
        first = last.last_seq + 1 if last else 1
        head = self.store.audit_head()
        count = head - first + 1
        if count <= 0:
            return None
        oldest = self.store.audit_entries(first_seq=first, last_seq=first)[0]
        age_s = ((now if now is not None else time.time()) * 1000 - oldest.t_ms) / 1000
        if count < self.policy.max_leaves and age_s < self.policy.max_age_s:
            return None
        size = min(count, self.policy.max_leaves)
        leaves = [e.signed for e in self.store.audit_entries(first_seq=first,
                                                             last_seq=first + size - 1)]
        batch_seq = (last.batch_seq + 1) if last else 1
        self.store.add_audit_batch(batch_seq, first, size, MerkleTree.from_leaves(leaves).root)
        batch = self.store.audit_batches()[-1]
        if self.registered():
            return self._advance(batch)
        return batch

    def _advance(self, batch: AuditBatchRow) -> AuditBatchRow:
        registry = self.registry
        on_chain = registry.root(self.audit_id, batch.batch_seq)
        if on_chain is not None:
            if on_chain != batch.root:
                raise RuntimeError(f"batch {batch.batch_seq}: the contract holds another root "
                                   "for the audit chain (two customs services with one id?)")
            return self._settle(batch)
        if batch.status == "sent" and batch.tx_hash is not None:
            if registry.receipt_event(batch.tx_hash) is not None:
                return self._settle(batch)
            try:
                registry.w3.eth.get_transaction(batch.tx_hash)
                return batch  # pending: wait
            except Exception:
                pass  # dropped by the node: build it again below
        nonce = registry.w3.eth.get_transaction_count(self.account.address, "pending")
        raw, tx_hash = registry.build_anchor_tx(self.account, batch.batch_seq, batch.root,
                                                batch.first_seq, batch.tree_size, nonce=nonce,
                                                gas_price=self.policy.gas_price)
        self.store.update_audit_batch(batch.batch_seq, status="sent", tx_hash=tx_hash,
                                      chain_id=registry.chain_id,
                                      contract=registry.address.lower())
        registry.send_raw(raw)
        return self.store.audit_batches()[batch.batch_seq - 1]

    def _settle(self, batch: AuditBatchRow) -> AuditBatchRow:
        event = self.registry.anchor_event(self.audit_id, batch.batch_seq,
                                           block_number=batch.block_number)
        if event is None:
            return batch
        head = self.registry.w3.eth.block_number
        if head - event.block_number + 1 < self.policy.confirmations:
            return batch
        self.store.update_audit_batch(batch.batch_seq, status="anchored",
                                      tx_hash=event.tx_hash, block_number=event.block_number,
                                      block_hash=event.block_hash, log_index=event.log_index,
                                      chain_id=self.registry.chain_id,
                                      contract=self.registry.address.lower())
        self.anchored += 1
        log.info("audit batch %d (entries %d..%d) anchored in block %d", batch.batch_seq,
                 batch.first_seq, batch.last_seq, event.block_number)
        return self.store.audit_batches()[batch.batch_seq - 1]


def ages_ms(store: SqlStore) -> int:
    """Milliseconds since the oldest entry not yet in a batch (0 if none): for metrics."""
    batches = store.audit_batches()
    first = batches[-1].last_seq + 1 if batches else 1
    rows = store.audit_entries(first_seq=first, last_seq=first)
    return now_ms() - rows[0].t_ms if rows else 0
