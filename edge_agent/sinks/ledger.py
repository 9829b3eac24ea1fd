"""The anchor sink as gateway.toml configures it: the ledger client made when first needed.

A gateway must be reading within 2 s of power coming back, and its steady RSS with anchoring
on must stay under 80 MB (issue 16). The ledger client is therefore `rpc_registry.RpcRegistry`
(raw JSON-RPC) with a `signer.Signer` (secp256k1 through `cryptography`): web3 and eth-account,
~50 MB of RSS and ~1 s of imports, are never loaded by an agent. Nothing of the ledger is
needed before a batch closes (max_age_s, 60 s by default, or a critical alert), so
`LedgerAnchor` runs the anchor sink from the first second (it closes batches from the journal
alone) and hands it a registry and an account that are made on first use, in the sink's worker
thread: connect, check the chain id, the contract and this gateway's registration, load the
EVM key.

A ledger that is unreachable, or on another chain, fails that first use; the sink's own retry
(capped, jittered backoff) tries again while ingest and alerts carry on, as before: a truck
leaving the depot with no signal anchors once the node answers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from edge_agent.config import LedgerConfig
from edge_agent.journal import Journal
from edge_agent.sinks.anchor import AnchorConflict, AnchorSink, BatchPolicy
from edge_agent.stats import ComponentStats
from edge_agent.tail import JournalTail
from ledger_client.errors import ChainError

if TYPE_CHECKING:
    from ledger_client.rpc_registry import RpcRegistry
    from ledger_client.signer import Signer

log = logging.getLogger(__name__)


class OnFirstUse:
    """Stands for the object `make()` returns, made at the first attribute access.

    `make` may fail (the node is down); it is called again at the next access, so the
    caller's retry is the retry. Made under a lock: the anchor sink's worker thread and the
    event loop (metrics) may ask at once.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._target: Any = None
        self._lock = threading.Lock()

    @property
    def made(self) -> bool:
        return self._target is not None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        target = self._target
        if target is None:
            with self._lock:
                if self._target is None:
                    self._target = self._make()
                target = self._target
        return getattr(target, name)


class LedgerAnchor:
    """The anchor sink, with the ledger client deferred (see the module docstring)."""

    name = "anchor"
    settles = False

    def __init__(self, journal: Journal, cfg: LedgerConfig, public_key: str):
        self.journal = journal
        self.public_key = public_key
        self.cfg = cfg
        self.failed: str | None = None
        self._asked = False  # the ledger was needed at least once
        self._account = OnFirstUse(self._load_account)
        self._registry = OnFirstUse(self._connect)
        self.sink = AnchorSink(journal, self._registry, self._account, BatchPolicy(  # type: ignore[arg-type]
            max_leaves=cfg.max_leaves, max_age_s=cfg.max_age_s,
            close_on_critical=cfg.close_on_critical, confirmations=cfg.confirmations,
            gas_price_wei=cfg.gas_price_wei, max_fee_wei=cfg.max_fee_wei, poll_s=cfg.poll_s,
            stuck_after_s=cfg.stuck_after_s))

    @property
    def connected(self) -> bool | None:
        """None until the ledger was first needed, then whether it answered."""
        if self._registry.made:
            return True
        return False if self._asked else None

    @property
    def position(self) -> int:
        return self.sink.position

    @property
    def counts(self) -> Counter[str]:
        return self.sink.counts

    @property
    def errors(self) -> int:
        return self.sink.errors

    def stats(self) -> ComponentStats:
        return self.sink.stats()

    def _load_account(self) -> Signer:
        from ledger_client.signer import Signer
        return Signer.from_file(self.cfg.evm_key)

    def _connect(self) -> RpcRegistry:
        from ledger_client.rpc import JsonRpc
        from ledger_client.rpc_registry import RpcRegistry
        self._asked = True
        cfg, gateway_id = self.cfg, self.journal.gateway_id
        registry = RpcRegistry(JsonRpc(cfg.rpc, timeout=cfg.timeout_s), cfg.contract,
                               from_block=cfg.from_block)
        if registry.chain_id != cfg.chain_id:
            raise ChainError(f"{cfg.rpc} is chain {registry.chain_id}, not the expected "
                             f"chain {cfg.chain_id}")
        registry.check_deployed()
        info = registry.gateway(gateway_id)
        submitter = self._account.address
        if info is None:
            log.error("ledger: gateway %s is not registered on contract %s; anchoring will be "
                      "refused until customs registers it", gateway_id, cfg.contract)
        elif info.pubkey.hex() != self.public_key:
            log.error("ledger: gateway %s is registered with key %s…, not this gateway's key "
                      "%s…; verifiers will reject its records", gateway_id,
                      info.pubkey.hex()[:16], self.public_key[:16])
        elif info.submitter.lower() != submitter.lower():
            log.error("ledger: contract %s has submitter %s for gateway %s, but ledger.evm_key "
                      "is %s; anchoring will be refused", cfg.contract, info.submitter,
                      gateway_id, submitter)
        log.info("ledger: chain %d, contract %s, submitter %s", cfg.chain_id, registry.address,
                 submitter)
        return registry

    async def run(self, tail: JournalTail) -> None:
        try:
            await self.sink.run(tail)
        except AnchorConflict as exc:
            # A human must look; ingest, rules and alerts carry on meanwhile.
            self.failed = str(exc)
            log.critical("anchoring stopped: %s", exc)
            await asyncio.Event().wait()
