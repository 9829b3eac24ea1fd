"""The gateway's SealTrailAnchor client over raw JSON-RPC: anchoring without web3.

`chain.AnchorRegistry` (web3) costs a gateway ~50 MB of RSS, more than the rest of the agent,
to do a dozen JSON-RPC calls per batch. This client makes the same calls through `rpc.JsonRpc`,
reads through `reader.RegistryReader` (uncached here: the agent needs the node's answer now),
signs with `signer.Signer`, and maps the node's refusals onto the same `ledger_client.errors`
as the web3 path (ContractRevert with the decoded custom error, NonceConsumed, Underpriced,
ChainError), so `edge_agent.sinks.anchor.AnchorSink` runs unchanged on either. Administration
(deploy, register, revoke) stays on web3: customs runs it, not a gateway.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from ledger_client.abi import (
    ANCHORED_TOPIC,
    AnchorEvent,
    GatewayInfo,
    decode_anchored,
    keccak,
    to_checksum,
    word,
)
from ledger_client.errors import ChainError, ContractRevert, NonceConsumed, Underpriced
from ledger_client.evmtx import KNOWN_TX, NONCE_LOW, UNDERPRICED, Fees, TxState, fees_from
from ledger_client.reader import RegistryReader
from ledger_client.rpc import RpcError
from ledger_client.signer import Signer

ARTIFACT_PATH = Path(__file__).resolve().parent / "contracts" / "SealTrailAnchor.json"
"""The compiled contract (`chain.ARTIFACT_PATH`; chain itself imports web3)."""
ANCHOR = keccak(b"anchor(uint64,bytes32,uint64,uint64)")[:4]


@cache
def _errors() -> dict[bytes, tuple[str, list[str]]]:
    """Selector -> (name, argument types) of the contract's custom errors, Error and Panic."""
    abi = json.loads(ARTIFACT_PATH.read_text(encoding="utf-8"))["abi"]
    table = {keccak(f"{e['name']}({','.join(i['type'] for i in e['inputs'])})".encode())[:4]:
             (e["name"], [i["type"] for i in e["inputs"]]) for e in abi if e["type"] == "error"}
    table[bytes.fromhex("08c379a0")] = ("Error", ["string"])
    table[bytes.fromhex("4e487b71")] = ("Panic", ["uint256"])
    return table


def decode_revert(data: bytes) -> ContractRevert:
    """Revert bytes -> ContractRevert naming the custom error, arguments decoded as web3 does
    (addresses checksummed, bytesN as bytes, uintN as int); UnknownRevert for anything else."""
    name, types = _errors().get(data[:4], (None, []))
    body = data[4:]
    try:
        if name is None or len(body) < 32 * len(types):
            raise ValueError
        values = tuple(_arg(t, body, i) for i, t in enumerate(types))
    except (ValueError, IndexError, UnicodeDecodeError):
        return ContractRevert("UnknownRevert", (data,), data)
    return ContractRevert(name, values, data)


def _arg(kind: str, body: bytes, index: int) -> Any:
    slot = body[32 * index:32 * index + 32]
    if kind == "address":
        return to_checksum("0x" + slot[12:].hex())
    if kind.startswith("bytes") and kind != "bytes":
        return slot[:int(kind[5:])]
    if kind.startswith("uint"):
        return int.from_bytes(slot, "big")
    if kind == "string":
        offset = int.from_bytes(slot, "big")
        length = int.from_bytes(body[offset:offset + 32], "big")
        text = body[offset + 32:offset + 32 + length]
        if len(text) != length:
            raise ValueError("truncated string")
        return text.decode("utf-8")
    raise ValueError(f"unsupported ABI type {kind}")


def _revert_bytes(exc: RpcError) -> bytes | None:
    data = exc.data.get("data") if isinstance(exc.data, dict) else exc.data
    if isinstance(data, str) and data.startswith("0x") and len(data) > 2:
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    return None


def reraise_revert(exc: RpcError) -> None:
    """Raise ContractRevert if the node's error is a revert (with or without data)."""
    data = _revert_bytes(exc)
    if data:
        raise decode_revert(data) from exc
    if "revert" in exc.reason.lower():
        raise ContractRevert("Revert", (exc.reason,)) from exc


class RpcRegistry(RegistryReader):
    """A deployed SealTrailAnchor as the anchor sink uses it (`chain.AnchorRegistry`'s
    gateway-side methods), over `rpc`. Reads are not cached: the sink asks for news."""

    # --- reads: always the node's current answer --------------------------------------------
    def head_block(self) -> int:
        self._head = None
        return super().head_block()

    def gateway(self, gateway_id: str) -> GatewayInfo | None:
        self._gateways.pop(gateway_id, None)
        return super().gateway(gateway_id)

    def root(self, gateway_id: str, batch_seq: int) -> bytes | None:
        self._roots.pop((gateway_id, batch_seq), None)
        return super().root(gateway_id, batch_seq)

    def anchor_event(self, gateway_id: str, batch_seq: int, *,
                     block_number: int | None = None) -> AnchorEvent | None:
        self._events.pop((gateway_id, batch_seq), None)
        self._head = None
        return super().anchor_event(gateway_id, batch_seq, block_number=block_number)

    def nonce(self, address: str) -> int:
        """The next nonce of `address`, counting its transactions in the node's pool."""
        return self._int(self.rpc.call("eth_getTransactionCount", [address, "pending"]),
                         "eth_getTransactionCount")

    def suggest_fees(self, gas_price: int | None = None) -> Fees:
        """Fees for a tx now, by `evmtx.fees_from` (the rule `tx.suggest_fees` follows)."""
        if gas_price is not None:
            return Fees(gas_price=gas_price)
        block = self.rpc.call("eth_getBlockByNumber", ["latest", False])
        base = block.get("baseFeePerGas") if isinstance(block, dict) else None
        if base is None:
            return fees_from(None, None, self._int(self.rpc.call("eth_gasPrice"),
                                                   "eth_gasPrice"), 0)
        base_fee = self._int(base, "baseFeePerGas")
        tip = 0
        if base_fee:
            try:
                tip = self._int(self.rpc.call("eth_maxPriorityFeePerGas"),
                                "eth_maxPriorityFeePerGas")
            except RpcError:  # a node without the method: what its gas price adds to the base
                tip = max(self._int(self.rpc.call("eth_gasPrice"), "eth_gasPrice") - base_fee, 0)
        return fees_from(None, base_fee, 0, tip)

    # --- anchoring ----------------------------------------------------------------------------
    @staticmethod
    def anchor_calldata(batch_seq: int, root: bytes, first_seq: int, tree_size: int) -> bytes:
        if len(root) != 32:
            raise ValueError(f"root must be 32 bytes, got {len(root)}")
        return ANCHOR + bytes.fromhex(word(batch_seq)) + root + bytes.fromhex(
            word(first_seq) + word(tree_size))

    def preflight_anchor(self, submitter: str, batch_seq: int, root: bytes, first_seq: int,
                         tree_size: int) -> None:
        """eth_call the anchor first: a tx the contract would revert raises ContractRevert
        here instead of burning gas and a nonce on chain."""
        data = self.anchor_calldata(batch_seq, root, first_seq, tree_size)
        try:
            self.rpc.call("eth_call", [{"from": to_checksum(submitter), "to": self.address,
                                        "data": "0x" + data.hex()}, "latest"])
        except RpcError as exc:
            reraise_revert(exc)
            raise

    def build_anchor_tx(self, account: Signer, batch_seq: int, root: bytes, first_seq: int,
                        tree_size: int, *, nonce: int, gas: int = 90_000,
                        gas_price: int | None = None,
                        fees: Fees | None = None) -> tuple[bytes, bytes]:
        """Sign anchor(...) without sending it; (raw, hash) for the journal. Fees as in
        `chain.AnchorRegistry.build_anchor_tx`: `fees`, else `gas_price` (legacy), else
        `suggest_fees`."""
        data = self.anchor_calldata(batch_seq, root, first_seq, tree_size)
        return account.sign_transaction(nonce=nonce, gas=gas, to=self.address, value=0,
                                        data=data, chain_id=self.chain_id,
                                        fees=fees or self.suggest_fees(gas_price))

    def send_raw(self, raw: bytes) -> bytes:
        """Broadcast a journaled raw tx; idempotent like `tx.send_raw`, returns its hash."""
        tx_hash = keccak(raw)
        try:
            self.rpc.call("eth_sendRawTransaction", ["0x" + raw.hex()])
        except RpcError as exc:
            msg = exc.reason
            if KNOWN_TX.search(msg):
                return tx_hash
            low = NONCE_LOW.search(msg)
            if low and (low.group(1) is None or int(low.group(2)) < int(low.group(1))):
                if self.tx_state(tx_hash) is not TxState.UNKNOWN:
                    return tx_hash
                raise NonceConsumed(f"nonce of tx 0x{tx_hash.hex()} already used by another "
                                    f"transaction ({msg})") from exc
            if UNDERPRICED.search(msg):
                raise Underpriced(f"node refused tx 0x{tx_hash.hex()} at its fee: {msg}") from exc
            reraise_revert(exc)
            raise ChainError(f"node refused tx 0x{tx_hash.hex()}: {msg}") from exc
        return tx_hash

    def receipt(self, tx_hash: bytes) -> dict[str, Any] | None:
        """The receipt of a mined tx (status, blockHash, blockNumber, gasUsed as values, logs
        as the node sent them), None while pending or unknown."""
        raw = self.rpc.call("eth_getTransactionReceipt", ["0x" + tx_hash.hex()])
        if raw is None:
            return None
        try:
            return {"transactionHash": tx_hash, "status": int(raw["status"], 16),
                    "blockHash": bytes.fromhex(raw["blockHash"][2:]),
                    "blockNumber": int(raw["blockNumber"], 16),
                    "gasUsed": int(raw["gasUsed"], 16), "logs": list(raw.get("logs") or [])}
        except (KeyError, TypeError, ValueError) as exc:
            raise ChainError(f"the ledger at {self.rpc.url} gave an unexpected receipt for "
                             f"0x{tx_hash.hex()}: {exc!r}") from None

    def tx_state(self, tx_hash: bytes) -> TxState:
        """Mined (a receipt), pending (in the node's pool) or unknown to the node."""
        if self.receipt(tx_hash) is not None:
            return TxState.MINED
        found = self.rpc.call("eth_getTransactionByHash", ["0x" + tx_hash.hex()])
        return TxState.PENDING if found is not None else TxState.UNKNOWN

    def receipt_event(self, tx_hash: bytes) -> AnchorEvent | None:
        """The Anchored event of a mined tx; None while pending. ContractRevert naming the
        custom error when it reverted (replayed with eth_call on the parent block)."""
        receipt = self.receipt(tx_hash)
        return None if receipt is None else self.event_from_receipt(receipt)

    def event_from_receipt(self, receipt: dict[str, Any]) -> AnchorEvent:
        tx_hash: bytes = receipt["transactionHash"]
        if receipt["status"] != 1:
            self._raise_replayed(tx_hash, receipt["blockNumber"], receipt["gasUsed"])
        topic = "0x" + ANCHORED_TOPIC.hex()
        for log in self._live(receipt["logs"]):
            if str(log["topics"][0]).lower() == topic:
                return self._decode(decode_anchored, log, "Anchored log")
        raise ChainError(f"tx 0x{tx_hash.hex()} succeeded but emitted no Anchored event")

    def _raise_replayed(self, tx_hash: bytes, block_number: int, gas_used: int) -> None:
        sent = self.rpc.call("eth_getTransactionByHash", ["0x" + tx_hash.hex()])
        if not isinstance(sent, dict):
            raise ChainError(f"tx 0x{tx_hash.hex()} reverted (reason not recoverable)")
        if gas_used == self._int(sent.get("gas"), "gas"):
            raise ChainError(f"tx 0x{tx_hash.hex()} ran out of gas ({gas_used})")
        call = {k: sent.get(k) for k in ("from", "to", "gas", "value")}
        call["data"] = sent.get("input")
        try:
            self.rpc.call("eth_call", [call, hex(max(block_number - 1, 0))])
        except RpcError as exc:
            reraise_revert(exc)
        raise ChainError(f"tx 0x{tx_hash.hex()} reverted (reason not recoverable)")

