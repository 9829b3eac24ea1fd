"""Is an alert anchored? The gateway's claim (its anchor receipt), checked two ways.

Offline, from the store: when the store holds every record of the claimed batch, the batch's
Merkle tree is rebuilt and must give the claimed root (then the alert's inclusion proof is
known). Online, when a ``[ledger]`` is configured: the contract's ``roots(gw, batch)`` must be
that root, with the confirmations counted from the claimed block. Ledger answers are cached per
batch (an anchored root never changes; a missing one is asked again after ``ttl_s``) and asked
on a worker thread with a timeout, so a slow or dead node never holds up a page: the answer is
then "not checked yet" and the next look finds it in the cache.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from customs.store import AnchorClaim, SqlStore
from ledger_client.merkle import MerkleTree

if TYPE_CHECKING:
    from ledger_client.chain import AnchorRegistry


@dataclass(frozen=True)
class LedgerAnswer:
    root_matches: bool | None  # None: the contract holds no root for that batch
    head_block: int
    at_ms: int


class AnchorChecker:
    def __init__(self, store: SqlStore, registry: AnchorRegistry | None = None, *,
                 timeout_s: float = 5.0, ttl_s: float = 30.0, min_confirmations: int = 0):
        self.store = store
        self.registry = registry
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self.min_confirmations = min_confirmations
        self._pool = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="ledger-check")
        self._cache: dict[tuple[str, int, str], LedgerAnswer] = {}
        self._pending: dict[tuple[str, int, str], concurrent.futures.Future[LedgerAnswer]] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def check(self, gw: str, seq: int) -> dict[str, Any]:
        claim = self.store.anchor_of(gw, seq)
        if claim is None:
            return {"status": "not anchored yet",
                    "detail": "the gateway has sent no anchor receipt covering this record"}
        out: dict[str, Any] = {"batch": claim.batch_seq, "first_seq": claim.first_seq,
                               "tree_size": claim.tree_size, "block": claim.block_number,
                               "tx": claim.tx_hash, "chain_id": claim.chain_id,
                               "contract": claim.contract}
        held = self.store.held_seqs(gw, claim.first_seq, claim.last_seq)
        if held == claim.tree_size:
            leaves = [r.signed for r in self.store.records(gw, first_seq=claim.first_seq,
                                                          last_seq=claim.last_seq)]
            out["tree"] = ("the stored records rebuild the claimed root"
                           if MerkleTree.from_leaves(leaves).root.hex() == claim.root
                           else "MISMATCH: the stored records do not give the claimed root")
        else:
            out["tree"] = (f"the store holds {held} of the batch's {claim.tree_size} records: "
                           "inclusion cannot be rebuilt here")
        if self.registry is None:
            out["status"] = "claimed by the gateway (no ledger configured to check it)"
            return out
        answer = self._ledger(claim)
        if answer is None:
            out["status"] = "ledger not checked yet (the node is slow or unreachable)"
        elif answer.root_matches is None:
            out["status"] = "NOT on the ledger: the contract holds no root for this batch"
        elif not answer.root_matches:
            out["status"] = "MISMATCH: the contract holds another root for this batch"
        else:
            confirmations = max(answer.head_block - claim.block_number + 1, 0)
            out["confirmations"] = confirmations
            out["status"] = ("anchored" if confirmations >= self.min_confirmations
                             else f"anchored, {confirmations} confirmation(s) so far")
        return out

    def _ledger(self, claim: AnchorClaim) -> LedgerAnswer | None:
        key = (claim.gw, claim.batch_seq, claim.root)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and now - cached.at_ms / 1000 < self.ttl_s:
                return cached  # older answers are asked again (confirmations grow, a missing
            future = self._pending.get(key)  # root may have arrived); kept meanwhile
            if future is None:
                future = self._pool.submit(self._ask, claim)
                self._pending[key] = future
        try:
            answer = future.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            return cached
        except Exception:
            with self._lock:
                self._pending.pop(key, None)
            return cached
        with self._lock:
            self._pending.pop(key, None)
            self._cache[key] = answer
        return answer

    def _ask(self, claim: AnchorClaim) -> LedgerAnswer:
        assert self.registry is not None
        root = self.registry.root(claim.gw, claim.batch_seq)
        head = self.registry.w3.eth.block_number
        matches = None if root is None else root.hex() == claim.root.removeprefix("0x")
        return LedgerAnswer(matches, int(head), int(time.monotonic() * 1000))
