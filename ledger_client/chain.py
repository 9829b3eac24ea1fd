"""EVM side of anchoring: connect to a node, deploy/administer SealTrailAnchor, build and send
anchor transactions, read anchors back for verification.

Building and sending are separate on purpose: the agent journals (batch, nonce, raw tx) BEFORE
broadcasting, so after a crash it re-sends the very same bytes (same hash) instead of signing a
second, conflicting transaction. Reads come from contract state (`gateway`, `root`) and from logs
(`anchor_event`), because a verifier needs the block hash and log index of the anchor.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed  # how the in-process chain reports reverts
from eth_utils import keccak
from eth_utils.exceptions import ValidationError as EvmValidationError
from web3 import EthereumTesterProvider, Web3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError
from web3.middleware import ExtraDataToPOAMiddleware
from web3.types import TxParams, TxReceipt

ARTIFACT_PATH = Path(__file__).resolve().parent / "contracts" / "SealTrailAnchor.json"
ANCHORED_SIG = "Anchored(bytes32,uint64,bytes32,uint64,uint64,bytes32)"
ANCHORED_TOPIC = keccak(text=ANCHORED_SIG)
CHAIN_DOMAIN = b"sealtrail/v1"
# How geth/anvil/Besu/eth-tester word "I already have this tx" and "nonce already used".
_KNOWN_TX = re.compile(r"already known|known transaction|already imported|already in pool", re.I)
_NONCE_LOW = re.compile(r"nonce too low|nonce_too_low|expected (\d+), but got (\d+)", re.I)
_STD_ERRORS = {
    bytes.fromhex("08c379a0"): ("Error", ["string"]),
    bytes.fromhex("4e487b71"): ("Panic", ["uint256"]),
}

Sender = str | LocalAccount
"""An unlocked node account (eth-tester, anvil) or a local key that signs here."""


class ChainError(RuntimeError):
    """Anything the ledger said no to; the message is meant for an operator's log."""


class ContractRevert(ChainError):
    """A call or transaction reverted; `error` is the contract's custom error name (or
    Error/Panic/UnknownRevert), `values` its decoded arguments, `data` the raw revert bytes."""

    def __init__(self, error: str, values: tuple[Any, ...] = (), data: bytes = b"") -> None:
        self.error, self.values, self.data = error, values, data
        shown = ", ".join("0x" + a.hex() if isinstance(a, bytes) else str(a) for a in values)
        super().__init__(f"SealTrailAnchor reverted: {error}({shown})")


class NonceConsumed(ChainError):
    """The nonce of a raw tx was used by a DIFFERENT transaction: ask the contract whether the
    batch is anchored before building a new transaction."""


@cache
def load_artifact() -> dict[str, Any]:
    """The committed compile output (abi, bytecode, compiler, settings)."""
    artifact: dict[str, Any] = json.loads(ARTIFACT_PATH.read_text(encoding="utf-8"))
    return artifact


def gateway_key(gateway_id: str) -> bytes:
    """On-chain gateway id: keccak256 of the UTF-8 gateway id (fixed 32 bytes, any id length)."""
    return keccak(gateway_id.encode("utf-8"))


def genesis_chain_hash(gateway_id: str) -> bytes:
    """chainHash_0 = keccak256("sealtrail/v1" || gateway_key), set at registration."""
    return keccak(CHAIN_DOMAIN + gateway_key(gateway_id))


def next_chain_hash(prev: bytes, root: bytes, first_seq: int, tree_size: int) -> bytes:
    """chainHash_b = keccak256(chainHash_{b-1} || root || uint64 firstSeq || uint64 treeSize)."""
    return keccak(prev + root + first_seq.to_bytes(8, "big") + tree_size.to_bytes(8, "big"))


def connect(rpc_url: str | None = None, *, poa: bool | None = None, timeout: float = 10) -> Web3:
    """None -> a fresh in-process eth-tester chain; http(s) URL -> that node.

    Besu QBFT/Clique (and other POA) blocks carry more than 32 bytes of extraData, which web3's
    validation rejects; with poa=None we look at the raw genesis block and add the POA
    middleware only where it is needed.
    """
    if rpc_url is None:
        w3 = Web3(EthereumTesterProvider())
    elif rpc_url.startswith(("http://", "https://")):
        w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    else:
        raise ValueError(f"unsupported ledger RPC URL {rpc_url!r}: use http(s)://host:port")
    if poa is None and rpc_url is not None:
        # Raw request: the formatted one would already fail validation on a POA chain.
        genesis = w3.provider.make_request("eth_getBlockByNumber", ["0x0", False])  # type: ignore[arg-type]
        if genesis.get("error") or not genesis.get("result"):
            raise ChainError(f"cannot read genesis block from {rpc_url}: {genesis.get('error')}")
        poa = len(bytes.fromhex(genesis["result"]["extraData"][2:])) > 32
    if poa:
        w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    return w3


@dataclass(frozen=True)
class GatewayInfo:
    pubkey: bytes
    submitter: str
    registered_at: int
    revoked_at: int
    last_batch: int
    next_seq: int
    chain_hash: bytes


@dataclass(frozen=True)
class AnchorEvent:
    batch_seq: int
    root: bytes
    first_seq: int
    tree_size: int
    chain_hash: bytes
    tx_hash: bytes
    block_number: int
    block_hash: bytes
    log_index: int


def _address(sender: Sender) -> str:
    return sender.address if isinstance(sender, LocalAccount) else Web3.to_checksum_address(sender)


def _revert_data(exc: Exception) -> bytes | None:
    """Revert payload from whatever shape the node/provider used to report it: `data` on
    web3's ContractLogicError, error.data of a JSON-RPC error, or (eth-tester) a Python bytes
    literal inside the message ("execution reverted: b'...'")."""
    data: Any = getattr(exc, "data", None)
    if data is None and isinstance(exc, Web3RPCError) and exc.rpc_response:
        data = exc.rpc_response.get("error", {}).get("data")
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, bytes):
        return data
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    literal = re.search(r"\bb(['\"]).*\1", str(exc), re.DOTALL)
    if literal:
        try:
            value = ast.literal_eval(literal.group(0))
        except (ValueError, SyntaxError):
            return None
        return value if isinstance(value, bytes) else None
    return None


_NODE_REFUSALS = (Web3RPCError, ValueError, EvmValidationError, TransactionFailed)
_REVERTS = (ContractLogicError, Web3RPCError, ValueError, TransactionFailed)


class AnchorRegistry:
    """A deployed SealTrailAnchor contract."""

    def __init__(self, w3: Web3, address: str, *, from_block: int = 0) -> None:
        """`from_block`: where log searches start (the deployment block saves work on Besu)."""
        self.w3 = w3
        self.address = Web3.to_checksum_address(address)
        self.from_block = from_block
        self.contract = w3.eth.contract(address=self.address, abi=load_artifact()["abi"])
        self._errors = {
            keccak(text=f"{e['name']}({','.join(i['type'] for i in e['inputs'])})")[:4]: (
                e["name"],
                [i["type"] for i in e["inputs"]],
            )
            for e in load_artifact()["abi"]
            if e["type"] == "error"
        } | _STD_ERRORS
        self._chain_id: int | None = None

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = self.w3.eth.chain_id
        return self._chain_id

    # --- errors -------------------------------------------------------------------------
    def decode_revert(self, data: bytes) -> ContractRevert:
        """Turn revert bytes into ContractRevert naming the custom error (or Error/Panic)."""
        name, types = self._errors.get(data[:4], (None, []))
        if name is None:
            return ContractRevert("UnknownRevert", (data,), data)
        values = self.w3.codec.decode(types, data[4:])
        args = tuple(
            Web3.to_checksum_address(v) if t == "address" else v
            for t, v in zip(types, values, strict=True)
        )
        return ContractRevert(name, args, data)

    def _reraise(self, exc: Exception) -> None:
        data = _revert_data(exc)
        if data:
            raise self.decode_revert(data) from exc
        if isinstance(exc, ContractLogicError):
            raise ContractRevert("Revert", (str(exc),)) from exc

    # --- administration (customs) ---------------------------------------------------------
    @classmethod
    def deploy(cls, w3: Web3, deployer: Sender) -> AnchorRegistry:
        """Deploy a fresh registry; the deployer becomes `customs`, the registry admin."""
        art = load_artifact()
        factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        receipt = _send(w3, factory.constructor(), deployer)
        if receipt["status"] != 1 or not receipt["contractAddress"]:
            raise ChainError(f"deployment failed: 0x{bytes(receipt['transactionHash']).hex()}")
        return cls(w3, receipt["contractAddress"], from_block=receipt["blockNumber"])

    def register_gateway(
        self, gateway_id: str, pubkey: bytes, submitter: str, sender: Sender
    ) -> TxReceipt:
        """Customs only. `pubkey` is the raw 32-byte Ed25519 public key of the gateway."""
        if len(pubkey) != 32:
            raise ValueError(f"Ed25519 public key must be 32 raw bytes, got {len(pubkey)}")
        fn = self.contract.functions.registerGateway(
            gateway_key(gateway_id), pubkey, Web3.to_checksum_address(submitter)
        )
        return self._transact(fn, sender)

    def revoke_gateway(self, gateway_id: str, sender: Sender) -> TxReceipt:
        """Customs only. Anchoring stops; registration and anchors stay readable."""
        return self._transact(
            self.contract.functions.revokeGateway(gateway_key(gateway_id)), sender
        )

    def _transact(self, fn: Any, sender: Sender) -> TxReceipt:
        try:
            receipt = _send(self.w3, fn, sender)
        except _REVERTS as exc:
            self._reraise(exc)
            raise
        if receipt["status"] != 1:
            self._raise_replayed(receipt["transactionHash"], receipt["blockNumber"])
        return receipt

    # --- reads --------------------------------------------------------------------------
    def gateway(self, gateway_id: str) -> GatewayInfo | None:
        """Registration and anchoring state, or None when the gateway was never registered."""
        pk, sub, reg, rev, last, nxt, ch = self.contract.functions.gatewayInfo(
            gateway_key(gateway_id)
        ).call()
        if reg == 0:
            return None
        return GatewayInfo(bytes(pk), Web3.to_checksum_address(sub), reg, rev, last, nxt, bytes(ch))

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
    def build_anchor_tx(
        self,
        account: LocalAccount,
        batch_seq: int,
        root: bytes,
        first_seq: int,
        tree_size: int,
        *,
        nonce: int,
        gas: int = 90_000,
        gas_price: int | None = None,
    ) -> tuple[bytes, bytes]:
        """Sign anchor(batchSeq, root, firstSeq, treeSize) without sending it.

        Returns (raw signed tx, tx hash) for the journal. An explicit gas_price (0 is fine on
        Besu free-gas networks) gives a legacy tx; otherwise EIP-1559 where the latest block
        has a base fee, legacy at the node's gas price where it does not. One RPC round for
        fees (plus chain id once); nothing is broadcast.
        """
        if len(root) != 32:
            raise ValueError(f"root must be 32 bytes, got {len(root)}")
        tx: dict[str, Any] = {
            "to": self.address,
            "value": 0,
            "gas": gas,
            "nonce": nonce,
            "chainId": self.chain_id,
            "data": self.contract.encode_abi(
                "anchor", args=[batch_seq, root, first_seq, tree_size]
            ),
        }
        if gas_price is not None:
            tx["gasPrice"] = gas_price
        else:
            base_fee = self.w3.eth.get_block("latest").get("baseFeePerGas")
            if base_fee is None:
                tx["gasPrice"] = self.w3.eth.gas_price
            else:
                tip = self.w3.eth.max_priority_fee if base_fee else 0
                tx.update(type=2, maxPriorityFeePerGas=tip, maxFeePerGas=2 * base_fee + tip)
        signed = account.sign_transaction(tx)
        return bytes(signed.raw_transaction), bytes(signed.hash)

    def send_raw(self, raw: bytes) -> bytes:
        """Broadcast a journaled raw tx; idempotent, returns its hash.

        - node already has it ("already known", "known transaction", "already imported"): fine,
          return the hash;
        - "nonce too low": if THIS tx is known to the node (mined, or pending) return its
          hash; otherwise another tx used the nonce, so raise NonceConsumed and let the caller
          ask the contract whether the batch is anchored before building a new tx;
        - a revert at submission (nodes that simulate) raises ContractRevert.
        """
        tx_hash = keccak(raw)
        try:
            return bytes(self.w3.eth.send_raw_transaction(raw))
        except _NODE_REFUSALS as exc:
            msg = str(exc)
            if _KNOWN_TX.search(msg):
                return tx_hash
            if isinstance(exc, TransactionFailed) and self._tx_known(tx_hash):
                return tx_hash  # eth-tester mined it and it reverted: receipt_event says why
            low = _NONCE_LOW.search(msg)
            if low and (low.group(1) is None or int(low.group(2)) < int(low.group(1))):
                if self._tx_known(tx_hash):
                    return tx_hash
                raise NonceConsumed(
                    f"nonce of tx 0x{tx_hash.hex()} already used by another transaction ({msg})"
                ) from exc
            self._reraise(exc)
            raise ChainError(f"node refused tx 0x{tx_hash.hex()}: {msg}") from exc

    def _tx_known(self, tx_hash: bytes) -> bool:
        try:
            self.w3.eth.get_transaction(tx_hash)
        except TransactionNotFound:
            return False
        return True

    def receipt_event(self, tx_hash: bytes) -> AnchorEvent | None:
        """The Anchored event of a mined tx; None while pending (or unknown to the node).

        Raises ContractRevert naming the custom error when the tx reverted (reason recovered
        by replaying it with eth_call on the parent block's state).
        """
        try:
            receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        except TransactionNotFound:
            return None
        if receipt["status"] != 1:
            self._raise_replayed(tx_hash, receipt["blockNumber"], receipt["gasUsed"])
        for log in receipt["logs"]:
            if log["address"] == self.address and log["topics"][0] == ANCHORED_TOPIC:
                return self._event(log)
        raise ChainError(f"tx 0x{bytes(tx_hash).hex()} succeeded but emitted no Anchored event")

    def anchor_event(self, gateway_id: str, batch_seq: int) -> AnchorEvent | None:
        """The Anchored log of one batch, found by its indexed topics (gateway, batchSeq)."""
        logs = self.w3.eth.get_logs(
            {
                "address": self.address,
                "fromBlock": self.from_block,
                "toBlock": "latest",
                "topics": [ANCHORED_TOPIC, gateway_key(gateway_id), batch_seq.to_bytes(32, "big")],
            }
        )
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
        tx = self.w3.eth.get_transaction(tx_hash)
        if gas_used == tx["gas"]:
            raise ChainError(f"tx 0x{bytes(tx_hash).hex()} ran out of gas ({gas_used})")
        call: TxParams = {k: tx[k] for k in ("from", "to", "gas", "value")}  # type: ignore[assignment]
        call["data"] = tx["input"]
        try:
            self.w3.eth.call(call, block_identifier=max(block_number - 1, 0))
        except _REVERTS as exc:
            self._reraise(exc)
        raise ChainError(f"tx 0x{bytes(tx_hash).hex()} reverted (reason not recoverable)")


def _send(w3: Web3, fn: Any, sender: Sender) -> TxReceipt:
    """Send a contract call/constructor from an unlocked account or a local key; wait for it."""
    if isinstance(sender, LocalAccount):
        tx = fn.build_transaction(
            {
                "from": sender.address,
                "nonce": w3.eth.get_transaction_count(sender.address, "pending"),
            }
        )
        tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    else:
        tx_hash = fn.transact({"from": _address(sender)})
    return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)


def fund(w3: Web3, from_addr: str, to_addr: str, wei: int) -> None:
    """Move test ether from an unlocked, rich node account (eth-tester, anvil) to a fresh key."""
    tx: TxParams = {"from": _address(from_addr), "to": _address(to_addr), "value": wei}  # type: ignore[typeddict-item]
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(tx), timeout=120)
    if receipt["status"] != 1:
        raise ChainError(f"funding {to_addr} failed")
