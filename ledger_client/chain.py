"""EVM side of anchoring: connect to a node, deploy/administer SealTrailAnchor, build anchor
transactions, read anchors back for verification.

Building and sending are separate on purpose: the agent journals (batch, nonce, raw tx) BEFORE
broadcasting, so after a crash it re-sends the very same bytes (same hash) instead of signing a
second, conflicting transaction (the raw-transaction lifecycle is in `tx`). Reads come from
contract state (`gateway`, `root`) and from logs (`anchor_event`), because a verifier needs the
block hash and log index of the anchor.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import TransactionNotFound
from web3.middleware import ExtraDataToPOAMiddleware
from web3.types import TxParams, TxReceipt

from ledger_client import reverts, tx
from ledger_client.abi import ANCHORED_SIG as ANCHORED_SIG  # abi: shared with reader; re-exported
from ledger_client.abi import ANCHORED_TOPIC, CHAIN_DOMAIN, LOG_WINDOW, gateway_key
from ledger_client.abi import TRUST_ALL as TRUST_ALL
from ledger_client.abi import AnchorEvent as AnchorEvent
from ledger_client.abi import GatewayInfo as GatewayInfo
from ledger_client.errors import ChainError, ContractRevert
from ledger_client.errors import NonceConsumed as NonceConsumed  # re-exported for callers
from ledger_client.errors import Underpriced as Underpriced
from ledger_client.reverts import RevertDecoder
from ledger_client.tx import Fees, Sender
from ledger_client.tx import fund as fund
from sealtrail.errors import UsageError

ARTIFACT_PATH = Path(__file__).resolve().parent / "contracts" / "SealTrailAnchor.json"


@cache
def load_artifact() -> dict[str, Any]:
    """The committed compile output (abi, bytecode, compiler, settings)."""
    artifact: dict[str, Any] = json.loads(ARTIFACT_PATH.read_text(encoding="utf-8"))
    return artifact


def genesis_chain_hash(gateway_id: str) -> bytes:
    """chainHash_0 = keccak256("sealtrail/v1" || gateway_key), set at registration."""
    return keccak(CHAIN_DOMAIN + gateway_key(gateway_id))


def next_chain_hash(prev: bytes, root: bytes, first_seq: int, tree_size: int) -> bytes:
    """chainHash_b = keccak256(chainHash_{b-1} || root || uint64 firstSeq || uint64 treeSize)."""
    return keccak(prev + root + first_seq.to_bytes(8, "big") + tree_size.to_bytes(8, "big"))


def connect(rpc_url: str | None = None, *, poa: bool | None = None, timeout: float = 10,
            chain_id: int | None = None) -> Web3:
    """None -> a fresh in-process eth-tester chain; http(s) URL -> that node.

    Besu QBFT/Clique (and other POA) blocks carry more than 32 bytes of extraData, which web3's
    validation rejects; with poa=None we look at the raw genesis and latest blocks and add the
    POA middleware only where it is needed. `chain_id`: refuse a node on another chain (a
    gateway pointed at the wrong network must not sign transactions for it).
    """
    if rpc_url is None:
        # imported here: eth-tester and py-evm cost a gateway on a real node ~7 MB of RSS, and
        # they are the `demo` extra, not installed on a gateway
        try:
            from web3 import EthereumTesterProvider

            w3 = Web3(EthereumTesterProvider())
        except ImportError as exc:
            raise UsageError(f"the in-process test chain needs eth-tester ({exc.name} is not "
                             "installed): pip install 'sealtrail[demo]', or give an RPC "
                             "URL") from None
    elif rpc_url.startswith(("http://", "https://")):
        w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    else:
        raise UsageError(f"unsupported ledger RPC URL {rpc_url!r}: use http(s)://host:port")
    if poa is None and rpc_url is not None:
        poa = any(_long_extra_data(w3, rpc_url, block) for block in ("0x0", "latest"))
    if poa:
        w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    if chain_id is not None and w3.eth.chain_id != chain_id:
        raise ChainError(f"{rpc_url or 'eth-tester'} is chain {w3.eth.chain_id}, "
                         f"not the expected chain {chain_id}")
    return w3


def _long_extra_data(w3: Web3, rpc_url: str, block: str) -> bool:
    # Raw request: the formatted one would already fail validation on a POA chain.
    reply = w3.provider.make_request("eth_getBlockByNumber", [block, False])  # type: ignore[arg-type]
    if reply.get("error") or not reply.get("result"):
        raise ChainError(f"cannot read block {block} from {rpc_url}: {reply.get('error')}")
    return len(bytes.fromhex(reply["result"]["extraData"][2:])) > 32


class AnchorRegistry:
    """A deployed SealTrailAnchor contract."""

    def __init__(self, w3: Web3, address: str, *, from_block: int = 0,
                 log_window: int = LOG_WINDOW) -> None:
        """`from_block`: where log searches start (the deployment block saves work on Besu);
        `log_window`: the node's eth_getLogs range limit (Besu: --rpc-max-logs-range)."""
        if log_window < 1:
            raise ValueError(f"log_window must be >= 1, got {log_window}")
        self.w3 = w3
        self.address = Web3.to_checksum_address(address)
        self.from_block = from_block
        self.log_window = log_window
        self.contract = w3.eth.contract(address=self.address, abi=load_artifact()["abi"])
        self.decoder = RevertDecoder(w3, load_artifact()["abi"])
        self.deploy_receipt: TxReceipt | None = None  # set by `deploy`
        self._chain_id: int | None = None

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self.w3.eth.chain_id
        return self._chain_id

    def head_block(self) -> int:
        """The node's latest block number (what confirmations are counted from)."""
        return int(self.w3.eth.block_number)

    def decode_revert(self, data: bytes) -> ContractRevert:
        """Turn revert bytes into ContractRevert naming the custom error (or Error/Panic)."""
        return self.decoder.decode(data)

    def check_deployed(self) -> None:
        """ChainError unless there is contract code at the address (a wrong --contract, or a
        chain that was reset, would otherwise look like 'gateway not registered')."""
        if not self.w3.eth.get_code(self.address):
            raise ChainError(f"no contract at {self.address} on chain {self.chain_id}")

    # --- administration (customs) ---------------------------------------------------------
    @classmethod
    def deploy(cls, w3: Web3, deployer: Sender, *, gas_price: int | None = None) -> AnchorRegistry:
        """Deploy a fresh registry; the deployer becomes `customs`, the registry admin."""
        art = load_artifact()
        factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        receipt = tx.send_call(w3, factory.constructor(), deployer, gas_price=gas_price)
        if receipt["status"] != 1 or not receipt["contractAddress"]:
            raise ChainError(f"deployment failed: 0x{bytes(receipt['transactionHash']).hex()}")
        registry = cls(w3, receipt["contractAddress"], from_block=receipt["blockNumber"])
        registry.deploy_receipt = receipt
        return registry

    def register_gateway(self, gateway_id: str, pubkey: bytes, submitter: str, sender: Sender,
                         *, gas_price: int | None = None) -> TxReceipt:
        """Customs only. `pubkey` is the raw 32-byte Ed25519 public key of the gateway."""
        if len(pubkey) != 32:
            raise ValueError(f"Ed25519 public key must be 32 raw bytes, got {len(pubkey)}")
        fn = self.contract.functions.registerGateway(
            gateway_key(gateway_id), pubkey, Web3.to_checksum_address(submitter)
        )
        return self._transact(fn, sender, gas_price)

    def revoke_gateway(self, gateway_id: str, sender: Sender, *,
                       last_trusted_batch: int = TRUST_ALL,
                       gas_price: int | None = None) -> TxReceipt:
        """Customs only. Anchoring stops; registration and anchors stay readable. Verifiers
        accept the gateway's records of batches 1..last_trusted_batch only (clamped to the
        last anchored batch): pass the last batch anchored before a suspected compromise."""
        if not 0 <= last_trusted_batch <= TRUST_ALL:
            raise ValueError(f"last_trusted_batch must be 0..2**64-1, got {last_trusted_batch}")
        fn = self.contract.functions.revokeGateway(gateway_key(gateway_id), last_trusted_batch)
        return self._transact(fn, sender, gas_price)

    def _transact(self, fn: Any, sender: Sender, gas_price: int | None) -> TxReceipt:
        try:
            receipt = tx.send_call(self.w3, fn, sender, gas_price=gas_price)
        except reverts.REVERTS as exc:
            self.decoder.reraise(exc)
            raise
        if receipt["status"] != 1:
            self._raise_replayed(receipt["transactionHash"], receipt["blockNumber"])
        return receipt

    # --- reads --------------------------------------------------------------------------
    def gateway(self, gateway_id: str) -> GatewayInfo | None:
        """Registration and anchoring state, or None when the gateway was never registered."""
        pk, sub, reg, rev, last, nxt, ch, trusted = self.contract.functions.gatewayInfo(
            gateway_key(gateway_id)
        ).call()
        if reg == 0:
            return None
        return GatewayInfo(bytes(pk), Web3.to_checksum_address(sub), reg, rev, last, nxt,
                           bytes(ch), trusted)

    def customs(self) -> str:
        """The registry admin address (the deployer)."""
        return Web3.to_checksum_address(self.contract.functions.customs().call())

    def gateway_of(self, submitter: str) -> bytes | None:
        """The gateway key a submitter address serves, or None."""
        key = bytes(self.contract.functions.gatewayOf(Web3.to_checksum_address(submitter)).call())
        return key if any(key) else None

    def root(self, gateway_id: str, batch_seq: int) -> bytes | None:
        """Anchored root of a batch (None when not anchored) per the node's latest state."""
        value = bytes(self.contract.functions.roots(gateway_key(gateway_id), batch_seq).call())
        return value if any(value) else None

    # --- anchoring (gateway) ----------------------------------------------------------------
    def _anchor_fn(self, batch_seq: int, root: bytes, first_seq: int, tree_size: int) -> Any:
        if len(root) != 32:
            raise ValueError(f"root must be 32 bytes, got {len(root)}")
        return self.contract.functions.anchor(batch_seq, root, first_seq, tree_size)

    def preflight_anchor(self, submitter: str, batch_seq: int, root: bytes, first_seq: int,
                         tree_size: int) -> None:
        """eth_call the anchor first: a tx the contract would revert (revoked gateway, wrong
        batch) raises ContractRevert here instead of burning gas and a nonce on chain."""
        fn = self._anchor_fn(batch_seq, root, first_seq, tree_size)
        try:
            fn.call({"from": Web3.to_checksum_address(submitter)})
        except reverts.REVERTS as exc:
            self.decoder.reraise(exc)
            raise

    def build_anchor_tx(self, account: LocalAccount, batch_seq: int, root: bytes,
                        first_seq: int, tree_size: int, *, nonce: int, gas: int = 90_000,
                        gas_price: int | None = None,
                        fees: Fees | None = None) -> tuple[bytes, bytes]:
        """Sign anchor(batchSeq, root, firstSeq, treeSize) without sending it.

        Returns (raw signed tx, tx hash) for the journal. `fees` wins; else `gas_price` (0 is
        fine on Besu free-gas networks) gives a legacy tx; else what `tx.suggest_fees` says.
        Nothing is broadcast.
        """
        if len(root) != 32:
            raise ValueError(f"root must be 32 bytes, got {len(root)}")
        data = self.contract.encode_abi("anchor", args=[batch_seq, root, first_seq, tree_size])
        fields = {"to": self.address, "value": 0, "gas": gas, "nonce": nonce,
                  "chainId": self.chain_id, "data": data}
        return tx.sign(account, fields, fees or tx.suggest_fees(self.w3, gas_price))

    def send_raw(self, raw: bytes) -> bytes:
        """Broadcast a journaled raw tx; idempotent (see `tx.send_raw`), returns its hash."""
        return tx.send_raw(self.w3, raw, self.decoder)

    # the transaction lifecycle the anchor sink asks about (`rpc_registry.RpcRegistry` has
    # the same methods over raw JSON-RPC, which is what a gateway runs)
    def nonce(self, address: str) -> int:
        """The next nonce of `address`, counting its transactions in the node's pool."""
        return int(self.w3.eth.get_transaction_count(Web3.to_checksum_address(address),
                                                     "pending"))

    def suggest_fees(self, gas_price: int | None = None) -> Fees:
        return tx.suggest_fees(self.w3, gas_price)

    def tx_state(self, tx_hash: bytes) -> tx.TxState:
        return tx.tx_state(self.w3, tx_hash)[0]

    def receipt(self, tx_hash: bytes) -> TxReceipt | None:
        """The receipt of a mined tx, None while pending or unknown to the node."""
        try:
            return self.w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None

    def receipt_event(self, tx_hash: bytes) -> AnchorEvent | None:
        """The Anchored event of a mined tx; None while pending (or unknown to the node).

        Raises ContractRevert naming the custom error when the tx reverted (reason recovered
        by replaying it with eth_call on the parent block's state).
        """
        try:
            receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None
        return self.event_from_receipt(receipt)

    def event_from_receipt(self, receipt: TxReceipt) -> AnchorEvent:
        tx_hash = bytes(receipt["transactionHash"])
        if receipt["status"] != 1:
            self._raise_replayed(tx_hash, receipt["blockNumber"], receipt["gasUsed"])
        for log in receipt["logs"]:
            if log["address"] == self.address and log["topics"][0] == ANCHORED_TOPIC:
                return self._event(log)
        raise ChainError(f"tx 0x{tx_hash.hex()} succeeded but emitted no Anchored event")

    def anchor_event(self, gateway_id: str, batch_seq: int, *,
                     block_number: int | None = None) -> AnchorEvent | None:
        """The Anchored log of one batch, found by its indexed topics (gateway, batchSeq).

        `block_number` (from a proof) looks in that one block first. Otherwise, or when the
        log is not there (a reorg moved it), the chain is searched backwards from the head in
        windows of LOG_WINDOW blocks: Besu refuses wider eth_getLogs ranges by default
        (--rpc-max-logs-range), and the batch looked for is usually recent.
        """
        topics = [ANCHORED_TOPIC, gateway_key(gateway_id), batch_seq.to_bytes(32, "big")]
        if block_number is not None:
            found = self._logs(topics, block_number, block_number)
            if found is not None:
                return found
        high = self.w3.eth.block_number
        while high >= self.from_block:
            low = max(self.from_block, high - self.log_window + 1)
            found = self._logs(topics, low, high)
            if found is not None:
                return found
            high = low - 1
        return None

    def _logs(self, topics: list[bytes], low: int, high: int) -> AnchorEvent | None:
        logs = self.w3.eth.get_logs({"address": self.address, "topics": topics,  # type: ignore[typeddict-item]
                                     "fromBlock": low, "toBlock": high})
        live = [log for log in logs if not log.get("removed")]
        return self._event(live[-1]) if live else None

    def _event(self, log: Any) -> AnchorEvent:
        args = self.contract.events.Anchored().process_log(log)["args"]
        return AnchorEvent(
            batch_seq=args["batchSeq"],
            root=bytes(args["root"]),
            first_seq=args["firstSeq"],
            tree_size=args["treeSize"],
            chain_hash=bytes(args["chainHash"]),
            tx_hash=bytes(log["transactionHash"]),
            block_number=log["blockNumber"],
            block_hash=bytes(log["blockHash"]),
            log_index=log["logIndex"],
        )

    def _raise_replayed(self, tx_hash: bytes, block_number: int, gas_used: int = -1) -> None:
        sent = self.w3.eth.get_transaction(tx_hash)
        if gas_used == sent["gas"]:
            raise ChainError(f"tx 0x{bytes(tx_hash).hex()} ran out of gas ({gas_used})")
        call: TxParams = {k: sent[k] for k in ("from", "to", "gas", "value")}  # type: ignore[assignment]
        call["data"] = sent["input"]
        try:
            self.w3.eth.call(call, block_identifier=max(block_number - 1, 0))
        except reverts.REVERTS as exc:
            self.decoder.reraise(exc)
        raise ChainError(f"tx 0x{bytes(tx_hash).hex()} reverted (reason not recoverable)")

